//! Repository names and tags as the OCI Distribution Specification defines them; both are
//! safe as file and object names once validated here.

/// Why a name or tag is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{0:?} is not a repository name: lowercase letters and digits, separated by '.', '_', '__' or '-' within \
         a path component and by '/' between components"
    )]
    Repository(String),
    #[error("{0:?} is not a tag: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")]
    Tag(String),
}

/// Checks a repository name (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// at most 255 characters).
pub fn repository(name: &str) -> Result<(), NameError> {
    let valid = !name.is_empty() && name.len() <= 255 && name.split('/').all(component);
    if valid { Ok(()) } else { Err(NameError::Repository(name.to_string())) }
}

fn component(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes: Vec<char> = part.chars().collect();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else { return false };
    if !alnum(*first) || !alnum(*last) {
        return false;
    }
    // Separators: '.', '_', '__', or a run of '-'; each between alphanumerics.
    let mut index = 0;
    while index < bytes.len() {
        let c = bytes[index];
        if alnum(c) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && !alnum(bytes[index]) {
            index += 1;
        }
        let separator: String = bytes[start..index].iter().collect();
        let ok = separator == "." || separator == "_" || separator == "__" || separator.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// Checks a tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub fn tag(tag: &str) -> Result<(), NameError> {
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 { Ok(()) } else { Err(NameError::Tag(tag.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for good in ["busybox", "shop/web", "a/b/c", "my-app", "my--app", "my_app", "my__app", "v1.2/x"] {
            assert_eq!(repository(good), Ok(()), "{good}");
        }
        for bad in ["", "Shop", "shop/", "/shop", "shop//web", "-x", "x-", "a___b", "a._b", "../x", "a/_layers", "a b"]
        {
            assert!(repository(bad).is_err(), "{bad}");
        }
        assert!(repository(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        for good in ["latest", "1.0", "v1.2.3-rc_1", "_x", "A"] {
            assert_eq!(tag(good), Ok(()), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(tag(bad).is_err(), "{bad}");
        }
    }
}
