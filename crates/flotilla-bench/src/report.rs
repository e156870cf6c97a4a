//! The report: one section per benchmark (how it was measured, and rows of target,
//! measured value, floor or peer of the same run, ratio and verdict), rendered as
//! `docs/benchmarks.md` and as a plain summary on stdout.

use std::fmt::Write as _;
use std::time::Duration;

use crate::machine::Machine;
use crate::probe::Usage;
use crate::stats::fmt_duration;

/// How a figure compares with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Missed, with by how much.
    Miss(String),
    /// No target for this row (context: a floor, a count).
    Info,
}

impl Verdict {
    fn text(&self) -> String {
        match self {
            Verdict::Pass => "PASS".into(),
            Verdict::Miss(by) => format!("MISS ({by})"),
            Verdict::Info => String::new(),
        }
    }

    /// A throughput that must reach `target`.
    pub fn at_least(measured: f64, target: f64) -> Self {
        if measured >= target {
            Verdict::Pass
        } else {
            Verdict::Miss(format!(
                "{:.0} % of the target, {:.0} % short",
                measured / target * 100.0,
                (1.0 - measured / target) * 100.0
            ))
        }
    }

    /// A latency that must stay within `limit`.
    pub fn at_most(measured: Duration, limit: Duration) -> Self {
        if measured <= limit {
            Verdict::Pass
        } else {
            Verdict::Miss(format!("{:.2}x the limit", measured.as_secs_f64() / limit.as_secs_f64()))
        }
    }
}

/// One line of a benchmark's table.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub target: String,
    pub measured: String,
    /// The floor or peer measured in the same run, if any.
    pub floor: String,
    /// Measured relative to the floor, if any.
    pub ratio: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(metric: impl Into<String>, measured: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            target: String::new(),
            measured: measured.into(),
            floor: String::new(),
            ratio: String::new(),
            verdict: Verdict::Info,
        }
    }

    pub fn target(mut self, target: impl Into<String>, verdict: Verdict) -> Self {
        self.target = target.into();
        self.verdict = verdict;
        self
    }

    pub fn floor(mut self, floor: impl Into<String>, ratio: impl Into<String>) -> Self {
        self.floor = floor.into();
        self.ratio = ratio.into();
        self
    }
}

/// One benchmark.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    /// How it was measured (Markdown).
    pub method: String,
    pub rows: Vec<Row>,
    /// Observations below the table (Markdown).
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>, method: impl Into<String>) -> Self {
        Self { title: title.into(), method: method.into(), ..Default::default() }
    }

    /// A scenario that failed: the error takes the place of its figures.
    pub fn failed(title: impl Into<String>, method: impl Into<String>, error: &anyhow::Error) -> Self {
        let mut section = Self::new(title, method);
        section
            .rows
            .push(Row::new("error", format!("{error:#}")).target("", Verdict::Miss("the scenario failed".into())));
        section
    }
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub command: String,
    pub quick: bool,
    pub sections: Vec<Section>,
    /// "Where the time goes", phase by phase.
    pub breakdown: Vec<Usage>,
    /// How the embedded-runtime scenarios were set up, when they ran.
    pub runtime_setup: Option<String>,
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Cores of outside load above which a phase counts as disturbed.
const DISTURBED: f64 = 0.2;

impl Report {
    /// A warning when other processes took CPU during a phase: the figures are disturbed.
    /// The embedded-runtime phases are left out: their "other" includes runtime processes
    /// that exited during the phase (stopped shims, `runc`, the network plugin).
    fn disturbance(&self) -> Option<String> {
        let checked = || self.breakdown.iter().filter(|u| u.runtime_cores.is_none());
        let worst = checked().max_by(|a, b| a.other_cores().total_cmp(&b.other_cores()))?;
        let disturbed: Vec<&str> =
            checked().filter(|u| u.other_cores() > DISTURBED).map(|u| u.phase.as_str()).collect();
        (!disturbed.is_empty()).then(|| {
            format!(
                "Other processes used CPU during {} of {} phases (up to {:.2} cores, in \"{}\"): the figures of \
                 those phases are disturbed. See \"Where the time goes\".",
                disturbed.len(),
                checked().count(),
                worst.other_cores(),
                worst.phase
            )
        })
    }

