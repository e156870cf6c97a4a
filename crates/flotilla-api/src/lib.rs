//! Flotilla's REST API server.
//!
//! A request flows: [`context`] (request id, source address) -> [`metrics`] (count, time) ->
//! the route's handler, which authenticates the caller ([`auth::Caller`]), authorizes with the
//! core's RBAC policy, and for writes builds an operation and commits it with its audit
//! record through the [`flotilla_store::Store`]. Errors map to HTTP in [`error`] only.
//! [`routes`] is the single table of routes and their OpenAPI description.

pub mod access;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod context;
pub mod documents;
pub mod error;
pub mod health;
pub mod images;
pub mod manifests;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod operate;
pub mod proxy;
pub mod registry;
pub mod replication;
pub mod repositories;
pub mod robots;
pub mod routes;
pub mod serve;
pub mod state;
pub mod templates;

pub use serve::serve;

use std::sync::Arc;

use axum::Router;
use axum::http::Uri;
use axum::middleware;
use axum::response::IntoResponse;
use flotilla_config::Config;
use flotilla_core::kinds::KindRegistry;
use flotilla_store::Store;
use flotilla_store::cached::{CachedStore, ObjectCaching};
use flotilla_store::sql::Clock;

pub use error::ApiError;
pub use state::AppState;

use crate::metrics::{MeteredStore, Metrics};

/// Builds the shared state and the router of the whole API.
pub fn app(store: Arc<dyn Store>, kinds: Arc<KindRegistry>, config: Arc<Config>, clock: Arc<dyn Clock>) -> Router {
    build(store, kinds, config, clock, None).router
}

/// [`app`] showing what clusters report (`observed`) as the `status` of objects.
pub fn app_with_status(
    store: Arc<dyn Store>,
    kinds: Arc<KindRegistry>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    observed: Option<Arc<dyn flotilla_controller::StatusView>>,
) -> Router {
    build(store, kinds, config, clock, observed).router
}

/// The API's router and the parts of it that have work of their own to run.
pub struct App {
    pub router: Router,
    /// The built-in registry (`None` when its storage could not be opened), whose upkeep
    /// ([`registry::RegistryService::maintain`]) the server runs.
    pub registry: Option<Arc<registry::RegistryService>>,
    /// The store as the API uses it (metered and cached), for the server's own tasks.
    pub store: Arc<dyn Store>,
    /// The state handlers share, for the server's own tasks ([`replication::schedule`]).
    pub state: AppState,
}

/// Builds the shared state, the router and the registry.
pub fn build(
    store: Arc<dyn Store>,
    kinds: Arc<KindRegistry>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    observed: Option<Arc<dyn flotilla_controller::StatusView>>,
) -> App {
    let metrics = Arc::new(Metrics::default());
    let metered: Arc<dyn Store> = Arc::new(MeteredStore::new(store, metrics.clone()));
    let ttl = std::time::Duration::from_millis(config.auth_cache_ttl_ms);
    // An embedded SQLite store is written by this process alone, so every object can be
    // served from memory; a shared database is written by other replicas too.
    let caching = if config.database_url().starts_with("sqlite:") {
        ObjectCaching::All
    } else {
        ObjectCaching::AuthorizationOnly
    };
    let store: Arc<dyn Store> = Arc::new(CachedStore::new(metered, ttl, caching));
    let (router, docs) = routes::routes(&kinds).into_parts();
    let openapi = Arc::new(openapi::document(&docs, &kinds));
    let registry = match registry::RegistryService::open(
        &config.data_dir,
        flotilla_registry::storage::fs::FsOptions {
            direct_io: config.registry.direct_io,
            recent_blobs_bytes: config.registry.recent_blobs_mib.saturating_mul(1024 * 1024),
        },
        store.clone(),
    ) {
        Ok(service) => Some(Arc::new(service)),
        Err(error) => {
            tracing::error!(%error, "the registry cannot open its storage: /v2/ is not served");
            None
        }
    };
    let state =
        AppState { store: store.clone(), kinds, config, metrics, clock, openapi, observed, registry: registry.clone() };
    let router = match &registry {
        Some(service) => router.merge(registry::routes(state.clone(), service.clone())),
        None => router,
    };
    let router = router
        .fallback(|method: axum::http::Method, uri: Uri| async move {
            // The API's own prefixes answer in JSON; every other path is the console's.
            if uri.path().starts_with("/api/") || uri.path().starts_with("/v2/") {
                ApiError::NotFound(format!("no route for {}", uri.path())).into_response()
            } else {
                flotilla_console::respond(&method, &uri)
            }
        })
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(middleware::from_fn_with_state(state.clone(), context::request_context))
        // Outermost, so that a refusal by any layer (authentication included) is covered.
        .layer(middleware::from_fn(flotilla_registry::http::close_if_body_unread))
        .with_state(state.clone());
    App { router, registry, store, state }
}
