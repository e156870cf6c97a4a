//! A mutation as data: an [`Operation`] names what should change, can be checked against
//! policy, stored, and executed later (the approvals module holds high-risk operations until
//! a designated approver approves them). [`plan`] decides, purely, what executing it against
//! the current object means.

use serde::{Deserialize, Serialize};

use crate::object::{Object, ObjectKey};
use crate::validation::ValidationErrors;

/// What an operation does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationVerb {
    /// Create; refused if the object exists.
    Create,
    /// Replace spec, labels and annotations; refused if absent or (with a precondition) stale.
    Update,
    /// Create or update, as `flotilla apply` does.
    Apply,
    /// Delete; refused if absent or (with a precondition) stale.
    Delete,
}

impl OperationVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationVerb::Create => "create",
            OperationVerb::Update => "update",
            OperationVerb::Apply => "apply",
            OperationVerb::Delete => "delete",
        }
    }
}

/// A requested change of one declarative object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Unique id, recorded in the audit record (and in the approval, when one is needed).
    pub id: String,
    pub verb: OperationVerb,
    pub key: ObjectKey,
    /// The desired object (validated) for create, update and apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Object>,
    /// The resource version the caller last saw: a stale one is refused (409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precondition: Option<u64>,
}

/// Why an operation cannot be executed as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OperationError {
    #[error("{0} not found")]
    NotFound(ObjectKey),
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    #[error("{key} was modified: resourceVersion {expected} is stale, the current one is {current}")]
    Conflict { key: ObjectKey, expected: u64, current: u64 },
    #[error("invalid {0}")]
    Invalid(ValidationErrors),
    /// Other objects still refer to the one being deleted.
    #[error("{key} is still referenced by {}; delete or change them first", referrers.join(", "))]
    InUse { key: ObjectKey, referrers: Vec<String> },
}

/// What executing an operation does.
#[derive(Debug, Clone, PartialEq)]
// Short-lived (one per write, never stored in bulk): boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
pub enum Planned {
    Create(Object),
    Update {
        before: Object,
        after: Object,
    },
    /// The desired state equals the current one: nothing to write.
    Unchanged(Object),
    Delete(Object),
}

impl Planned {
    pub fn before(&self) -> Option<&Object> {
        match self {
            Planned::Create(_) => None,
            Planned::Update { before, .. } | Planned::Delete(before) | Planned::Unchanged(before) => Some(before),
        }
    }

    pub fn after(&self) -> Option<&Object> {
        match self {
            Planned::Create(after) | Planned::Update { after, .. } | Planned::Unchanged(after) => Some(after),
            Planned::Delete(_) => None,
        }
    }
}

/// Server-assigned values for a write: the new resource version, the time, a uid for a new
/// object. Passed in so that planning stays pure.
#[derive(Debug, Clone)]
pub struct WriteStamp {
    pub resource_version: u64,
    pub now: jiff::Timestamp,
    pub new_uid: String,
}

