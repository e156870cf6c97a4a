//! Health, readiness, metrics and self-description endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::state::AppState;

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store answers; a replica that cannot reach its database is not ready.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(registry) = &state.registry {
        state.metrics.observe_registry_memory(&registry.blobs.memory());
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// `GET /api/v1/openapi.json`
pub async fn openapi(State(state): State<AppState>) -> Json<Value> {
    Json((*state.openapi).clone())
}

/// `GET /api/v1/kinds`
pub async fn kinds(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    let items: Vec<Value> = state
        .kinds
        .iter()
        .map(|k| json!({"kind": k.kind, "plural": k.plural, "scope": k.scope, "category": k.category}))
        .collect();
    Json(json!({ "items": items }))
}
