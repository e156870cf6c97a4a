//! `Robot`: a project's robot account for the registry (CI pipelines, clusters pulling
//! images). It authenticates as `robot$<project>+<name>` with a secret issued once, may do
//! only what its permissions list in its own project's repositories, expires, and can
//! never sign in to the console or use the REST API.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, Reference, Scope};
use crate::object::ObjectMeta;
use crate::rbac::RegistryAction;
use crate::registry::{check_patterns, matches_any};
use crate::validation::ValidationErrors;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RobotSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the robot may do, by repository (paths inside the project).
    pub permissions: Vec<RobotPermission>,
    /// When the robot stops working (RFC 3339, e.g. `2027-01-31T00:00:00Z`).
    pub expires_at: String,
    /// A disabled robot's secret grants nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RobotPermission {
    /// Repository paths inside the project (`web`, `base/*`); all of them when left out.
    #[serde(default = "every_repository")]
    pub repositories: Vec<String>,
    pub actions: Vec<RegistryAction>,
}

fn every_repository() -> Vec<String> {
    vec!["**".to_string()]
}

impl RobotSpec {
    /// The expiry as microseconds since the epoch; `None` if it does not parse.
    pub fn expires_micros(&self) -> Option<i64> {
        self.expires_at.parse::<jiff::Timestamp>().ok().map(|t| t.as_microsecond())
    }

    /// What the robot may do to the repository at `path` inside its project at `now_micros`:
    /// nothing once disabled or expired.
    pub fn actions(&self, path: &str, now_micros: i64) -> Vec<RegistryAction> {
        if self.disabled || self.expires_micros().is_none_or(|expiry| expiry <= now_micros) {
            return Vec::new();
        }
        let mut actions: Vec<RegistryAction> = self
            .permissions
            .iter()
            .filter(|permission| matches_any(&permission.repositories, path))
            .flat_map(|permission| permission.actions.iter().copied())
            .collect();
        actions.sort();
        actions.dedup();
        actions
    }
}

impl KindSpec for RobotSpec {
    const KIND: &'static str = "Robot";
    const PLURAL: &'static str = "robots";
    const SCOPE: Scope = Scope::Project;
    const CATEGORY: Category = Category::ProjectConfig;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if self.expires_micros().is_none() {
            errors.push(
                "spec.expiresAt",
                format!("{:?} is not an RFC 3339 time (2027-01-31T00:00:00Z)", self.expires_at),
            );
        }
        if self.permissions.is_empty() {
            errors.push("spec.permissions", "a robot needs at least one permission");
        }
        for (index, permission) in self.permissions.iter().enumerate() {
            if permission.actions.is_empty() {
                errors.push(format!("spec.permissions[{index}].actions"), "name at least one of pull, push, delete");
            }
            check_patterns(&permission.repositories, &format!("spec.permissions[{index}].repositories"), errors);
        }
    }

    fn references(&self, meta: &ObjectMeta) -> Vec<Reference> {
        let Some(project) = &meta.project else { return Vec::new() };
        vec![Reference::new("metadata.project", "Project", None, project)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robot(json: serde_json::Value) -> RobotSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_robot_does_what_its_permissions_say_until_it_expires() {
        let spec = robot(serde_json::json!({
            "permissions": [
                {"repositories": ["web"], "actions": ["pull", "push"]},
                {"actions": ["pull"]}
            ],
            "expiresAt": "2027-01-01T00:00:00Z"
        }));
        let before = "2026-12-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_microsecond();
        let after = "2027-01-02T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_microsecond();
        assert_eq!(spec.actions("web", before), [RegistryAction::Pull, RegistryAction::Push]);
        assert_eq!(spec.actions("api", before), [RegistryAction::Pull]);
        assert!(spec.actions("web", after).is_empty(), "expired");
        let disabled = RobotSpec { disabled: true, ..spec };
        assert!(disabled.actions("web", before).is_empty());
    }

    #[test]
    fn bad_robots_are_refused_field_by_field() {
        let spec = robot(serde_json::json!({
            "permissions": [{"repositories": ["[x"], "actions": []}],
            "expiresAt": "next week"
        }));
        let mut errors = ValidationErrors::default();
        spec.validate(&ObjectMeta::default(), &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.expiresAt", "spec.permissions[0].actions", "spec.permissions[0].repositories[0]"]);
    }
}
