//! The API's one error type and its one mapping to HTTP: `{"code", "message", "details"}`.
//!
//! Every handler returns [`ApiError`]; this file is the only place that chooses a status
//! code. Internal failures are logged with the request id and shown to callers only as
//! "internal error", so internals never leak.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_core::ValidationErrors;
use flotilla_core::operation::OperationError;
use flotilla_driver::DriverError;
use flotilla_store::StoreError;
use flotilla_store::registry::RegistryRefusal;
use serde::Serialize;
use serde_json::Value;

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unusable credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The API token or session has expired.
    #[error("{0}")]
    Expired(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A console request without the session's CSRF token.
    #[error("missing or wrong X-CSRF-Token header for a session-authenticated write")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is still referenced by others and cannot be deleted.
    #[error("{message}")]
    InUse { message: String, referrers: Vec<String> },
    /// Optimistic-concurrency failure: the caller's resourceVersion is stale.
    #[error("{message}")]
    Conflict { message: String, expected: u64, current: u64 },
    /// The document or request is invalid; every problem is listed with its field path.
    #[error("{message}")]
    Invalid { message: String, errors: ValidationErrors },
    #[error("{0}")]
    BadRequest(String),
    /// Too many failed logins: locked for `retry_after_secs`.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Locked { retry_after_secs: u64 },
    /// The audit record could not be written, so the change was not made.
    #[error("{0}")]
    AuditWrite(String),
    #[error("{0}")]
    Unavailable(String),
    /// The cluster could not do what was asked (its message).
    #[error("{0}")]
    Cluster(String),
    /// Anything else; details go to the log only.
    #[error("internal error")]
    Internal(String),
}

/// The wire format of every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl ApiError {
    pub fn invalid(errors: ValidationErrors) -> Self {
        let count = errors.0.len();
        let message =
            if count == 1 { format!("invalid: {errors}") } else { format!("invalid: {count} problems: {errors}") };
        ApiError::Invalid { message, errors }
    }

    pub fn bad_field(path: &str, message: impl Into<String>) -> Self {
        let mut errors = ValidationErrors::default();
        errors.push(path, message);
        Self::invalid(errors)
    }

    /// The status and machine-readable code: the single mapping.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "Unauthenticated"),
            ApiError::Expired(_) => (StatusCode::UNAUTHORIZED, "CredentialsExpired"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "CsrfTokenInvalid"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists"),
            ApiError::InUse { .. } => (StatusCode::CONFLICT, "InUse"),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Locked { .. } => (StatusCode::TOO_MANY_REQUESTS, "LoginLocked"),
            ApiError::AuditWrite(_) => (StatusCode::SERVICE_UNAVAILABLE, "AuditWriteFailed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            ApiError::Cluster(_) => (StatusCode::BAD_GATEWAY, "ClusterError"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Internal"),
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (_, code) = self.status_and_code();
        let details = match self {
            ApiError::Invalid { errors, .. } => serde_json::to_value(&errors.0).unwrap_or(Value::Null),
            ApiError::Conflict { expected, current, .. } => {
                serde_json::json!({"expectedResourceVersion": expected.to_string(), "currentResourceVersion": current.to_string()})
            }
            ApiError::Locked { retry_after_secs } => serde_json::json!({"retryAfterSeconds": retry_after_secs}),
            ApiError::InUse { referrers, .. } => serde_json::json!({"referencedBy": referrers}),
            _ => Value::Null,
        };
        ErrorBody { code, message: self.to_string(), details }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        let (status, _) = self.status_and_code();
        let mut response = (status, Json(self.body())).into_response();
        if let ApiError::Locked { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<DriverError> for ApiError {
    fn from(error: DriverError) -> Self {
        match error {
            DriverError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            DriverError::Unreachable(message) => ApiError::Unavailable(format!("cluster unreachable: {message}")),
            DriverError::Unauthorized(message) => {
                ApiError::Unavailable(format!("cluster refused our credentials: {message}"))
            }
            DriverError::Refused(message) => ApiError::BadRequest(format!("refused by the cluster: {message}")),
            DriverError::Failed(message) => ApiError::Cluster(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Operation(OperationError::NotFound(key)) => ApiError::NotFound(format!("{key} not found")),
            StoreError::Operation(OperationError::AlreadyExists(key)) => {
                ApiError::AlreadyExists(format!("{key} already exists"))
            }
            StoreError::Operation(error @ OperationError::Conflict { expected, current, .. }) => ApiError::Conflict {
                message: format!("{error}; get it again and reapply your change"),
                expected,
                current,
            },
            StoreError::Operation(OperationError::Invalid(errors)) => ApiError::invalid(errors),
            StoreError::Operation(OperationError::InUse { key, referrers }) => {
                let message = OperationError::InUse { key, referrers: referrers.clone() }.to_string();
                ApiError::InUse { message, referrers }
            }
            StoreError::AuditWrite(detail) => {
                tracing::error!(%detail, "audit write failed; change refused");
                ApiError::AuditWrite("the audit record could not be written, so the change was not made".into())
            }
            StoreError::Registry(refusal) => match refusal {
                RegistryRefusal::UnknownReference { .. } | RegistryRefusal::UnknownProject(_) => {
                    ApiError::NotFound(refusal.to_string())
                }
                RegistryRefusal::ImmutableTag { .. } | RegistryRefusal::QuotaExceeded { .. } => {
                    ApiError::Forbidden(refusal.to_string())
                }
            },
            StoreError::InvalidQuery(message) => ApiError::BadRequest(message),
            StoreError::Closed => ApiError::Unavailable("the server is shutting down".into()),
            StoreError::Backend(detail) => ApiError::Internal(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_with_details() {
        let mut errors = ValidationErrors::default();
        errors.push("spec.tier", "unknown variant");
        errors.push("metadata.name", "must not be empty");
        let error = ApiError::invalid(errors);
        assert_eq!(error.status_and_code(), (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"));
        let body = serde_json::to_value(error.body()).unwrap();
        assert_eq!(body["details"][0]["path"], "spec.tier");
        assert!(body["message"].as_str().unwrap().contains("2 problems"));
        let internal = ApiError::Internal("db password=hunter2".into());
        assert_eq!(internal.body().message, "internal error", "internals never leak");
    }
}
