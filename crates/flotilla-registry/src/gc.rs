//! Garbage collection: deletes the blobs nothing references, while pushes go on.
//!
//! A blob is garbage when no manifest is or refers to it and it was last linked more than
//! `grace` ago (its manifest may still be on its way), or when the index does not know it at
//! all (an upload whose link was refused). The index forgets garbage in the store's writer,
//! which checks each blob again, so a push that committed first keeps its blobs. Files are
//! deleted while [`Registry`]'s sweep lock is held exclusively; uploads hold it shared from
//! storing a blob until the index links it, so no blob is deleted between the two.
//!
//! Retention ([`apply_retention`]) deletes the tags a project's rules no longer keep, and
//! then the manifests those tags leave untagged (unless an index refers to them), so that
//! the next collection frees their blobs.

use std::time::Duration;

use flotilla_core::ObjectKey;
use flotilla_core::audit::Actor;
use flotilla_core::kinds::ProjectSpec;
use flotilla_core::registry::{TagAge, split_repository};
use flotilla_store::registry::{RegistryChange, RepositoryQuery};
use flotilla_store::{Change, Mutation, StoreError};
use serde::Serialize;

use crate::http::Registry;
use crate::storage::StorageError;

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_removed: u64,
    pub uploads_removed: usize,
}

/// What retention removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    pub tags_removed: usize,
    pub manifests_removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Index pages read at a time.
const PAGE: u32 = 1000;
/// Most pages of garbage one collection forgets; the next collection goes on.
const MAX_PAGES: usize = 1000;

/// Collects the garbage as of `now_micros`; see the module documentation.
pub async fn collect_garbage(
    registry: &Registry,
    actor: &Actor,
    grace: Duration,
    now_micros: i64,
) -> Result<GcReport, GcError> {
    let cutoff = now_micros - i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    let index = registry.store.registry();
    let mut report = GcReport::default();
    let _exclusive = registry.sweep.write().await;
    // Page by page; bounded, in case pushes keep referring to what a page names.
    for _ in 0..MAX_PAGES {
        let candidates = index.unreferenced_blobs(cutoff, PAGE).await?;
        let last_page = candidates.len() < PAGE as usize;
        if !candidates.is_empty() {
            let change = RegistryChange::ForgetBlobs { digests: candidates, linked_before_micros: cutoff };
            registry.store.commit(Mutation { actor: actor.clone(), change: Change::Registry(change) }).await?;
        }
        if last_page {
            break;
        }
    }
    for blob in registry.blobs.list().await? {
        if index.blob(blob.as_ref()).await?.is_some() {
            continue;
        }
        let size = registry.blobs.stat(&blob).await?.unwrap_or(0);
        if registry.blobs.delete(&blob).await? {
            report.blobs_removed += 1;
            report.bytes_removed += size;
        }
    }
    drop(_exclusive);
    report.uploads_removed = registry.blobs.remove_stale_uploads(grace).await?;
    if report.blobs_removed > 0 || report.uploads_removed > 0 {
        tracing::info!(?report, "registry garbage collected");
    }
    Ok(report)
}

/// Applies every project's retention rules as of `now_micros`.
pub async fn apply_retention(registry: &Registry, actor: &Actor, now_micros: i64) -> Result<RetentionReport, GcError> {
    let index = registry.store.registry();
    let mut report = RetentionReport::default();
    let mut after = None;
    loop {
        let page = RepositoryQuery { after: after.clone(), limit: PAGE, ..RepositoryQuery::default() };
        let repositories = index.repositories(&page).await?;
        let Some(last) = repositories.last() else { break };
        after = Some(last.name.clone());
        for repository in &repositories {
            let (project, path) = split_repository(&repository.name);
            let Some(object) = registry.store.get(&ObjectKey::new("Project", None, project)).await? else { continue };
            let Some(settings) = serde_json::from_value::<ProjectSpec>(object.spec).ok().and_then(|p| p.registry)
            else {
                continue;
            };
            if settings.retention.is_empty() {
                continue;
            }
            let mut tags = Vec::new();
            let mut tag_after = None::<String>;
            loop {
                let page = index.tags(&repository.name, tag_after.as_deref(), PAGE).await?;
                let Some(last) = page.last() else { break };
                tag_after = Some(last.tag.clone());
                tags.extend(page);
            }
            let ages: Vec<TagAge> =
                tags.iter().map(|t| TagAge { tag: t.tag.clone(), pushed_micros: t.pushed_micros }).collect();
            let expired = settings.expired_tags(path, &ages, now_micros);
            for tag in &expired {
                let change = RegistryChange::DeleteTag { repository: repository.name.clone(), tag: tag.clone() };
                registry.store.commit(Mutation { actor: actor.clone(), change: Change::Registry(change) }).await?;
                report.tags_removed += 1;
            }
            let mut orphaned: Vec<&str> =
                tags.iter().filter(|t| expired.contains(&t.tag)).map(|t| t.digest.as_str()).collect();
            orphaned.sort_unstable();
            orphaned.dedup();
            for digest in orphaned {
                if !index.tags_of(&repository.name, digest).await?.is_empty()
                    || index.referenced_by_index(&repository.name, digest).await?
                {
                    continue;
                }
                let change =
                    RegistryChange::DeleteManifest { repository: repository.name.clone(), digest: digest.to_string() };
                match registry.store.commit(Mutation { actor: actor.clone(), change: Change::Registry(change) }).await {
                    Ok(_) => report.manifests_removed += 1,
                    Err(StoreError::Registry(refusal)) => tracing::info!(%refusal, "retention kept a manifest"),
                    Err(error) => return Err(error.into()),
                }
            }
        }
        if repositories.len() < PAGE as usize {
            break;
        }
    }
    Ok(report)
}
