//! `RoleBinding`: grants one user one role at one scope (the platform, a workspace, or a
//! project, optionally narrowed to some of the project's environments).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, Reference, Scope};
use crate::object::ObjectMeta;
use crate::rbac::{Grant, Role};
use crate::validation::{ValidationErrors, check_dns_label};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBindingSpec {
    /// The user granted the role.
    pub user: String,
    pub role: Role,
    /// Required for `workspace-admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Required for the project roles (`owner`, `maintainer`, `developer`, `viewer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Narrows a project role to these environments (e.g. deploy to `test` but not `prod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<String>>,
}

impl RoleBindingSpec {
    /// The grant this binding gives its user.
    pub fn grant(&self) -> Grant {
        Grant {
            role: self.role,
            workspace: self.workspace.clone(),
            project: self.project.clone(),
            environments: self.environments.clone(),
        }
    }
}

impl KindSpec for RoleBindingSpec {
    const KIND: &'static str = "RoleBinding";
    const PLURAL: &'static str = "rolebindings";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::Access;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if let Some(problem) = check_dns_label(&self.user) {
            errors.push("spec.user", problem);
        }
        let role = self.role.as_str();
        match self.role {
            Role::Admin | Role::Auditor => {
                if self.workspace.is_some() {
                    errors.push("spec.workspace", format!("must not be set for the platform role {role:?}"));
                }
                if self.project.is_some() {
                    errors.push("spec.project", format!("must not be set for the platform role {role:?}"));
                }
            }
            Role::WorkspaceAdmin => {
                if self.workspace.is_none() {
                    errors.push("spec.workspace", "is required for role \"workspace-admin\"");
                }
                if self.project.is_some() {
                    errors.push("spec.project", "must not be set for role \"workspace-admin\"");
                }
            }
            Role::Owner | Role::Maintainer | Role::Developer | Role::Viewer => {
                if self.project.is_none() {
                    errors.push("spec.project", format!("is required for the project role {role:?}"));
                }
                if self.workspace.is_some() {
                    errors.push(
                        "spec.workspace",
                        format!("must not be set for the project role {role:?} (the project's workspace applies)"),
                    );
                }
            }
        }
        if let Some(environments) = &self.environments {
            if !self.role.is_project_role() {
                errors.push(
                    "spec.environments",
                    format!("only project roles can be narrowed to environments, not {role:?}"),
                );
            }
            if environments.is_empty() {
                errors.push("spec.environments", "must list at least one environment (omit it for all)");
            }
            for (index, environment) in environments.iter().enumerate() {
                if let Some(problem) = check_dns_label(environment) {
                    errors.push(format!("spec.environments[{index}]"), problem);
                }
            }
        }
    }

    fn references(&self, _meta: &ObjectMeta) -> Vec<Reference> {
        let mut references = vec![Reference::new("spec.user", "User", None, &self.user)];
        references.extend(self.workspace.iter().map(|w| Reference::new("spec.workspace", "Workspace", None, w)));
        references.extend(self.project.iter().map(|p| Reference::new("spec.project", "Project", None, p)));
        references
    }
}
