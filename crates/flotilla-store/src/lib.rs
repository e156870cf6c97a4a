//! Flotilla's state store.
//!
//! [`Store`] is the one I/O boundary for control-plane state: declarative objects, the audit
//! log, identity records (password hashes, sessions, API tokens, login throttling), and the
//! registry's index ([`registry`]).
//! [`sql::SqlStore`] implements it on SQLite (the embedded default, WAL, through rusqlite) and on
//! PostgreSQL (through sqlx)
//! (shared by several control-plane replicas). [`conformance`] is the suite both run.
//!
//! # Guarantees
//! - Every [`Mutation`] is committed together with its audit record, in one transaction: if
//!   the record cannot be written, the change is not made.
//! - A mutation is acknowledged (its future resolves `Ok`) only after its transaction has
//!   committed durably; a crash before that loses only unacknowledged mutations.
//! - Audit records form one hash chain in commit order, across replicas.

pub mod cached;
pub mod registry;
pub mod seal;
pub mod sql;
pub mod types;

#[cfg(any(test, feature = "testsuite"))]
pub mod conformance;

use async_trait::async_trait;
use flotilla_core::audit::{AuditRecord, VerifyReport};
use flotilla_core::operation::OperationError;
use flotilla_core::rbac::Grant;
use flotilla_core::{Object, ObjectKey};

pub use types::*;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operation cannot be executed as asked (not found, exists, stale, invalid).
    #[error(transparent)]
    Operation(#[from] OperationError),
    /// The audit record could not be written; nothing was changed.
    #[error("the audit record could not be written, so the change was not made: {0}")]
    AuditWrite(String),
    /// A rule of the registry refuses the change (immutable tag, storage quota, unknown
    /// reference).
    #[error(transparent)]
    Registry(#[from] registry::RegistryRefusal),
    /// A query parameter (e.g. a continue token) is malformed.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The database failed or is unreachable.
    #[error("store unavailable: {0}")]
    Backend(String),
    /// The store is shutting down and accepts no more writes.
    #[error("the store is shutting down")]
    Closed,
}

/// The control plane's state. Implementations run [`conformance`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies one mutation with its audit record, atomically; see the crate guarantees.
    async fn commit(&self, mutation: Mutation) -> Result<Committed, StoreError>;

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError>;
    async fn list(&self, query: &ListQuery) -> Result<ObjectPage, StoreError>;

    /// The grants of every RoleBinding naming `user`.
    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError>;

    async fn password_hash(&self, user: &str) -> Result<Option<String>, StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    async fn token_by_secret(&self, secret_hash: &str) -> Result<Option<ApiToken>, StoreError>;
    async fn tokens_of(&self, user: &str) -> Result<Vec<ApiToken>, StoreError>;
    async fn throttle(&self, key: &str) -> Result<Option<ThrottleState>, StoreError>;

    async fn audit_query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;
    async fn audit_summary(&self, query: &AuditQuery, by: SummaryBy) -> Result<Vec<SummaryRow>, StoreError>;
    /// Walks the whole chain in order and checks every link and the stored head.
    async fn audit_verify(&self) -> Result<VerifyReport, StoreError>;
    async fn audit_record(&self, seq: u64) -> Result<Option<AuditRecord>, StoreError>;

    /// The registry's index.
    fn registry(&self) -> &dyn registry::RegistryReads;

    /// Cheap round trip used by `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}
