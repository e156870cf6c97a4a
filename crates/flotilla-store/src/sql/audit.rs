//! The audit log in SQL: appending to the chain, queries, the summary report, verification.

use flotilla_core::audit::{AuditRecord, ChainVerifier, VerifyReport};
use futures::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

use super::objects::SqlBuilder;
use crate::StoreError;
use crate::types::{AuditPage, AuditQuery, DEFAULT_PAGE, MAX_AUDIT_PAGE, SummaryBy, SummaryRow};

const COLUMNS: &str = "seq, id, time_micros, user_name, auth, source_ip, user_agent, request_id, action, kind, project, name, outcome, message, operation_id, before_json, after_json, changes_json, prev_hash, hash";

/// The chain head being advanced by the writer.
pub(crate) struct ChainHead<'a> {
    pub(crate) seq: &'a mut u64,
    pub(crate) hash: &'a mut String,
}

/// Seals `record` onto the chain and inserts it; advances the head only on success.
pub(crate) async fn append(
    connection: &mut AnyConnection,
    head: &mut ChainHead<'_>,
    mut record: AuditRecord,
) -> Result<(), StoreError> {
    record.seal(*head.seq + 1, head.hash);
    sqlx::query(
        "INSERT INTO audit_records (seq, id, time_micros, user_name, auth, source_ip, user_agent, request_id, action, kind, project, name, outcome, message, operation_id, before_json, after_json, changes_json, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(record.seq as i64)
    .bind(record.id)
    .bind(record.time_micros)
    .bind(record.user)
    .bind(record.auth)
    .bind(record.source_ip)
    .bind(record.user_agent)
    .bind(record.request_id)
    .bind(record.action)
    .bind(record.kind)
    .bind(record.project)
    .bind(record.name)
    .bind(record.outcome)
    .bind(record.message)
    .bind(record.operation_id)
    .bind(record.before)
    .bind(record.after)
    .bind(record.changes)
    .bind(record.prev_hash)
    .bind(record.hash.clone())
    .execute(&mut *connection)
    .await?;
    *head.seq += 1;
    *head.hash = record.hash;
    Ok(())
}

fn record_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: row.try_get::<i64, _>("seq")? as u64,
        id: row.try_get("id")?,
        time_micros: row.try_get("time_micros")?,
        user: row.try_get("user_name")?,
        auth: row.try_get("auth")?,
        source_ip: row.try_get("source_ip")?,
        user_agent: row.try_get("user_agent")?,
        request_id: row.try_get("request_id")?,
        action: row.try_get("action")?,
        kind: row.try_get("kind")?,
        project: row.try_get("project")?,
        name: row.try_get("name")?,
        outcome: row.try_get("outcome")?,
        message: row.try_get("message")?,
        operation_id: row.try_get("operation_id")?,
        before: row.try_get("before_json")?,
        after: row.try_get("after_json")?,
        changes: row.try_get("changes_json")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn filters(builder: &mut SqlBuilder, query: &AuditQuery) {
    let text_filters = [
        ("user_name", &query.user),
        ("action", &query.action),
        ("kind", &query.kind),
        ("name", &query.name),
        ("project", &query.project),
        ("outcome", &query.outcome),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            builder.push(&format!(" AND {column} = ")).text(value.as_str());
        }
    }
    if let Some(since) = query.since_micros {
        builder.push(" AND time_micros >= ").int(since);
    }
    if let Some(until) = query.until_micros {
        builder.push(" AND time_micros < ").int(until);
    }
}

pub(crate) async fn query(pool: &AnyPool, query: &AuditQuery) -> Result<AuditPage, StoreError> {
    let limit = match query.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_AUDIT_PAGE),
    };
    let mut builder = SqlBuilder::new(&format!("SELECT {COLUMNS} FROM audit_records WHERE 1 = 1"));
    filters(&mut builder, query);
    if let Some(cursor) = query.cursor {
        builder.push(if query.newest_first { " AND seq < " } else { " AND seq > " }).int(cursor as i64);
    }
    builder.push(if query.newest_first { " ORDER BY seq DESC LIMIT " } else { " ORDER BY seq ASC LIMIT " });
    builder.int(i64::from(limit) + 1);
    let rows = builder.query().fetch_all(pool).await?;
    let more = rows.len() > limit as usize;
    let records = rows.iter().take(limit as usize).map(record_from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if more { records.last().map(|r| r.seq) } else { None };
    Ok(AuditPage { records, next_cursor })
}

pub(crate) async fn summary(pool: &AnyPool, query: &AuditQuery, by: SummaryBy) -> Result<Vec<SummaryRow>, StoreError> {
    let key = match by {
        SummaryBy::User => "user_name",
        SummaryBy::Action => "action",
        SummaryBy::Day => "CAST(time_micros / 86400000000 AS TEXT)",
    };
    let mut builder = SqlBuilder::new(&format!(
        "SELECT {key} AS summary_key, COUNT(*) AS total, \
         SUM(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) AS denied, \
         SUM(CASE WHEN outcome IN ('error', 'invalid', 'conflict', 'not-found') THEN 1 ELSE 0 END) AS failed \
         FROM audit_records WHERE 1 = 1"
    ));
    filters(&mut builder, query);
    builder.push(&format!(" GROUP BY {key} ORDER BY {key}"));
    let rows = builder.query().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let mut key: String = row.try_get("summary_key")?;
            if by == SummaryBy::Day
                && let Some(day) = key.parse::<i64>().ok().and_then(|d| jiff::Timestamp::from_second(d * 86_400).ok())
            {
                key = day.strftime("%Y-%m-%d").to_string();
            }
            Ok(SummaryRow {
                key,
                count: row.try_get::<i64, _>("total")? as u64,
                denied: row.try_get::<Option<i64>, _>("denied")?.unwrap_or_default() as u64,
                failed: row.try_get::<Option<i64>, _>("failed")?.unwrap_or_default() as u64,
            })
        })
        .collect()
}

pub(crate) async fn record(pool: &AnyPool, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM audit_records WHERE seq = $1")))
        .bind(seq as i64)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(record_from_row).transpose()
}

/// Reads the head first, then every record up to it in order: records appended meanwhile
/// are not part of this verification and cannot be mistaken for tampering.
pub(crate) async fn verify(pool: &AnyPool) -> Result<VerifyReport, StoreError> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(pool).await?;
    let head_seq = head.try_get::<i64, _>("seq")?;
    let head_hash: String = head.try_get("hash")?;
    let mut verifier = ChainVerifier::default();
    let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE seq <= $1 ORDER BY seq");
    let mut rows = sqlx::query(AssertSqlSafe(sql)).bind(head_seq).fetch(pool);
    while let Some(row) = rows.try_next().await? {
        verifier.feed(&record_from_row(&row)?);
    }
    Ok(verifier.finish(head_seq as u64, &head_hash))
}
