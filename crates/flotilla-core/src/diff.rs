//! Structural diff of two JSON documents: the "what changed" of an audit record.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One changed leaf (or subtree that appeared or disappeared).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Dotted path, e.g. `spec.quota.cpu`, `metadata.labels.tier`, `spec.clusters[1]`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// Paths whose changes are bookkeeping, not content.
const IGNORED: &[&str] = &[
    "metadata.resourceVersion",
    "metadata.updateTimestamp",
    "metadata.generation",
    "metadata.uid",
    "metadata.creationTimestamp",
];

/// Every difference between `before` and `after` (either may be absent).
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    let mut changes = Vec::new();
    walk("", before, after, &mut changes);
    changes
}

fn walk(path: &str, before: Option<&Value>, after: Option<&Value>, changes: &mut Vec<Change>) {
    if IGNORED.contains(&path) {
        return;
    }
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                walk(&child, b.get(key), a.get(key), changes);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) if b.len() == a.len() => {
            for (index, (b, a)) in b.iter().zip(a).enumerate() {
                walk(&format!("{path}[{index}]"), Some(b), Some(a), changes);
            }
        }
        (b, a) if b == a => {}
        (b, a) => changes.push(Change { path: path.to_string(), before: b.cloned(), after: a.cloned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_leaf_changes_and_ignores_bookkeeping() {
        let before =
            json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"tier": "test", "clusters": ["a"]}});
        let after = json!({"metadata": {"name": "a", "resourceVersion": "2", "labels": {"x": "y"}}, "spec": {"tier": "prod", "clusters": ["a"]}});
        let changes = diff(Some(&before), Some(&after));
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["metadata.labels", "spec.tier"]);
        assert_eq!(changes[1].before, Some(json!("test")));
        assert_eq!(changes[1].after, Some(json!("prod")));
    }

    #[test]
    fn creation_is_one_change_of_the_root() {
        let after = json!({"spec": {}});
        assert_eq!(diff(None, Some(&after)).len(), 1);
        assert!(diff(Some(&after), Some(&after)).is_empty());
    }
}
