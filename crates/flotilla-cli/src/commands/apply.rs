//! `apply -f FILE...`: sends each file's documents to `POST /api/v1/apply` and prints one
//! line per document (`workspace/retail created`), or, for a failed one, where it is and
//! every field problem.

use std::path::PathBuf;

use flotilla_client::ClientError;
use serde_json::Value;

use crate::documents::read_sources;
use crate::error::CliError;
use crate::kinds::object_ref;
use crate::output::{emit, note};
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A YAML/JSON file, a directory (its *.yaml, *.yml, *.json files by name), or - for stdin
    #[arg(short = 'f', long = "filename", visible_alias = "file", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// One printed line: to stdout for successes, stderr for failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Done(String),
    Failed(String),
}

/// Formats an error under a headline: the first line follows it, the rest are indented.
pub fn error_lines(headline: &str, error: &CliError) -> String {
    let text = error.to_string();
    let mut lines = text.lines();
    let mut out = format!("{headline}: {}", lines.next().unwrap_or_default());
    for line in lines {
        out.push('\n');
        if !line.starts_with("  ") {
            out.push_str("  ");
        }
        out.push_str(line);
    }
    out
}

/// What the server's `{results, failed}` says, as lines; also the failed and total counts.
pub fn apply_report(label: &str, response: &Value) -> Result<(Vec<Line>, usize, usize), CliError> {
    let results = response
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| CliError::Protocol("the apply response has no results".into()))?;
    let mut lines = Vec::with_capacity(results.len());
    let mut failed = 0;
    for result in results {
        let field = |name: &str| result.get(name).and_then(Value::as_str);
        let reference = match (field("kind"), field("name")) {
            (Some(kind), Some(name)) => Some(object_ref(kind, field("project"), name)),
            _ => None,
        };
        let outcome = field("result").unwrap_or("failed");
        if outcome != "failed" {
            lines.push(Line::Done(format!("{} {outcome}", reference.unwrap_or_else(|| "(unnamed)".into()))));
            continue;
        }
        failed += 1;
        let document = result.get("document").and_then(Value::as_u64).map_or(0, |d| d + 1);
        let line = result.get("line").and_then(Value::as_u64).unwrap_or(0);
        let mut headline = format!("error: {label} line {line} (document {document})");
        if let Some(reference) = reference {
            headline.push(' ');
            headline.push_str(&reference);
        }
        let error = result.get("error").cloned().unwrap_or(Value::Null);
        let error = CliError::from(ClientError::Api {
            status: 0,
            code: error.get("code").and_then(Value::as_str).unwrap_or("Failed").to_string(),
            message: error.get("message").and_then(Value::as_str).unwrap_or("failed").to_string(),
            details: error.get("details").cloned().unwrap_or(Value::Null),
        });
        let error = match error {
            CliError::Server { message, .. } => CliError::Io(message),
            other => other,
        };
        lines.push(Line::Failed(error_lines(&headline, &error)));
    }
    Ok((lines, failed, results.len()))
}

pub async fn run(session: &Session, args: ApplyArgs) -> Result<(), CliError> {
    let sources = read_sources(&args.files)?;
    let (client, _) = session.client()?;
    let (mut failed, mut total) = (0, 0);
    for source in sources {
        if !source.has_content() {
            note(&format!("{}: no documents, skipped", source.label));
            continue;
        }
        match client.apply(source.text).await.map_err(CliError::from) {
            Ok(response) => {
                let (lines, file_failed, file_total) = apply_report(&source.label, &response)?;
                for line in lines {
                    match line {
                        Line::Done(text) => emit(&format!("{text}\n"))?,
                        Line::Failed(text) => note(&text),
                    }
                }
                failed += file_failed;
                total += file_total;
            }
            Err(error) if error.is_fatal_for_batch() => return Err(error),
            Err(error) => {
                note(&error_lines(&format!("error: {}", source.label), &error));
                failed += 1;
                total += 1;
            }
        }
    }
    if total == 0 {
        return Err(CliError::usage("no documents to apply in the given files"));
    }
    if failed > 0 {
        return Err(CliError::DocumentsFailed { failed, total });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_line_per_document_with_field_errors() {
        let response = json!({"failed": 3, "results": [
            {"document": 0, "line": 1, "kind": "Workspace", "name": "retail", "result": "created", "resourceVersion": "3"},
            {"document": 1, "line": 7, "kind": "Environment", "project": "shop", "name": "prod", "result": "configured", "resourceVersion": "9"},
            {"document": 2, "line": 15, "kind": "Cluster", "name": "local", "result": "unchanged"},
            {"document": 3, "line": 20, "kind": "Environment", "project": "shop", "name": "qa", "result": "failed",
             "error": {"code": "Invalid", "message": "invalid: 2 problems: …", "details": [
                {"path": "spec.tier", "message": "unknown variant `qa`"},
                {"path": "spec.clusters", "message": "must not be empty"}]}},
            {"document": 4, "line": 31, "result": "failed",
             "error": {"code": "Invalid", "message": "invalid: invalid YAML at line 33", "details": [{"path": "", "message": "invalid YAML at line 33, column 3"}]}},
            {"document": 5, "line": 40, "kind": "Cluster", "name": "prod-east", "result": "failed",
             "error": {"code": "Forbidden", "message": "user \"bob\" may not update Cluster objects"}},
            {"document": 6, "line": 50, "kind": "Workspace", "name": "hr", "result": "failed",
             "error": {"code": "Conflict", "message": "Workspace/hr is at version 5, not 4"}},
        ]});
        let (lines, failed, total) = apply_report("manifests/shop.yaml", &response).unwrap();
        assert_eq!((failed, total), (4, 7));
        assert_eq!(
            lines,
            vec![
                Line::Done("workspace/retail created".into()),
                Line::Done("environment/shop/prod configured".into()),
                Line::Done("cluster/local unchanged".into()),
                Line::Failed(
                    "error: manifests/shop.yaml line 20 (document 4) environment/shop/qa: invalid: 2 problems\n  - spec.tier: unknown variant `qa`\n  - spec.clusters: must not be empty"
                        .into()
                ),
                Line::Failed(
                    "error: manifests/shop.yaml line 31 (document 5): invalid: 1 problem\n  - (document): invalid YAML at line 33, column 3".into()
                ),
                Line::Failed(
                    "error: manifests/shop.yaml line 40 (document 6) cluster/prod-east: forbidden: user \"bob\" may not update Cluster objects".into()
                ),
                Line::Failed(
                    "error: manifests/shop.yaml line 50 (document 7) workspace/hr: Workspace/hr is at version 5, not 4\n  someone else changed it; get it again and reapply".into()
                ),
            ]
        );
        assert_eq!(CliError::DocumentsFailed { failed, total }.to_string(), "4 of 7 documents failed");
        assert!(apply_report("x", &json!({})).is_err());
    }

    #[test]
    fn internal_errors_show_the_message_only() {
        let response = json!({"results": [{"document": 0, "line": 1, "kind": "Workspace", "name": "a", "result": "failed",
            "error": {"code": "AuditWriteFailed", "message": "the audit record could not be written, so the change was not made"}}]});
        let (lines, _, _) = apply_report("-", &response).unwrap();
        assert_eq!(
            lines,
            vec![Line::Failed("error: - line 1 (document 1) workspace/a: the audit record could not be written, so the change was not made".into())]
        );
    }
}