/// Decides what `operation` does given the `current` object (read in the same transaction).
pub fn plan(operation: &Operation, current: Option<&Object>, stamp: &WriteStamp) -> Result<Planned, OperationError> {
    let key = &operation.key;
    if let (Some(expected), Some(current)) = (operation.precondition, current) {
        let current_rv = current.resource_version().unwrap_or_default();
        if expected != current_rv {
            return Err(OperationError::Conflict { key: key.clone(), expected, current: current_rv });
        }
    }
    let desired = || {
        operation.object.clone().ok_or_else(|| {
            let mut errors = ValidationErrors::default();
            errors.push("", "the operation carries no object");
            OperationError::Invalid(errors)
        })
    };
    match (operation.verb, current) {
        (OperationVerb::Create, Some(_)) => Err(OperationError::AlreadyExists(key.clone())),
        (OperationVerb::Update | OperationVerb::Delete, None) => Err(OperationError::NotFound(key.clone())),
        (OperationVerb::Create | OperationVerb::Apply, None) => {
            if operation.precondition.is_some() {
                return Err(OperationError::NotFound(key.clone()));
            }
            let mut object = desired()?;
            object.metadata.uid = Some(stamp.new_uid.clone());
            object.metadata.resource_version = Some(stamp.resource_version.to_string());
            object.metadata.generation = Some(1);
            object.metadata.creation_timestamp = Some(stamp.now);
            object.metadata.update_timestamp = Some(stamp.now);
            object.status = serde_json::Value::Object(Default::default());
            Ok(Planned::Create(object))
        }
        (OperationVerb::Update | OperationVerb::Apply, Some(current)) => {
            let desired = desired()?;
            let unchanged = desired.spec == current.spec
                && desired.metadata.labels == current.metadata.labels
                && desired.metadata.annotations == current.metadata.annotations;
            if unchanged {
                return Ok(Planned::Unchanged(current.clone()));
            }
            let mut after = current.clone();
            let generation = current.metadata.generation.unwrap_or(1);
            after.metadata.generation = Some(if desired.spec != current.spec { generation + 1 } else { generation });
            after.spec = desired.spec;
            after.metadata.labels = desired.metadata.labels;
            after.metadata.annotations = desired.metadata.annotations;
            after.metadata.resource_version = Some(stamp.resource_version.to_string());
            after.metadata.update_timestamp = Some(stamp.now);
            Ok(Planned::Update { before: current.clone(), after })
        }
        (OperationVerb::Delete, Some(current)) => Ok(Planned::Delete(current.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stamp(rv: u64) -> WriteStamp {
        WriteStamp { resource_version: rv, now: jiff::Timestamp::UNIX_EPOCH, new_uid: format!("uid-{rv}") }
    }

    fn operation(verb: OperationVerb, spec: serde_json::Value, precondition: Option<u64>) -> Operation {
        let mut object = Object::new("Workspace", "retail");
        object.spec = spec;
        Operation { id: "op".into(), verb, key: object.key(), object: Some(object), precondition }
    }

    #[test]
    fn create_stamps_server_fields() {
        let planned = plan(&operation(OperationVerb::Create, json!({}), None), None, &stamp(7)).unwrap();
        let Planned::Create(object) = planned else { panic!() };
        assert_eq!(object.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(object.metadata.uid.as_deref(), Some("uid-7"));
        assert_eq!(object.metadata.generation, Some(1));
    }

    #[test]
    fn stale_resource_version_is_a_conflict() {
        let Planned::Create(current) =
            plan(&operation(OperationVerb::Create, json!({}), None), None, &stamp(3)).unwrap()
        else {
            panic!()
        };
        let update = operation(OperationVerb::Update, json!({"description": "x"}), Some(2));
        assert_eq!(
            plan(&update, Some(&current), &stamp(4)),
            Err(OperationError::Conflict { key: current.key(), expected: 2, current: 3 })
        );
        let fresh = operation(OperationVerb::Update, json!({"description": "x"}), Some(3));
        let Planned::Update { after, .. } = plan(&fresh, Some(&current), &stamp(4)).unwrap() else { panic!() };
        assert_eq!(after.metadata.generation, Some(2));
        assert_eq!(after.metadata.uid, current.metadata.uid);
    }

    #[test]
    fn apply_is_create_or_update_and_detects_no_change() {
        let Planned::Create(current) =
            plan(&operation(OperationVerb::Apply, json!({}), None), None, &stamp(1)).unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            plan(&operation(OperationVerb::Apply, json!({}), None), Some(&current), &stamp(2)),
            Ok(Planned::Unchanged(_))
        ));
        assert!(matches!(
            plan(&operation(OperationVerb::Create, json!({}), None), Some(&current), &stamp(2)),
            Err(OperationError::AlreadyExists(_))
        ));
        assert!(matches!(
            plan(&operation(OperationVerb::Delete, json!({}), None), None, &stamp(2)),
            Err(OperationError::NotFound(_))
        ));
    }
}
