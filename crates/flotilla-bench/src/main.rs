//! `flotilla-bench`: the control-plane API benchmark.
//!
//! Starts a real `flotilla server` (the release binary given with `--flotilla`) on loopback
//! with a temporary data directory, logs in, seeds 5,000 workspaces, and measures, each next
//! to a floor taken in the same run:
//!
//! 1. authenticated `GET` of one object with `wrk`, against `wrk` on `/healthz`;
//! 2. a list of 5,000 objects (one page);
//! 3. audited writes, open loop at 500/s, latency from the scheduled time, against the
//!    filesystem's fsync latency and a bare durable log at the same rate;
//! 4. audited creates, closed loop with `wrk` on 128 connections, against `wrk` on `/healthz`;
//! 5. after stopping the server: filling the audit chain to N records through the store's
//!    writer, then `flotilla audit verify --data-dir`, against SHA-256 over the same bytes;
//! 6. the registry (`--skip-registry`): Flotilla's `/v2/` on a server of its own, side by side
//!    with Debian's `docker-registry` (distribution 2.8) started in the same run: blob push and
//!    pull throughput, 1 MiB push latency, manifest GETs, against one core's SHA-256 (see
//!    [`registry`]);
//! 7. with another server running the embedded runtime (root only; `--skip-runtime`):
//!    apply → instance running against a pod made with direct CRI calls (and, informative,
//!    `ctr run`), a 50-replica rolling update, a rollback (see [`runtime`]);
//! 8. the web console in Debian's Chromium (`--skip-console`): the first page and the list of
//!    2,000 applications, against the bare requests behind them (see [`console`]).
//!
//! It writes `docs/benchmarks.md` (or `--out`) and prints a summary. Targets are from
//! `TARGETS.md`; a missed one is reported as MISS, not as a failure of the program.

mod api;
mod audit;
mod console;
mod machine;
mod probe;
mod registry;
mod report;
mod runtime;
mod server;
mod stats;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use flotilla_client::Client;
use sha2::{Digest, Sha256};

use crate::probe::{Probe, Usage};
use crate::report::{Report, Row, Section, Verdict, ms, ratio};
use crate::stats::{Samples, fmt_bytes, fmt_count, fmt_duration, fmt_rate};

/// Control-plane API benchmark: drives a real `flotilla server` over loopback and writes
/// the figures, next to floors measured in the same run, to a Markdown report.
#[derive(Debug, Parser)]
#[command(name = "flotilla-bench", version, args_override_self = true)]
struct Args {
    /// The `flotilla` binary to benchmark (a release build).
    #[arg(long, value_name = "PATH")]
    flotilla: PathBuf,
    /// Where to write the report.
    #[arg(long, value_name = "FILE", default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Smoke run: short durations, 5 apply samples on the embedded runtime (and 50,000 audit
    /// records unless --audit-records is given).
    #[arg(long)]
    quick: bool,
    /// Length of the audit chain to verify [default: 1000000, or 50000 with --quick].
    #[arg(long, value_name = "N")]
    audit_records: Option<u64>,
    /// Keep the server's data directory (SQLite database, audit key) for inspection.
    #[arg(long)]
    keep_data: bool,
    /// Leave out the embedded-runtime scenarios (they need root and containerd).
    #[arg(long)]
    skip_runtime: bool,
    /// Run the embedded-runtime scenarios only (a partial report, for working on the runtime).
    #[arg(long, conflicts_with = "skip_runtime")]
    only_runtime: bool,
    /// Leave out the registry comparison (it needs Debian's docker-registry).
    #[arg(long)]
    skip_registry: bool,
    /// Leave out the web console (it needs console/node_modules and Chromium).
    #[arg(long)]
    skip_console: bool,
    /// Run one group of scenarios only (a partial report: do not write it over
    /// docs/benchmarks.md).
    #[arg(long, value_enum, value_name = "GROUP", conflicts_with = "only_runtime")]
    only: Option<Only>,
}

/// The groups of scenarios `--only` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// The API scenarios and the audit chain.
    Api,
    /// Flotilla's registry against distribution.
    Registry,
    /// The embedded runtime (as --only-runtime).
    Runtime,
    /// The web console in Chromium.
    Console,
}

