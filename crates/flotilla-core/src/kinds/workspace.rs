//! `Workspace`: a tenant (a subsidiary or a department) that owns projects and has its own
//! admins (RoleBindings with role `workspace-admin`) and resource quotas.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, ProjectSpec, ResourceQuota, Scope};
use crate::object::{Object, ObjectMeta};
use crate::validation::ValidationErrors;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Upper bound for everything the workspace's projects run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<ResourceQuota>,
}

impl KindSpec for WorkspaceSpec {
    const KIND: &'static str = "Workspace";
    const PLURAL: &'static str = "workspaces";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::Tenant;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if let Some(quota) = &self.quota {
            quota.validate("spec.quota", errors);
        }
    }

    /// A workspace quota cannot shrink below what its projects were given.
    fn validate_against_dependents(&self, _meta: &ObjectMeta, dependents: &[Object], errors: &mut ValidationErrors) {
        let Some(quota) = &self.quota else { return };
        let projects: Vec<ResourceQuota> = dependents
            .iter()
            .filter(|o| o.kind == "Project")
            .filter_map(|o| serde_json::from_value::<ProjectSpec>(o.spec.clone()).ok())
            .filter_map(|p| p.quota)
            .collect();
        ResourceQuota::default().validate_allocation(
            &projects,
            quota,
            "spec.quota",
            "new workspace",
            "its projects",
            errors,
        );
    }
}
