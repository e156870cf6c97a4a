//! Running `iptables`: one rule checked and then added, a whole table section loaded at once
//! through `iptables-restore --noflush` (atomic per table, and one process for any number of
//! rules), and the chains of a table listed. Blocking: call from a blocking context.

use std::io::Write;
use std::process::{Command, Stdio};

/// Seconds to wait for the xtables lock held by another process.
const LOCK_WAIT: &str = "5";

/// Runs `iptables ARGS`; whether it succeeded.
pub fn run(args: &[&str]) -> Result<bool, String> {
    Command::new("iptables")
        .args(["-w", LOCK_WAIT])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .map_err(|e| format!("cannot run iptables: {e}"))
}

/// Adds `rule` to `chain` of `table` unless it is there; `first` inserts it at the top.
pub fn ensure_rule(table: &str, chain: &str, rule: &[&str], first: bool) -> Result<(), String> {
    let with = |verb: &'static str| -> Vec<&str> {
        ["-t", table, verb, chain].iter().copied().chain(rule.iter().copied()).collect()
    };
    if run(&with("-C"))? {
        return Ok(());
    }
    let add = with(if first { "-I" } else { "-A" });
    if run(&add)? { Ok(()) } else { Err(format!("iptables {} failed", add.join(" "))) }
}

/// Deletes `rule` from `chain` of `table` (nothing if it is not there).
pub fn delete_rule(table: &str, chain: &str, rule: &[&str]) {
    let args: Vec<&str> = ["-t", table, "-D", chain].iter().copied().chain(rule.iter().copied()).collect();
    while run(&args).unwrap_or(false) {}
}

/// Loads `input` (iptables-save format, one or more `*table … COMMIT` sections) without
/// flushing what it does not name; each table's section applies atomically.
pub fn restore(input: &str) -> Result<(), String> {
    let mut child = Command::new("iptables-restore")
        .args(["-w", LOCK_WAIT, "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run iptables-restore: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(|e| format!("iptables-restore: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("iptables-restore: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("iptables-restore failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The user-defined chains of `table` whose names start with `prefix`.
pub fn chains(table: &str, prefix: &str) -> Vec<String> {
    let Ok(output) = Command::new("iptables").args(["-w", LOCK_WAIT, "-t", table, "-S"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("-N "))
        .filter(|chain| chain.starts_with(prefix))
        .map(str::to_string)
        .collect()
}
