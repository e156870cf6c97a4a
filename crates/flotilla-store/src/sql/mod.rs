//! The SQL implementation of [`crate::Store`], on SQLite (rusqlite, the embedded default) or
//! PostgreSQL (sqlx, shared by several replicas). The SQL is written once against
//! [`exec::Executor`]; the few differences between the databases are in [`Dialect`].
//!
//! Writes go through one writer per process ([`writer`]), which commits queued mutations in
//! batches (group commit): one transaction and one fsync for many mutations, each inside its
//! own savepoint so that one refused mutation does not affect the others.

mod audit;
mod exec;
mod identity;
mod log_sync;
mod objects;
mod postgres;
mod registry;
mod sqlite;
mod writer;

pub use sqlite::WRITER_THREAD;

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::audit::{AuditRecord, VerifyReport};
use flotilla_core::kinds::KindRegistry;
use flotilla_core::rbac::Grant;
use flotilla_core::{Object, ObjectKey};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::registry::{
    BlobRecord, ImageUser, ManifestRecord, RegistryReads, RepositoryQuery, RepositoryRecord, TagRecord,
};
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
    /// The key (32 bytes) secret fields are encrypted with at rest ([`crate::seal`]); `None`
    /// stores them as written.
    pub master_key: Option<Vec<u8>>,
}

impl SqlStoreOptions {
    pub fn new(url: impl Into<String>, audit_key: Vec<u8>) -> Self {
        Self { url: url.into(), max_connections: 16, audit_key, max_batch: 512, master_key: None }
    }

    /// These options, with secret fields encrypted at rest under `master_key`.
    pub fn with_master_key(mut self, master_key: Vec<u8>) -> Self {
        self.master_key = Some(master_key);
        self
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

/// What the writer needs, shared with the read side.
pub(crate) struct Shared {
    pub(crate) dialect: Dialect,
    pub(crate) kinds: Arc<KindRegistry>,
    pub(crate) audit_key: Vec<u8>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sealer: Option<crate::seal::Sealer>,
}

impl Shared {
    /// `object` with its secret fields opened (as stored when no key is set).
    pub(crate) fn open(&self, object: Object) -> Result<Object, StoreError> {
        match (&self.sealer, self.kinds.lookup(&object.kind)) {
            (Some(sealer), Some(info)) if !info.secret_paths.is_empty() => sealer.open_object(info, object),
            _ => Ok(object),
        }
    }

    /// `object` with its secret fields sealed, for writing.
    pub(crate) fn seal(&self, object: &Object) -> Result<Object, StoreError> {
        match (&self.sealer, self.kinds.lookup(&object.kind)) {
            (Some(sealer), Some(info)) if !info.secret_paths.is_empty() => sealer.seal_object(info, object.clone()),
            _ => Ok(object.clone()),
        }
    }
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(PgPool),
}

/// [`Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    shared: Arc<Shared>,
    backend: Backend,
    writes: mpsc::Sender<writer::WriteRequest>,
}

/// Runs a read. On SQLite it runs on the calling thread (a point read takes microseconds);
/// on PostgreSQL it awaits a pooled connection.
macro_rules! read {
    ($store:expr, |$exec:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite(sqlite) => sqlite.readers.run(|$exec| futures::executor::block_on($body)),
            Backend::Postgres(pool) => {
                let mut connection = pool.acquire().await?;
                let $exec = &mut postgres::PgExec { connection: &mut connection };
                $body.await
            }
        }
    };
}

/// Runs a read that may take long (a whole list or the audit chain). On SQLite it moves to
/// tokio's blocking pool so that it does not hold up the async workers; `$owned` are cloned
/// into it.
macro_rules! long_read {
    ($store:expr, [$($owned:ident),*], |$exec:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite(sqlite) => {
                let readers = sqlite.readers.clone();
                $(let $owned = $owned.clone();)*
                tokio::task::spawn_blocking(move || {
                    $(let $owned = &$owned;)*
                    readers.run(|$exec| futures::executor::block_on($body))
                })
                .await
                .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
            }
            Backend::Postgres(pool) => {
                let mut connection = pool.acquire().await?;
                let $exec = &mut postgres::PgExec { connection: &mut connection };
                $body.await
            }
        }
    };
}

