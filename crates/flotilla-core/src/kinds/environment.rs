//! `Environment`: a stage of a project (dev, test, staging, prod) bound to one or more
//! clusters. Production and test environments are isolated from each other.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, Reference, Scope};
use crate::object::ObjectMeta;
use crate::validation::{ValidationErrors, check_dns_label};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Dev,
    Test,
    Staging,
    Prod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    pub tier: Tier,
    /// Clusters this environment deploys to (at least one).
    #[schemars(length(min = 1))]
    pub clusters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl KindSpec for EnvironmentSpec {
    const KIND: &'static str = "Environment";
    const PLURAL: &'static str = "environments";
    const SCOPE: Scope = Scope::Project;
    const CATEGORY: Category = Category::ProjectConfig;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        for (index, cluster) in self.clusters.iter().enumerate() {
            if let Some(problem) = check_dns_label(cluster) {
                errors.push(format!("spec.clusters[{index}]"), problem);
            }
            if self.clusters[..index].contains(cluster) {
                errors.push(format!("spec.clusters[{index}]"), format!("cluster {cluster:?} is listed twice"));
            }
        }
    }

    fn references(&self, meta: &ObjectMeta) -> Vec<Reference> {
        let mut references: Vec<Reference> =
            meta.project.iter().map(|p| Reference::new("metadata.project", "Project", None, p)).collect();
        references.extend(
            self.clusters
                .iter()
                .enumerate()
                .map(|(i, c)| Reference::new(format!("spec.clusters[{i}]"), "Cluster", None, c)),
        );
        references
    }

    fn environment(&self, meta: &ObjectMeta) -> Option<String> {
        Some(meta.name.clone())
    }
}
