//! The registry of kinds: what each kind is called, where it lives, what its spec looks like
//! and how it is validated.
//!
//! A kind is a Rust type implementing [`KindSpec`]: its serde shape is the wire format, its
//! `schemars` JSON schema validates documents (listing every error with its field path) and
//! feeds the OpenAPI document, and [`KindSpec::validate`] adds the checks a schema cannot
//! express. Later modules add kinds (Application, Template, Pipeline, …) by implementing the
//! trait and calling [`KindRegistry::register`]; nothing else in the machinery changes.

mod application;
pub mod application_revision;
mod cluster;
mod environment;
mod project;
pub mod quantity;
mod replication;
mod robot;
mod role_binding;
mod secret;
pub mod template;
mod user;
mod workspace;

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use application::{
    Amounts, ApplicationSpec, Autoscaling, Component, EnvVar, ExecProbe, FileMount, HttpProbe, IntOrPercent,
    NodeAffinity, NodeOperator, NodeRequirement, PersistentVolume, Port, PortRef, PreferredNode, Probe, Probes,
    Protocol, Resources, RestartPolicy, Scheduling, ScratchVolume, SecretKeyRef, TaintEffect, TcpProbe, Toleration,
    TolerationOperator, UpdateStrategy, Volume,
};
pub use application_revision::ApplicationRevisionSpec;
pub use cluster::{ClusterSpec, ClusterType};
pub use environment::{EnvironmentSpec, Tier};
pub use project::ProjectSpec;
pub use quantity::ResourceQuota;
pub use replication::{Direction, ExternalRegistrySpec, RegistryCredentials, ReplicationRuleSpec};
pub use robot::{RobotPermission, RobotSpec};
pub use role_binding::RoleBindingSpec;
pub use secret::SecretSpec;
pub use template::{ParameterFrom, PlatformTemplateSpec, TemplateSpec, TemplateVersion};
pub use user::UserSpec;
pub use workspace::WorkspaceSpec;

use crate::object::{API_VERSION, Object, ObjectKey, ObjectMeta};
use crate::validation::{FieldError, ValidationErrors, check_dns_label, check_label_key, check_label_value};

/// A field of an object that names another object, which must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Field path of the reference, e.g. `spec.workspace`.
    pub path: String,
    pub key: ObjectKey,
}

impl Reference {
    pub fn new(path: impl Into<String>, kind: &str, project: Option<String>, name: &str) -> Self {
        Self { path: path.into(), key: ObjectKey::new(kind, project, name) }
    }
}

/// The objects a write is checked against, read in its transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Related<'a> {
    /// The objects named by [`KindSpec::references`].
    pub referenced: &'a [Object],
    /// The other objects sharing the budget named by [`KindSpec::budget_reference`].
    pub siblings: &'a [Object],
}

/// Where objects of a kind live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    /// One namespace for the whole platform (Workspace, Project, Cluster, User, RoleBinding).
    Global,
    /// Inside a project: `metadata.project` names it (Environment, and later Application, …).
    Project,
}

/// What a kind governs; the RBAC policy ([`crate::rbac`]) decides by category, so a new kind
/// only picks its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Category {
    /// Platform-wide infrastructure (Cluster): readable by everyone signed in, written by admins.
    Infrastructure,
    /// Tenants (Workspace): written by platform admins.
    Tenant,
    /// Accounts (User): written by platform admins.
    Identity,
    /// Access grants (RoleBinding): governed by "nobody grants above their own role".
    Access,
    /// The project itself and its configuration (Project, Environment).
    ProjectConfig,
    /// What application teams deploy (Application, …), written by developers and up.
    Workload,
}

