//! `audit verify`: walks the audit hash chain through the server, or, with `--data-dir` or
//! `--database-url`, directly on a database, which is how an operator checks a database the
//! server is not serving (a backup, a stopped server's data directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotilla_core::audit::VerifyReport;
use flotilla_core::kinds::KindRegistry;
use flotilla_store::Store as _;
use flotilla_store::sql::{SqlStore, SqlStoreOptions, SystemClock, redact_url};

use crate::error::CliError;
use crate::output::{ReportFormat, emit, structured};
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Verify the database in this data directory (its flotilla.db), without the server
    #[arg(long, value_name = "DIR", conflicts_with = "database_url")]
    pub data_dir: Option<PathBuf>,
    /// Verify this database (sqlite:///path/flotilla.db or postgres://…), without the server
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

/// The text of a report, and the error to return when the chain is broken.
pub fn report_text(report: &VerifyReport) -> (String, Option<CliError>) {
    if report.is_intact() {
        return (format!("audit chain intact: {} records (last seq {})\n", report.records, report.last_seq), None);
    }
    let mut text = String::new();
    for problem in &report.problems {
        text.push_str(&format!("seq {}: {}\n", problem.seq, problem.problem));
    }
    if report.truncated {
        text.push_str("(more problems were found than are listed)\n");
    }
    (text, Some(CliError::ChainBroken { problems: report.problems.len() }))
}

/// The file of a SQLite URL (`sqlite:///p/flotilla.db?mode=rwc` → `/p/flotilla.db`).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn must_exist(file: &Path, hint: &str) -> Result<(), CliError> {
    if file.is_file() { Ok(()) } else { Err(CliError::usage(format!("no database at {}{hint}", file.display()))) }
}

async fn offline(url: String) -> Result<VerifyReport, CliError> {
    let store = SqlStore::connect(
        SqlStoreOptions::new(url.clone(), vec![]),
        Arc::new(KindRegistry::builtin()),
        Arc::new(SystemClock),
    )
    .await
    .map_err(|e| CliError::Store(format!("cannot open the database {}: {e}", redact_url(&url))))?;
    store
        .audit_verify()
        .await
        .map_err(|e| CliError::Store(format!("cannot verify the audit chain in {}: {e}", redact_url(&url))))
}

pub async fn run(session: &Session, args: VerifyArgs) -> Result<(), CliError> {
    let report = match (&args.data_dir, &args.database_url) {
        (Some(dir), _) => {
            let file = dir.join("flotilla.db");
            must_exist(&file, ": is --data-dir the server's data directory?")?;
            offline(flotilla_config::sqlite_url(&file)).await?
        }
        (None, Some(url)) => {
            if let Some(file) = sqlite_file(url) {
                must_exist(&file, "")?;
            }
            offline(url.clone()).await?
        }
        (None, None) => {
            let (client, _) = session.client()?;
            let value = client.audit_verify().await?;
            serde_json::from_value(value).map_err(|e| CliError::Protocol(format!("verify report: {e}")))?
        }
    };
    if let Some(text) = structured(args.output, &report)? {
        emit(&text)?;
        return if report.is_intact() {
            Ok(())
        } else {
            Err(CliError::ChainBroken { problems: report.problems.len() })
        };
    }
    let (text, error) = report_text(&report);
    emit(&text)?;
    error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use flotilla_core::audit::ChainProblem;

    use super::*;

    #[test]
    fn reports_read_clearly() {
        let intact = VerifyReport { records: 12, last_seq: 12, problems: vec![], truncated: false };
        let (text, error) = report_text(&intact);
        assert_eq!(text, "audit chain intact: 12 records (last seq 12)\n");
        assert!(error.is_none());
        let broken = VerifyReport {
            records: 12,
            last_seq: 12,
            problems: vec![
                ChainProblem { seq: 4, problem: "hash mismatch".into() },
                ChainProblem { seq: 9, problem: "sequence gap".into() },
            ],
            truncated: true,
        };
        let (text, error) = report_text(&broken);
        assert_eq!(text, "seq 4: hash mismatch\nseq 9: sequence gap\n(more problems were found than are listed)\n");
        let error = error.unwrap();
        assert_eq!(error.to_string(), "audit chain broken: 2 problems");
        assert_eq!(error.exit_code(), 1);
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/f/flotilla.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/f/flotilla.db"))
        );
        assert_eq!(sqlite_file("sqlite:rel.db"), Some(PathBuf::from("rel.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u:p@h/db"), None);
        assert_eq!(
            sqlite_file(&flotilla_config::sqlite_url(Path::new("/d/flotilla.db"))),
            Some(PathBuf::from("/d/flotilla.db"))
        );
    }

    #[tokio::test]
    async fn offline_verification_of_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let missing = run(
            &Session::new(crate::GlobalArgs::default(), dir.path().join("config.yaml")),
            VerifyArgs { data_dir: Some(dir.path().to_path_buf()), database_url: None, output: ReportFormat::Table },
        )
        .await
        .unwrap_err();
        assert_eq!(missing.exit_code(), 2);
        // A database the store created is intact (and empty).
        let url = flotilla_config::sqlite_url(&dir.path().join("flotilla.db"));
        let store = SqlStore::connect(
            SqlStoreOptions::new(url.clone(), vec![]),
            Arc::new(KindRegistry::builtin()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        drop(store);
        let report = offline(url).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
    }
}
