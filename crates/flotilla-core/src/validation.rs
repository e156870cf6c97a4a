//! Validation errors that name the field they are about.
//!
//! A refused document lists *every* problem found, each with the JSON path of the field
//! (`spec.quota.cpu`, `metadata.labels["tier"]`), so that a user fixes all of them at once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `spec.tier` or `metadata.name`; empty for the document.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// All problems found in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join("; "))
    }
}

impl ValidationErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was found, else `Err(self)`.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// Maximum length of an object name (a DNS label, so names can appear in DNS names).
pub const MAX_NAME_LEN: usize = 63;

/// A key of a configuration or secret map (it may become a file name): `None` when valid.
pub fn check_data_key(key: &str) -> Option<String> {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (!valid).then(|| "keys are letters, digits, '-', '_' and '.' (at most 253, not . or ..)".to_string())
}

/// Checks a DNS-1123 label: lowercase alphanumerics and `-`, starting and ending with an
/// alphanumeric, at most 63 characters. Returns what is wrong, if anything.
pub fn check_dns_label(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    if value.len() > MAX_NAME_LEN {
        return Some(format!("must be at most {MAX_NAME_LEN} characters (got {})", value.len()));
    }
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some(bad) = value.chars().find(|c| !valid_char(*c)) {
        return Some(format!("invalid character {bad:?}: use lowercase letters, digits and '-' (e.g. \"my-name\")"));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending with an alphanumeric.
pub fn check_label_key(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() || prefix.len() > 253 {
            return Some("prefix must be a DNS subdomain of at most 253 characters".into());
        }
        if prefix.split('.').any(|part| check_dns_label(part).is_some()) {
            return Some(format!("prefix {prefix:?} is not a valid DNS subdomain"));
        }
    }
    check_label_value(name, false)
}

/// Checks a label value (may be empty when `allow_empty`).
pub fn check_label_value(value: &str, allow_empty: bool) -> Option<String> {
    if value.is_empty() {
        return if allow_empty { None } else { Some("must not be empty".into()) };
    }
    if value.len() > 63 {
        return Some(format!("must be at most 63 characters (got {})", value.len()));
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(bad) = value.chars().find(|c| !valid_char(*c)) {
        return Some(format!("invalid character {bad:?}: use letters, digits, '-', '_' or '.'"));
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(value.chars().next()) || !first_last_ok(value.chars().last()) {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert_eq!(check_dns_label("shop-prod1"), None);
        assert!(check_dns_label("Shop").is_some_and(|m| m.contains("'S'")));
        assert!(check_dns_label("-a").is_some());
        assert!(check_dns_label(&"a".repeat(64)).is_some_and(|m| m.contains("64")));
        assert!(check_dns_label("").is_some());
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(check_label_key("flotilla.io/tier"), None);
        assert_eq!(check_label_key("region"), None);
        assert!(check_label_key("bad prefix/x").is_some());
        assert!(check_label_key("a/").is_some());
        assert_eq!(check_label_value("", true), None);
        assert!(check_label_value("a b", true).is_some());
    }
}