/// A kind's typed spec. Implement this to add a kind.
pub trait KindSpec: Serialize + DeserializeOwned + JsonSchema + 'static {
    const KIND: &'static str;
    /// Lower-case plural used in API paths (`/api/v1/workspaces`).
    const PLURAL: &'static str;
    const SCOPE: Scope;
    const CATEGORY: Category;
    /// Paths inside `spec` whose values are secrets: never stored in audit records in clear.
    const SECRET_PATHS: &'static [&'static str] = &[];

    /// Checks a schema cannot express; push errors with paths starting at `spec.`.
    fn validate(&self, _meta: &ObjectMeta, _errors: &mut ValidationErrors) {}

    /// Objects that must exist for this one to be accepted (checked in the write transaction).
    fn references(&self, _meta: &ObjectMeta) -> Vec<Reference> {
        Vec::new()
    }

    /// The reference whose other referrers of this kind share a budget with this object
    /// (a Project's workspace: the projects of one workspace share its quota).
    fn budget_reference(&self, _meta: &ObjectMeta) -> Option<Reference> {
        None
    }

    /// Checks against the objects this one refers to, and against its budget siblings (the
    /// other objects of this kind with the same [`KindSpec::budget_reference`]).
    fn validate_against(&self, _meta: &ObjectMeta, _related: &Related<'_>, _errors: &mut ValidationErrors) {}

    /// Checks an update against the objects that refer to this one (a workspace quota must
    /// still hold its projects' quotas).
    fn validate_against_dependents(&self, _meta: &ObjectMeta, _dependents: &[Object], _errors: &mut ValidationErrors) {}

    /// The environment an object of this kind acts in, for environment-narrowed roles.
    fn environment(&self, _meta: &ObjectMeta) -> Option<String> {
        None
    }

    /// The workspace this object belongs to when the kind itself says so (Project).
    fn workspace(&self) -> Option<String> {
        None
    }

    /// Why writing this object takes a platform admin, whatever the caller's other roles
    /// (an Application mounting a directory of the node). `None`: the usual policy decides.
    fn requires_platform_admin(&self) -> Option<String> {
        None
    }

    /// The container images this object runs, as written (`host/repo:tag`, `repo@digest`).
    /// The store indexes them, so that a registry version can tell which objects use it.
    fn images(&self) -> Vec<String> {
        Vec::new()
    }
}

type SpecCheck = dyn Fn(&Object) -> Result<Vec<FieldError>, String> + Send + Sync;
type SpecReferences = dyn Fn(&Object) -> Vec<Reference> + Send + Sync;
type SpecAgainst = dyn Fn(&Object, &Related<'_>) -> Vec<FieldError> + Send + Sync;
type SpecDependents = dyn Fn(&Object, &[Object]) -> Vec<FieldError> + Send + Sync;
type SpecBudget = dyn Fn(&Object) -> Option<Reference> + Send + Sync;
type SpecAttr = dyn Fn(&Object) -> Option<String> + Send + Sync;
type SpecImages = dyn Fn(&Object) -> Vec<String> + Send + Sync;

/// Everything the machinery knows about one kind.
pub struct KindInfo {
    pub kind: &'static str,
    pub plural: &'static str,
    pub scope: Scope,
    pub category: Category,
    pub secret_paths: &'static [&'static str],
    /// JSON schema of `spec`.
    pub spec_schema: Value,
    validator: jsonschema::Validator,
    semantic: Box<SpecCheck>,
    references: Box<SpecReferences>,
    against: Box<SpecAgainst>,
    dependents: Box<SpecDependents>,
    budget: Box<SpecBudget>,
    environment: Box<SpecAttr>,
    workspace: Box<SpecAttr>,
    admin_only: Box<SpecAttr>,
    images: Box<SpecImages>,
}

impl std::fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindInfo").field("kind", &self.kind).field("scope", &self.scope).finish()
    }
}

impl KindInfo {
    /// Objects that must exist for `object` to be accepted.
    pub fn references(&self, object: &Object) -> Vec<Reference> {
        (self.references)(object)
    }

    /// Checks `object` against the objects it references and its budget siblings.
    pub fn validate_against(&self, object: &Object, related: &Related<'_>) -> Result<(), ValidationErrors> {
        ValidationErrors((self.against)(object, related)).into_result()
    }

    /// Checks an update of `object` against the objects referring to it.
    pub fn validate_against_dependents(&self, object: &Object, dependents: &[Object]) -> Result<(), ValidationErrors> {
        ValidationErrors((self.dependents)(object, dependents)).into_result()
    }

    /// The reference naming the budget `object` shares with its siblings, if any.
    pub fn budget_reference(&self, object: &Object) -> Option<Reference> {
        (self.budget)(object)
    }

