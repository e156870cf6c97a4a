//! `Project`: a business system inside a workspace, with quotas inside the workspace's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApplicationSpec, Category, KindSpec, Reference, Related, ResourceQuota, Scope, WorkspaceSpec};
use crate::object::Object;
use crate::object::ObjectMeta;
use crate::registry::RegistrySettings;
use crate::validation::{ValidationErrors, check_dns_label};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    /// The workspace that owns this project.
    pub workspace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Must fit inside the workspace's quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<ResourceQuota>,
    /// The project's repositories in the built-in registry: storage quota, public
    /// repositories, immutable tags, retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySettings>,
}

impl KindSpec for ProjectSpec {
    const KIND: &'static str = "Project";
    const PLURAL: &'static str = "projects";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::ProjectConfig;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if let Some(problem) = check_dns_label(&self.workspace) {
            errors.push("spec.workspace", problem);
        }
        if let Some(quota) = &self.quota {
            quota.validate("spec.quota", errors);
        }
        if let Some(registry) = &self.registry {
            registry.validate("spec.registry", errors);
        }
    }

    fn references(&self, _meta: &ObjectMeta) -> Vec<Reference> {
        let mut references = vec![Reference::new("spec.workspace", "Workspace", None, &self.workspace)];
        if let Some(proxy) = self.registry.as_ref().and_then(|r| r.proxy_cache.as_ref()) {
            references.push(Reference::new(
                "spec.registry.proxyCache.registry",
                "ExternalRegistry",
                None,
                &proxy.registry,
            ));
        }
        references
    }

    fn budget_reference(&self, _meta: &ObjectMeta) -> Option<Reference> {
        Some(Reference::new("spec.workspace", "Workspace", None, &self.workspace))
    }

    /// The projects of a workspace share its quota: their quotas together must fit in it.
    fn validate_against(&self, _meta: &ObjectMeta, related: &Related<'_>, errors: &mut ValidationErrors) {
        let (Some(quota), Some(workspace)) = (&self.quota, related.referenced.iter().find(|o| o.kind == "Workspace"))
        else {
            return;
        };
        let Ok(workspace_spec) = serde_json::from_value::<WorkspaceSpec>(workspace.spec.clone()) else {
            return;
        };
        let Some(outer) = &workspace_spec.quota else { return };
        let siblings: Vec<ResourceQuota> = related
            .siblings
            .iter()
            .filter_map(|o| serde_json::from_value::<ProjectSpec>(o.spec.clone()).ok())
            .filter_map(|p| p.quota)
            .collect();
        quota.validate_allocation(
            &siblings,
            outer,
            "spec.quota",
            &format!("workspace {:?}", self.workspace),
            "the other projects",
            errors,
        );
    }

    /// A quota cannot shrink below what the project's applications already hold.
    fn validate_against_dependents(&self, meta: &ObjectMeta, dependents: &[Object], errors: &mut ValidationErrors) {
        let Some(quota) = &self.quota else { return };
        let applications: Vec<ResourceQuota> = dependents
            .iter()
            .filter(|o| o.kind == "Application")
            .filter_map(|o| serde_json::from_value::<ApplicationSpec>(o.spec.clone()).ok())
            .map(|a| a.usage())
            .collect();
        ResourceQuota::default().validate_allocation(
            &applications,
            quota,
            "spec.quota",
            &format!("new project {:?}", meta.name),
            "its applications",
            errors,
        );
    }

    fn workspace(&self) -> Option<String> {
        Some(self.workspace.clone())
    }
}
