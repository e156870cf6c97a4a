//! The SQLite driver: rusqlite, called synchronously.
//!
//! SQLite runs in-process, so a statement is a function call of a few microseconds; handing
//! each one to another thread (as async drivers do) would cost more than running it. So:
//! - the writer is one dedicated thread that owns the write connection and commits batches
//!   (see [`super::writer`]);
//! - a point read runs on the calling thread, on a connection borrowed from [`Readers`];
//!   long reads (lists, audit queries, verification) go to tokio's blocking pool;
//! - a background thread checkpoints the write-ahead log, off the write path.
//!
//! The database is in WAL mode (readers never block the writer). A committed transaction
//! survives power loss, not only a process crash: no caller is answered before the log
//! holding its commit is synced. The writer's own connection does not sync at each commit
//! (`synchronous = NORMAL`, still crash-safe: a transaction is in the log whole or not at
//! all); a syncer thread calls `fdatasync` on the log for every batch, then answers its
//! callers, while the writer goes on with the next batch, timed to the syncer's pace
//! ([`log_sync`](super::log_sync)). The price: another connection may read a commit a few
//! hundred microseconds before it is durable (a power loss then takes back what it read,
//! never what a caller was told was written). Without a log file to sync (it cannot be
//! opened), every commit syncs itself (`synchronous = FULL`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::exec::{Bind, Executor, SqlRow};
use super::log_sync::Syncer;
use super::{MIGRATIONS, Shared, writer};
use crate::StoreError;

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// How to open the database file, from a `sqlite:` URL.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    path: PathBuf,
    flags: OpenFlags,
}

impl Location {
    /// `sqlite:///abs/path.db?mode=rwc`, `sqlite://rel.db`, `sqlite:rel.db`; `mode` is `ro`,
    /// `rw` (the file must exist) or `rwc` (created when missing, the default).
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Backend(format!("not a sqlite: URL: {url:?}")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" {
            return Err(StoreError::Backend(format!(
                "{url:?} names no database file; the store keeps its state in a file (sqlite:///path/flotilla.db)"
            )));
        }
        let base = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let mut flags = base | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        for parameter in query.split('&').filter(|p| !p.is_empty()) {
            match parameter.split_once('=') {
                Some(("mode", "ro")) => flags = base | OpenFlags::SQLITE_OPEN_READ_ONLY,
                Some(("mode", "rw")) => flags = base | OpenFlags::SQLITE_OPEN_READ_WRITE,
                Some(("mode", "rwc")) => {}
                _ => {
                    return Err(StoreError::Backend(format!(
                        "unsupported parameter {parameter:?} in {url:?}: only mode=ro|rw|rwc"
                    )));
                }
            }
        }
        Ok(Self { path: PathBuf::from(path), flags })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens one connection with the store's settings.
    fn open(&self) -> Result<Connection, StoreError> {
        let connection = Connection::open_with_flags(&self.path, self.flags)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", self.path.display())))?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.set_prepared_statement_cache_capacity(128);
        // The writer's savepoints keep their undo pages in a statement journal: in memory, not
        // in a temporary file written for every mutation.
        connection.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384;")?;
        if !self.flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
            // Checkpoints run in the background (`checkpoint_wal`), never inside a committing
            // transaction where they would stall the writer.
            connection.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA wal_autocheckpoint = 0;",
            )?;
        }
        Ok(connection)
    }
}

/// Brings the schema to the newest migration; the applied version is `PRAGMA user_version`.
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let mut applied: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if applied == 0 {
        applied = adopt_sqlx_migrations(connection)?;
    }
    for (version, description, sqlite, _) in MIGRATIONS {
        if *version <= applied {
            continue;
        }
        let transaction = connection.transaction()?;
        transaction
            .execute_batch(sqlite)
            .map_err(|e| StoreError::Backend(format!("migration {version} ({description}) failed: {e}")))?;
        transaction.pragma_update(None, "user_version", version)?;
        transaction.commit()?;
    }
    Ok(())
}

