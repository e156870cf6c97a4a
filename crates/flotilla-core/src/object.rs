//! The declarative object envelope shared by every kind.
//!
//! Every platform object has `apiVersion`, `kind`, `metadata`, `spec` and `status`, as in
//! Kubernetes. `spec` is what the user wants; `status` is what controllers observed. The store
//! keeps `spec` and `status` as JSON documents and the kind registry ([`crate::kinds`]) knows
//! their typed shape.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one API group and version of all Flotilla kinds today.
pub const API_VERSION: &str = "flotilla.io/v1";

/// A declarative object of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default = "empty_object")]
    pub spec: Value,
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub status: Value,
}

/// Standard metadata of every object. Fields set by the server (uid, resourceVersion,
/// generation, timestamps) are ignored when a client sends them, except `resourceVersion`,
/// which is the optimistic-concurrency precondition of an update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    pub name: String,
    /// The project of a project-scoped kind (e.g. `Environment`); absent for global kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Incremented on every change of `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_timestamp: Option<jiff::Timestamp>,
}

/// The identity of an object: kind, optional project, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: impl Into<String>, project: Option<String>, name: impl Into<String>) -> Self {
        Self { kind: kind.into(), project, name: name.into() }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.project {
            Some(project) => write!(f, "{}/{}/{}", self.kind, project, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

impl Object {
    /// A new object of `kind` named `name` with an empty spec.
    pub fn new(kind: &str, name: &str) -> Self {
        Self {
            api_version: API_VERSION.to_string(),
            kind: kind.to_string(),
            metadata: ObjectMeta { name: name.to_string(), ..ObjectMeta::default() },
            spec: empty_object(),
            status: empty_object(),
        }
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.kind, self.metadata.project.clone(), &self.metadata.name)
    }

    /// The resource version as a number, if the object carries a well-formed one.
    pub fn resource_version(&self) -> Option<u64> {
        self.metadata.resource_version.as_deref().and_then(|rv| rv.parse().ok())
    }
}

pub(crate) fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(|map| map.is_empty()) || value.is_null()
}
