//! Loading an image archive into a cluster (`flotilla image import FILE`): for clusters
//! without a registry to pull from, such as the embedded runtime on a machine with no
//! network. The body (an OCI or Docker archive) is streamed to a file under the data dir,
//! hashed on the way, handed to the cluster's driver and removed.
//!
//! Images are shared by every project on the cluster, so importing takes the right to change
//! the Cluster (platform admins). Each import is audited with the archive's size and SHA-256
//! and the images it held, whether it succeeded or not.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use flotilla_core::ObjectKey;
use flotilla_core::audit::Outcome;
use flotilla_core::rbac::Verb;
use flotilla_store::{AuditNote, Change, Mutation};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::objects::authorize;
use crate::state::AppState;

/// `POST /api/v1/clusters/{name}/images`: the body is an image archive.
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(cluster): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new("Cluster", None, &cluster);
    let object = state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let info = state.kinds.lookup("Cluster").ok_or_else(|| ApiError::Internal("no Cluster kind".into()))?;
    authorize(&state, &caller, Verb::Update, "image.import", info, &object).await?;
    let driver = state
        .observed
        .as_ref()
        .and_then(|clusters| clusters.driver(&cluster))
        .ok_or_else(|| ApiError::Unavailable(format!("this control plane does not drive cluster {cluster:?}")))?;

    let dir = state.config.data_dir.join("tmp");
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::Internal(format!("{}: {e}", dir.display())))?;
    let path = dir.join(format!("import-{}.tar", uuid::Uuid::new_v4().simple()));
    let received = receive(body, &path, "an OCI or Docker image archive").await;
    let outcome = match received {
        Ok((size, digest)) => {
            let imported = driver.import_image(&path).await;
            let what = format!("archive of {size} bytes, sha256:{digest}");
            match imported {
                Ok(images) => Ok((images, what)),
                Err(error) => Err((ApiError::from(error), what)),
            }
        }
        Err(error) => Err((error, "archive not received".to_string())),
    };
    let _ = tokio::fs::remove_file(&path).await;
    let (result, message, audit_outcome) = match outcome {
        Ok((images, what)) => {
            let message = format!("imported {} ({what})", images.join(", "));
            (Ok(images), message, Outcome::Success)
        }
        Err((error, what)) => {
            let message = format!("import failed ({what}): {error}");
            (Err(error), message, Outcome::Error)
        }
    };
    let note = AuditNote {
        action: "image.import".into(),
        kind: Some("Cluster".into()),
        project: None,
        name: Some(cluster.clone()),
        outcome: Some(audit_outcome),
        message: Some(message),
    };
    state.store.commit(Mutation { actor: caller.actor(), change: Change::Record(note) }).await?;
    let images = result?;
    Ok(Json(json!({ "cluster": cluster, "images": images })))
}

/// Streams `body` into `path`; its size and SHA-256 (hex).
/// Streams `body` into the file at `path`, synced; its size and hex SHA-256. `what` names the
/// expected content in errors.
pub(crate) async fn receive(body: Body, path: &std::path::Path, what: &str) -> Result<(u64, String), ApiError> {
    let io = |e: std::io::Error| ApiError::Internal(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("the upload of {what} broke off: {e}")))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    if size == 0 {
        return Err(ApiError::bad_field("body", format!("is empty: send {what}")));
    }
    Ok((size, hex::encode(hasher.finalize())))
}
