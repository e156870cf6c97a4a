//! Prometheus metrics: HTTP requests by route and status with latencies, store latency per
//! operation (through [`MeteredStore`], a decorator around any [`Store`]), and what the
//! registry's blob storage holds in memory (read when scraped).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use flotilla_core::audit::{AuditRecord, VerifyReport};
use flotilla_core::rbac::Grant;
use flotilla_core::{Object, ObjectKey};
use flotilla_store::{
    ApiToken, AuditPage, AuditQuery, Committed, ListQuery, Mutation, ObjectPage, Session, Store, StoreError, SummaryBy,
    SummaryRow, ThrottleState,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
    store_seconds: Family<StoreLabels, Histogram>,
    registry_memory: RegistryMemory,
}

/// What the registry's blob storage holds in memory
/// ([`flotilla_registry::storage::fs::MemoryUse`]).
#[derive(Default)]
struct RegistryMemory {
    recent_blobs: Gauge,
    recent_blob_bytes: Gauge,
    buffer_bytes: Gauge,
    /// Brought up to the store's own count at each scrape, under the lock (scrapes may run at
    /// once).
    reads_from_memory: std::sync::Mutex<Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let store_seconds =
            Family::<StoreLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("flotilla_http_requests", "HTTP requests by method, route and status", requests.clone());
        registry.register(
            "flotilla_http_request_duration_seconds",
            "HTTP request latency by method and route",
            request_seconds.clone(),
        );
        registry.register(
            "flotilla_store_operation_duration_seconds",
            "Store latency by operation",
            store_seconds.clone(),
        );
        let registry_memory = RegistryMemory::default();
        registry.register(
            "flotilla_registry_recent_blobs",
            "Large blobs just pushed that the registry keeps in memory",
            registry_memory.recent_blobs.clone(),
        );
        registry.register(
            "flotilla_registry_recent_blob_bytes",
            "Bytes of the recent blobs the registry keeps in memory",
            registry_memory.recent_blob_bytes.clone(),
        );
        registry.register(
            "flotilla_registry_buffer_bytes",
            "Bytes of the registry's transfer buffers: free, in use, or holding recent blobs",
            registry_memory.buffer_bytes.clone(),
        );
        let reads = registry_memory.reads_from_memory.lock().map(|counter| counter.clone()).unwrap_or_default();
        registry.register("flotilla_registry_blob_reads_from_memory", "Blob reads sent from a recent blob", reads);
        Self { registry, requests, request_seconds, store_seconds, registry_memory }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Takes in what the registry's blob storage holds in memory now.
    pub fn observe_registry_memory(&self, memory: &flotilla_registry::storage::fs::MemoryUse) {
        let gauges = &self.registry_memory;
        gauges.recent_blobs.set(i64::try_from(memory.recent_blobs).unwrap_or(i64::MAX));
        gauges.recent_blob_bytes.set(i64::try_from(memory.recent_blob_bytes).unwrap_or(i64::MAX));
        gauges.buffer_bytes.set(i64::try_from(memory.buffer_bytes).unwrap_or(i64::MAX));
        let reads = gauges.reads_from_memory.lock().unwrap_or_else(|poison| poison.into_inner());
        reads.inc_by(memory.reads_from_memory.saturating_sub(reads.get()));
    }

    fn observe_store(&self, operation: &'static str, started: Instant) {
        self.store_seconds.get_or_create(&StoreLabels { operation }).observe(started.elapsed().as_secs_f64());
    }
}

/// Middleware: counts and times every request under its route template (never the raw path,
/// which would explode cardinality).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let metrics = &state.metrics;
    metrics.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
    metrics.request_seconds.get_or_create(&RouteLabels { method, route }).observe(started.elapsed().as_secs_f64());
    response
}

/// A [`Store`] that times every call into [`Metrics`].
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

macro_rules! metered {
    ($self:ident, $name:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        $self.metrics.observe_store($name, started);
        result
    }};
}

#[async_trait]
impl Store for MeteredStore {
    async fn commit(&self, mutation: Mutation) -> Result<Committed, StoreError> {
        metered!(self, "commit", self.inner.commit(mutation))
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        metered!(self, "get", self.inner.get(key))
    }
    async fn list(&self, query: &ListQuery) -> Result<ObjectPage, StoreError> {
        metered!(self, "list", self.inner.list(query))
    }
    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        metered!(self, "grants_of", self.inner.grants_of(user))
    }
    async fn password_hash(&self, user: &str) -> Result<Option<String>, StoreError> {
        metered!(self, "password_hash", self.inner.password_hash(user))
    }
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        metered!(self, "session", self.inner.session(id_hash))
    }
    async fn token_by_secret(&self, secret_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        metered!(self, "token_by_secret", self.inner.token_by_secret(secret_hash))
    }
    async fn tokens_of(&self, user: &str) -> Result<Vec<ApiToken>, StoreError> {
        metered!(self, "tokens_of", self.inner.tokens_of(user))
    }
    async fn throttle(&self, key: &str) -> Result<Option<ThrottleState>, StoreError> {
        metered!(self, "throttle", self.inner.throttle(key))
    }
    async fn audit_query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        metered!(self, "audit_query", self.inner.audit_query(query))
    }
    async fn audit_summary(&self, query: &AuditQuery, by: SummaryBy) -> Result<Vec<SummaryRow>, StoreError> {
        metered!(self, "audit_summary", self.inner.audit_summary(query, by))
    }
    async fn audit_verify(&self) -> Result<VerifyReport, StoreError> {
        metered!(self, "audit_verify", self.inner.audit_verify())
    }
    async fn audit_record(&self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        metered!(self, "audit_record", self.inner.audit_record(seq))
    }
    fn registry(&self) -> &dyn flotilla_store::registry::RegistryReads {
        self.inner.registry()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        metered!(self, "ping", self.inner.ping())
    }
}
