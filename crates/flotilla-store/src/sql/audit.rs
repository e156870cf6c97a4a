//! The audit log in SQL: appending to the chain, queries, the summary report, verification.

use flotilla_core::audit::{AuditRecord, ChainVerifier, VerifyReport};

use super::exec::{Bind, Executor, SqlBuilder, SqlRow};
use crate::StoreError;
use crate::types::{AuditPage, AuditQuery, DEFAULT_PAGE, MAX_AUDIT_PAGE, SummaryBy, SummaryRow};

/// The columns of an audit row, in the positions [`record_from_row`] reads.
const COLUMNS: &str = "seq, id, time_micros, user_name, auth, source_ip, user_agent, request_id, action, kind, project, name, outcome, message, operation_id, before_json, after_json, changes_json, prev_hash, hash";

/// The chain head being advanced by the writer.
pub(crate) struct ChainHead<'a> {
    pub(crate) seq: &'a mut u64,
    pub(crate) hash: &'a mut String,
}

/// Seals `record` onto the chain and inserts it; advances the head only on success.
pub(crate) async fn append<E: Executor>(
    exec: &mut E,
    head: &mut ChainHead<'_>,
    mut record: AuditRecord,
) -> Result<(), StoreError> {
    record.seal(*head.seq + 1, head.hash);
    let hash = record.hash.clone();
    let binds = [
        Bind::Int(record.seq as i64),
        record.id.into(),
        Bind::Int(record.time_micros),
        record.user.into(),
        record.auth.into(),
        record.source_ip.into(),
        record.user_agent.into(),
        record.request_id.into(),
        record.action.into(),
        record.kind.into(),
        record.project.into(),
        record.name.into(),
        record.outcome.into(),
        record.message.into(),
        record.operation_id.into(),
        record.before.into(),
        record.after.into(),
        record.changes.into(),
        record.prev_hash.into(),
        record.hash.into(),
    ];
    exec.execute(
        "INSERT INTO audit_records (seq, id, time_micros, user_name, auth, source_ip, user_agent, request_id, action, kind, project, name, outcome, message, operation_id, before_json, after_json, changes_json, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        &binds,
    )
    .await?;
    *head.seq += 1;
    *head.hash = hash;
    Ok(())
}

fn record_from_row(row: &dyn SqlRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: row.int(0)? as u64,
        id: row.text(1)?,
        time_micros: row.int(2)?,
        user: row.text(3)?,
        auth: row.text(4)?,
        source_ip: row.text(5)?,
        user_agent: row.text(6)?,
        request_id: row.text(7)?,
        action: row.text(8)?,
        kind: row.opt_text(9)?,
        project: row.opt_text(10)?,
        name: row.opt_text(11)?,
        outcome: row.text(12)?,
        message: row.opt_text(13)?,
        operation_id: row.opt_text(14)?,
        before: row.opt_text(15)?,
        after: row.opt_text(16)?,
        changes: row.opt_text(17)?,
        prev_hash: row.text(18)?,
        hash: row.text(19)?,
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

pub(crate) async fn query<E: Executor>(exec: &mut E, query: &AuditQuery) -> Result<AuditPage, StoreError> {
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
    let mut records = exec.fetch_all(&builder.sql, &builder.binds, record_from_row).await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = if more { records.last().map(|r| r.seq) } else { None };
    Ok(AuditPage { records, next_cursor })
}

pub(crate) async fn summary<E: Executor>(
    exec: &mut E,
    query: &AuditQuery,
    by: SummaryBy,
) -> Result<Vec<SummaryRow>, StoreError> {
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
    exec.fetch_all(&builder.sql, &builder.binds, |row| {
        let mut key = row.text(0)?;
        if by == SummaryBy::Day
            && let Some(day) = key.parse::<i64>().ok().and_then(|d| jiff::Timestamp::from_second(d * 86_400).ok())
        {
            key = day.strftime("%Y-%m-%d").to_string();
        }
        Ok(SummaryRow {
            key,
            count: row.int(1)? as u64,
            denied: row.opt_int(2)?.unwrap_or_default() as u64,
            failed: row.opt_int(3)?.unwrap_or_default() as u64,
        })
    })
    .await
}

pub(crate) async fn record<E: Executor>(exec: &mut E, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE seq = $1");
    exec.fetch_optional(&sql, &[Bind::Int(seq as i64)], record_from_row).await
}

/// Reads the head first, then every record up to it in order: records appended meanwhile
/// are not part of this verification and cannot be mistaken for tampering.
pub(crate) async fn verify<E: Executor>(exec: &mut E) -> Result<VerifyReport, StoreError> {
    let (head_seq, head_hash) = exec
        .fetch_optional("SELECT seq, hash FROM audit_head WHERE id = 1", &[], |row| Ok((row.int(0)?, row.text(1)?)))
        .await?
        .ok_or_else(|| StoreError::Backend("the audit chain head row is missing".into()))?;
    let mut verifier = ChainVerifier::default();
    let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE seq <= $1 ORDER BY seq");
    exec.for_each_row(&sql, &[Bind::Int(head_seq)], |row| {
        verifier.feed(&record_from_row(row)?);
        Ok(())
    })
    .await?;
    Ok(verifier.finish(head_seq as u64, &head_hash))
}
