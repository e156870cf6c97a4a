//! `Secret`: named secret values of one environment of a project (passwords, keys,
//! certificates), read by applications as environment variables or files. Its values never
//! appear in audit records (keyed hashes instead).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, Reference, Scope};
use crate::object::ObjectMeta;
use crate::validation::{ValidationErrors, check_data_key, check_dns_label};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// The environment whose applications may read it: prod secrets stay with prod.
    pub environment: String,
    /// Key to value.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

impl KindSpec for SecretSpec {
    const KIND: &'static str = "Secret";
    const PLURAL: &'static str = "secrets";
    const SCOPE: Scope = Scope::Project;
    const CATEGORY: Category = Category::Workload;
    const SECRET_PATHS: &'static [&'static str] = &["data"];

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if let Some(problem) = check_dns_label(&self.environment) {
            errors.push("spec.environment", problem);
        }
        for key in self.data.keys() {
            if let Some(problem) = check_data_key(key) {
                errors.push(format!("spec.data[{key:?}]"), problem);
            }
        }
    }

    fn references(&self, meta: &ObjectMeta) -> Vec<Reference> {
        let Some(project) = &meta.project else { return Vec::new() };
        vec![
            Reference::new("metadata.project", "Project", None, project),
            Reference::new("spec.environment", "Environment", Some(project.clone()), &self.environment),
        ]
    }

    fn environment(&self, _meta: &ObjectMeta) -> Option<String> {
        Some(self.environment.clone())
    }
}
