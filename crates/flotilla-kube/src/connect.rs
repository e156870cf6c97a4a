//! A client for a registered cluster. Both ways of registering go through kube's kubeconfig
//! handling: a kubeconfig's chosen context as it is, or an API server URL, CA and token
//! written as a one-context kubeconfig, so that TLS and authentication are set up one way.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use flotilla_core::kinds::ClusterSpec;
use flotilla_driver::DriverError;
use flotilla_driver::cluster::ClusterConnector;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

/// How long establishing a connection to an API server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request (not a watch) may take to answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The kubeconfig a registration stands for, and the context to use in it.
fn kubeconfig_of(spec: &ClusterSpec) -> Result<(Kubeconfig, Option<String>), DriverError> {
    let invalid = |e: &dyn std::fmt::Display| DriverError::Refused(format!("spec.kubeconfig: {e}"));
    if let Some(text) = &spec.kubeconfig {
        let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| invalid(&e))?;
        return Ok((kubeconfig, spec.context.clone()));
    }
    let (Some(server), Some(token)) = (&spec.api_server, &spec.token) else {
        return Err(DriverError::Refused("a kubernetes cluster needs a kubeconfig, or apiServer and token".into()));
    };
    let mut cluster = json!({"server": server});
    if let Some(ca) = &spec.certificate_authority {
        cluster["certificate-authority-data"] = json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "flotilla",
        "clusters": [{"name": "flotilla", "cluster": cluster}],
        "users": [{"name": "flotilla", "user": {"token": token}}],
        "contexts": [{"name": "flotilla", "context": {"cluster": "flotilla", "user": "flotilla"}}],
    });
    let kubeconfig = serde_json::from_value(kubeconfig).map_err(|e| invalid(&e))?;
    Ok((kubeconfig, None))
}

/// A client of the cluster `spec` registers, with [`CONNECT_TIMEOUT`] and, unless
/// `streaming` (watches, logs), [`REQUEST_TIMEOUT`].
pub async fn client(spec: &ClusterSpec, streaming: bool) -> Result<kube::Client, DriverError> {
    // rustls picks no crypto provider by itself when the process links more than one (the
    // registry's client brings aws-lc); the first TLS user installs ring, unless one is set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (kubeconfig, context) = kubeconfig_of(spec)?;
    let options = KubeConfigOptions { context, ..Default::default() };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| DriverError::Refused(format!("spec.kubeconfig: {e}")))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    if !streaming {
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.reset_reader_on_write = true;
    }
    // Retries belong to the caller's loop, which reports each failure.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| DriverError::Refused(format!("cannot set up a client: {e}")))
}

/// What a failed request tells about the cluster: unreachable (network, TLS, timeouts, the
/// server failing) or unauthorized (credentials refused or lacking a permission). `doing`
/// says what was being done (`listing nodes`).
pub fn classify(error: kube::Error, doing: &str) -> DriverError {
    match error {
        kube::Error::Api(status) => match status.code {
            401 => DriverError::Unauthorized(format!(
                "{doing}: the API server refused the credentials (401 {})",
                status.message
            )),
            403 => DriverError::Unauthorized(format!(
                "{doing}: the credentials lack a permission (403 {})",
                status.message
            )),
            404 => DriverError::NotFound(format!("{doing}: {}", status.message)),
            code if code >= 500 => {
                DriverError::Unreachable(format!("{doing}: the API server failed ({code} {})", status.message))
            }
            code => DriverError::Refused(format!("{doing}: {code} {}", status.message)),
        },
        kube::Error::Auth(e) => DriverError::Unauthorized(format!("{doing}: {e}")),
        other => DriverError::Unreachable(format!("{doing}: {}", error_chain(&other))),
    }
}

/// An error with its causes (`connection refused` is usually a few sources down).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Connects to registered Kubernetes clusters for the control plane.
#[derive(Debug, Default, Clone)]
pub struct KubeConnector;

#[async_trait]
impl ClusterConnector for KubeConnector {
    async fn connect(
        &self,
        _name: &str,
        spec: &ClusterSpec,
    ) -> Result<std::sync::Arc<dyn flotilla_driver::ClusterDriver>, DriverError> {
        let driver = crate::driver::KubeDriver::new(client(spec, false).await?, client(spec, true).await?);
        Ok(std::sync::Arc::new(driver))
    }
}
