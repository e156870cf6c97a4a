//! `Cluster`: a place where workloads run. The built-in `local` cluster (the embedded
//! runtime) is registered on first start; Kubernetes clusters are registered by admins.
//! Labels such as `cloud`, `region` and `tier` describe it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, Scope};
use crate::object::ObjectMeta;
use crate::validation::ValidationErrors;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClusterType {
    /// The embedded single-node runtime (containerd + runc).
    Local,
    /// A Kubernetes cluster driven through its API.
    Kubernetes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(rename = "type")]
    pub cluster_type: ClusterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// API server URL of a Kubernetes cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<String>,
    /// Credentials of a Kubernetes cluster (token or kubeconfig). A secret: never written to
    /// audit records in clear text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

impl KindSpec for ClusterSpec {
    const KIND: &'static str = "Cluster";
    const PLURAL: &'static str = "clusters";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::Infrastructure;
    const SECRET_PATHS: &'static [&'static str] = &["credentials"];

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        match self.cluster_type {
            ClusterType::Kubernetes => match &self.api_server {
                None => errors.push("spec.apiServer", "is required for a kubernetes cluster"),
                Some(url) if !url.starts_with("https://") && !url.starts_with("http://") => {
                    errors.push("spec.apiServer", format!("{url:?} is not an http(s) URL"))
                }
                Some(_) => {}
            },
            ClusterType::Local => {
                if self.api_server.is_some() {
                    errors.push("spec.apiServer", "must not be set for a local cluster");
                }
            }
        }
    }
}
