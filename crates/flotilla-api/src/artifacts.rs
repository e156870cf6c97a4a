//! Generic files (jars, tarballs, SQL bundles, charts) kept as OCI artifacts in the built-in
//! registry, versioned by tag, so that ORAS-style clients see them as any artifact:
//!
//! - `PUT /api/v1/projects/{project}/repositories/{repository}/artifacts/{version}?filename=…`
//!   (body: the file) stores it as a manifest with `artifactType` (the `type` query, else
//!   `application/vnd.flotilla.file.v1`), the empty config, and one layer: the file, titled
//!   by `org.opencontainers.image.title`. Needs the right to push to the repository; goes
//!   through the registry's own API as the caller, so digests, quota, immutable tags and the
//!   audit record are the registry's.
//! - `GET …/artifacts/{version}` streams the file back with its name and SHA-256
//!   (`X-Checksum-Sha256`, and `Docker-Content-Digest`); needs the right to pull; audited as
//!   `artifact.download`.
//!
//! A version's other facts (size, who pushed it, when) are in the versions view
//! ([`crate::repositories`]).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use flotilla_core::audit::Outcome;
use flotilla_core::rbac::RegistryAction;
use flotilla_registry::digest;
use flotilla_registry::http::OCI_MANIFEST;
use flotilla_registry::remote::Manifest;
use flotilla_store::{AuditNote, Change, Mutation};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::images::receive;
use crate::replication::local_registry_as;
use crate::repositories::registry_actions;
use crate::state::AppState;

/// The artifact type of a file stored without one.
pub const FILE_ARTIFACT: &str = "application/vnd.flotilla.file.v1";
/// The empty config of artifacts (OCI image specification 1.1).
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const TITLE: &str = "org.opencontainers.image.title";

/// Query of an upload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadParams {
    /// The file's name, given back on download.
    pub filename: String,
    /// The artifact type (a media type, e.g. `application/vnd.cncf.helm.chart.content.v1.tar+gzip`).
    #[serde(default, rename = "type")]
    pub artifact_type: Option<String>,
}

fn check_filename(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\\', '"', '\0'])
        && name != "."
        && name != ".."
        && !name.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            "filename",
            format!("{name:?} is not a file name (no slashes, quotes or control characters)"),
        ))
    }
}

fn check_media_type(text: &str) -> Result<(), ApiError> {
    let valid = text.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "+-./_".contains(c))
    });
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_field("type", format!("{text:?} is not a media type (type/subtype)")))
    }
}

/// `PUT …/repositories/{repository}/artifacts/{version}`.
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, path, version)): Path<(String, String, String)>,
    Query(params): Query<UploadParams>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_filename(&params.filename)?;
    let artifact_type = params.artifact_type.clone().unwrap_or_else(|| FILE_ARTIFACT.to_string());
    check_media_type(&artifact_type)?;
    let repository = format!("{project}/{path}");
    flotilla_registry::names::repository(&repository).map_err(|e| ApiError::bad_field("repository", e.to_string()))?;
    flotilla_registry::names::tag(&version).map_err(|e| ApiError::bad_field("version", e.to_string()))?;
    if !registry_actions(&state, &caller, &project).await?.contains(&RegistryAction::Push) {
        return Err(ApiError::Forbidden(format!("{} may not push to {repository}", caller.user())));
    }
    let dir = state.config.data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::Internal(format!("{}: {e}", dir.display())))?;
    let file = dir.join(format!("artifact-{}", uuid::Uuid::new_v4().simple()));
    let stored = store(&state, &caller, &repository, &version, &params.filename, &artifact_type, body, &file).await;
    let _ = tokio::fs::remove_file(&file).await;
    stored.map(|value| (StatusCode::CREATED, Json(value)))
}

