//! `Cluster`: a place where workloads run. The built-in `local` cluster (the embedded
//! runtime) is registered on first start; Kubernetes clusters are registered by admins, from
//! a kubeconfig (one of its contexts) or from an API server URL, its CA and a bearer token.
//! Labels such as `cloud`, `region` and `tier` describe it.
//!
//! Credentials (`token`, `kubeconfig`) are secret fields: never returned by the API, hashed
//! in audit records, encrypted at rest. A kubeconfig must carry everything inline: a path to
//! a file on the control plane's machine, or a credential plugin to run there, is refused.

use std::collections::BTreeMap;

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
    /// API server URL of a Kubernetes cluster (with `token`; a kubeconfig names its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<String>,
    /// PEM certificates of the CA that signs the API server's certificate (with `apiServer`;
    /// without it, the system's trusted roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// Bearer token of a service account (with `apiServer`). Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A kubeconfig (YAML) with everything inline. Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig's context to use (default: its `current-context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl KindSpec for ClusterSpec {
    const KIND: &'static str = "Cluster";
    const PLURAL: &'static str = "clusters";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::Infrastructure;
    const SECRET_PATHS: &'static [&'static str] = &["token", "kubeconfig"];

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        match self.cluster_type {
            ClusterType::Kubernetes => self.validate_kubernetes(errors),
            ClusterType::Local => {
                for (set, field) in [
                    (self.api_server.is_some(), "apiServer"),
                    (self.certificate_authority.is_some(), "certificateAuthority"),
                    (self.token.is_some(), "token"),
                    (self.kubeconfig.is_some(), "kubeconfig"),
                    (self.context.is_some(), "context"),
                ] {
                    if set {
                        errors.push(format!("spec.{field}"), "must not be set for a local cluster");
                    }
                }
            }
        }
    }
}

impl ClusterSpec {
    fn validate_kubernetes(&self, errors: &mut ValidationErrors) {
        match (&self.kubeconfig, &self.api_server) {
            (Some(kubeconfig), None) => {
                if self.token.is_some() || self.certificate_authority.is_some() {
                    errors.push("spec.kubeconfig", "give either a kubeconfig or apiServer with token, not both");
                }
                if let Err(error) =
                    Kubeconfig::parse(kubeconfig).and_then(|k| k.select(self.context.as_deref()).map(|_| ()))
                {
                    errors.push(error.path, error.message);
                }
            }
            (Some(_), Some(_)) => {
                errors.push("spec.apiServer", "give either a kubeconfig or apiServer with token, not both");
            }
            (None, None) => errors.push("spec", "a kubernetes cluster needs a kubeconfig, or apiServer and token"),
            (None, Some(url)) => {
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    errors.push("spec.apiServer", format!("{url:?} is not an http(s) URL"));
                }
                if self.token.as_deref().is_none_or(str::is_empty) {
                    errors.push("spec.token", "is required with apiServer");
                }
                if self.context.is_some() {
                    errors.push("spec.context", "only applies to a kubeconfig");
                }
                if let Some(ca) = &self.certificate_authority
                    && !ca.contains("-----BEGIN CERTIFICATE-----")
                {
                    errors.push("spec.certificateAuthority", "is not a PEM certificate (-----BEGIN CERTIFICATE-----)");
                }
            }
        }
    }
}

/// What is wrong with a kubeconfig, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigError {
    pub path: String,
    pub message: String,
}

fn kubeconfig_error(message: impl Into<String>) -> KubeconfigError {
    KubeconfigError { path: "spec.kubeconfig".into(), message: message.into() }
}