    /// The environment `object` acts in, if any.
    pub fn environment_of(&self, object: &Object) -> Option<String> {
        (self.environment)(object)
    }

    /// The workspace `object` declares it belongs to, if any.
    pub fn workspace_of(&self, object: &Object) -> Option<String> {
        (self.workspace)(object)
    }

    /// Why writing `object` takes a platform admin, if it does.
    pub fn requires_platform_admin(&self, object: &Object) -> Option<String> {
        (self.admin_only)(object)
    }

    /// The container images `object` runs.
    pub fn images(&self, object: &Object) -> Vec<String> {
        (self.images)(object)
    }
}

fn typed<S: KindSpec>(object: &Object) -> Option<S> {
    serde_json::from_value(object.spec.clone()).ok()
}

/// The label the server sets on every object that acts in an environment (its value: that
/// environment; a value sent by a client is replaced, and removed where there is none).
pub const ENVIRONMENT_LABEL: &str = "flotilla.io/environment";

/// The kinds the server knows. Cheap to share behind an [`Arc`].
#[derive(Debug, Default)]
pub struct KindRegistry {
    kinds: Vec<Arc<KindInfo>>,
    by_kind: HashMap<String, Arc<KindInfo>>,
    by_plural: HashMap<String, Arc<KindInfo>>,
}

