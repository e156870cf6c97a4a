//! The SQL implementation of [`crate::Store`], on SQLite or PostgreSQL through sqlx's `Any`
//! driver. One SQL text serves both databases (`$N` placeholders work on both); the few
//! differences are in [`Dialect`].
//!
//! Writes go through one writer task per process ([`writer`]), which commits queued
//! mutations in batches (group commit): one transaction and one fsync for many mutations,
//! each inside its own savepoint so that one refused mutation does not affect the others.

mod audit;
mod identity;
mod objects;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::audit::{AuditRecord, VerifyReport};
use flotilla_core::kinds::KindRegistry;
use flotilla_core::rbac::Grant;
use flotilla_core::{Object, ObjectKey};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};
use tokio::sync::{mpsc, oneshot};

use crate::types::*;
use crate::{Store, StoreError};

/// The database behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Recognises the database of a connection URL.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    /// The statement that opens a write transaction. SQLite takes the write lock at once so
    /// that a batch never fails half-way on a lock upgrade.
    fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// Reads the audit chain head, locking it against other replicas until commit.
    fn select_head_for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Dialect::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        }
    }

    /// RoleBindings of one user, through the expression index.
    fn select_bindings_of_user(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT spec FROM objects WHERE kind = 'RoleBinding' AND json_extract(spec, '$.user') = $1"
            }
            Dialect::Postgres => {
                "SELECT spec FROM objects WHERE kind = 'RoleBinding' AND ((spec::jsonb) ->> 'user') = $1"
            }
        }
    }
}

/// Options of a [`SqlStore`].
#[derive(Debug, Clone)]
pub struct SqlStoreOptions {
    /// `sqlite:///path/to/flotilla.db` or `postgres://user@host:port/db`.
    pub url: String,
    pub max_connections: u32,
    /// Key of the keyed hashes that replace secrets in audit records.
    pub audit_key: Vec<u8>,
    /// Largest number of mutations committed in one transaction.
    pub max_batch: usize,
}

impl SqlStoreOptions {
    pub fn new(url: impl Into<String>, audit_key: Vec<u8>) -> Self {
        Self { url: url.into(), max_connections: 16, audit_key, max_batch: 512 }
    }
}

/// A clock, injected so that tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// What the writer task needs, shared with the read side.
pub(crate) struct Shared {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    pub(crate) kinds: Arc<KindRegistry>,
    pub(crate) audit_key: Vec<u8>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// [`Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    shared: Arc<Shared>,
    writes: mpsc::Sender<writer::WriteRequest>,
}

impl SqlStore {
    /// Connects, runs migrations, and starts the writer task.
    pub async fn connect(
        options: SqlStoreOptions,
        kinds: Arc<KindRegistry>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(&options.url).ok_or_else(|| {
            StoreError::Backend(format!(
                "unsupported database URL {:?}: use sqlite:///path or postgres://…",
                redact_url(&options.url)
            ))
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |connection, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL: readers never block the writer. FULL: a committed transaction
                        // survives power loss, not only a process crash.
                        // Checkpoints run in the background (see `checkpoint_wal`), never
                        // inside a committing transaction where they would stall the writer.
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                                 PRAGMA wal_autocheckpoint = 0;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&options.url)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", redact_url(&options.url))))?;
        migrator(dialect).run(&pool).await.map_err(|e| StoreError::Backend(format!("migrations failed: {e}")))?;
        let shared = Arc::new(Shared { pool, dialect, kinds, audit_key: options.audit_key, clock });
        let (writes, queue) = mpsc::channel(options.max_batch * 4);
        tokio::spawn(writer::run(shared.clone(), queue, options.max_batch));
        if dialect == Dialect::Sqlite {
            tokio::spawn(checkpoint_wal(Arc::downgrade(&shared)));
        }
        Ok(Self { shared, writes })
    }

    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// The connection pool, for tests that need to reach under the store (e.g. to tamper).
    pub fn pool(&self) -> &AnyPool {
        &self.shared.pool
    }
}

/// Copies the SQLite write-ahead log into the database file every second, off the write
/// path (PASSIVE: never waits for, nor blocks, readers and the writer). Ends when the store
/// is dropped.
async fn checkpoint_wal(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&shared.pool).await {
            tracing::warn!(%error, "WAL checkpoint failed; will retry");
        }
    }
}

/// Hides the password of a database URL in messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The schema migrations, embedded in the binary: (version, description, SQLite, PostgreSQL).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/sqlite/0001_foundation.sql"),
        include_str!("../../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "object references",
        include_str!("../../migrations/sqlite/0002_object_refs.sql"),
        include_str!("../../migrations/postgres/0002_object_refs.sql"),
    ),
];

fn migrator(dialect: Dialect) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sqlite, postgres)| {
            let sql = if dialect == Dialect::Sqlite { *sqlite } else { *postgres };
            Migration::new(*version, (*description).into(), MigrationType::Simple, sql.into_sql_str(), false)
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[async_trait]
impl Store for SqlStore {
    async fn commit(&self, mutation: Mutation) -> Result<Committed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes.send(writer::WriteRequest { mutation, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        objects::get(&self.shared.pool, key).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ObjectPage, StoreError> {
        objects::list(&self.shared.pool, query).await
    }

    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        identity::grants_of(&self.shared, user).await
    }

    async fn password_hash(&self, user: &str) -> Result<Option<String>, StoreError> {
        identity::password_hash(&self.shared.pool, user).await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        identity::session(&self.shared.pool, id_hash).await
    }

    async fn token_by_secret(&self, secret_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        identity::token_by_secret(&self.shared.pool, secret_hash).await
    }

    async fn tokens_of(&self, user: &str) -> Result<Vec<ApiToken>, StoreError> {
        identity::tokens_of(&self.shared.pool, user).await
    }

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleState>, StoreError> {
        identity::throttle(&self.shared.pool, key).await
    }

    async fn audit_query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        audit::query(&self.shared.pool, query).await
    }

    async fn audit_summary(&self, query: &AuditQuery, by: SummaryBy) -> Result<Vec<SummaryRow>, StoreError> {
        audit::summary(&self.shared.pool, query, by).await
    }

    async fn audit_verify(&self) -> Result<VerifyReport, StoreError> {
        audit::verify(&self.shared.pool).await
    }

    async fn audit_record(&self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        audit::record(&self.shared.pool, seq).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.shared.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_redacted() {
        assert_eq!(Dialect::of_url("sqlite:///tmp/a.db"), Some(Dialect::Sqlite));
        assert_eq!(Dialect::of_url("postgresql://x@h/db"), Some(Dialect::Postgres));
        assert_eq!(Dialect::of_url("mysql://x"), None);
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
