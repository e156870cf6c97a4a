//! `describe KIND NAME`: the object as YAML, then its ten most recent audit records when the
//! caller may read the audit log.

use serde_json::Value;

use super::{project_for, resolve_kind};
use crate::error::CliError;
use crate::output::{Table, emit, note, short_time, to_yaml};
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// Kind: `workspace`, `workspaces`, `Workspace`, or an alias (ws, env, rb, proj)
    pub kind: String,
    /// Name of the object
    pub name: String,
    /// Project (required for project-scoped kinds)
    #[arg(short, long)]
    pub project: Option<String>,
}

/// How many audit records `describe` shows.
const HISTORY: u32 = 10;

/// The history section of `describe`.
pub fn history_text(records: &[Value]) -> String {
    if records.is_empty() {
        return "\nHistory: no audit records\n".to_string();
    }
    let mut table = Table::new(["TIME", "USER", "ACTION", "OUTCOME"]);
    for record in records {
        let field = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        table.row([short_time(&field("time")), field("user"), field("action"), field("outcome")]);
    }
    let plural = if records.len() == 1 { "" } else { "s" };
    let mut text = format!("\nHistory (latest {} audit record{plural}):\n", records.len());
    for line in table.render().lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

pub async fn run(session: &Session, args: DescribeArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let kind = resolve_kind(&client, &args.kind).await?;
    let project = project_for(&kind, args.project.as_deref(), &args.name)?;
    let object = client.get(&kind.plural, project, &args.name).await?;
    emit(&to_yaml(&object)?)?;
    let mut params = vec![("kind", kind.kind.clone()), ("name", args.name.clone()), ("limit", HISTORY.to_string())];
    if let Some(project) = project {
        params.push(("project", project.to_string()));
    }
    match client.audit_query(&params).await.map_err(CliError::from) {
        Ok(page) => {
            let records = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            emit(&history_text(&records))
        }
        // Only admins and auditors read the audit log; others just see the object.
        Err(error) if error.is_forbidden() => Ok(()),
        Err(error) => {
            note(&format!("(audit history unavailable: {error})"));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn history_is_a_short_table() {
        let records = vec![
            json!({"time": "2026-01-02T03:04:05.678Z", "user": "alice", "action": "apply", "outcome": "success"}),
            json!({"time": "2026-01-01T00:00:00Z", "user": "admin", "action": "create", "outcome": "success"}),
        ];
        assert_eq!(
            history_text(&records),
            "\nHistory (latest 2 audit records):\n  TIME                   USER    ACTION   OUTCOME\n  2026-01-02T03:04:05Z   alice   apply    success\n  2026-01-01T00:00:00Z   admin   create   success\n"
        );
        assert_eq!(history_text(&[]), "\nHistory: no audit records\n");
    }
}