impl SqlStore {
    /// Opens the database, runs migrations, and starts the writer.
    pub async fn connect(
        options: SqlStoreOptions,
        kinds: Arc<KindRegistry>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let dialect = Dialect::of_url(&options.url).ok_or_else(|| {
            StoreError::Backend(format!(
                "unsupported database URL {:?}: use sqlite:///path or postgres://…",
                redact_url(&options.url)
            ))
        })?;
        let sealer = options.master_key.as_deref().map(crate::seal::Sealer::new).transpose()?;
        let shared = Arc::new(Shared { dialect, kinds, audit_key: options.audit_key, clock, sealer });
        let (backend, writes) = match dialect {
            Dialect::Sqlite => {
                let (url, shared, max_batch) = (options.url.clone(), shared.clone(), options.max_batch);
                let max_readers = options.max_connections as usize;
                let (sqlite, writes) =
                    tokio::task::spawn_blocking(move || sqlite::start(&url, shared, max_batch, max_readers))
                        .await
                        .map_err(|e| StoreError::Backend(format!("opening the database failed: {e}")))??;
                (Backend::Sqlite(sqlite), writes)
            }
            Dialect::Postgres => {
                let (pool, writes) =
                    postgres::start(&options.url, shared.clone(), options.max_batch, options.max_connections).await?;
                (Backend::Postgres(pool), writes)
            }
        };
        Ok(Self { shared, backend, writes })
    }

    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// The SQLite database file, when the store is on SQLite.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.backend {
            Backend::Sqlite(sqlite) => Some(sqlite.location.path()),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs one statement under the store, bypassing it: for tests that tamper with what the
    /// store wrote. Returns the number of rows changed.
    #[cfg(any(test, feature = "testsuite"))]
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64, StoreError> {
        use exec::Executor;
        read!(self, |exec| exec.execute(sql, &[]))
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
    (
        3,
        "registry index",
        include_str!("../../migrations/sqlite/0003_registry.sql"),
        include_str!("../../migrations/postgres/0003_registry.sql"),
    ),
    (
        4,
        "object images",
        include_str!("../../migrations/sqlite/0004_object_images.sql"),
        include_str!("../../migrations/postgres/0004_object_images.sql"),
    ),
    (
        5,
        "registry usage per project",
        include_str!("../../migrations/sqlite/0005_registry_usage.sql"),
        include_str!("../../migrations/postgres/0005_registry_usage.sql"),
    ),
];

#[async_trait]
impl Store for SqlStore {
    async fn commit(&self, mutation: Mutation) -> Result<Committed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes.send(writer::WriteRequest { mutation, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        let found: Option<Object> = read!(self, |exec| objects::get(exec, key))?;
        found.map(|object| self.shared.open(object)).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<ObjectPage, StoreError> {
        let mut page: ObjectPage = long_read!(self, [query], |exec| objects::list(exec, query))?;
        page.items = page.items.into_iter().map(|object| self.shared.open(object)).collect::<Result<_, _>>()?;
        Ok(page)
    }

    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        let dialect = self.shared.dialect;
        read!(self, |exec| identity::grants_of(exec, dialect, user))
    }

    async fn password_hash(&self, user: &str) -> Result<Option<String>, StoreError> {
        read!(self, |exec| identity::password_hash(exec, user))
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        read!(self, |exec| identity::session(exec, id_hash))
    }

    async fn token_by_secret(&self, secret_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        read!(self, |exec| identity::token_by_secret(exec, secret_hash))
    }

    async fn tokens_of(&self, user: &str) -> Result<Vec<ApiToken>, StoreError> {
        read!(self, |exec| identity::tokens_of(exec, user))
    }

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleState>, StoreError> {
        read!(self, |exec| identity::throttle(exec, key))
    }

    async fn audit_query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        long_read!(self, [query], |exec| audit::query(exec, query))
    }