impl KindRegistry {
    /// The built-in kinds: the foundation's (Workspace, Project, Environment, Cluster, User,
    /// RoleBinding) and the container service's (Secret, Application).
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.register::<WorkspaceSpec>();
        registry.register::<ProjectSpec>();
        registry.register::<EnvironmentSpec>();
        registry.register::<ClusterSpec>();
        registry.register::<UserSpec>();
        registry.register::<RoleBindingSpec>();
        registry.register::<SecretSpec>();
        registry.register::<RobotSpec>();
        registry.register::<ApplicationSpec>();
        registry.register::<ApplicationRevisionSpec>();
        registry.register::<TemplateSpec>();
        registry.register::<PlatformTemplateSpec>();
        registry.register::<ExternalRegistrySpec>();
        registry.register::<ReplicationRuleSpec>();
        registry
    }

    /// Adds kind `S`. Registering a kind twice replaces it.
    ///
    /// # Panics
    /// If the schema derived from `S` is not a valid JSON schema: a programming error caught by
    /// the first test that builds the registry.
    pub fn register<S: KindSpec>(&mut self) {
        let spec_schema = serde_json::to_value(schemars::schema_for!(S)).unwrap_or(Value::Null);
        #[allow(clippy::expect_used)]
        let validator = jsonschema::validator_for(&spec_schema).expect("kind schema is valid");
        let info = Arc::new(KindInfo {
            kind: S::KIND,
            plural: S::PLURAL,
            scope: S::SCOPE,
            category: S::CATEGORY,
            secret_paths: S::SECRET_PATHS,
            spec_schema,
            validator,
            semantic: Box::new(|object| {
                let spec: S = serde_json::from_value(object.spec.clone()).map_err(|e| e.to_string())?;
                let mut errors = ValidationErrors::default();
                spec.validate(&object.metadata, &mut errors);
                Ok(errors.0)
            }),
            references: Box::new(|object| {
                typed::<S>(object).map(|s| s.references(&object.metadata)).unwrap_or_default()
            }),
            against: Box::new(|object, related| {
                let mut errors = ValidationErrors::default();
                if let Some(spec) = typed::<S>(object) {
                    spec.validate_against(&object.metadata, related, &mut errors);
                }
                errors.0
            }),
            dependents: Box::new(|object, dependents| {
                let mut errors = ValidationErrors::default();
                if let Some(spec) = typed::<S>(object) {
                    spec.validate_against_dependents(&object.metadata, dependents, &mut errors);
                }
                errors.0
            }),
            budget: Box::new(|object| typed::<S>(object).and_then(|s| s.budget_reference(&object.metadata))),
            environment: Box::new(|object| typed::<S>(object).and_then(|s| s.environment(&object.metadata))),
            workspace: Box::new(|object| typed::<S>(object).and_then(|s| s.workspace())),
            admin_only: Box::new(|object| typed::<S>(object).and_then(|s| s.requires_platform_admin())),
            images: Box::new(|object| typed::<S>(object).map(|s| s.images()).unwrap_or_default()),
        });
        self.kinds.retain(|k| k.kind != S::KIND);
        self.kinds.push(info.clone());
        self.by_kind.insert(S::KIND.to_ascii_lowercase(), info.clone());
        self.by_plural.insert(S::PLURAL.to_string(), info);
    }

    /// Looks a kind up by its name (`Workspace`), case-insensitively, or by its plural
    /// (`workspaces`), so that CLI users may type either.
    pub fn lookup(&self, name: &str) -> Option<&Arc<KindInfo>> {
        let lower = name.to_ascii_lowercase();
        self.by_kind.get(&lower).or_else(|| self.by_plural.get(&lower))
    }

    pub fn by_plural(&self, plural: &str) -> Option<&Arc<KindInfo>> {
        self.by_plural.get(plural)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<KindInfo>> {
        self.kinds.iter()
    }

    /// Turns a raw document (one YAML/JSON document) into an object, or lists every problem.
    ///
    /// Server-owned metadata (uid, generation, timestamps) is dropped; `resourceVersion` is
    /// kept as the caller's precondition; `status` is dropped (written by controllers only).
    pub fn parse_document(&self, document: Value) -> Result<Object, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let Value::Object(mut map) = document else {
            errors.push("", "a document must be a mapping with apiVersion, kind, metadata and spec");
            return Err(errors);
        };
        match map.get("apiVersion") {
            Some(Value::String(v)) if v == API_VERSION => {}
            Some(Value::String(v)) => errors.push("apiVersion", format!("unsupported {v:?}: expected {API_VERSION:?}")),
            Some(_) => errors.push("apiVersion", "must be a string"),
            None => errors.push("apiVersion", format!("is required (use {API_VERSION:?})")),
        }
        let info = match map.get("kind") {
            Some(Value::String(kind)) => match self.by_kind.get(&kind.to_ascii_lowercase()) {
                Some(info) if info.kind == kind => Some(info.clone()),
                Some(info) => {
                    errors.push("kind", format!("unknown kind {kind:?}; did you mean {:?}?", info.kind));
                    None
                }
                None => {
                    let known: Vec<&str> = self.kinds.iter().map(|k| k.kind).collect();
                    errors.push("kind", format!("unknown kind {kind:?}; known kinds: {}", known.join(", ")));
                    None
                }
            },
            Some(_) => {
                errors.push("kind", "must be a string");
                None
            }
            None => {
                errors.push("kind", "is required");
                None
            }
        };
        for key in map.keys() {
            if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "spec" | "status") {
                errors.push(key.clone(), "unknown field");
            }
        }
        let metadata = match map.remove("metadata") {
            None => {
                errors.push("metadata", "is required (at least metadata.name)");
                None
            }
            Some(value) => match serde_json::from_value::<ObjectMeta>(value) {
                Ok(meta) => Some(meta),
                Err(e) => {
                    errors.push("metadata", e.to_string());
                    None
                }
            },
        };
        let spec = match map.remove("spec") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(spec) => spec,
        };
        let (Some(info), Some(mut metadata)) = (info, metadata) else {
            return Err(errors);
        };
        metadata.uid = None;
        metadata.generation = None;
        metadata.creation_timestamp = None;
        metadata.update_timestamp = None;
        let object = Object {
            api_version: API_VERSION.to_string(),
            kind: info.kind.to_string(),
            metadata,
            spec,
            status: Value::Object(Default::default()),
        };
        errors.0.extend(self.validate_with(&info, &object));
        errors.into_result()?;
        // The server's own label: lists filter by environment with a label selector, in SQL.
        let mut object = object;
        match info.environment_of(&object) {
            Some(environment) => object.metadata.labels.insert(ENVIRONMENT_LABEL.to_string(), environment),
            None => object.metadata.labels.remove(ENVIRONMENT_LABEL),
        };
        Ok(object)
    }

    /// Validates an object of a known kind: metadata, schema of `spec`, then the kind's own
    /// checks (run only when the schema passed, so their errors are never duplicates).
    pub fn validate(&self, object: &Object) -> Result<(), ValidationErrors> {
        let Some(info) = self.by_kind.get(&object.kind.to_ascii_lowercase()) else {
            let mut errors = ValidationErrors::default();
            errors.push("kind", format!("unknown kind {:?}", object.kind));
            return Err(errors);
        };
        ValidationErrors(self.validate_with(info, object)).into_result()
    }

    fn validate_with(&self, info: &KindInfo, object: &Object) -> Vec<FieldError> {
        let mut errors = ValidationErrors::default();
        let meta = &object.metadata;
        if let Some(problem) = check_dns_label(&meta.name) {
            errors.push("metadata.name", problem);
        }
        match (info.scope, &meta.project) {
            (Scope::Project, None) => {
                errors.push("metadata.project", format!("is required: a {} belongs to a project", info.kind))
            }
            (Scope::Project, Some(project)) => {
                if let Some(problem) = check_dns_label(project) {
                    errors.push("metadata.project", problem);
                }
            }
            (Scope::Global, Some(_)) => {
                errors.push("metadata.project", format!("must not be set: {} is not project-scoped", info.kind))
            }
            (Scope::Global, None) => {}
        }
        for (key, value) in &meta.labels {
            if let Some(problem) = check_label_key(key) {
                errors.push(format!("metadata.labels[{key:?}]"), format!("invalid key: {problem}"));
            }
            if let Some(problem) = check_label_value(value, true) {
                errors.push(format!("metadata.labels[{key:?}]"), format!("invalid value: {problem}"));
            }
        }
        for key in meta.annotations.keys() {
            if let Some(problem) = check_label_key(key) {
                errors.push(format!("metadata.annotations[{key:?}]"), format!("invalid key: {problem}"));
            }
        }
        if let Some(rv) = &meta.resource_version
            && rv.parse::<u64>().is_err()
        {
            errors.push("metadata.resourceVersion", "must be a resource version returned by the server");
        }
        let mut schema_ok = true;
        for error in info.validator.iter_errors(&object.spec) {
            schema_ok = false;
            let path = spec_path(&error.instance_path().to_string());
            match error.kind() {
                // One error per field, at the field's own path.
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        errors.push(format!("{path}.{name}"), "unknown field");
                    }
                }
                ValidationErrorKind::Required { property } => {
                    errors.push(format!("{path}.{}", property.as_str().unwrap_or_default()), "is required")
                }
                // Every allowed value, not an abbreviation.
                ValidationErrorKind::Enum { options } => {
                    let allowed: Vec<String> =
                        options.as_array().map(|o| o.iter().map(ToString::to_string).collect()).unwrap_or_default();
                    errors.push(path, format!("{} is not one of {}", error.instance(), allowed.join(", ")))
                }
                // Schema messages quote the value; a secret's value must not travel on into
                // error responses and audit records.
                _ if is_secret_path(info, &path) => {
                    errors.push(path, "has an invalid value (not shown: the field is a secret)")
                }
                _ => errors.push(path, error.to_string()),
            }
        }
        if schema_ok {
            match (info.semantic)(object) {
                Ok(found) => errors.0.extend(found),
                Err(message) => errors.push("spec", message),
            }
        }
        errors.0
    }
}