/// Databases created before the store moved to rusqlite recorded their migrations in sqlx's
/// table; their version is taken from there.
fn adopt_sqlx_migrations(connection: &Connection) -> Result<i64, StoreError> {
    let has_table: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    let version: Option<i64> =
        connection.query_row("SELECT MAX(version) FROM _sqlx_migrations WHERE success", [], |row| row.get(0))?;
    Ok(version.unwrap_or(0))
}

/// Read connections, opened on demand and kept for reuse.
pub(crate) struct Readers {
    location: Location,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Readers {
    /// Runs `read` on a connection of the pool.
    pub(crate) fn run<T>(
        &self,
        read: impl FnOnce(&mut SqliteExec<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|poison| poison.into_inner()).pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => self.location.open()?,
        };
        let result = read(&mut SqliteExec { connection: &mut connection });
        let mut idle = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
        if idle.len() < self.max_idle {
            idle.push(connection);
        }
        result
    }
}

/// The name of the thread that writes every transaction (Linux keeps 15 bytes of a thread's
/// name: the store's threads are `sqlite-writer`, `sqlite-sync` and `sqlite-ckpt`).
pub const WRITER_THREAD: &str = "sqlite-writer";

/// Everything the SQLite store runs on.
pub(crate) struct Sqlite {
    pub(crate) readers: Arc<Readers>,
    pub(crate) location: Location,
}

/// Opens (creating and migrating as needed) the database, starts the writer thread and the
/// checkpointer; the writer ends when every sender of `writes` is dropped.
pub(crate) fn start(
    url: &str,
    shared: Arc<Shared>,
    max_batch: usize,
    max_readers: usize,
) -> Result<(Sqlite, mpsc::Sender<writer::WriteRequest>), StoreError> {
    let location = Location::parse(url)?;
    let mut connection = location.open()?;
    migrate(&mut connection)?;
    let readers = Arc::new(Readers { location: location.clone(), idle: Mutex::new(Vec::new()), max_idle: max_readers });
    let (writes, mut queue) = mpsc::channel::<writer::WriteRequest>(max_batch * 4);
    let syncer = start_syncer(&location, &connection)?;
    std::thread::Builder::new()
        .name(WRITER_THREAD.into())
        .spawn(move || {
            let mut batch = writer::Batch::with_capacity(max_batch);
            let mut last_checkpoint = Instant::now();
            while let Some(first) = queue.blocking_recv() {
                batch.fill(first, &mut queue, max_batch);
                if let Some(syncer) = &syncer {
                    syncer.pace.wait_for_commit_time();
                    batch.top_up(&mut queue, max_batch);
                }
                let started = Instant::now();
                let mut exec = SqliteExec { connection: &mut connection };
                let outcome = futures::executor::block_on(writer::commit_batch(&shared, &mut exec, &batch.mutations));
                match &syncer {
                    Some(syncer) => syncer.hand_over(batch.settle(outcome), started.elapsed()),
                    None => batch.finish(outcome),
                }
                let since = last_checkpoint.elapsed();
                if (since >= WRITER_CHECKPOINT_IDLE && queue.is_empty()) || since >= WRITER_CHECKPOINT_BUSY {
                    finish_checkpoint(&connection);
                    last_checkpoint = Instant::now();
                }
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer thread: {e}")))?;
    let checkpointer = location.open()?;
    let alive = Arc::downgrade(&readers);
    std::thread::Builder::new()
        .name("sqlite-ckpt".into())
        .spawn(move || checkpoint_wal(checkpointer, alive))
        .map_err(|e| StoreError::Backend(format!("cannot start the SQLite checkpoint thread: {e}")))?;
    Ok((Sqlite { readers, location }, writes))
}

/// Starts the thread that makes the writer's commits durable and answers their callers (see
/// [`super::log_sync`]); `None`, with the writer syncing each commit itself, when the log file
/// cannot be opened.
fn start_syncer(location: &Location, writer: &Connection) -> Result<Option<Syncer>, StoreError> {
    let mut path = location.path().as_os_str().to_owned();
    path.push("-wal");
    let log = match std::fs::File::open(&path) {
        Ok(log) => log,
        Err(error) => {
            tracing::warn!(path = ?path, %error, "cannot open the write-ahead log; every commit syncs itself");
            return Ok(None);
        }
    };
    writer.execute_batch("PRAGMA synchronous = NORMAL;")?;
    Syncer::start(move || log.sync_data()).map(Some)
}

/// How often the writer, when it has nothing queued, completes the background checkpoint.
const WRITER_CHECKPOINT_IDLE: Duration = Duration::from_secs(1);
/// How often it does so even when writes keep coming.
const WRITER_CHECKPOINT_BUSY: Duration = Duration::from_secs(10);

/// Completes the checkpoint on the writer's own connection, between batches.
///
/// The background checkpointer copies the bulk of the log while writes go on, so it never
/// catches up with the last frames; and SQLite only starts the log over from its beginning
/// when a write finds it entirely copied. Without this the log grows for as long as writes
/// continue, and every commit appends to a growing file, whose `fsync` then has to commit
/// file-system metadata too (and waits behind whatever else the file system is flushing).
/// Here no write can land in between, so the next write restarts the log: commits overwrite
/// blocks the file already has.
fn finish_checkpoint(connection: &Connection) {
    let started = Instant::now();
    match connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1)) {
        Ok(frames) if started.elapsed() >= SLOW_CHECKPOINT => {
            tracing::warn!(frames, elapsed = ?started.elapsed(), "slow WAL checkpoint in the writer")
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "WAL checkpoint in the writer failed; will retry"),
    }
}

/// A checkpoint taking this long is logged: its writes and fsync compete with the writer's.
const SLOW_CHECKPOINT: Duration = Duration::from_millis(50);

/// How often the background checkpointer runs. Often, so that each checkpoint's writes and
/// `fsync` of the database file are small: a large flush delays the writer's own `fsync` of
/// the log behind it on the disk.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Copies the write-ahead log into the database file, off the write path (PASSIVE: never
/// waits for, nor blocks, readers and the writer). Ends with the store.
fn checkpoint_wal(connection: Connection, alive: Weak<Readers>) {
    loop {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if alive.strong_count() == 0 {
            return;
        }
        let started = Instant::now();
        match connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(2)) {
            Ok(pages) if started.elapsed() >= SLOW_CHECKPOINT => {
                tracing::warn!(pages, elapsed = ?started.elapsed(), "slow WAL checkpoint")
            }
            Ok(pages) => tracing::debug!(pages, elapsed = ?started.elapsed(), "WAL checkpoint"),
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; will retry"),
        }
    }
}