/// The parts of a kubeconfig Flotilla reads (the file format of `kubectl config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(default)]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Named<KubeContext>>,
    #[serde(default)]
    pub clusters: Vec<Named<KubeCluster>>,
    #[serde(default)]
    pub users: Vec<Named<BTreeMap<String, serde_json::Value>>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Named<T> {
    pub name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    pub value: T,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KubeContext {
    pub cluster: String,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KubeCluster {
    pub server: String,
    #[serde(default)]
    pub certificate_authority: Option<String>,
}

/// User fields that make the control plane read a file or run a program of its own machine.
const REFUSED_USER_FIELDS: &[(&str, &str)] = &[
    ("client-certificate", "name a file on the control plane: embed client-certificate-data"),
    ("client-key", "name a file on the control plane: embed client-key-data"),
    ("tokenFile", "names a file on the control plane: embed the token"),
    ("exec", "runs a credential plugin on the control plane: use a service account token"),
    ("auth-provider", "runs a credential plugin on the control plane: use a service account token"),
];

impl Kubeconfig {
    /// Parses a kubeconfig; errors name the line.
    pub fn parse(text: &str) -> Result<Self, KubeconfigError> {
        serde_norway::from_str(text).map_err(|e| kubeconfig_error(format!("is not a valid kubeconfig: {e}")))
    }

    /// The context `name` (or the current one), checked to name a cluster and a user whose
    /// credentials are inline.
    pub fn select(&self, name: Option<&str>) -> Result<&KubeContext, KubeconfigError> {
        let context_error = |message: String| KubeconfigError { path: "spec.context".into(), message };
        let name = match name.or(self.current_context.as_deref()) {
            Some(name) => name,
            None => return Err(context_error("is required: the kubeconfig has no current-context".into())),
        };
        let names = || self.contexts.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        let context =
            self.contexts.iter().find(|c| c.name == name).map(|c| &c.value).ok_or_else(|| {
                context_error(format!("the kubeconfig has no context {name:?} (it has: {})", names()))
            })?;
        let cluster = self.clusters.iter().find(|c| c.name == context.cluster).ok_or_else(|| {
            kubeconfig_error(format!("context {name:?} names cluster {:?}, which it lacks", context.cluster))
        })?;
        if !cluster.value.server.starts_with("https://") && !cluster.value.server.starts_with("http://") {
            return Err(kubeconfig_error(format!("cluster {:?}: server is not an http(s) URL", cluster.name)));
        }
        if cluster.value.certificate_authority.is_some() {
            return Err(kubeconfig_error(format!(
                "cluster {:?}: certificate-authority names a file on the control plane: embed certificate-authority-data",
                cluster.name
            )));
        }
        if let Some(user) = &context.user {
            let entry = self
                .users
                .iter()
                .find(|u| &u.name == user)
                .ok_or_else(|| kubeconfig_error(format!("context {name:?} names user {user:?}, which it lacks")))?;
            for (field, why) in REFUSED_USER_FIELDS {
                if entry.value.contains_key(*field) {
                    return Err(kubeconfig_error(format!("user {user:?}: {field} {why}")));
                }
            }
        }
        Ok(context)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(spec: serde_json::Value) -> Vec<String> {
        let spec: ClusterSpec = serde_json::from_value(spec).unwrap();
        let mut errors = ValidationErrors::default();
        spec.validate(&ObjectMeta::default(), &mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: dev\n\
        clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: AAAA\n\
        contexts:\n- name: dev\n  context:\n    cluster: c1\n    user: u1\n- name: other\n  context:\n    cluster: c2\n    user: u1\n\
        users:\n- name: u1\n  user:\n    token: abc\n";

    #[test]
    fn a_kubeconfig_context_must_exist_and_carry_its_credentials_inline() {
        assert!(errors(json!({"type": "kubernetes", "kubeconfig": KUBECONFIG})).is_empty());
        assert!(errors(json!({"type": "kubernetes", "kubeconfig": KUBECONFIG, "context": "dev"})).is_empty());
        assert_eq!(
            errors(json!({"type": "kubernetes", "kubeconfig": KUBECONFIG, "context": "prod"})),
            ["spec.context: the kubeconfig has no context \"prod\" (it has: dev, other)"]
        );
        assert_eq!(
            errors(json!({"type": "kubernetes", "kubeconfig": KUBECONFIG, "context": "other"})),
            ["spec.kubeconfig: context \"other\" names cluster \"c2\", which it lacks"]
        );
        let plugin = KUBECONFIG.replace("    token: abc", "    exec:\n      command: aws");
        let refused = errors(json!({"type": "kubernetes", "kubeconfig": plugin}));
        assert!(refused[0].contains("exec runs a credential plugin"), "{refused:?}");
        let file = KUBECONFIG.replace("certificate-authority-data: AAAA", "certificate-authority: /etc/ca.pem");
        assert!(
            errors(json!({"type": "kubernetes", "kubeconfig": file}))[0].contains("embed certificate-authority-data")
        );
        let broken = errors(json!({"type": "kubernetes", "kubeconfig": "clusters: [\n  - name"}));
        assert!(
            broken[0].starts_with("spec.kubeconfig: is not a valid kubeconfig") && broken[0].contains("line"),
            "{broken:?}"
        );
    }

    #[test]
    fn an_api_server_needs_a_token_and_a_pem_ca() {
        assert!(errors(json!({"type": "kubernetes", "apiServer": "https://k:6443", "token": "t"})).is_empty());
        assert_eq!(
            errors(json!({"type": "kubernetes", "apiServer": "https://k:6443"})),
            ["spec.token: is required with apiServer"]
        );
        assert_eq!(
            errors(json!({"type": "kubernetes", "apiServer": "k:6443", "token": "t", "certificateAuthority": "x"})),
            [
                "spec.apiServer: \"k:6443\" is not an http(s) URL",
                "spec.certificateAuthority: is not a PEM certificate (-----BEGIN CERTIFICATE-----)"
            ]
        );
        assert_eq!(
            errors(json!({"type": "kubernetes"})),
            ["spec: a kubernetes cluster needs a kubeconfig, or apiServer and token"]
        );
        assert_eq!(errors(json!({"type": "local", "token": "t"})), ["spec.token: must not be set for a local cluster"]);
    }
}
