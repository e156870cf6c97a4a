//! The delivery center's view of the registry: a project's repositories, and per repository
//! its versions (manifests) with their tags, size, push time, pushing user and the
//! applications that run them.
//!
//! Both lists are paged in the store. Which applications run a version comes from the
//! store's image index (an Application naming `<registry host>/<repository>:<tag>` or
//! `…@<digest>`), one query per page, never a scan of every application. An application
//! naming a tag counts as running the version the tag points at now.
//!
//! Reading takes the right to pull from the project's repositories (any project role,
//! auditors, admins).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use flotilla_core::ObjectKey;
use flotilla_core::kinds::ProjectSpec;
use flotilla_core::rbac::RegistryAction;
use flotilla_store::registry::{ManifestRecord, RepositoryQuery, RepositoryRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Items in a page when the caller does not ask for fewer; at most [`MAX_PAGE`].
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Most application uses reported for one page of versions.
const MAX_USES: u32 = 5000;

/// Query of the repository and version lists.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageParams {
    /// Only repositories whose name contains this.
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `continue` of the previous page.
    #[serde(default)]
    pub r#continue: Option<String>,
}

fn page_size(params: &PageParams) -> Result<u32, ApiError> {
    match params.limit {
        Some(0) => Err(ApiError::bad_field("limit", "must be at least 1")),
        Some(limit) => Ok(limit.min(MAX_PAGE)),
        None => Ok(DEFAULT_PAGE),
    }
}

fn timestamp(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

/// What `caller` may do to `project`'s repositories (its project roles); 404 when there is
/// no such project.
pub(crate) async fn registry_actions(
    state: &AppState,
    caller: &Caller,
    project: &str,
) -> Result<Vec<RegistryAction>, ApiError> {
    let key = ObjectKey::new("Project", None, project);
    let object = state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let workspace = serde_json::from_value::<ProjectSpec>(object.spec).ok().map(|spec| spec.workspace);
    Ok(caller.principal.registry_actions(project, workspace.as_deref()))
}

/// Refuses unless `caller` may pull from `project`'s repositories.
async fn may_read(state: &AppState, caller: &Caller, project: &str) -> Result<(), ApiError> {
    if registry_actions(state, caller, project).await?.contains(&RegistryAction::Pull) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!("{} has no role in project {project:?}", caller.user())))
    }
}

fn repository_view(record: &RepositoryRecord) -> Value {
    json!({
        "name": record.name,
        "project": record.project,
        "manifests": record.manifests,
        "tags": record.tags,
        "createdAt": timestamp(record.created_micros),
        "updatedAt": timestamp(record.updated_micros),
    })
}

/// `GET /api/v1/projects/{project}/repositories`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    may_read(&state, &caller, &project).await?;
    let limit = page_size(&params)?;
    let query = RepositoryQuery {
        project: Some(project),
        name_contains: params.q.clone(),
        after: params.r#continue.clone(),
        limit,
    };
    let records = state.store.registry().repositories(&query).await?;
    let next = records.last().filter(|_| records.len() == limit as usize).map(|r| r.name.clone());
    let items: Vec<Value> = records.iter().map(repository_view).collect();
    Ok(Json(json!({"items": items, "continue": next})))
}

/// `GET /api/v1/projects/{project}/repositories/{repository}/versions`: `repository` is the
/// path inside the project, its slashes encoded (`base%2Fos`).
pub async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, path)): Path<(String, String)>,
    Query(params): Query<PageParams>,
) -> Result<Json<Value>, ApiError> {
    may_read(&state, &caller, &project).await?;
    if params.q.is_some() {
        return Err(ApiError::bad_field("q", "versions are not filtered by name"));
    }
    let limit = page_size(&params)?;
    let name = format!("{project}/{path}");
    let index = state.store.registry();
    let repository =
        index.repository(&name).await?.ok_or_else(|| ApiError::NotFound(format!("repository {name} not found")))?;
    let manifests = index.manifests(&name, params.r#continue.as_deref(), limit).await?;
    let mut tags_by_digest: HashMap<String, Vec<String>> = HashMap::new();
    for manifest in &manifests {
        let tags = index.tags_of(&name, &manifest.digest).await?;
        tags_by_digest.insert(manifest.digest.clone(), tags.into_iter().map(|t| t.tag).collect());
    }
    let uses = uses_by_digest(&state, &name, &tags_by_digest).await?;
    let items: Vec<Value> = manifests.iter().map(|manifest| version_view(manifest, &tags_by_digest, &uses)).collect();
    let next = manifests.last().filter(|_| manifests.len() == limit as usize).map(|m| m.digest.clone());
    Ok(Json(json!({"repository": repository_view(&repository), "items": items, "continue": next})))
}

fn version_view(
    manifest: &ManifestRecord,
    tags_by_digest: &HashMap<String, Vec<String>>,
    uses: &HashMap<String, Vec<Value>>,
) -> Value {
    json!({
        "digest": manifest.digest,
        "mediaType": manifest.media_type,
        "artifactType": manifest.artifact_type,
        "size": manifest.total_size,
        "tags": tags_by_digest.get(&manifest.digest).cloned().unwrap_or_default(),
        "pushedBy": manifest.pushed_by,
        "pushedAt": timestamp(manifest.pushed_micros),
        "applications": uses.get(&manifest.digest).cloned().unwrap_or_default(),
    })
}

/// The applications running each of the page's versions, by digest.
async fn uses_by_digest(
    state: &AppState,
    repository: &str,
    tags_by_digest: &HashMap<String, Vec<String>>,
) -> Result<HashMap<String, Vec<Value>>, ApiError> {
    let digest_of_tag: HashMap<&str, &str> = tags_by_digest
        .iter()
        .flat_map(|(digest, tags)| tags.iter().map(move |tag| (tag.as_str(), digest.as_str())))
        .collect();
    let names: Vec<String> = state.config.registry_hosts().iter().map(|host| format!("{host}/{repository}")).collect();
    let mut uses: HashMap<String, Vec<Value>> = HashMap::new();
    for user in state.store.registry().image_users(&names, MAX_USES).await? {
        let Some(reference) = names.iter().find_map(|name| user.image.strip_prefix(name.as_str())) else { continue };
        let digest = match reference.split_at_checked(1) {
            Some(("@", digest)) => Some(digest),
            Some((":", tag)) => digest_of_tag.get(tag).copied(),
            _ => digest_of_tag.get("latest").copied(),
        };
        if let Some(digest) = digest.filter(|digest| tags_by_digest.contains_key(*digest)) {
            uses.entry(digest.to_string()).or_default().push(json!({
                "kind": user.key.kind,
                "project": user.key.project,
                "name": user.key.name,
                "image": user.image,
            }));
        }
    }
    Ok(uses)
}