/// Whether `path` (`spec.credentials`, `spec.credentials.token`) is, or is inside, a secret.
fn is_secret_path(info: &KindInfo, path: &str) -> bool {
    info.secret_paths.iter().any(|secret| {
        let secret = format!("spec.{secret}");
        path == secret || path.starts_with(&format!("{secret}.")) || path.starts_with(&format!("{secret}["))
    })
}

/// `/quota/cpu` -> `spec.quota.cpu`; `/clusters/0` -> `spec.clusters[0]`.
fn spec_path(pointer: &str) -> String {
    pointer_path("spec", pointer)
}

/// A JSON pointer as a field path under `root`: `/a/0/b` -> `root.a[0].b`.
pub fn pointer_path(root: &str, pointer: &str) -> String {
    let mut path = String::from(root);
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
            path.push_str(&format!("[{segment}]"));
        } else {
            path.push('.');
            path.push_str(&segment);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_error_is_listed_with_its_path() {
        let registry = KindRegistry::builtin();
        let errors = registry
            .parse_document(json!({
                "apiVersion": "flotilla.io/v1",
                "kind": "Environment",
                "metadata": {"name": "Prod_1"},
                "spec": {"tier": "production", "clusters": [], "colour": "blue"}
            }))
            .unwrap_err();
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"metadata.name"), "{errors}");
        assert!(paths.contains(&"metadata.project"), "{errors}");
        assert!(paths.contains(&"spec.tier"), "{errors}");
        assert!(paths.contains(&"spec.clusters"), "{errors}");
        assert!(paths.contains(&"spec.colour"), "{errors}");
        let tier = errors.0.iter().find(|e| e.path == "spec.tier").unwrap();
        assert_eq!(tier.message, r#""production" is not one of "dev", "test", "staging", "prod""#);
        let missing = registry
            .parse_document(
                json!({"apiVersion": "flotilla.io/v1", "kind": "Project", "metadata": {"name": "p"}, "spec": {}}),
            )
            .unwrap_err();
        assert_eq!(missing.0, vec![FieldError::new("spec.workspace", "is required")]);
    }

    #[test]
    fn objects_acting_in_an_environment_carry_its_label_and_only_they() {
        let registry = KindRegistry::builtin();
        let app = registry
            .parse_document(json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
                "metadata": {"name": "web", "project": "shop", "labels": {"flotilla.io/environment": "prod"}},
                "spec": {"environment": "test", "components": [{"name": "web", "image": "nginx:1"}]}}))
            .unwrap();
        assert_eq!(app.metadata.labels.get(ENVIRONMENT_LABEL).map(String::as_str), Some("test"), "the spec decides");
        let project = registry
            .parse_document(json!({"apiVersion": "flotilla.io/v1", "kind": "Project",
                "metadata": {"name": "shop", "labels": {"flotilla.io/environment": "prod", "tier": "core"}},
                "spec": {"workspace": "retail"}}))
            .unwrap();
        assert_eq!(project.metadata.labels.keys().collect::<Vec<_>>(), ["tier"], "a project acts in none");
    }

    #[test]
    fn unknown_kind_and_version_are_named() {
        let registry = KindRegistry::builtin();
        let errors = registry
            .parse_document(json!({"apiVersion": "v1", "kind": "project", "metadata": {"name": "a"}}))
            .unwrap_err();
        assert!(errors.to_string().contains("apiVersion: unsupported \"v1\""), "{errors}");
        assert!(errors.to_string().contains("did you mean \"Project\""), "{errors}");
    }

    #[test]
    fn valid_document_parses_and_drops_server_fields() {
        let registry = KindRegistry::builtin();
        let object = registry
            .parse_document(json!({
                "apiVersion": "flotilla.io/v1", "kind": "Project",
                "metadata": {"name": "shop", "uid": "x", "labels": {"tier": "core"}},
                "spec": {"workspace": "retail", "quota": {"cpu": "8", "memory": "16Gi"}}
            }))
            .unwrap();
        assert_eq!(object.metadata.uid, None);
        assert_eq!(object.key(), ObjectKey::new("Project", None, "shop"));
    }

    #[test]
    fn errors_never_quote_a_secret() {
        let registry = KindRegistry::builtin();
        let errors = registry
            .parse_document(json!({"apiVersion": "flotilla.io/v1", "kind": "Cluster", "metadata": {"name": "c"},
                "spec": {"type": "kubernetes", "apiServer": "https://k", "token": 31337}}))
            .unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].path, "spec.token");
        assert!(!errors.to_string().contains("31337"), "{errors}");
    }

    #[test]
    fn lookup_by_kind_or_plural() {
        let registry = KindRegistry::builtin();
        assert_eq!(registry.lookup("rolebindings").map(|k| k.kind), Some("RoleBinding"));
        assert_eq!(registry.lookup("environment").map(|k| k.kind), Some("Environment"));
        assert!(registry.lookup("pods").is_none());
    }

    #[test]
    fn spec_paths_are_readable() {
        assert_eq!(spec_path("/quota/cpu"), "spec.quota.cpu");
        assert_eq!(spec_path("/clusters/0"), "spec.clusters[0]");
        assert_eq!(spec_path(""), "spec");
    }
}
