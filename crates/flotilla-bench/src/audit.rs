//! The audit scenarios, run on the stopped server's data directory: filling the chain up to
//! N records through the real write path (the store's group-committing writer, in process:
//! HTTP at a few thousand writes/s would take minutes for a million), timing
//! `flotilla audit verify --data-dir` (a subprocess, as an operator runs it), and the floor:
//! SHA-256 over the same number of bytes, record by record, in process.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_core::audit::{Actor, Outcome};
use flotilla_core::kinds::KindRegistry;
use flotilla_store::sql::{SqlStore, SqlStoreOptions, SystemClock};
use flotilla_store::{AuditNote, Change, Mutation, Store};
use sha2::{Digest, Sha256};

/// Every record's hash also covers its fields' length prefixes (8 bytes each, 19 fields) and
/// the two integers `seq` and `time_micros` (8 bytes each).
const FIXED_HASHED_BYTES: u64 = 19 * 8 + 2 * 8;

/// Figures of filling the chain.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Records that were already there (written over HTTP by the other scenarios).
    pub existing: u64,
    pub generated: u64,
    pub elapsed: Duration,
    /// Records in the chain afterwards.
    pub records: u64,
    /// Bytes the chain's hashes cover, all records together.
    pub hashed_bytes: u64,
}

impl Generated {
    pub fn rate(&self) -> f64 {
        self.generated as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn open(data_dir: &Path) -> anyhow::Result<SqlStore> {
    let url = flotilla_config::sqlite_url(&data_dir.join("flotilla.db"));
    let key = std::fs::read_to_string(data_dir.join("audit.key")).context("cannot read the audit key")?;
    let options = SqlStoreOptions::new(url, key.trim().as_bytes().to_vec());
    Ok(SqlStore::connect(options, Arc::new(KindRegistry::builtin()), Arc::new(SystemClock)).await?)
}

/// Commits audit-only mutations from `committers` concurrent tasks until the chain holds
/// `target` records.
pub async fn fill_chain(data_dir: &Path, target: u64, committers: usize) -> anyhow::Result<Generated> {
    let store = Arc::new(open(data_dir).await?);
    let existing = head_seq(data_dir)?;
    let to_generate = target.saturating_sub(existing);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(committers);
    for _ in 0..committers {
        let store = store.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to_generate {
                    return anyhow::Ok(());
                }
                let mutation = Mutation {
                    actor: Actor {
                        user: "admin".into(),
                        auth: "token".into(),
                        source_ip: "127.0.0.1".into(),
                        user_agent: "flotilla-bench".into(),
                        request_id: format!("bench-{i:08}"),
                    },
                    change: Change::Record(AuditNote {
                        action: "bench".into(),
                        outcome: Some(Outcome::Success),
                        message: Some(format!("benchmark record {i} of {to_generate}")),
                        ..Default::default()
                    }),
                };
                store.commit(mutation).await.with_context(|| format!("audit record {i}"))?;
                if (i + 1).is_multiple_of((to_generate / 10).max(1)) {
                    eprintln!(
                        "  audit records: {} of {to_generate} ({:.0}/s)",
                        i + 1,
                        (i + 1) as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    drop(store);
    let (records, content) = chain_size(data_dir)?;
    Ok(Generated {
        existing,
        generated: to_generate,
        elapsed,
        records,
        hashed_bytes: content + records * FIXED_HASHED_BYTES,
    })
}

/// A read-only connection to the store's database, beside the store.
fn read_only(data_dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let path = data_dir.join("flotilla.db");
    rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))
}

fn head_seq(data_dir: &Path) -> anyhow::Result<u64> {
    let seq: i64 = read_only(data_dir)?.query_row("SELECT seq FROM audit_head WHERE id = 1", [], |row| row.get(0))?;
    Ok(seq as u64)
}

/// Number of records and the bytes of their text fields (what the hash reads besides the
/// fixed part).
fn chain_size(data_dir: &Path) -> anyhow::Result<(u64, u64)> {
    let columns = [
        "id",
        "user_name",
        "auth",
        "source_ip",
        "user_agent",
        "request_id",
        "action",
        "kind",
        "project",
        "name",
        "outcome",
        "message",
        "operation_id",
        "before_json",
        "after_json",
        "changes_json",
        "prev_hash",
    ];
    let sum = columns.iter().map(|c| format!("COALESCE(LENGTH(CAST({c} AS BLOB)), 0)")).collect::<Vec<_>>().join(" + ");
    let sql = format!("SELECT COUNT(*), COALESCE(SUM({sum}), 0) FROM audit_records");
    let (records, bytes): (i64, i64) =
        read_only(data_dir)?.query_row(&sql, [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok((records as u64, bytes as u64))
}

/// What `flotilla audit verify` said and how long it took.
#[derive(Debug, Clone)]
pub struct Verified {
    pub elapsed: Duration,
    pub output: String,
    pub intact: bool,
    /// `flotilla audit verify --data-dir` (true) or `Store::audit_verify` in process (false).
    pub offline_cli: bool,
}

/// Runs `flotilla audit verify --data-dir DIR` and times it, start to exit. Falls back to
/// the store's `audit_verify` in process when the CLI has no `--data-dir`.
pub async fn verify(flotilla: &Path, data_dir: &Path) -> anyhow::Result<Verified> {
    let help = tokio::process::Command::new(flotilla).args(["audit", "verify", "--help"]).output().await?;
    if String::from_utf8_lossy(&help.stdout).contains("--data-dir") {
        let started = Instant::now();
        let mut command = tokio::process::Command::new(flotilla);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FLOTILLA_") {
                command.env_remove(name);
            }
        }
        let output = command
            .args(["audit", "verify", "--data-dir"])
            .arg(data_dir)
            .output()
            .await
            .context("cannot run flotilla audit verify")?;
        let elapsed = started.elapsed();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if !output.status.success() && !text.contains("audit chain") {
            bail!("flotilla audit verify failed ({}): {text}", output.status);
        }
        return Ok(Verified {
            elapsed,
            intact: output.status.success() && text.contains("intact"),
            output: text.trim().to_string(),
            offline_cli: true,
        });
    }
    let store = open(data_dir).await?;
    let started = Instant::now();
    let report = store.audit_verify().await?;
    let elapsed = started.elapsed();
    Ok(Verified {
        elapsed,
        intact: report.is_intact(),
        output: format!("{} records, last seq {}, {} problems", report.records, report.last_seq, report.problems.len()),
        offline_cli: false,
    })
}

/// A peer of verification without its hashing: the same rows (every column, in `seq`
/// order) read on one read-only connection with the driver the store uses (rusqlite), each
/// column copied out as the store copies it, then dropped.
pub async fn read_rows(data_dir: &Path) -> anyhow::Result<(Duration, u64)> {
    let data_dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let connection = read_only(&data_dir)?;
        let started = Instant::now();
        let mut statement = connection.prepare("SELECT * FROM audit_records ORDER BY seq")?;
        let columns = statement.column_count();
        let mut rows = statement.query([])?;
        let mut count = 0u64;
        while let Some(row) = rows.next()? {
            for column in 0..columns {
                let value: rusqlite::types::Value = row.get(column)?;
                std::hint::black_box(value);
            }
            count += 1;
        }
        anyhow::Ok((started.elapsed(), count))
    })
    .await
    .context("reading the audit rows")?
}

/// The floor: `records` SHA-256 digests (hex-encoded, as the chain stores them) over
/// `hashed_bytes / records` bytes each, on one core, in process.
pub async fn sha256_floor(records: u64, hashed_bytes: u64) -> anyhow::Result<Duration> {
    if records == 0 {
        return Ok(Duration::ZERO);
    }
    let per_record = (hashed_bytes / records) as usize;
    tokio::task::spawn_blocking(move || {
        // The previous record's hex hash is part of what each hash covers: chain it in.
        let content: Vec<u8> = (0..per_record.saturating_sub(64)).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let mut previous = String::new();
        for _ in 0..records {
            let mut hasher = Sha256::new();
            hasher.update(&content);
            hasher.update(previous.as_bytes());
            previous = hex::encode(hasher.finalize());
        }
        let elapsed = started.elapsed();
        // Keep the result observable so the loop cannot be optimised away.
        std::hint::black_box(previous);
        elapsed
    })
    .await
    .context("SHA-256 floor")
}