    /// `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `scripts/bench` (the `flotilla-bench` crate); rerun it to refresh this file rather than editing it.\n\
             The targets are those of `TARGETS.md` (REST API, audit and registry rows) and of the embedded runtime's issue (apply,\n\
             rolling update, rollback). The machines are shared and noisy, so each\n\
             figure is measured next to a floor taken in the same run (the same client and load generator against\n\
             something that does less work) and reported as a ratio too. Absolute figures are for the machine below only.\n\
             Before each group of scenarios, every dirty page is written to the disk (`sync`), so that no group measures\n\
             the writeback of the build or of the group before it.\n\
             Single runs on this shared virtual machine vary (by up to about 3x on some figures between two runs of\n\
             the same commit): compare several runs before drawing conclusions.\n"
        );
        if self.quick {
            let _ = writeln!(
                out,
                "> **Smoke run (`--quick`)**: durations and counts are shortened; these are not the reference figures.\n"
            );
        }
        if let Some(warning) = self.disturbance() {
            let _ = writeln!(out, "> **Disturbed run**: {warning}\n");
        }
        let _ = writeln!(out, "- **Date**: {}", self.date);
        let _ = writeln!(out, "- **Machine**: {}", self.machine.one_line());
        let _ = writeln!(out, "- **Commit**: {}", self.machine.commit);
        let _ = writeln!(out, "- **Command**: `{}`", self.command);
        let _ = writeln!(
            out,
            "- **Set-up**: one `flotilla server` (release build, SQLite in WAL mode, each commit's log synced before \
             it is acknowledged, log level `warn`) on `127.0.0.1`, started after `scripts/bench` flushed the \
             build's writes to disk (`sync`: their writeback would otherwise stall durable writes about 30 s \
             later); the load generators (`wrk`, the benchmark's own tokio client) run on the same 2 cores, so \
             every figure includes their cost, floors included.{}\n",
            self.runtime_setup.as_deref().map(|setup| format!(" {setup}")).unwrap_or_default()
        );

        let _ = writeln!(out, "## Summary\n");
        let _ = writeln!(out, "| benchmark | metric | target | measured | vs. floor | verdict |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for section in &self.sections {
            for row in section.rows.iter().filter(|r| r.verdict != Verdict::Info) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    cell(&section.title),
                    cell(&row.metric),
                    cell(&row.target),
                    cell(&row.measured),
                    cell(&row.ratio),
                    cell(&row.verdict.text())
                );
            }
        }
        let _ = writeln!(out);

        for section in &self.sections {
            let _ = writeln!(out, "## {}\n", section.title);
            let _ = writeln!(out, "{}\n", section.method);
            let _ = writeln!(out, "| metric | target | measured | floor / peer (same run) | ratio | verdict |");
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for row in &section.rows {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    cell(&row.metric),
                    cell(&row.target),
                    cell(&row.measured),
                    cell(&row.floor),
                    cell(&row.ratio),
                    cell(&row.verdict.text())
                );
            }
            let _ = writeln!(out);
            for note in section.notes.iter().filter(|n| !n.is_empty()) {
                let _ = writeln!(out, "{note}\n");
            }
        }

        if !self.breakdown.is_empty() {
            let _ = writeln!(out, "## Where the time goes\n");
            let _ = writeln!(
                out,
                "CPU per phase, in cores (CPU seconds per second of the phase, out of {cores}), from `/proc`: the \
                 server process; the benchmark process together with the children it waited for (`wrk`, \
                 `flotilla audit verify`); everything else (should be near 0: anything more is another process \
                 competing for the cores); the whole machine. Then the server's own latency histograms \
                 (`/metrics`) for the same phase: calls × mean. A store `commit` includes the wait for its \
                 group-commit batch; a store `get` includes the wait for a pooled connection. In the \
                 embedded-runtime phases the server cell adds `runtime`: containerd and its shims (the processes \
                 whose command line names the runtime's directory) with the children they waited for; a shim \
                 that exited during the phase (a stopped instance) takes its CPU with it, so \"other\" there \
                 includes part of the runtime's work, and those phases are not checked for disturbance.\n",
                cores = self.machine.cores
            );
            let _ = writeln!(
                out,
                "| phase | server | benchmark (+ wrk, verify) | other | machine | server-side calls × mean |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for usage in &self.breakdown {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                    cell(&usage.phase),
                    match (usage.server_cores, usage.runtime_cores) {
                        (Some(server), Some(runtime)) => format!("{server:.2} + runtime {runtime:.2}"),
                        (Some(server), None) => format!("{server:.2}"),
                        (None, _) => "-".to_string(),
                    },
                    usage.client_cores,
                    usage.other_cores(),
                    usage.machine_cores,
                    cell(&usage.series_text())
                );
            }
            let _ = writeln!(out);
        }

        let _ = writeln!(out, "## How to reproduce\n");
        let _ = writeln!(
            out,
            "```sh\n\
             scripts/bench            # installs wrk if missing, builds release flotilla + flotilla-bench, runs (~5 min)\n\
             \x20                        # (the embedded-runtime scenarios, about 1.5 min of it, need root)\n\
             scripts/bench --quick    # smoke run: short durations, 50,000 audit records\n\
             scripts/bench --audit-records 200000   # any other chain length\n\
             scripts/bench --skip-runtime           # without the embedded-runtime scenarios (they need root)\n\
             scripts/bench --only registry --out /tmp/registry.md   # one group (api, registry, runtime): a partial report\n\
             ```\n\n\
             The benchmark starts its own server on a free loopback port with a temporary data directory, and \
             removes both at the end; the embedded-runtime scenarios then start a second one with the runtime \
             (its own containerd), delete what they ran, stop it and remove what it left on the host. It exits non-zero only when a scenario could not run; a missed target is a \
             MISS in this file, not a failure."
        );
        out
    }

    /// A plain-text summary for the terminal.
    pub fn summary(&self) -> String {
        let header = ["benchmark", "metric", "target", "measured", "ratio", "verdict"].map(String::from);
        let mut rows = vec![header];
        for section in &self.sections {
            for row in &section.rows {
                rows.push([
                    section.title.clone(),
                    row.metric.clone(),
                    row.target.clone(),
                    row.measured.clone(),
                    row.ratio.clone(),
                    row.verdict.text(),
                ]);
            }
        }
        let mut widths = [0usize; 6];
        for row in &rows {
            for (width, text) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        let mut out = format!("{}\n{}\n\n", self.machine.one_line(), self.date);
        if let Some(warning) = self.disturbance() {
            let _ = writeln!(out, "DISTURBED RUN: {warning}\n");
        }
        for row in &rows {
            let line: Vec<String> = row.iter().zip(widths).map(|(text, width)| format!("{text:width$}")).collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        out
    }
}

/// `0.82x`
pub fn ratio(value: f64, floor: f64) -> String {
    if floor > 0.0 { format!("{:.2}x", value / floor) } else { "n/a".into() }
}

/// `1.23 ms` for a row.
pub fn ms(d: Duration) -> String {
    fmt_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_say_by_how_much() {
        assert_eq!(Verdict::at_least(25_000.0, 20_000.0), Verdict::Pass);
        assert_eq!(Verdict::at_least(15_000.0, 20_000.0), Verdict::Miss("75 % of the target, 25 % short".into()));
        assert_eq!(
            Verdict::at_most(Duration::from_millis(30), Duration::from_millis(20)),
            Verdict::Miss("1.50x the limit".into())
        );
        assert_eq!(Verdict::at_most(Duration::from_millis(20), Duration::from_millis(20)), Verdict::Pass);
        assert_eq!(ratio(1.0, 4.0), "0.25x");
    }
}
