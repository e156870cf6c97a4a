//! `GET …/applications/{name}/manifests`: the Kubernetes objects an application becomes on
//! a Kubernetes cluster, as the kubernetes driver applies them: for review before a
//! deployment, and for export to a GitOps repository. Reading them takes the right to read
//! the application; Secret values are never shown (their keys are, with `(redacted)`).

use axum::Json;
use axum::extract::{Path, Query, State};
use flotilla_core::ObjectKey;
use flotilla_core::kinds::{ApplicationSpec, ClusterSpec, ClusterType, EnvironmentSpec};
use flotilla_core::rbac::Verb;
use flotilla_driver::workload::WorkloadKey;
use flotilla_kube::render;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::objects::authorize;
use crate::state::AppState;

/// What shows in place of a secret value.
const REDACTED: &str = "(redacted)";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestParams {
    /// The Kubernetes cluster to render for (default: the first Kubernetes cluster of the
    /// application's environment).
    pub cluster: Option<String>,
}

/// A Secret with its values replaced by [`REDACTED`] (as `stringData`, so it stays valid).
fn redact_secret(object: &mut Value) {
    let Some(fields) = object.as_object_mut() else { return };
    let keys: Map<String, Value> = fields
        .remove("data")
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|(key, _)| (key, json!(REDACTED)))
        .collect();
    fields.insert("stringData".into(), Value::Object(keys));
}

async fn kubernetes_cluster(state: &AppState, name: &str) -> Result<ClusterSpec, ApiError> {
    let key = ObjectKey::new("Cluster", None, name);
    let object =
        state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("cluster {name:?} not found")))?;
    let spec: ClusterSpec = serde_json::from_value(object.spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    if spec.cluster_type != ClusterType::Kubernetes {
        return Err(ApiError::BadRequest(format!(
            "cluster {name:?} is the embedded runtime: manifests are rendered for Kubernetes clusters"
        )));
    }
    Ok(spec)
}

/// `GET /api/v1/projects/{project}/applications/{name}/manifests`.
pub async fn manifests(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Query(params): Query<ManifestParams>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new("Application", Some(project.clone()), &name);
    let object = state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let info = state.kinds.lookup("Application").ok_or_else(|| ApiError::Internal("no Application kind".into()))?;
    authorize(&state, &caller, Verb::Get, "application.manifests", info, &object).await?;
    let spec: ApplicationSpec =
        serde_json::from_value(object.spec.clone()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let environment_key = ObjectKey::new("Environment", Some(project.clone()), &spec.environment);
    let environment = state
        .store
        .get(&environment_key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{environment_key} not found")))?;
    let environment: EnvironmentSpec =
        serde_json::from_value(environment.spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut warnings = Vec::new();
    let cluster = match params.cluster {
        Some(cluster) => {
            kubernetes_cluster(&state, &cluster).await?;
            if !environment.clusters.contains(&cluster) {
                warnings.push(format!(
                    "environment {:?} does not deploy to cluster {cluster:?} (it deploys to {:?})",
                    spec.environment, environment.clusters
                ));
            }
            cluster
        }
        None => {
            let mut found = None;
            for candidate in &environment.clusters {
                if kubernetes_cluster(&state, candidate).await.is_ok() {
                    found = Some(candidate.clone());
                    break;
                }
            }
            found.ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "environment {:?} deploys to no Kubernetes cluster: name one with ?cluster=",
                    spec.environment
                ))
            })?
        }
    };
    let workload_key =
        WorkloadKey { project: project.clone(), environment: spec.environment.clone(), application: name };
    let revision = object.metadata.generation.unwrap_or(1).max(1) as u64;
    let workload = flotilla_controller::resolve(state.store.as_ref(), &workload_key, revision, &spec)
        .await
        .map_err(ApiError::BadRequest)?;
    let rendered = render::render(&workload);
    warnings.extend(rendered.warnings);
    let mut objects = render::environment_objects(&project, &spec.environment);
    objects.extend(rendered.objects);
    for object in &mut objects {
        if object["kind"] == "Secret" {
            redact_secret(object);
        }
    }
    Ok(Json(json!({
        "cluster": cluster,
        "namespace": render::namespace_name(&project, &spec.environment),
        "revision": revision,
        "objects": objects,
        "warnings": warnings,
    })))
}
