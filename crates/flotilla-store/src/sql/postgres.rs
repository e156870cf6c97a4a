//! The PostgreSQL driver: sqlx, asynchronous. Several control-plane replicas share one
//! database; each runs a writer task, and the audit chain head row (locked `FOR UPDATE`)
//! orders their batches into one chain.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgArguments, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Row, SqlSafeStr};
use tokio::sync::mpsc;

use super::exec::{Bind, Executor, SqlRow};
use super::{MIGRATIONS, Shared, redact_url, writer};
use crate::StoreError;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// Connects, migrates, and starts the writer task; the task ends when every sender of the
/// returned channel is dropped.
pub(crate) async fn start(
    url: &str,
    shared: Arc<Shared>,
    max_batch: usize,
    max_connections: u32,
) -> Result<(PgPool, mpsc::Sender<writer::WriteRequest>), StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", redact_url(url))))?;
    migrator().run(&pool).await.map_err(|e| StoreError::Backend(format!("migrations failed: {e}")))?;
    let (writes, mut queue) = mpsc::channel::<writer::WriteRequest>(max_batch * 4);
    let writer_pool = pool.clone();
    tokio::spawn(async move {
        let mut batch = writer::Batch::with_capacity(max_batch);
        while let Some(first) = queue.recv().await {
            batch.fill(first, &mut queue, max_batch);
            let result = match writer_pool.acquire().await {
                Ok(mut connection) => {
                    writer::commit_batch(&shared, &mut PgExec { connection: &mut connection }, &batch.mutations).await
                }
                Err(error) => Err(error.into()),
            };
            batch.finish(result);
        }
    });
    Ok((pool, writes))
}

fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, _, postgres)| {
            Migration::new(*version, (*description).into(), MigrationType::Simple, postgres.into_sql_str(), false)
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// [`Executor`] on one PostgreSQL connection.
pub(crate) struct PgExec<'c> {
    pub(crate) connection: &'c mut PgConnection,
}

fn query<'q>(sql: &str, binds: &[Bind]) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_string()));
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text.clone()),
            Bind::OptText(text) => query.bind(text.clone()),
            Bind::Int(int) => query.bind(*int),
        };
    }
    query
}

impl SqlRow for PgRow {
    fn text(&self, column: usize) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    /// BIGINT, or INTEGER widened (an expression such as `SELECT 1` is INTEGER).
    fn int(&self, column: usize) -> Result<i64, StoreError> {
        match self.try_get::<i64, _>(column) {
            Ok(int) => Ok(int),
            Err(error) => self.try_get::<i32, _>(column).map(i64::from).map_err(|_| error.into()),
        }
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        match self.try_get::<Option<i64>, _>(column) {
            Ok(int) => Ok(int),
            Err(error) => self.try_get::<Option<i32>, _>(column).map(|i| i.map(i64::from)).map_err(|_| error.into()),
        }
    }
}

impl Executor for PgExec<'_> {
    async fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<u64, StoreError> {
        Ok(query(sql, binds).execute(&mut *self.connection).await?.rows_affected())
    }

    async fn for_each_row<F>(&mut self, sql: &str, binds: &[Bind], mut visit: F) -> Result<(), StoreError>
    where
        F: FnMut(&dyn SqlRow) -> Result<(), StoreError> + Send,
    {
        let mut rows = query(sql, binds).fetch(&mut *self.connection);
        while let Some(row) = rows.try_next().await? {
            visit(&row)?;
        }
        Ok(())
    }
}
