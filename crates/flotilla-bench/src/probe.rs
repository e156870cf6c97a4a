//! Where a phase's time goes: CPU used by the server process, by this process and the load
//! generators it waited for (`wrk`), and by the whole machine (`/proc`), plus the server's
//! own latency histograms (`/metrics`), each as the difference between two snapshots taken
//! around the phase. For the embedded-runtime phases it also counts the runtime's processes:
//! containerd and its shims, found by the runtime's directory in their command lines.

use std::collections::BTreeMap;
use std::time::Instant;

use flotilla_client::Client;

use crate::api::{Series, scrape_metrics};
use crate::stats::{fmt_count, fmt_duration};

/// Counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    server_ticks: u64,
    /// The server's store writer thread ([`flotilla_store::sql::WRITER_THREAD`]).
    writer_ticks: Option<u64>,
    client_ticks: u64,
    machine_busy_ticks: u64,
    /// Per process of the runtime (containerd, shims): its ticks with the children it waited for.
    runtime_ticks: Option<BTreeMap<u32, u64>>,
    metrics: BTreeMap<String, Series>,
}

/// What one phase used.
#[derive(Debug, Clone)]
pub struct Usage {
    pub phase: String,
    /// Cores (CPU seconds per second) used by the server process, while there is one.
    pub server_cores: Option<f64>,
    /// By the server's store writer thread (SQLite), which runs every transaction: 1.0 is
    /// one core, all the time.
    pub writer_cores: Option<f64>,
    /// By this process and the children it waited for (wrk).
    pub client_cores: f64,
    /// By everything on the machine.
    pub machine_cores: f64,
    /// By the embedded runtime's processes (containerd and the shims alive at both ends of
    /// the phase, with the children they waited for), in the runtime phases.
    pub runtime_cores: Option<f64>,
    /// Server-side series with calls in this phase: (series, calls, mean).
    pub series: Vec<(String, u64, std::time::Duration)>,
    /// Their histograms in this phase: cumulative count by upper bound (µs).
    pub buckets: BTreeMap<String, Vec<(u64, f64)>>,
}

impl Usage {
    /// Cores used by everything else on the machine (other users' builds, say).
    pub fn other_cores(&self) -> f64 {
        (self.machine_cores - self.server_cores.unwrap_or(0.0) - self.client_cores - self.runtime_cores.unwrap_or(0.0))
            .max(0.0)
    }

    /// The mean of one server-side series in this phase.
    pub fn mean_of(&self, series: &str) -> Option<std::time::Duration> {
        self.series.iter().find(|(name, _, _)| name == series).map(|(_, _, mean)| *mean)
    }

    /// Calls of `series` slower than the histogram's first bound at or above `limit`: that
    /// bound and the count. `None` without such a bound.
    pub fn slower_than(&self, series: &str, limit: std::time::Duration) -> Option<(std::time::Duration, u64)> {
        let buckets = self.buckets.get(series)?;
        let total = buckets.iter().find(|(bound, _)| *bound == u64::MAX)?.1;
        let limit = limit.as_micros() as u64;
        let (bound, within) = buckets.iter().find(|(bound, _)| *bound >= limit && *bound != u64::MAX)?;
        Some((std::time::Duration::from_micros(*bound), (total - within).max(0.0) as u64))
    }

