//! The audit log over HTTP: query, one record, CSV export, summary report, chain
//! verification. Readable by platform admins and auditors only.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flotilla_core::audit::{AuditRecord, VerifyReport};
use flotilla_store::{AuditQuery, StoreError, SummaryBy, SummaryRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Filters shared by query, export and summary.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditParams {
    pub user: Option<String>,
    pub action: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub project: Option<String>,
    /// `success`, `unchanged`, `denied`, `invalid`, `conflict`, `not-found`, `error`.
    pub outcome: Option<String>,
    /// RFC 3339 time, or an age such as `30m`, `24h`, `7d`.
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<u64>,
    /// Summary grouping: `user`, `action` or `day`.
    pub by: Option<String>,
}

fn require_audit_reader(caller: &Caller) -> Result<(), ApiError> {
    if caller.principal.can_read_audit() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "user {:?} may not read the audit log (needs admin or auditor)",
            caller.user()
        )))
    }
}

/// Parses `2026-11-24T10:00:00Z` or an age (`90s`, `30m`, `24h`, `7d`) before `now`.
pub fn parse_time(field: &str, text: &str, now: jiff::Timestamp) -> Result<i64, ApiError> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp.as_microsecond());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds > 0 && n >= 0 => Ok(now.as_microsecond() - n * seconds * 1_000_000),
        _ => Err(ApiError::bad_field(
            field,
            format!("{text:?} is neither an RFC 3339 time nor an age like 30m, 24h, 7d"),
        )),
    }
}

fn to_query(params: &AuditParams, now: jiff::Timestamp, newest_first: bool) -> Result<AuditQuery, ApiError> {
    if let Some(outcome) = &params.outcome
        && flotilla_core::audit::Outcome::parse(outcome).is_none()
    {
        return Err(ApiError::bad_field("outcome", format!("{outcome:?} is not a known outcome")));
    }
    Ok(AuditQuery {
        user: params.user.clone(),
        action: params.action.clone(),
        kind: params.kind.clone(),
        name: params.name.clone(),
        project: params.project.clone(),
        outcome: params.outcome.clone(),
        since_micros: params.since.as_deref().map(|t| parse_time("since", t, now)).transpose()?,
        until_micros: params.until.as_deref().map(|t| parse_time("until", t, now)).transpose()?,
        newest_first,
        limit: params.limit.unwrap_or(100),
        cursor: params.cursor,
    })
}

fn time_text(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

/// A record as the API shows it: JSON fields parsed, time in RFC 3339.
pub fn record_view(record: &AuditRecord) -> Value {
    let parse = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    json!({
        "seq": record.seq,
        "id": record.id,
        "time": time_text(record.time_micros),
        "user": record.user,
        "auth": record.auth,
        "sourceIp": record.source_ip,
        "userAgent": record.user_agent,
        "requestId": record.request_id,
        "action": record.action,
        "kind": record.kind,
        "project": record.project,
        "name": record.name,
        "outcome": record.outcome,
        "message": record.message,
        "operationId": record.operation_id,
        "before": parse(&record.before),
        "after": parse(&record.after),
        "changes": parse(&record.changes),
        "hash": record.hash,
    })
}

/// `GET /api/v1/audit`: newest first, paged by cursor.
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    require_audit_reader(&caller)?;
    let query = to_query(&params, state.clock.now(), true)?;
    let page = state.store.audit_query(&query).await?;
    let items: Vec<Value> = page.records.iter().map(record_view).collect();
    Ok(Json(json!({ "items": items, "nextCursor": page.next_cursor })))
}

/// `GET /api/v1/audit/records/{seq}`
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    Path(seq): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    require_audit_reader(&caller)?;
    let record = state
        .store
        .audit_record(seq)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("audit record {seq} not found")))?;
    Ok(Json(record_view(&record)))
}

const CSV_HEADER: &str =
    "seq,time,user,auth,source_ip,user_agent,request_id,action,kind,project,name,outcome,message,changes,hash\n";

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// One CSV line of a record.
pub fn csv_line(record: &AuditRecord) -> String {
    let fields = [
        record.seq.to_string(),
        time_text(record.time_micros),
        record.user.clone(),
        record.auth.clone(),
        record.source_ip.clone(),
        record.user_agent.clone(),
        record.request_id.clone(),
        record.action.clone(),
        record.kind.clone().unwrap_or_default(),
        record.project.clone().unwrap_or_default(),
        record.name.clone().unwrap_or_default(),
        record.outcome.clone(),
        record.message.clone().unwrap_or_default(),
        record.changes.clone().unwrap_or_default(),
        record.hash.clone(),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// `GET /api/v1/audit/export`: every matching record, oldest first, as CSV, streamed page by
/// page so that memory stays flat however long the log is.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<Response, ApiError> {
    require_audit_reader(&caller)?;
    let mut query = to_query(&params, state.clock.now(), false)?;
    query.limit = 1000;
    let store = state.store.clone();
    let pages = futures::stream::unfold(Some((query, true)), move |cursor| {
        let store = store.clone();
        async move {
            let (query, first) = cursor?;
            let page = match store.audit_query(&query).await {
                Ok(page) => page,
                Err(error) => return Some((Err::<String, StoreError>(error), None)),
            };
            let mut chunk = if first { CSV_HEADER.to_string() } else { String::new() };
            page.records.iter().for_each(|r| chunk.push_str(&csv_line(r)));
            let next = page.next_cursor.map(|cursor| (AuditQuery { cursor: Some(cursor), ..query }, false));
            Some((Ok(chunk), next))
        }
    });
    let mut response = Body::from_stream(pages).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_static("attachment; filename=\"flotilla-audit.csv\""),
    );
    Ok(response)
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub by: SummaryBy,
    pub rows: Vec<SummaryRow>,
}

/// `GET /api/v1/audit/summary?by=user|action|day`
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<Json<Summary>, ApiError> {
    require_audit_reader(&caller)?;
    let by = match params.by.as_deref() {
        None | Some("user") => SummaryBy::User,
        Some("action") => SummaryBy::Action,
        Some("day") => SummaryBy::Day,
        Some(other) => return Err(ApiError::bad_field("by", format!("{other:?} is not one of user, action, day"))),
    };
    let query = to_query(&params, state.clock.now(), true)?;
    let rows = state.store.audit_summary(&query, by).await?;
    Ok(Json(Summary { by, rows }))
}

/// `GET /api/v1/audit/verify`: walks the hash chain.
pub async fn verify(State(state): State<AppState>, caller: Caller) -> Result<Json<VerifyReport>, ApiError> {
    require_audit_reader(&caller)?;
    Ok(Json(state.store.audit_verify().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        assert_eq!(parse_time("since", "24h", now).unwrap(), (1_000_000 - 86_400) * 1_000_000);
        assert_eq!(parse_time("since", "1970-01-01T00:00:10Z", now).unwrap(), 10_000_000);
        assert!(parse_time("since", "yesterday", now).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
