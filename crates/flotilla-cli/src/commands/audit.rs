//! `audit query`, `audit export`, `audit summary` and `audit verify` (the last in
//! [`super::verify`]): the audit log, for admins and auditors.

use std::io::Write as _;
use std::path::PathBuf;

use flotilla_client::Client;
use serde_json::Value;

use super::server_kinds;
use crate::error::CliError;
use crate::kinds::object_ref;
use crate::output::{ReportFormat, Table, emit, note, short_time, structured, truncate};
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Audit records, newest first
    Query(QueryArgs),
    /// Matching audit records as CSV, oldest first, streamed to a file or stdout
    Export(ExportArgs),
    /// Counts of records (and of denied and failed ones) by user, action or day
    Summary(SummaryArgs),
    /// Verify the audit hash chain, through the server or directly on a database
    Verify(super::verify::VerifyArgs),
}

/// Filters shared by query, export and summary.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuditFilters {
    /// Only this user's records
    #[arg(long)]
    pub user: Option<String>,
    /// Only this action (create, update, delete, apply, login, token.create, …)
    #[arg(long)]
    pub action: Option<String>,
    /// Only records about this kind (names and aliases as in `get`)
    #[arg(long)]
    pub kind: Option<String>,
    /// Only records about objects of this name
    #[arg(long)]
    pub name: Option<String>,
    /// Only records about objects in this project
    #[arg(long)]
    pub project: Option<String>,
    /// Only this outcome
    #[arg(long, value_parser = ["success", "unchanged", "denied", "invalid", "conflict", "not-found", "error"])]
    pub outcome: Option<String>,
    /// From this time: RFC 3339 (2026-11-24T10:00:00Z) or an age (30m, 24h, 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Until this time: RFC 3339 or an age
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

impl AuditFilters {
    /// Query parameters, with the kind as given (see [`resolved_params`]).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        [
            ("user", &self.user),
            ("action", &self.action),
            ("kind", &self.kind),
            ("name", &self.name),
            ("project", &self.project),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
        .collect()
    }
}

/// The parameters with `--kind` turned into the server's kind name (`ws` → `Workspace`).
async fn resolved_params(client: &Client, filters: &AuditFilters) -> Result<Vec<(&'static str, String)>, CliError> {
    let mut params = filters.params();
    if let Some(input) = &filters.kind {
        let kinds = server_kinds(client).await?;
        match crate::kinds::resolve(&kinds, input) {
            Ok(kind) => {
                for param in params.iter_mut().filter(|(key, _)| *key == "kind") {
                    param.1 = kind.kind.clone();
                }
            }
            Err(_) => note(&format!("note: the server knows no kind {input:?}; filtering on it as written")),
        }
    }
    Ok(params)
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub filters: AuditFilters,
    /// Number of records [default: 100]
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Continue from this `nextCursor` (shown when there are more records)
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<u64>,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filters: AuditFilters,
    /// Write the CSV to this file [default: stdout]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Grouping of `audit summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SummaryBy {
    #[default]
    User,
    Action,
    Day,
}

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Group by
    #[arg(long, value_enum, default_value_t)]
    pub by: SummaryBy,
    #[command(flatten)]
    pub filters: AuditFilters,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

/// The changed paths of a record, comma-joined and cut to a column's width.
fn changes_text(record: &Value) -> String {
    // A change of the whole object (path "") is a creation or a deletion.
    let paths: Vec<&str> = record
        .get("changes")
        .and_then(Value::as_array)
        .map(|changes| {
            changes
                .iter()
                .filter_map(|c| match c.get("path").and_then(Value::as_str)? {
                    "" if c.get("before").is_none_or(Value::is_null) => Some("(created)"),
                    "" if c.get("after").is_none_or(Value::is_null) => Some("(deleted)"),
                    "" => Some("(replaced)"),
                    path => Some(path),
                })
                .collect()
        })
        .unwrap_or_default();
    truncate(&paths.join(","), 48)
}

/// The table of `audit query`.
pub fn records_table(records: &[Value]) -> Table {
    let mut table = Table::new(["SEQ", "TIME", "USER", "SOURCE", "ACTION", "TARGET", "OUTCOME", "CHANGES"]);
    for record in records {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        let target = match (field("kind"), field("name")) {
            (Some(kind), Some(name)) => object_ref(kind, field("project"), name),
            (Some(kind), None) => kind.to_ascii_lowercase(),
            (None, Some(name)) => name.to_string(),
            (None, None) => String::new(),
        };
        table.row([
            record.get("seq").map(|s| s.to_string()).unwrap_or_default(),
            short_time(field("time").unwrap_or_default()),
            field("user").unwrap_or_default().to_string(),
            field("sourceIp").unwrap_or_default().to_string(),
            field("action").unwrap_or_default().to_string(),
            target,
            field("outcome").unwrap_or_default().to_string(),
            changes_text(record),
        ]);
    }
    table
}

/// The table of `audit summary`.
pub fn summary_table(summary: &Value) -> Table {
    let mut table = Table::new(["KEY", "COUNT", "DENIED", "FAILED"]);
    for row in summary.get("rows").and_then(Value::as_array).into_iter().flatten() {
        let number = |name: &str| row.get(name).and_then(Value::as_u64).unwrap_or(0).to_string();
        table.row([
            row.get("key").and_then(Value::as_str).unwrap_or_default().to_string(),
            number("count"),
            number("denied"),
            number("failed"),
        ]);
    }
    table
}