    /// `http GET /x: 1,000 × 1.20 ms; store get: …`
    pub fn series_text(&self) -> String {
        self.series
            .iter()
            .map(|(name, calls, mean)| format!("`{name}` {} × {}", fmt_count(*calls), fmt_duration(*mean)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Takes snapshots of one server.
pub struct Probe {
    /// `None` once the server is stopped: no `/metrics` to read.
    client: Option<Client>,
    server_pid: Option<u32>,
    /// Processes whose command line contains this (the runtime's directory) are the runtime's.
    runtime_marker: Option<String>,
    ticks_per_second: f64,
}

impl Probe {
    pub fn new(client: Option<Client>, server_pid: Option<u32>) -> Self {
        let ticks_per_second = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        Self { client, server_pid, runtime_marker: None, ticks_per_second }
    }

    /// Also counts the processes whose command line contains `marker` (the server excepted).
    pub fn with_runtime(mut self, marker: impl Into<String>) -> Self {
        self.runtime_marker = Some(marker.into());
        self
    }

    pub async fn snapshot(&self) -> Snapshot {
        let metrics = match &self.client {
            Some(client) => scrape_metrics(client).await.unwrap_or_default(),
            None => BTreeMap::new(),
        };
        Snapshot {
            at: Instant::now(),
            server_ticks: self.server_pid.and_then(|pid| process_ticks(&pid.to_string(), false)).unwrap_or(0),
            writer_ticks: self.server_pid.and_then(|pid| thread_ticks(pid, flotilla_store::sql::WRITER_THREAD)),
            client_ticks: process_ticks("self", true).unwrap_or(0),
            machine_busy_ticks: machine_busy_ticks().unwrap_or(0),
            runtime_ticks: self.runtime_marker.as_deref().map(|marker| marked_ticks(marker, self.server_pid)),
            metrics,
        }
    }

    pub fn usage(&self, phase: &str, before: &Snapshot, after: &Snapshot) -> Usage {
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let cores = |a: u64, b: u64| a.saturating_sub(b) as f64 / self.ticks_per_second / seconds;
        let mut series = Vec::new();
        let mut buckets = BTreeMap::new();
        for (name, late) in &after.metrics {
            if name.contains("/metrics") {
                continue;
            }
            let early = before.metrics.get(name).cloned().unwrap_or_default();
            let calls = late.count - early.count;
            if calls >= 1.0 {
                let mean = std::time::Duration::from_secs_f64(((late.sum - early.sum) / calls).max(0.0));
                series.push((name.clone(), calls as u64, mean));
                let deltas = late
                    .buckets
                    .iter()
                    .map(|(bound, count)| (*bound, count - early.buckets.get(bound).copied().unwrap_or(0.0)))
                    .collect();
                buckets.insert(name.clone(), deltas);
            }
        }
        Usage {
            phase: phase.to_string(),
            server_cores: self.server_pid.map(|_| cores(after.server_ticks, before.server_ticks)),
            writer_cores: after.writer_ticks.zip(before.writer_ticks).map(|(late, early)| cores(late, early)),
            client_cores: cores(after.client_ticks, before.client_ticks),
            machine_cores: cores(after.machine_busy_ticks, before.machine_busy_ticks),
            runtime_cores: after.runtime_ticks.as_ref().zip(before.runtime_ticks.as_ref()).map(|(late, early)| {
                // Per process: one that exited during the phase is not counted (a lower bound),
                // and one that started in it counts from zero.
                let ticks: u64 =
                    late.iter().map(|(pid, t)| t.saturating_sub(early.get(pid).copied().unwrap_or(0))).sum();
                cores(ticks, 0)
            }),
            series,
            buckets,
        }
    }
}

/// utime + stime of `/proc/<pid>/stat`, plus cutime + cstime (children waited for) if asked.
fn process_ticks(pid: &str, with_children: bool) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<u64> =
        text.rsplit_once(')')?.1.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // With the state skipped, utime is field 14 of the file: index 10 here.
    let own = fields.get(10)? + fields.get(11)?;
    let children = if with_children { fields.get(12)? + fields.get(13)? } else { 0 };
    Some(own + children)
}

/// utime + stime of the thread of `pid` named `name`.
fn thread_ticks(pid: u32, name: &str) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        (comm.trim_end() == name)
            .then(|| process_ticks(&format!("{pid}/task/{}", task.file_name().to_string_lossy()), false))
            .flatten()
    })
}

/// Ticks (with waited-for children) of every process but `except` whose command line
/// contains `marker`, by process id.
fn marked_ticks(marker: &str, except: Option<u32>) -> BTreeMap<u32, u64> {
    let mut ticks = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return ticks };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(pid) = name.parse::<u32>() else { continue };
        if Some(pid) == except || pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            ticks.insert(pid, process_ticks(&name, true).unwrap_or(0));
        }
    }
    ticks
}

/// Non-idle ticks of all CPUs from `/proc/stat`.
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = values.first()? + values.get(1)? + values.get(2)? + values.get(5)? + values.get(6)? + values.get(7)?;
    Some(busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_machine() {
        assert!(process_ticks("self", true).is_some());
        assert!(machine_busy_ticks().is_some());
    }
}