/// [`Executor`] on one rusqlite connection. Its futures are ready at once: the work is done
/// when they are first polled, on the polling thread.
pub(crate) struct SqliteExec<'c> {
    connection: &'c mut Connection,
}

/// `$1` to `$32`: the placeholder names binds go to, not built again for every bind.
static PLACEHOLDERS: LazyLock<Vec<String>> = LazyLock::new(|| (1..=32).map(|n| format!("${n}")).collect());

impl SqliteExec<'_> {
    fn prepare(&self, sql: &str, binds: &[Bind]) -> Result<rusqlite::CachedStatement<'_>, StoreError> {
        let mut statement = self.connection.prepare_cached(sql)?;
        for (index, bind) in binds.iter().enumerate() {
            let built;
            let name = match PLACEHOLDERS.get(index) {
                Some(name) => name.as_str(),
                None => {
                    built = format!("${}", index + 1);
                    built.as_str()
                }
            };
            match bind {
                Bind::Text(text) => statement.raw_bind_parameter(name, text)?,
                Bind::OptText(text) => statement.raw_bind_parameter(name, text)?,
                Bind::Int(int) => statement.raw_bind_parameter(name, int)?,
            }
        }
        Ok(statement)
    }
}

impl SqlRow for rusqlite::Row<'_> {
    fn text(&self, column: usize) -> Result<String, StoreError> {
        match self.get_ref(column)? {
            ValueRef::Text(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
            other => Err(type_error(column, "text", other)),
        }
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, StoreError> {
        match self.get_ref(column)? {
            ValueRef::Null => Ok(None),
            _ => self.text(column).map(Some),
        }
    }

    fn int(&self, column: usize) -> Result<i64, StoreError> {
        match self.get_ref(column)? {
            ValueRef::Integer(int) => Ok(int),
            other => Err(type_error(column, "integer", other)),
        }
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        match self.get_ref(column)? {
            ValueRef::Null => Ok(None),
            _ => self.int(column).map(Some),
        }
    }
}

fn type_error(column: usize, expected: &str, found: ValueRef<'_>) -> StoreError {
    StoreError::Backend(format!("column {column}: expected {expected}, found {:?}", found.data_type()))
}

impl Executor for SqliteExec<'_> {
    fn rows_changed(&self) -> Option<u64> {
        Some(self.connection.total_changes())
    }

    async fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<u64, StoreError> {
        Ok(self.prepare(sql, binds)?.raw_execute()? as u64)
    }

    async fn for_each_row<F>(&mut self, sql: &str, binds: &[Bind], mut visit: F) -> Result<(), StoreError>
    where
        F: FnMut(&dyn SqlRow) -> Result<(), StoreError> + Send,
    {
        let mut statement = self.prepare(sql, binds)?;
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next()? {
            visit(row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn urls_name_a_file_and_an_open_mode() {
        let location = Location::parse("sqlite:///var/lib/flotilla/flotilla.db?mode=rwc").unwrap();
        assert_eq!(location.path(), Path::new("/var/lib/flotilla/flotilla.db"));
        assert!(location.flags.contains(OpenFlags::SQLITE_OPEN_CREATE));
        let location = Location::parse("sqlite:rel.db?mode=rw").unwrap();
        assert_eq!(location.path(), Path::new("rel.db"));
        assert!(!location.flags.contains(OpenFlags::SQLITE_OPEN_CREATE));
        assert!(Location::parse("sqlite:a.db?mode=ro").unwrap().flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY));
        let error = Location::parse("sqlite::memory:").unwrap_err().to_string();
        assert!(error.contains("names no database file"), "{error}");
        let error = Location::parse("sqlite:a.db?cache=shared").unwrap_err().to_string();
        assert!(error.contains("cache=shared"), "{error}");
    }

    #[test]
    fn registry_usage_is_counted_from_the_links_already_there() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut connection = Connection::open(dir.path().join("old.db")).unwrap();
        for (version, _, sqlite, _) in &MIGRATIONS[..4] {
            connection.execute_batch(sqlite).unwrap();
            connection.pragma_update(None, "user_version", version).unwrap();
        }
        connection
            .execute_batch(
                "INSERT INTO registry_blobs VALUES ('sha256:a', 100, 0), ('sha256:b', 20, 0), ('sha256:c', 3, 0); \
                 INSERT INTO registry_links VALUES ('shop/web', 'sha256:a', 'shop'), ('shop/api', 'sha256:a', 'shop'), \
                 ('shop/api', 'sha256:b', 'shop'), ('lab/x', 'sha256:a', 'lab'), ('lab/x', 'sha256:c', 'lab');",
            )
            .unwrap();
        migrate(&mut connection).unwrap();
        let usage = |project: &str| -> i64 {
            connection
                .query_row("SELECT bytes FROM registry_project_usage WHERE project = ?1", [project], |row| row.get(0))
                .unwrap()
        };
        assert_eq!((usage("shop"), usage("lab")), (120, 103), "each blob once per project");
    }

    #[test]
    fn a_database_migrated_by_sqlx_is_adopted_not_migrated_again() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut connection = Connection::open(dir.path().join("old.db")).unwrap();
        connection.execute_batch(MIGRATIONS[0].2).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, success BOOLEAN NOT NULL); \
                 INSERT INTO _sqlx_migrations VALUES (1, TRUE);",
            )
            .unwrap();
        migrate(&mut connection).unwrap();
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.last().unwrap().0);
        let refs: i64 = connection
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'object_refs'", [], |row| row.get(0))
            .unwrap();
        assert_eq!(refs, 1, "migration 2 ran on top of the adopted version 1");
        migrate(&mut connection).expect("migrating again is a no-op");
    }
}
