//! Drift (pure): where a live object differs from what Flotilla applied. Only the fields
//! Flotilla sets count (what the server or another controller adds is not drift); metadata
//! counts through its labels and annotations only.

use serde_json::Value;

/// Every difference between `applied` and `live`, as `path: is X, applied Y`.
pub fn differences(applied: &Value, live: &Value) -> Vec<String> {
    let mut found = Vec::new();
    compare(applied, live, "", &mut found);
    found
}

/// Whether `value` is the zero value of its type: the API server leaves such fields out
/// (Go's `omitempty`), so applying one and not finding it back is no drift.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn same_number(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

fn compare(applied: &Value, live: &Value, path: &str, found: &mut Vec<String>) {
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (applied, live) {
        (Value::Object(applied), Value::Object(live)) => {
            for (key, value) in applied {
                if path == "metadata" && key != "labels" && key != "annotations" {
                    continue;
                }
                if path.is_empty() && key == "status" {
                    continue;
                }
                match live.get(key) {
                    Some(live_value) => compare(value, live_value, &at(key), found),
                    None if is_zero(value) => {}
                    None => found.push(format!("{} is gone, applied {value}", at(key))),
                }
            }
        }
        (Value::Array(applied), Value::Array(live)) => {
            if applied.len() != live.len() {
                found.push(format!("{path} has {} items, applied {}", live.len(), applied.len()));
                return;
            }
            for (index, (a, l)) in applied.iter().zip(live).enumerate() {
                compare(a, l, &format!("{path}[{index}]"), found);
            }
        }
        (a, l) if a == l || same_number(a, l) => {}
        (a, l) => found.push(format!("{path} is {l}, applied {a}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_what_was_applied_counts() {
        let applied = json!({"metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        let mut live = applied.clone();
        live["metadata"]["resourceVersion"] = json!("7");
        live["metadata"]["labels"]["added-by-someone"] = json!("x");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["status"] = json!({"replicas": 3});
        // Zero values the server leaves out are not drift.
        let mut applied = applied;
        applied["spec"]["template"]["spec"]["containers"][0]["readOnly"] = json!(false);
        applied["spec"]["minReadySeconds"] = json!(0);
        assert!(differences(&applied, &live).is_empty(), "{:?}", differences(&applied, &live));

        live["spec"]["replicas"] = json!(5);
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        live["metadata"]["labels"].as_object_mut().unwrap().remove("a");
        assert_eq!(
            differences(&applied, &live),
            [
                "metadata.labels.a is gone, applied \"1\"",
                "spec.replicas is 5, applied 3",
                "spec.template.spec.containers[0].image is \"i:2\", applied \"i:1\""
            ]
        );
    }
}