/// Durations and counts of one run.
struct Plan {
    seed: usize,
    seed_batch: usize,
    wrk: wrk::WrkOptions,
    list_runs: usize,
    write_rate: u32,
    write_duration: Duration,
    fsync_samples: usize,
    /// The closed loop of creates: wrk with [`wrk::CREATE_SCRIPT`].
    creates: wrk::WrkOptions,
    audit_records: u64,
    committers: usize,
    /// Cores of this machine, for the CPU notes.
    cores: f64,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let quick = args.quick;
        Self {
            seed: 5000,
            seed_batch: 500,
            wrk: wrk::WrkOptions {
                threads: 2,
                connections: 64,
                duration: Duration::from_secs(if quick { 3 } else { 10 }),
            },
            list_runs: if quick { 5 } else { 30 },
            write_rate: 500,
            write_duration: Duration::from_secs(if quick { 5 } else { 20 }),
            fsync_samples: if quick { 200 } else { 1000 },
            creates: wrk::WrkOptions {
                threads: 2,
                connections: 128,
                duration: Duration::from_secs(if quick { 3 } else { 10 }),
            },
            audit_records: args.audit_records.unwrap_or(if quick { 50_000 } else { 1_000_000 }),
            committers: 512,
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        }
    }
}

const GET_TARGET_INDEX: usize = 42;
const GET_TARGET_RATE: f64 = 20_000.0;
const LIST_LIMIT: Duration = Duration::from_millis(250);
const WRITE_P99_LIMIT: Duration = Duration::from_millis(20);
const MUTATIONS_TARGET: f64 = 5_000.0;
const VERIFY_RECORDS: u64 = 1_000_000;
const VERIFY_LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: at least one scenario could not run (see the report)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes every dirty page to the disk and waits for it (`sync`), so that no group of
/// scenarios measures the writeback of what ran before it: the build that `scripts/bench` runs
/// first, or the previous group's files. Right after a release build (~370 MB dirty), the
/// audited writes' p99 at 500/s measured 29.5 ms where it measures 3.7-4.7 ms on a settled disk.
async fn settle_disk() {
    progress("writing dirty pages to the disk before the next scenarios (sync)");
    if tokio::task::spawn_blocking(nix::unistd::sync).await.is_err() {
        progress("sync did not finish; going on");
    }
}

fn progress(message: &str) {
    eprintln!("[flotilla-bench] {message}");
}

/// A password nobody else knows, at least 12 characters (the server's minimum).
fn one_time_password() -> String {
    let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
    format!("bench-{}", &hex::encode(Sha256::digest(seed.as_bytes()))[..24])
}

/// Runs everything; `Ok(false)` when a scenario failed (its section says why).
async fn run(args: Args) -> anyhow::Result<bool> {
    let plan = Plan::new(&args);
    let flotilla = std::fs::canonicalize(&args.flotilla)
        .with_context(|| format!("no flotilla binary at {}", args.flotilla.display()))?;
    let data = tempfile::Builder::new().prefix("flotilla-bench-").tempdir().context("cannot create a data dir")?;
    let data_dir = data.path().to_path_buf();
    let cwd = std::env::current_dir()?;
    let machine = machine::Machine::describe(&data_dir, &cwd);
    progress(&format!("machine: {}; commit {}", machine.one_line(), machine.commit));
    let command = std::env::var("FLOTILLA_BENCH_COMMAND").unwrap_or_else(|_| {
        let cwd_prefix = format!("{}/", cwd.display());
        std::env::args().map(|a| a.replace(&cwd_prefix, "")).collect::<Vec<_>>().join(" ")
    });

    let mut usage: Vec<Usage> = Vec::new();
    let mut sections = Vec::new();
    let mut all_ran = true;
    let only = args.only.or(args.only_runtime.then_some(Only::Runtime));
    let wanted = |group: Only| only.is_none_or(|only| only == group);
    if wanted(Only::Api) {
        settle_disk().await;
        all_ran = api_and_audit(&plan, &flotilla, &data_dir, &mut sections, &mut usage).await?;
    } else {
        progress("API and audit scenarios skipped (--only)");
    }

    if !wanted(Only::Registry) || args.skip_registry {
        progress("registry scenarios skipped");
    } else {
        let plan = registry::RegistryPlan::new(args.quick);
        settle_disk().await;
        match registry::run(&plan, &flotilla, &one_time_password(), &mut usage).await {
            Ok(section) => sections.push(section),
            Err(error) => {
                progress(&format!("registry: {error:#}"));
                all_ran = false;
                sections.push(Section::failed(registry::title(), registry::method(&plan), &error));
            }
        }
    }

    let mut runtime_setup = None;
    if !wanted(Only::Runtime) || args.skip_runtime {
        progress("embedded-runtime scenarios skipped");
    } else {
        let plan = runtime::RuntimePlan::new(args.quick);
        settle_disk().await;
        for (result, title, method) in runtime::run(&plan, &flotilla, &mut usage).await {
            match result {
                Ok(section) => {
                    runtime_setup = Some(runtime::setup_text());
                    sections.push(section);
                }
                Err(error) => {
                    progress(&format!("{title}: {error:#}"));
                    all_ran = false;
                    sections.push(Section::failed(title, method, &error));
                }
            }
        }
    }

    if !wanted(Only::Console) || args.skip_console {
        progress("console scenarios skipped");
    } else {
        let plan = console::ConsolePlan::new(args.quick);
        progress(&format!("the console with {} applications, in Chromium", plan.applications));
        settle_disk().await;
        match console::run(&plan, &flotilla, &one_time_password()).await {
            Ok(section) => sections.push(section),
            Err(error) => {
                progress(&format!("console: {error:#}"));
                all_ran = false;
                sections.push(Section::failed(console::title(), console::method(&plan), &error));
            }
        }
    }

    let report = Report {
        date: jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string(),
        machine,
        command,
        quick: args.quick,
        sections,
        breakdown: usage,
        runtime_setup,
    };
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, report.markdown()).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("{}", report.summary());
    progress(&format!("report written to {}", args.out.display()));
    if args.keep_data {
        progress(&format!("data directory kept: {}", data.keep().display()));
    }
    Ok(all_ran)
}

