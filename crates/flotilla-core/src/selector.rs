//! Label selectors, as in Kubernetes: `tier=prod,region!=eu,app in (a,b),!legacy,team`.
//!
//! Parsed into [`Requirement`]s that the store turns into SQL and that [`Selector::matches`]
//! evaluates in memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validation::{check_label_key, check_label_value};

/// One requirement on one label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// All requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    /// Parses a selector; the error says which part is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn key(text: &str, whole: &str) -> Result<String, String> {
    let text = text.trim();
    match check_label_key(text) {
        None => Ok(text.to_string()),
        Some(problem) => Err(format!("in {whole:?}: label key {text:?}: {problem}")),
    }
}

fn value(text: &str, whole: &str) -> Result<String, String> {
    let text = text.trim();
    match check_label_value(text, true) {
        None => Ok(text.to_string()),
        Some(problem) => Err(format!("in {whole:?}: label value {text:?}: {problem}")),
    }
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(rest) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key(rest, part)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k, part)?, value(v, part)?));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key(k, part)?, value(v, part)?));
    }
    for (word, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = part.split_once(word) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("in {part:?}: expected a parenthesised list of values"))?;
            let values = inner.split(',').map(|v| value(v, part)).collect::<Result<Vec<_>, _>>()?;
            let k = key(k, part)?;
            return Ok(if negated { Requirement::NotIn(k, values) } else { Requirement::In(k, values) });
        }
    }
    Ok(Requirement::Exists(key(part, part)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_and_matches_every_form() {
        let selector = Selector::parse("tier=prod, region!=eu, app in (a, b), !legacy, team").unwrap();
        assert_eq!(selector.0.len(), 5);
        assert!(selector.matches(&labels(&[("tier", "prod"), ("app", "a"), ("team", "x")])));
        assert!(!selector.matches(&labels(&[("tier", "prod"), ("app", "c"), ("team", "x")])));
        assert!(!selector.matches(&labels(&[("tier", "prod"), ("app", "a"), ("team", "x"), ("legacy", "")])));
        let notin = Selector::parse("cloud notin (aws)").unwrap();
        assert!(notin.matches(&labels(&[])));
        assert!(!notin.matches(&labels(&[("cloud", "aws")])));
    }

    #[test]
    fn errors_name_the_bad_part() {
        let error = Selector::parse("tier=prod,bad key=x").unwrap_err();
        assert!(error.contains("bad key"), "{error}");
        assert!(Selector::parse("app in a,b").is_err());
    }
}
