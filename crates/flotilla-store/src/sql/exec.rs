//! The seam between the SQL the store runs and the driver that runs it.
//!
//! The store's SQL is written once (`objects`, `audit`, `identity`, `writer`) against
//! [`Executor`] and [`SqlRow`]; two drivers implement them: `sqlite` (rusqlite, synchronous,
//! on the caller's or the writer's thread) and `postgres` (sqlx, asynchronous). Placeholders
//! are `$1`, `$2`, … in both: PostgreSQL numbers them, SQLite treats them as named parameters
//! that each driver binds by name.

use crate::StoreError;

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

impl From<&str> for Bind {
    fn from(value: &str) -> Self {
        Bind::Text(value.to_string())
    }
}

impl From<String> for Bind {
    fn from(value: String) -> Self {
        Bind::Text(value)
    }
}

impl From<Option<String>> for Bind {
    fn from(value: Option<String>) -> Self {
        Bind::OptText(value)
    }
}

impl From<i64> for Bind {
    fn from(value: i64) -> Self {
        Bind::Int(value)
    }
}

/// Builds SQL text with numbered placeholders and collects their values.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind>,
}

impl SqlBuilder {
    pub(crate) fn new(sql: &str) -> Self {
        Self { sql: sql.to_string(), binds: Vec::new() }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Bind>) -> &mut Self {
        self.binds.push(value.into());
        self.sql.push('$');
        self.sql.push_str(&self.binds.len().to_string());
        self
    }

    pub(crate) fn text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(value.into()))
    }

    pub(crate) fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }
}

/// One result row, read by column position (the positions of the `SELECT` list).
pub(crate) trait SqlRow {
    fn text(&self, column: usize) -> Result<String, StoreError>;
    fn opt_text(&self, column: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, column: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, column: usize) -> Result<Option<i64>, StoreError>;
}

/// Runs SQL on one connection (inside the writer's transaction, or a reader's).
pub(crate) trait Executor: Send {
    /// Runs a statement that returns no rows; the number of rows it changed.
    async fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<u64, StoreError>;

    /// Runs a query, handing each row to `visit` in order.
    async fn for_each_row<F>(&mut self, sql: &str, binds: &[Bind], visit: F) -> Result<(), StoreError>
    where
        F: FnMut(&dyn SqlRow) -> Result<(), StoreError> + Send;

    /// Runs a query and decodes every row.
    async fn fetch_all<T, F>(&mut self, sql: &str, binds: &[Bind], decode: F) -> Result<Vec<T>, StoreError>
    where
        T: Send,
        F: Fn(&dyn SqlRow) -> Result<T, StoreError> + Send + Sync,
    {
        let mut rows = Vec::new();
        self.for_each_row(sql, binds, |row| {
            rows.push(decode(row)?);
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// Runs a query expected to return at most one row and decodes it.
    async fn fetch_optional<T, F>(&mut self, sql: &str, binds: &[Bind], decode: F) -> Result<Option<T>, StoreError>
    where
        T: Send,
        F: Fn(&dyn SqlRow) -> Result<T, StoreError> + Send + Sync,
    {
        Ok(self.fetch_all(sql, binds, decode).await?.into_iter().next())
    }

    /// Rows changed on this connection so far, where the database tells (SQLite does): the
    /// writer then knows whether a failed mutation wrote anything before it failed, and can
    /// do without a savepoint per mutation.
    fn rows_changed(&self) -> Option<u64> {
        None
    }
}