/// The API scenarios on one server, then the audit chain; `Ok(false)` when one failed.
async fn api_and_audit(
    plan: &Plan,
    flotilla: &Path,
    data_dir: &Path,
    sections: &mut Vec<Section>,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<bool> {
    let password = one_time_password();
    progress("starting the server");
    let server = server::Server::start(flotilla, data_dir, &password).await?;
    let anonymous = Client::new(&server.base, None)?.with_user_agent("flotilla-bench");
    let login = anonymous.login_token(server::ADMIN_USER, &password, "bench", None).await.context("login")?;
    let client = anonymous.clone().with_token(Some(login.token.clone()));
    let probe = Probe::new(Some(client.clone()), server.pid());

    progress(&format!("seeding {} workspaces", plan.seed));
    let before = probe.snapshot().await;
    let seeded_in = api::seed(&client, plan.seed, plan.seed_batch).await.context("seeding")?;
    usage.push(probe.usage("seeding: 5,000 workspaces through /apply", &before, &probe.snapshot().await));
    progress(&format!("seeded in {}", fmt_duration(seeded_in)));

    let mut all_ran = true;
    let mut push = |result: anyhow::Result<Section>, title: &str, method: &str| match result {
        Ok(section) => sections.push(section),
        Err(error) => {
            progress(&format!("{title} failed: {error:#}"));
            all_ran = false;
            sections.push(Section::failed(title, method, &error));
        }
    };

    let (title, method) = get_method(plan);
    progress("authenticated GET with wrk, then the /healthz floor");
    push(get_benchmark(plan, &server.base, &login.token, &probe, usage).await, &title, &method);

    let (title, method) = list_method(plan);
    progress("list of 5,000");
    push(list_benchmark(plan, &client, &probe, usage).await, &title, &method);

    let (title, method) = writes_method(plan);
    progress(&format!("audited writes at {}/s for {} s", plan.write_rate, plan.write_duration.as_secs()));
    push(writes_benchmark(plan, &client, data_dir, &probe, usage).await, &title, &method);

    let (title, method) = mutations_method(plan);
    progress(&format!("audited creates, {} connections, then the /healthz floor", plan.creates.connections));
    push(mutations_benchmark(plan, &server.base, &login.token, data_dir, &probe, usage).await, &title, &method);
    let mutations_section = sections.len() - 1;

    progress("stopping the server");
    server.stop().await?;

    let (title, method) = audit_method(plan);
    progress(&format!("filling the audit chain to {} records", fmt_count(plan.audit_records)));
    match audit_benchmark(plan, flotilla, data_dir, usage).await {
        Ok((section, store_row)) => {
            sections[mutations_section].rows.push(store_row);
            sections.push(section);
        }
        Err(error) => {
            progress(&format!("audit scenario failed: {error:#}"));
            all_ran = false;
            sections.push(Section::failed(title, method, &error));
        }
    }

    Ok(all_ran)
}

fn get_method(plan: &Plan) -> (String, String) {
    (
        "Authenticated GET".into(),
        format!(
            "`wrk {flags} -H \"Authorization: Bearer <API token>\"` on `/api/v1/workspaces/{name}` (one object, \
             token checked, RBAC decided, read from the store), then the floor: the same `wrk` command on \
             `/healthz` of the same server (the same HTTP stack with no authentication and no store).",
            flags = plan.wrk.flags(),
            name = api::workspace_name(GET_TARGET_INDEX)
        ),
    )
}

async fn get_benchmark(
    plan: &Plan,
    base: &str,
    token: &str,
    probe: &Probe,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<Section> {
    let (title, method) = get_method(plan);
    let url = format!("{base}/api/v1/workspaces/{}", api::workspace_name(GET_TARGET_INDEX));
    let before = probe.snapshot().await;
    let get = wrk::run(&plan.wrk, &url, Some(token), None).await?;
    let middle = probe.snapshot().await;
    let floor = wrk::run(&plan.wrk, &format!("{base}/healthz"), None, None).await?;
    let after = probe.snapshot().await;
    usage.push(probe.usage("authenticated GET (wrk)", &before, &middle));
    usage.push(probe.usage("floor: /healthz (wrk)", &middle, &after));
    let mut section = Section::new(title, method);
    let verdict = if get.non_2xx > 0 {
        Verdict::Miss(format!("{} responses were not 2xx: the figure is not valid", get.non_2xx))
    } else {
        Verdict::at_least(get.requests_per_sec, GET_TARGET_RATE)
    };
    section.rows.push(
        Row::new("authenticated GET/s", fmt_rate(get.requests_per_sec))
            .target(format!("≥ {}", fmt_rate(GET_TARGET_RATE)), verdict)
            .floor(
                format!("{} (`/healthz`)", fmt_rate(floor.requests_per_sec)),
                ratio(get.requests_per_sec, floor.requests_per_sec),
            ),
    );
    section.rows.push(Row::new("latency p50 / p99", format!("{} / {}", ms(get.p50), ms(get.p99))).floor(
        format!("{} / {}", ms(floor.p50), ms(floor.p99)),
        ratio(get.p99.as_secs_f64(), floor.p99.as_secs_f64()),
    ));
    section.rows.push(
        Row::new("requests (non-2xx)", format!("{} ({})", fmt_count(get.requests), get.non_2xx))
            .floor(format!("{} ({})", fmt_count(floor.requests), floor.non_2xx), ""),
    );
    let (on_get, on_floor) = (&usage[usage.len() - 2], &usage[usage.len() - 1]);
    section.notes.push(cpu_note(
        on_get,
        get.requests_per_sec,
        "authenticated GET",
        on_floor,
        floor.requests_per_sec,
        plan.cores,
    ));
    for (which, result) in [("GET", &get), ("floor", &floor)] {
        if let Some(errors) = &result.socket_errors {
            section.notes.push(format!("wrk ({which}) reported: {errors}."));
        }
    }
    Ok(section)
}

fn list_method(plan: &Plan) -> (String, String) {
    (
        "List of 5,000 objects".into(),
        format!(
            "`GET /api/v1/workspaces?limit=5000` as the admin, {} times one after the other (after one unmeasured \
             request), with 5,000 workspaces of two labels each in the store. Each sample runs from sending the \
             request until the whole body has arrived (the client parses it after the clock stops). No floor: \
             the figures are put in perspective as bytes per response and items per second.",
            plan.list_runs
        ),
    )
}

async fn list_benchmark(
    plan: &Plan,
    client: &Client,
    probe: &Probe,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<Section> {
    let (title, method) = list_method(plan);
    let before = probe.snapshot().await;
    let result = api::list(client, plan.seed, plan.list_runs).await?;
    usage.push(probe.usage("list of 5,000", &before, &probe.snapshot().await));
    let mut section = Section::new(title, method);
    let full_page = result.items == plan.seed;
    let verdict = if full_page {
        Verdict::at_most(result.requests.p99, LIST_LIMIT)
    } else {
        Verdict::Miss(format!("a page held {} items, not {}", result.items, plan.seed))
    };
    section.rows.push(
        Row::new(format!("p99 of {} lists", result.requests.count), ms(result.requests.p99))
            .target(format!("≤ {}", ms(LIST_LIMIT)), verdict),
    );
    section.rows.push(Row::new("p50 / max", format!("{} / {}", ms(result.requests.p50), ms(result.requests.max))));
    section.rows.push(Row::new("items in one response", fmt_count(result.items as u64)).target(
        fmt_count(plan.seed as u64),
        if full_page { Verdict::Pass } else { Verdict::Miss(format!("capped at {}", result.items)) },
    ));
    section.rows.push(Row::new(
        "bytes per response",
        format!("{} ({} B/item)", fmt_bytes(result.bytes as f64), result.bytes / result.items.max(1)),
    ));
    section
        .rows
        .push(Row::new("items/s at p50", fmt_rate(result.items as f64 / result.requests.p50.as_secs_f64().max(1e-9))));
    if let Some((walk, items, bytes)) = &result.walk {
        section.rows.push(
            Row::new(
                format!("walk of every page with continue tokens ({} items, {})", items, fmt_bytes(*bytes as f64)),
                format!("p50 {} / p99 {}", ms(walk.p50), ms(walk.p99)),
            )
            .target(format!("≤ {}", ms(LIST_LIMIT)), Verdict::at_most(walk.p99, LIST_LIMIT)),
        );
        section.notes.push(format!(
            "The server capped the page at {} items, so the list of 5,000 is also timed as a walk over every \
             page (each page parsed for its continue token inside the timing).",
            result.items
        ));
    }
    Ok(section)
}

fn writes_method(plan: &Plan) -> (String, String) {
    (
        "Audited writes at a fixed rate".into(),
        format!(
            "Open loop: every {} ms for {} s the client starts a `PUT /api/v1/workspaces/bench-NNNNN` (a real change \
             of `spec.description`, no resourceVersion precondition) in its own task, whether or not earlier \
             ones have answered. Latency runs from the *scheduled* start, so a server that falls behind is charged \
             for the queueing (no coordinated omission). Each write commits the object and its audit record in one \
             durable SQLite transaction (group commit). Floor: the latency of a 4 KiB write + `fdatasync` on the \
             same filesystem, {} times in a row, measured in the same run (a durable commit cannot beat one sync). \
             Peer: a bare durable log at the same rate for as long, right after (see `sync_at_rate`: 4 KiB records \
             due every {} ms, each batch of due records written then synced with one `fdatasync`, latency from \
             the due time): what this disk alone makes a durable write at this rate wait, stalls included.",
            1000 / plan.write_rate,
            plan.write_duration.as_secs(),
            plan.fsync_samples,
            1000 / plan.write_rate
        ),
    )
}

async fn writes_benchmark(
    plan: &Plan,
    client: &Client,
    data_dir: &Path,
    probe: &Probe,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<Section> {
    let (title, method) = writes_method(plan);
    let before = probe.snapshot().await;
    let result = api::fixed_rate_updates(client, plan.seed, plan.write_rate, plan.write_duration).await?;
    usage.push(probe.usage("audited writes at 500/s (open loop)", &before, &probe.snapshot().await));
    let fsync = fsync_floor(data_dir, plan.fsync_samples).await?;
    let log = sync_at_rate(data_dir, plan.write_rate, plan.write_duration).await?;
    let mut section = Section::new(title, method);
    let verdict = if result.errors > 0 {
        Verdict::Miss(format!("{} writes failed", result.errors))
    } else {
        Verdict::at_most(result.latency.p99, WRITE_P99_LIMIT)
    };
    section.rows.push(
        Row::new(format!("write p99 at {}/s", plan.write_rate), ms(result.latency.p99))
            .target(format!("≤ {}", ms(WRITE_P99_LIMIT)), verdict)
            .floor(
                format!("fdatasync p99 {}", ms(fsync.p99)),
                ratio(result.latency.p99.as_secs_f64(), fsync.p99.as_secs_f64()),
            ),
    );
    section.rows.push(
        Row::new(
            "p50 / p90 / max",
            format!("{} / {} / {}", ms(result.latency.p50), ms(result.latency.p90), ms(result.latency.max)),
        )
        .floor(
            format!("fdatasync p50 {} / max {}", ms(fsync.p50), ms(fsync.max)),
            ratio(result.latency.p50.as_secs_f64(), fsync.p50.as_secs_f64()),
        ),
    );
    section.rows.push(
        Row::new(format!("write p99 / max at {}/s, against a bare durable log at that rate", plan.write_rate), {
            format!("{} / {}", ms(result.latency.p99), ms(result.latency.max))
        })
        .floor(
            format!("log p99 {} / max {}", ms(log.p99), ms(log.max)),
            ratio(result.latency.p99.as_secs_f64(), log.p99.as_secs_f64()),
        ),
    );
    section.rows.push(Row::new(
        "achieved rate (writes answered / s)",
        format!(
            "{} of {} scheduled/s, {} writes, {} errors",
            fmt_rate(result.rate),
            plan.write_rate,
            fmt_count(result.ok),
            result.errors
        ),
    ));
    let window = Duration::from_millis(100);
    let tail = api::tail(&result.timeline, WRITE_P99_LIMIT, window);
    if tail.over > 0 {
        let covered = (window * tail.windows.len() as u32).as_secs_f64() / plan.write_duration.as_secs_f64() * 100.0;
        let reading = if covered < 10.0 {
            "the tail comes from short stalls of the write path, not from a general slowdown"
        } else {
            "the tail is spread over the run: a general slowdown rather than a few stalls"
        };
        section.notes.push(format!(
            "{} of {} writes ({:.2} %) took longer than {}. They were scheduled in {} distinct {} windows \
             (starting at {} s), {covered:.1} % of the {} s run, so {reading}. The slowest ({}) was scheduled at \
             {:.1} s.",
            fmt_count(tail.over as u64),
            fmt_count(result.ok),
            tail.over as f64 / result.ok.max(1) as f64 * 100.0,
            ms(WRITE_P99_LIMIT),
            tail.windows.len(),
            ms(window),
            tail.windows.iter().take(12).map(|w| format!("{:.1}", w.as_secs_f64())).collect::<Vec<_>>().join(", "),
            plan.write_duration.as_secs(),
            ms(result.latency.max),
            tail.worst_at.as_secs_f64()
        ));
    }
    let phase = &usage[usage.len() - 1];
    let route = "http PUT /api/v1/workspaces/{name}";
    if let (Some((bound, server_slow)), Some(commit)) =
        (phase.slower_than(route, WRITE_P99_LIMIT), phase.slower_than("store commit", WRITE_P99_LIMIT))
    {
        let client_slow = result.timeline.iter().filter(|(_, latency)| *latency > bound).count();
        let any_slow = client_slow as u64 + server_slow + commit.1 > 0;
        section.notes.extend(any_slow.then(|| {
            format!(
                "Above {} (the server's first histogram bound past the limit): {} writes as the client measured them, \
             {} as the server measured them (its metrics middleware, from routing to response), {} store commits. \
             Writes slow at the client but not at the server waited before the server's handler started (in \
             the client, the kernel or the server's accept and scheduling).",
                ms(bound),
                fmt_count(client_slow as u64),
                fmt_count(server_slow),
                fmt_count(commit.1)
            )
        }));
    }
    if let Some(error) = &result.first_error {
        section.notes.push(format!("First error: {error}"));
    }
    Ok(section)
}

/// Latency of `samples` sequential 4 KiB writes, each followed by `fdatasync`, in `dir`.
async fn fsync_floor(dir: &Path, samples: usize) -> anyhow::Result<stats::Summary> {
    let path = dir.join("fsync-floor.tmp");
    let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<stats::Summary> {
        use std::io::Write;
        let mut file = std::fs::File::create(&path)?;
        let block = vec![0x5au8; 4096];
        let mut latencies = Samples::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            latencies.push(started.elapsed());
        }
        drop(file);
        std::fs::remove_file(&path)?;
        Ok(latencies.summary())
    })
    .await??;
    Ok(summary)
}

/// A durable log at `rate` records/s and nothing else, for `duration`: open loop, as the
/// writes it is set beside. One thread writes every 4 KiB record already due, then makes
/// them durable with one `fdatasync` (a group commit), over a preallocated file (as a
/// restarted write-ahead log is overwritten). Latency runs from a record's due time until
/// the sync covering it returned: what the disk alone makes a durable write wait.
async fn sync_at_rate(dir: &Path, rate: u32, duration: Duration) -> anyhow::Result<stats::Summary> {
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 4096;
    const FILE_BLOCKS: u64 = 4096;
    let path = dir.join("sync-at-rate.tmp");
    let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<stats::Summary> {
        let file = std::fs::File::create(&path)?;
        file.write_all_at(&vec![0u8; (BLOCK * FILE_BLOCKS) as usize], 0)?;
        file.sync_all()?;
        let block = vec![0x5au8; BLOCK as usize];
        let total = u64::from(rate) * duration.as_secs();
        let interval = Duration::from_secs(1) / rate.max(1);
        let mut latencies = Samples::with_capacity(total as usize);
        let started = Instant::now();
        let (mut next, mut position) = (0u64, 0u64);
        while next < total {
            let due = |n: u64| started + interval * n as u32;
            let now = Instant::now();
            if due(next) > now {
                std::thread::sleep(due(next) - now);
                continue;
            }
            let first = next;
            while next < total && due(next) <= now {
                file.write_all_at(&block, (position % FILE_BLOCKS) * BLOCK)?;
                (next, position) = (next + 1, position + 1);
            }
            file.sync_data()?;
            let synced = Instant::now();
            for n in first..next {
                latencies.push(synced - due(n));
            }
        }
        drop(file);
        std::fs::remove_file(&path)?;
        Ok(latencies.summary())
    })
    .await??;
    Ok(summary)
}

fn mutations_method(plan: &Plan) -> (String, String) {
    (
        "Audited mutations per second".into(),
        format!(
            "Closed loop: `wrk {flags} -s create.lua -H \"Authorization: Bearer <API token>\"` on \
             `/api/v1/workspaces`: each of the {connections} connections sends its next request as soon as the \
             previous one answered, and every request is a `POST` creating a new workspace (`tput-<thread>-<n>`, \
             one label, a description), an audited create committed durably with its audit record. The load \
             generator is `wrk`, as for the GETs, so that the 2 cores go to the server rather than to the client. \
             Floor: the same `wrk` command on `GET /healthz` for as long. The last row is the store alone: \
             audit-only mutations committed in process by {committers} concurrent committers while filling the \
             audit chain (see below), no HTTP.",
            flags = plan.creates.flags(),
            connections = plan.creates.connections,
            committers = plan.committers
        ),
    )
}

async fn mutations_benchmark(
    plan: &Plan,
    base: &str,
    token: &str,
    data_dir: &Path,
    probe: &Probe,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<Section> {
    let (title, method) = mutations_method(plan);
    let script = data_dir.join("create.lua");
    std::fs::write(&script, wrk::CREATE_SCRIPT).context("writing the wrk script")?;
    let before = probe.snapshot().await;
    let writes = wrk::run(&plan.creates, &format!("{base}/api/v1/workspaces"), Some(token), Some(&script)).await?;
    let middle = probe.snapshot().await;
    let floor = wrk::run(&plan.creates, &format!("{base}/healthz"), None, None).await?;
    let after = probe.snapshot().await;
    let connections = plan.creates.connections;
    usage.push(probe.usage(&format!("audited creates, {connections} connections (wrk)"), &before, &middle));
    usage.push(probe.usage(&format!("floor: /healthz, {connections} connections (wrk)"), &middle, &after));
    let mut section = Section::new(title, method);
    let verdict = if writes.non_2xx > 0 {
        Verdict::Miss(format!("{} responses were not 2xx: the figure is not valid", writes.non_2xx))
    } else {
        Verdict::at_least(writes.requests_per_sec, MUTATIONS_TARGET)
    };
    section.rows.push(
        Row::new("audited creates/s over HTTP", fmt_rate(writes.requests_per_sec))
            .target(format!("≥ {}", fmt_rate(MUTATIONS_TARGET)), verdict)
            .floor(
                format!("{} (`/healthz`)", fmt_rate(floor.requests_per_sec)),
                ratio(writes.requests_per_sec, floor.requests_per_sec),
            ),
    );
    section.rows.push(Row::new("latency p50 / p99", format!("{} / {}", ms(writes.p50), ms(writes.p99))).floor(
        format!("{} / {}", ms(floor.p50), ms(floor.p99)),
        ratio(writes.p99.as_secs_f64(), floor.p99.as_secs_f64()),
    ));
    section.rows.push(
        Row::new("requests (not 2xx)", format!("{} ({})", fmt_count(writes.requests), writes.non_2xx))
            .floor(format!("{} ({})", fmt_count(floor.requests), floor.non_2xx), ""),
    );
    let (on_writes, on_floor) = (&usage[usage.len() - 2], &usage[usage.len() - 1]);
    let rate = writes.requests_per_sec;
    section.notes.push(cpu_note(on_writes, rate, "audited create", on_floor, floor.requests_per_sec, plan.cores));
    if let (Some(http), Some(commit)) =
        (on_writes.mean_of("http POST /api/v1/workspaces"), on_writes.mean_of("store commit"))
    {
        let share = commit.as_secs_f64() / http.as_secs_f64().max(1e-9) * 100.0;
        let mut note = format!(
            "Inside the server a create took {} on average, {} of it ({share:.0} %) in `Store::commit` (queueing for \
             and running its group-commit batch, then the sync of the log).",
            fmt_duration(http),
            fmt_duration(commit)
        );
        if let Some(writer) = on_writes.writer_cores {
            let per_create = Duration::from_secs_f64(writer / rate.max(1e-9));
            note.push_str(&format!(
                " The store's writer thread, which runs every transaction, was busy {:.0} % of the time: {} of \
                 writer time per create.",
                writer * 100.0,
                fmt_duration(per_create)
            ));
            note.push_str(if writer >= 0.9 {
                " The single writer is the limit."
            } else {
                " It was not the limit: each connection waits for its create's batch to be committed and its log \
                 synced before it sends the next, so the rate is set by that round trip as much as by the work."
            });
        }
        section.notes.push(note);
    }
    for (which, result) in [("creates", &writes), ("floor", &floor)] {
        if let Some(errors) = &result.socket_errors {
            section.notes.push(format!("wrk ({which}): {errors}"));
        }
    }
    Ok(section)
}

fn audit_method(plan: &Plan) -> (String, String) {
    (
        "Audit chain verification".into(),
        format!(
            "After the HTTP scenarios the server is stopped and its data directory's store is opened in process; \
             audit-only mutations are committed through the store's writer (group commit, hash chain, durable \
             transactions: the real write path minus HTTP) by {} concurrent committers until the chain holds {} \
             records. Then `flotilla audit verify --data-dir DIR` runs as a subprocess and is timed from start \
             to exit: it reads every record in order, recomputes its SHA-256 and checks every link and the \
             stored head. Floor: one SHA-256 per record over the same number of bytes (the chain's hashed \
             content, measured in the database), chained and hex-encoded, on one core in process.",
            plan.committers,
            fmt_count(plan.audit_records)
        ),
    )
}

async fn audit_benchmark(
    plan: &Plan,
    flotilla: &Path,
    data_dir: &Path,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<(Section, Row)> {
    let (title, method) = audit_method(plan);
    let probe = Probe::new(None, None);
    let before = probe.snapshot().await;
    let generated = audit::fill_chain(data_dir, plan.audit_records, plan.committers).await?;
    usage.push(probe.usage("filling the audit chain in process (store writer)", &before, &probe.snapshot().await));
    progress(&format!(
        "{} records committed in {} ({}); verifying",
        fmt_count(generated.generated),
        fmt_duration(generated.elapsed),
        fmt_rate(generated.rate())
    ));
    let store_row = Row::new(
        format!("audit-only mutations/s through the store ({} committers, no HTTP)", plan.committers),
        format!(
            "{} ({} records in {})",
            fmt_rate(generated.rate()),
            fmt_count(generated.generated),
            fmt_duration(generated.elapsed)
        ),
    )
    .target(format!("≥ {}", fmt_rate(MUTATIONS_TARGET)), Verdict::at_least(generated.rate(), MUTATIONS_TARGET));
    let before = probe.snapshot().await;
    let verified = audit::verify(flotilla, data_dir).await?;
    usage.push(probe.usage("flotilla audit verify (subprocess)", &before, &probe.snapshot().await));
    let floor = audit::sha256_floor(generated.records, generated.hashed_bytes).await?;
    progress("reading the chain's rows without verifying");
    let (read, read_rows) = audit::read_rows(data_dir).await?;
    let records = generated.records;
    let rate = records as f64 / verified.elapsed.as_secs_f64().max(1e-9);
    let (target, verdict) = if records == VERIFY_RECORDS {
        (
            format!("≤ {} for {}", fmt_duration(VERIFY_LIMIT), fmt_count(VERIFY_RECORDS)),
            Verdict::at_most(verified.elapsed, VERIFY_LIMIT),
        )
    } else {
        let needed = VERIFY_RECORDS as f64 / VERIFY_LIMIT.as_secs_f64();
        (
            format!("≥ {} (1 M in 10 s, scaled to {})", fmt_rate(needed), fmt_count(records)),
            Verdict::at_least(rate, needed),
        )
    };
    let mut section = Section::new(title, method);
    let how =
        if verified.offline_cli { "`flotilla audit verify --data-dir`" } else { "`Store::audit_verify` in process" };
    section.rows.push(
        Row::new(format!("verify {} records ({how})", fmt_count(records)), fmt_duration(verified.elapsed))
            .target(target, verdict)
            .floor(
                format!("SHA-256 floor {}", fmt_duration(floor)),
                ratio(verified.elapsed.as_secs_f64(), floor.as_secs_f64()),
            ),
    );
    section.rows.push(
        Row::new("records/s verified", fmt_rate(rate))
            .floor(fmt_rate(records as f64 / floor.as_secs_f64().max(1e-9)), ""),
    );
    section.rows.push(
        Row::new(
            format!("peer: the same {} rows read with rusqlite, not hashed", fmt_count(read_rows)),
            fmt_duration(read),
        )
        .floor("", ratio(verified.elapsed.as_secs_f64(), read.as_secs_f64())),
    );
    section.rows.push(Row::new(
        "hashed bytes",
        format!("{} ({} B/record)", fmt_bytes(generated.hashed_bytes as f64), generated.hashed_bytes / records.max(1)),
    ));
    section.rows.push(Row::new("chain intact", verified.output.lines().last().unwrap_or_default().to_string()).target(
        "intact",
        if verified.intact { Verdict::Pass } else { Verdict::Miss("verification reported problems".into()) },
    ));
    section.rows.push(Row::new("records before filling (written over HTTP)", fmt_count(generated.existing)));
    section.notes.push(format!(
        "Of the verification's {}, reading the rows with the store's driver (rusqlite) is {:.0} % and one SHA-256 \
         per record (the floor) {:.0} %. The peer reads on one connection in this process; the verification runs \
         in its own process (start-up included).",
        fmt_duration(verified.elapsed),
        read.as_secs_f64() / verified.elapsed.as_secs_f64().max(1e-9) * 100.0,
        floor.as_secs_f64() / verified.elapsed.as_secs_f64().max(1e-9) * 100.0
    ));
    if !verified.offline_cli {
        section.notes.push(
            "This `flotilla` has no `audit verify --data-dir`, so the store's `audit_verify` was timed in process."
                .to_string(),
        );
    }
    Ok((section, store_row))
}

/// Server CPU per request of a phase next to its floor's, and whether the machine was full.
fn cpu_note(phase: &Usage, rate: f64, what: &str, floor: &Usage, floor_rate: f64, cores: f64) -> String {
    let (Some(server), Some(floor_server)) = (phase.server_cores, floor.server_cores) else {
        return String::new();
    };
    let per_request = Duration::from_secs_f64(server / rate.max(1e-9));
    let per_floor = Duration::from_secs_f64(floor_server / floor_rate.max(1e-9));
    let mut note = format!(
        "Server CPU per request: {} per {what}, {} per floor request. During the {what} phase the server \
         process used {server:.2} cores, the benchmark and wrk {:.2}, the whole machine {:.2} of {cores}.",
        fmt_duration(per_request),
        fmt_duration(per_floor),
        phase.client_cores,
        phase.machine_cores
    );
    if phase.machine_cores > 0.9 * cores {
        note.push_str(" The machine was saturated: the rate is bound by CPU, so the server's CPU per request is the figure to lower.");
    }
    note
}