#[allow(clippy::too_many_arguments)] // the parts of one upload, named
async fn store(
    state: &AppState,
    caller: &Caller,
    repository: &str,
    version: &str,
    filename: &str,
    artifact_type: &str,
    body: Body,
    file: &std::path::Path,
) -> Result<Value, ApiError> {
    let (size, sha256) = receive(body, file, "the file").await?;
    let layer_digest = format!("sha256:{sha256}");
    let local = local_registry_as(state, caller.user(), vec![repository.to_string()])?;
    let unavailable = |e: flotilla_registry::remote::RemoteError| ApiError::Unavailable(e.to_string());
    if !local.has_blob(repository, &layer_digest).await.map_err(unavailable)? {
        let reader =
            tokio::fs::File::open(file).await.map_err(|e| ApiError::Internal(format!("{}: {e}", file.display())))?;
        let content = tokio_util::io::ReaderStream::new(reader).boxed();
        local.push_blob(repository, &layer_digest, size, content).await.map_err(unavailable)?;
    }
    let config = bytes::Bytes::from_static(b"{}");
    let config_digest = digest::of(&config).to_string();
    if !local.has_blob(repository, &config_digest).await.map_err(unavailable)? {
        let content = futures::stream::once(async move { Ok(config) }).boxed();
        local.push_blob(repository, &config_digest, 2, content).await.map_err(unavailable)?;
    }
    let created = state.clock.now().to_string();
    let document = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer_digest, "size": size,
                    "annotations": {TITLE: filename}}],
        "annotations": {"org.opencontainers.image.version": version, "org.opencontainers.image.created": created},
    });
    let bytes = bytes::Bytes::from(serde_json::to_vec(&document).map_err(|e| ApiError::Internal(e.to_string()))?);
    let manifest =
        Manifest { digest: digest::of(&bytes).to_string(), bytes, media_type: OCI_MANIFEST.into(), document };
    local.push_manifest(repository, version, &manifest).await.map_err(|e| {
        // The registry's refusal (an immutable version, the quota) is the caller's to read.
        let message = e.to_string();
        if message.contains("immutable") || message.contains("quota") || message.contains("DENIED") {
            ApiError::Forbidden(message)
        } else {
            ApiError::Unavailable(message)
        }
    })?;
    Ok(json!({"repository": repository, "version": version, "filename": filename, "artifactType": artifact_type,
        "size": size, "sha256": sha256, "digest": manifest.digest}))
}

/// `GET …/repositories/{repository}/artifacts/{version}`: the file.
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, path, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let repository = format!("{project}/{path}");
    if !registry_actions(&state, &caller, &project).await?.contains(&RegistryAction::Pull) {
        return Err(ApiError::Forbidden(format!("{} may not pull from {repository}", caller.user())));
    }
    let service = state.registry.as_ref().ok_or_else(|| ApiError::Unavailable("the registry is not served".into()))?;
    let index = state.store.registry();
    let missing = || ApiError::NotFound(format!("{repository} has no version {version:?}"));
    let reference = if version.contains(':') {
        version.clone()
    } else {
        index.tag(&repository, &version).await?.ok_or_else(missing)?.digest
    };
    let manifest_digest = digest::parse(&reference).map_err(|e| ApiError::bad_field("version", e.to_string()))?;
    let content: Vec<bytes::Bytes> = service
        .registry
        .blobs
        .read(&manifest_digest, 0)
        .await
        .map_err(|_| missing())?
        .try_collect()
        .await
        .map_err(|_| missing())?;
    let document: Value = serde_json::from_slice(&content.concat()).map_err(|_| missing())?;
    let layers = document["layers"].as_array().cloned().unwrap_or_default();
    let [layer] = layers.as_slice() else {
        return Err(ApiError::bad_field(
            "version",
            format!("{repository}:{version} is not a single-file artifact ({} layers)", layers.len()),
        ));
    };
    let layer_digest = layer["digest"].as_str().and_then(|d| digest::parse(d).ok()).ok_or_else(missing)?;
    let size = index.linked_blob(&repository, layer_digest.as_ref()).await?.ok_or_else(missing)?;
    let filename =
        layer.pointer("/annotations/org.opencontainers.image.title").and_then(Value::as_str).unwrap_or("artifact");
    let note = AuditNote {
        action: "artifact.download".into(),
        kind: Some("Repository".into()),
        project: Some(project.clone()),
        name: Some(format!("{repository}:{version}")),
        outcome: Some(Outcome::Success),
        message: Some(format!("{filename} ({size} bytes, {layer_digest})")),
    };
    state.store.commit(Mutation { actor: caller.actor(), change: Change::Record(note) }).await?;
    let stream = service.registry.blobs.read(&layer_digest, 0).await.map_err(|_| missing())?;
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    let safe_name: String = filename.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
    for (name, value) in [
        (header::CONTENT_TYPE.as_str(), "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH.as_str(), size.to_string()),
        (header::CONTENT_DISPOSITION.as_str(), format!("attachment; filename=\"{safe_name}\"")),
        ("x-checksum-sha256", layer_digest.digest().to_string()),
        ("docker-content-digest", layer_digest.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}