async fn query(client: &Client, args: QueryArgs) -> Result<(), CliError> {
    let mut params = resolved_params(client, &args.filters).await?;
    if let Some(limit) = args.limit {
        params.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = args.cursor {
        params.push(("cursor", cursor.to_string()));
    }
    let page = client.audit_query(&params).await?;
    if let Some(text) = structured(args.output, &page)? {
        return emit(&text);
    }
    let records = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if records.is_empty() {
        note("No matching audit records.");
    } else {
        emit(&records_table(&records).render())?;
    }
    if let Some(cursor) = page.get("nextCursor").and_then(Value::as_u64) {
        note(&format!("(older records: add --cursor {cursor})"));
    }
    Ok(())
}

async fn export(client: &Client, args: ExportArgs) -> Result<(), CliError> {
    let params = resolved_params(client, &args.filters).await?;
    let mut response = client.audit_export(&params).await?;
    let stream_error = |e: &dyn std::fmt::Display| CliError::Io(format!("the export stopped: {e}"));
    match &args.out {
        Some(path) => {
            // A temp file beside the target, renamed at the end: no half-written export.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let mut file = tempfile::Builder::new()
                .prefix(".flotilla-audit.")
                .tempfile_in(dir)
                .map_err(|e| CliError::Io(format!("cannot write in {}: {e}", dir.display())))?;
            let mut bytes = 0usize;
            while let Some(chunk) = response.chunk().await.map_err(|e| stream_error(&e))? {
                file.write_all(&chunk).map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
                bytes += chunk.len();
            }
            file.as_file().sync_all().map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
            file.persist(path).map_err(|e| CliError::Io(format!("cannot write {}: {}", path.display(), e.error)))?;
            note(&format!("exported the audit records to {} ({bytes} bytes)", path.display()));
            Ok(())
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = response.chunk().await.map_err(|e| stream_error(&e))? {
                match stdout.write_all(&chunk) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(CliError::Io(format!("cannot write to standard output: {e}"))),
                }
            }
            match stdout.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(CliError::Io(format!("cannot write to standard output: {e}")))
                }
                _ => Ok(()),
            }
        }
    }
}

async fn summary(client: &Client, args: SummaryArgs) -> Result<(), CliError> {
    let mut params = resolved_params(client, &args.filters).await?;
    let by = match args.by {
        SummaryBy::User => "user",
        SummaryBy::Action => "action",
        SummaryBy::Day => "day",
    };
    params.push(("by", by.to_string()));
    let summary = client.audit_summary(&params).await?;
    if let Some(text) = structured(args.output, &summary)? {
        return emit(&text);
    }
    let table = summary_table(&summary);
    if table.is_empty() {
        note("No matching audit records.");
        return Ok(());
    }
    emit(&table.render())
}

pub async fn run(session: &Session, command: AuditCommand) -> Result<(), CliError> {
    let client = || session.client().map(|(client, _)| client);
    match command {
        AuditCommand::Query(args) => query(&client()?, args).await,
        AuditCommand::Export(args) => export(&client()?, args).await,
        AuditCommand::Summary(args) => summary(&client()?, args).await,
        AuditCommand::Verify(args) => super::verify::run(session, args).await,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_become_query_parameters() {
        let filters = AuditFilters { user: Some("alice".into()), since: Some("24h".into()), ..AuditFilters::default() };
        assert_eq!(filters.params(), vec![("user", "alice".to_string()), ("since", "24h".to_string())]);
    }

    #[test]
    fn records_and_summaries_as_tables() {
        let records = vec![
            json!({"seq": 42, "time": "2026-01-02T03:04:05.123Z", "user": "alice", "sourceIp": "127.0.0.1", "action": "apply",
                   "kind": "Environment", "project": "shop", "name": "prod", "outcome": "success",
                   "changes": [{"path": "spec.tier", "before": "test", "after": "prod"}, {"path": "spec.clusters[0]"}]}),
            json!({"seq": 41, "time": "2026-01-02T03:00:00Z", "user": "bob", "sourceIp": "10.1.2.3", "action": "login",
                   "kind": null, "name": null, "outcome": "denied", "changes": null}),
        ];
        assert_eq!(
            records_table(&records).render(),
            "SEQ   TIME                   USER    SOURCE      ACTION   TARGET                  OUTCOME   CHANGES\n\
             42    2026-01-02T03:04:05Z   alice   127.0.0.1   apply    environment/shop/prod   success   spec.tier,spec.clusters[0]\n\
             41    2026-01-02T03:00:00Z   bob     10.1.2.3    login                            denied\n"
        );
        assert_eq!(changes_text(&json!({"changes": [{"path": "", "after": {"kind": "Workspace"}}]})), "(created)");
        assert_eq!(
            changes_text(&json!({"changes": [{"path": "", "before": {"kind": "Workspace"}, "after": null}]})),
            "(deleted)"
        );
        let long = json!({"changes": (0..20).map(|i| json!({"path": format!("spec.field{i}")})).collect::<Vec<_>>()});
        assert_eq!(changes_text(&long).chars().count(), 48);
        assert!(changes_text(&long).ends_with('…'));
        let summary = json!({"by": "user", "rows": [{"key": "alice", "count": 10, "denied": 1, "failed": 2}, {"key": "bob", "count": 3, "denied": 0, "failed": 0}]});
        assert_eq!(
            summary_table(&summary).render(),
            "KEY     COUNT   DENIED   FAILED\nalice   10      1        2\nbob     3       0        0\n"
        );
    }
}
