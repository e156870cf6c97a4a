//! The web console (TARGETS.md: first page interactive within 1 s on loopback, the
//! 2,000-application list within 300 ms), measured in Debian's Chromium by
//! `console/e2e/bench.mjs` against a server of its own seeded here with 2,000 applications in
//! one project. Each figure stands next to its floor from the same run: the bare HTTP
//! requests behind it, made without a browser. The applications' environment is bound to a
//! Kubernetes cluster that does not answer, so nothing runs and no instance status is
//! fetched: what is measured is the console and the API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use flotilla_client::Client;
use serde::Deserialize;

use crate::report::{Row, Section, Verdict};
use crate::server::{self, Server};
use crate::stats::{Samples, fmt_duration};

const FIRST_PAGE_LIMIT: Duration = Duration::from_secs(1);
const LIST_LIMIT: Duration = Duration::from_millis(300);
const PROJECT: &str = "bench";

/// Sizes of one run.
pub struct ConsolePlan {
    pub applications: usize,
    pub runs: usize,
}

impl ConsolePlan {
    pub fn new(quick: bool) -> Self {
        Self { applications: if quick { 200 } else { 2000 }, runs: if quick { 3 } else { 9 } }
    }
}

pub fn title() -> String {
    "Web console: first page and the list of 2,000 applications".into()
}

pub fn method(plan: &ConsolePlan) -> String {
    format!(
        "A server of its own (embedded runtime off) with {apps} applications in one project, their \
         environment bound to a Kubernetes cluster that does not answer (nothing runs). \
         `console/e2e/bench.mjs` drives Debian's Chromium (playwright-core), {runs} runs each: the \
         login page interactive in a new browser context (cold cache), against fetching `index.html` \
         and its assets from node; from the Applications link to the first page of 50 rows shown, \
         against the API request for that page; from typing a name into the search box to its one \
         row shown (the page waits 150 ms for typing to pause), against the search request. \
         Medians; ratio = console / floor.",
        apps = plan.applications,
        runs = plan.runs
    )
}

/// What `bench.mjs` prints: milliseconds of every run.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Measured {
    first_page: Vec<f64>,
    first_page_floor: Vec<f64>,
    list: Vec<f64>,
    list_floor: Vec<f64>,
    search: Vec<f64>,
    search_floor: Vec<f64>,
}

fn median(millis: &[f64]) -> Duration {
    let mut samples = Samples::with_capacity(millis.len());
    for value in millis {
        samples.push(Duration::from_secs_f64(value / 1000.0));
    }
    samples.summary().p50
}

fn setup_documents(applications: usize) -> Vec<String> {
    let head = format!(
        "apiVersion: flotilla.io/v1\nkind: Workspace\nmetadata: {{name: bench-console}}\nspec: {{}}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Project\nmetadata: {{name: {PROJECT}}}\nspec: {{workspace: bench-console}}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Cluster\nmetadata: {{name: offline}}\n\
         spec: {{type: kubernetes, apiServer: 'https://127.0.0.1:9', token: bench-token}}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Environment\nmetadata: {{name: test, project: {PROJECT}}}\n\
         spec: {{tier: test, clusters: [offline]}}\n"
    );
    let mut batches = vec![head];
    let apps: Vec<String> = (0..applications)
        .map(|i| {
            format!(
                "apiVersion: flotilla.io/v1\nkind: Application\nmetadata: {{name: app-{i:04}, project: {PROJECT}}}\n\
                 spec: {{environment: test, components: [{{name: web, image: 'registry.example/shop/web:{i}', replicas: 2}}]}}\n"
            )
        })
        .collect();
    batches.extend(apps.chunks(200).map(|chunk| chunk.join("---\n")));
    batches
}

fn console_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::current_dir()?.join("console");
    if !dir.join("node_modules/playwright-core").exists() {
        bail!("{} has no node_modules: run scripts/build-console first", dir.display());
    }
    Ok(dir)
}

pub async fn run(plan: &ConsolePlan, flotilla: &Path, password: &str) -> anyhow::Result<Section> {
    let console = console_dir()?;
    let data = tempfile::tempdir()?;
    let server = Server::start(flotilla, data.path(), password).await?;
    let anonymous = Client::new(&server.base, None)?.with_user_agent("flotilla-bench");
    let login = anonymous.login_token(server::ADMIN_USER, password, "bench", None).await.context("login")?;
    let client = anonymous.with_token(Some(login.token));
    for (index, documents) in setup_documents(plan.applications).into_iter().enumerate() {
        let answer = client.apply(documents).await.with_context(|| format!("seeding batch {index}"))?;
        if answer["failed"].as_u64() != Some(0) {
            bail!("seeding batch {index} failed: {answer}");
        }
    }
    let output = tokio::process::Command::new("node")
        .arg("e2e/bench.mjs")
        .current_dir(&console)
        .env("FLOTILLA_URL", &server.base)
        .env("FLOTILLA_PASSWORD", password)
        .env("FLOTILLA_PROJECT", PROJECT)
        .env("APPLICATIONS", plan.applications.to_string())
        .env("RUNS", plan.runs.to_string())
        .output()
        .await
        .context("cannot run node")?;
    server.stop().await?;
    if !output.status.success() {
        bail!("bench.mjs failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    let measured: Measured = serde_json::from_str(last).with_context(|| format!("bench.mjs printed {last:?}"))?;

    let mut section = Section::new(title(), method(plan));
    let row = |metric: &str, console: &[f64], floor: &[f64], limit: Duration| {
        let (console, floor) = (median(console), median(floor));
        let ratio = console.as_secs_f64() / floor.as_secs_f64().max(1e-9);
        Row::new(metric, fmt_duration(console))
            .target(format!("<= {}", fmt_duration(limit)), Verdict::at_most(console, limit))
            .floor(fmt_duration(floor), format!("{ratio:.1}x"))
    };
    section.rows.push(row(
        "first page interactive (login, cold cache)",
        &measured.first_page,
        &measured.first_page_floor,
        FIRST_PAGE_LIMIT,
    ));
    section.rows.push(row(
        &format!("list of {}: first 50 rows shown", plan.applications),
        &measured.list,
        &measured.list_floor,
        LIST_LIMIT,
    ));
    section.rows.push(row(
        &format!("search of {}: typed name to its row", plan.applications),
        &measured.search,
        &measured.search_floor,
        LIST_LIMIT,
    ));
    section.notes.push(
        "The search figure includes the page's 150 ms pause for typing to settle (a request per \
         keystroke would load the server for nothing); the request itself is the floor."
            .into(),
    );
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_documents_parse_and_count() {
        let batches = setup_documents(450);
        assert_eq!(batches.len(), 1 + 3, "the setup, then applications in batches of 200");
        let apps: usize = batches[1..].iter().map(|b| b.matches("kind: Application").count()).sum();
        assert_eq!(apps, 450);
        for batch in &batches {
            for document in batch.split("---\n") {
                let value: serde_json::Value = serde_norway::from_str(document).unwrap();
                assert_eq!(value["apiVersion"], "flotilla.io/v1", "{document}");
            }
        }
    }
}
