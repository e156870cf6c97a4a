//! Proxy-cache projects (`spec.registry.proxyCache` of a Project): a pull of a manifest the
//! project does not hold fetches it, with everything it refers to, from the upstream
//! registry first; then the registry serves it as any pushed image.
//!
//! # Expected flow
//! Before the registry answers a manifest `GET`/`HEAD` the caller's token allows, [`fill`]:
//! - by digest: serves what is here; fetches it when it is not;
//! - by tag: serves what is here while the tag is younger than `tagTtlSeconds`; after that
//!   asks upstream for the tag's digest (a `HEAD`, on each pull) and fetches only when it
//!   moved.
//!
//! # Guarantees
//! What is fetched goes through the registry's own API as a push by `system:proxy-cache`:
//! digests are verified, the project's quota holds, the push is audited. One fetch per
//! image at a time (concurrent pulls of it wait for the first).
//!
//! # Caveats
//! An unreachable upstream is logged and the cached copy, if any, is served (stale rather
//! than down). Blobs are fetched with their manifest, not on their own first pull.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_core::ObjectKey;
use flotilla_core::kinds::ProjectSpec;
use flotilla_core::registry::split_repository;
use flotilla_registry::replicate::{CopyReport, copy};
use tokio::sync::Mutex;

use crate::replication::{external_registry, local_registry_as};
use crate::state::AppState;

/// The subject of the tokens the cache fills with.
pub(crate) const SUBJECT: &str = "system:proxy-cache";

/// One lock per image being fetched.
#[derive(Default)]
pub struct Fetches(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl Fetches {
    async fn lock(&self, key: &str) -> Arc<Mutex<()>> {
        let mut locks = self.0.lock().await;
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }
}

/// Makes sure `reference` of `repository` is here when its project is a proxy cache; see the
/// module documentation. Errors are logged: the registry then answers from what it has.
pub async fn fill(state: &AppState, fetches: &Fetches, repository: &str, reference: &str) {
    let (project, path) = split_repository(repository);
    let Ok(Some(object)) = state.store.get(&ObjectKey::new("Project", None, project)).await else { return };
    let Some(proxy) = serde_json::from_value::<ProjectSpec>(object.spec)
        .ok()
        .and_then(|spec| spec.registry)
        .and_then(|registry| registry.proxy_cache)
    else {
        return;
    };
    let lock = fetches.lock(&format!("{repository}:{reference}")).await;
    let _fetching = lock.lock().await;
    let index = state.store.registry();
    let by_digest = reference.contains(':');
    let local_digest = if by_digest {
        index.manifest(repository, reference).await.ok().flatten().map(|m| m.digest)
    } else {
        match index.tag(repository, reference).await {
            Ok(Some(tag)) => {
                let age_micros = state.clock.now().as_microsecond() - tag.pushed_micros;
                if age_micros < i64::from(proxy.tag_ttl_seconds) * 1_000_000 {
                    return;
                }
                Some(tag.digest)
            }
            _ => None,
        }
    };
    if by_digest && local_digest.is_some() {
        return;
    }
    let upstream = match external_registry(state, &proxy.registry, "spec.registry.proxyCache.registry").await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::warn!(%error, %repository, "the proxy cache's upstream registry is not usable");
            return;
        }
    };
    let upstream_repository = proxy.upstream(path);
    if let Some(local) = &local_digest
        && upstream.manifest_digest(&upstream_repository, reference).await.as_deref() == Some(local.as_str())
    {
        // Unchanged upstream (each pull past the TTL asks again, with a HEAD).
        return;
    }
    let local = match local_registry_as(state, SUBJECT, vec![repository.to_string()]) {
        Ok(local) => local,
        Err(error) => {
            tracing::warn!(%error, "the proxy cache cannot reach the built-in registry");
            return;
        }
    };
    let mut report = CopyReport::default();
    match copy(&upstream, &upstream_repository, &local, repository, reference, &mut report).await {
        Ok(()) => {
            tracing::info!(%repository, %reference, blobs = report.blobs, bytes = report.bytes, "proxy cache filled")
        }
        Err(error) => tracing::warn!(%error, %repository, %reference, "the proxy cache could not fetch from upstream"),
    }
}