    async fn audit_summary(&self, query: &AuditQuery, by: SummaryBy) -> Result<Vec<SummaryRow>, StoreError> {
        long_read!(self, [query], |exec| audit::summary(exec, query, by))
    }

    async fn audit_verify(&self) -> Result<VerifyReport, StoreError> {
        long_read!(self, [], |exec| audit::verify(exec))
    }

    async fn audit_record(&self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        read!(self, |exec| audit::record(exec, seq))
    }

    fn registry(&self) -> &dyn RegistryReads {
        self
    }

    async fn ping(&self) -> Result<(), StoreError> {
        use exec::Executor;
        read!(self, |exec| exec.fetch_optional("SELECT 1", &[], |row| row.int(0))).map(|_| ())
    }
}

#[async_trait]
impl RegistryReads for SqlStore {
    async fn linked_blob(&self, repository: &str, digest: &str) -> Result<Option<u64>, StoreError> {
        read!(self, |exec| registry::linked_blob(exec, repository, digest))
    }

    async fn blob(&self, digest: &str) -> Result<Option<BlobRecord>, StoreError> {
        read!(self, |exec| registry::blob(exec, digest))
    }

    async fn manifest(&self, repository: &str, digest: &str) -> Result<Option<ManifestRecord>, StoreError> {
        read!(self, |exec| registry::manifest(exec, repository, digest))
    }

    async fn tag(&self, repository: &str, tag: &str) -> Result<Option<TagRecord>, StoreError> {
        read!(self, |exec| registry::tag(exec, repository, tag))
    }

    async fn tagged_manifest(&self, repository: &str, tag: &str) -> Result<Option<ManifestRecord>, StoreError> {
        read!(self, |exec| registry::tagged_manifest(exec, repository, tag))
    }

    async fn tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Vec<TagRecord>, StoreError> {
        read!(self, |exec| registry::tags(exec, repository, after, limit))
    }

    async fn tags_of(&self, repository: &str, digest: &str) -> Result<Vec<TagRecord>, StoreError> {
        read!(self, |exec| registry::tags_of(exec, repository, digest))
    }

    async fn manifests(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        read!(self, |exec| registry::manifests(exec, repository, after, limit))
    }

    async fn repository(&self, name: &str) -> Result<Option<RepositoryRecord>, StoreError> {
        read!(self, |exec| registry::repository(exec, name))
    }

    async fn repositories(&self, query: &RepositoryQuery) -> Result<Vec<RepositoryRecord>, StoreError> {
        read!(self, |exec| registry::repositories(exec, query))
    }

    async fn referrers(&self, repository: &str, subject: &str) -> Result<Vec<ManifestRecord>, StoreError> {
        read!(self, |exec| registry::referrers(exec, repository, subject))
    }

    async fn referenced_by_index(&self, repository: &str, digest: &str) -> Result<bool, StoreError> {
        read!(self, |exec| registry::referenced_by_index(exec, repository, digest))
    }

    async fn image_users(&self, repositories: &[String], limit: u32) -> Result<Vec<ImageUser>, StoreError> {
        read!(self, |exec| objects::image_users(exec, repositories, i64::from(limit)))
    }

    async fn usage(&self, project: &str) -> Result<u64, StoreError> {
        read!(self, |exec| registry::usage(exec, project))
    }

    async fn unreferenced_blobs(&self, linked_before_micros: i64, limit: u32) -> Result<Vec<String>, StoreError> {
        long_read!(self, [], |exec| registry::unreferenced_blobs(exec, linked_before_micros, limit))
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
