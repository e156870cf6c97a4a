//! Shared state of the API server.

use std::sync::Arc;

use flotilla_config::Config;
use flotilla_core::kinds::KindRegistry;
use flotilla_store::Store;
use flotilla_store::sql::Clock;

use crate::metrics::Metrics;

/// Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub kinds: Arc<KindRegistry>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// The OpenAPI document, built once from the route table.
    pub openapi: Arc<serde_json::Value>,
    /// What clusters report about objects (an Application's instances), shown as `status`.
    pub observed: Option<Arc<dyn flotilla_controller::StatusView>>,
    /// The built-in registry; `None` when its storage could not be opened.
    pub registry: Option<Arc<crate::registry::RegistryService>>,
}
