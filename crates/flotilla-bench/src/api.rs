//! The scenarios that drive the API over loopback with the typed client: seeding, the list
//! of 5,000 and open-loop audited writes at a fixed rate (the GETs and the closed loop of
//! creates use `wrk`, see [`crate::wrk`]). Also reads the server's `/metrics` to show where
//! a request's time goes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_client::Client;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::stats::{Samples, Summary};

/// Name of the `i`-th seeded workspace.
pub fn workspace_name(i: usize) -> String {
    format!("bench-{i:05}")
}

fn workspace_labels(i: usize) -> Value {
    json!({"bench": "api", "shard": format!("s{}", i % 16)})
}

/// A workspace document as YAML (JSON is YAML).
fn workspace_document(i: usize) -> String {
    let doc = json!({
        "apiVersion": "flotilla.io/v1",
        "kind": "Workspace",
        "metadata": {"name": workspace_name(i), "labels": workspace_labels(i)},
        "spec": {"displayName": format!("Bench workspace {i}"), "description": "seeded"},
    });
    doc.to_string()
}

/// Creates `count` workspaces through `POST /api/v1/apply`, `batch` documents per request,
/// two requests in flight (so that group commit has something to group).
pub async fn seed(client: &Client, count: usize, batch: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let batches: Vec<(usize, usize)> =
        (0..count).step_by(batch).map(|from| (from, (from + batch).min(count))).collect();
    let mut pending = futures::stream::iter(batches.into_iter().map(|(from, to)| {
        let client = client.clone();
        async move {
            let stream = (from..to).map(workspace_document).collect::<Vec<_>>().join("\n---\n");
            let answer = client.apply(stream).await.with_context(|| format!("apply of workspaces {from}..{to}"))?;
            let failed = answer["failed"].as_u64().unwrap_or(u64::MAX);
            if failed != 0 {
                let first = answer["results"]
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["result"] == "failed"))
                    .cloned()
                    .unwrap_or(Value::Null);
                bail!("{failed} of workspaces {from}..{to} failed to apply; first: {first}");
            }
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(2);
    while let Some(result) = pending.next().await {
        result?;
    }
    Ok(started.elapsed())
}

/// The list scenario's figures.
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub requests: Summary,
    /// Items in the first page of the last response.
    pub items: usize,
    pub bytes: usize,
    /// Whether the page ended with a continue token (the server capped the page).
    pub continued: bool,
    /// When the page was capped: the walk over every page, timed the same way.
    pub walk: Option<(Summary, usize, usize)>,
}

/// `GET /api/v1/workspaces?limit=5000`, `runs` times one after the other. Each sample is the
/// time until the whole body has arrived; the body is parsed after the clock stops.
pub async fn list(client: &Client, expected: usize, runs: usize) -> anyhow::Result<ListResult> {
    let limit = expected.to_string();
    let mut samples = Samples::with_capacity(runs);
    let mut result = ListResult::default();
    // One unmeasured request: the first one after seeding warms SQLite's page cache.
    let _ = fetch_page(client, &limit, None).await?;
    for _ in 0..runs {
        let started = Instant::now();
        let body = fetch_page(client, &limit, None).await?;
        samples.push(started.elapsed());
        let page: Value = serde_json::from_slice(body.as_ref()).context("list response")?;
        result.items = page["items"].as_array().map_or(0, Vec::len);
        result.bytes = body.as_ref().len();
        result.continued = page.pointer("/metadata/continue").is_some();
    }
    result.requests = samples.summary();
    if result.continued {
        let mut walks = Samples::with_capacity(runs);
        let (mut items, mut bytes) = (0, 0);
        for _ in 0..runs {
            let started = Instant::now();
            let mut bodies = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let body = fetch_page(client, &limit, token.as_deref()).await?;
                // Only the continue token is needed to go on; everything else is parsed later.
                let page: Value = serde_json::from_slice(body.as_ref()).context("list response")?;
                token = page.pointer("/metadata/continue").and_then(Value::as_str).map(str::to_string);
                bodies.push((page, body.as_ref().len()));
                if token.is_none() {
                    break;
                }
            }
            walks.push(started.elapsed());
            items = bodies.iter().map(|(page, _)| page["items"].as_array().map_or(0, Vec::len)).sum();
            bytes = bodies.iter().map(|(_, len)| len).sum();
        }
        result.walk = Some((walks.summary(), items, bytes));
    }
    Ok(result)
}

async fn fetch_page(client: &Client, limit: &str, token: Option<&str>) -> anyhow::Result<impl AsRef<[u8]> + use<>> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(token) = token {
        query.push(("continue", token.to_string()));
    }
    let response = client.send(client.request(Method::GET, "/api/v1/workspaces").query(&query)).await?;
    Ok(response.bytes().await?)
}

/// Figures of a load phase.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Summary,
    /// Successful requests per second over the phase.
    pub rate: f64,
    /// Open loop only: (scheduled offset from the start, latency) of every answered request.
    pub timeline: Vec<(Duration, Duration)>,
}

/// How the slow requests of an open-loop run are spread over time.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    /// Requests slower than the limit.
    pub over: usize,
    /// Start of each distinct window (of `window`) in which they were scheduled.
    pub windows: Vec<Duration>,
    /// Scheduled offset of the slowest request.
    pub worst_at: Duration,
}

/// Groups the requests slower than `limit` by the `window` in which they were scheduled:
/// a few windows mean a few stalls; many mean a general slowdown.
pub fn tail(timeline: &[(Duration, Duration)], limit: Duration, window: Duration) -> Tail {
    let slow: Vec<_> = timeline.iter().filter(|(_, latency)| *latency > limit).collect();
    let mut windows: Vec<u128> = slow.iter().map(|(at, _)| at.as_nanos() / window.as_nanos().max(1)).collect();
    windows.sort_unstable();
    windows.dedup();
    let worst_at = timeline.iter().max_by_key(|(_, latency)| *latency).map_or(Duration::ZERO, |(at, _)| *at);
    let windows = windows.into_iter().map(|w| window * w as u32).collect();
    Tail { over: slow.len(), windows, worst_at }
}

/// Open loop: a `PUT` of seeded workspace `i % seeded` every `1/rate` s for `duration`, each
/// in its own task, whether or not earlier ones have finished. Latency runs from the time
/// the request was *scheduled*, so a server that falls behind is charged for the wait
/// (no coordinated omission).
pub async fn fixed_rate_updates(
    client: &Client,
    seeded: usize,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let total = (u64::from(rate) * duration.as_millis() as u64 / 1000) as usize;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::with_capacity(total);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    for i in 0..total {
        let scheduled = start + period * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let client = client.clone();
        let errors = errors.clone();
        let first_error = first_error.clone();
        tasks.push(tokio::spawn(async move {
            let n = i % seeded;
            let body = json!({
                "apiVersion": "flotilla.io/v1",
                "kind": "Workspace",
                "metadata": {"name": workspace_name(n), "labels": workspace_labels(n)},
                "spec": {"displayName": format!("Bench workspace {n}"), "description": format!("fixed-rate write {i}")},
            });
            let outcome = client.update("workspaces", None, &workspace_name(n), &body).await;
            let latency = scheduled.elapsed();
            match outcome {
                Ok(_) => Some((scheduled - start, latency)),
                Err(error) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error.lock().await.get_or_insert_with(|| error.to_string());
                    None
                }
            }
        }));
    }
    let mut samples = Samples::with_capacity(total);
    let mut timeline = Vec::with_capacity(total);
    for task in tasks {
        if let Some((at, latency)) = task.await? {
            samples.push(latency);
            timeline.push((at, latency));
        }
    }
    let elapsed = start.elapsed();
    let ok = samples.len() as u64;
    let first_error = first_error.lock().await.take();
    Ok(LoadResult {
        ok,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        latency: samples.summary(),
        rate: ok as f64 / elapsed.as_secs_f64(),
        timeline,
    })
}

/// Sum (seconds) and count of one histogram series of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub count: f64,
    pub sum: f64,
    /// Cumulative bucket counts by upper bound in microseconds (`+Inf` as `u64::MAX`).
    pub buckets: BTreeMap<u64, f64>,
}

/// The server's own latency histograms (`flotilla_store_operation_duration_seconds` by
/// operation, `flotilla_http_request_duration_seconds` by method and route), summed.
pub async fn scrape_metrics(client: &Client) -> anyhow::Result<BTreeMap<String, Series>> {
    let response = client.send(client.request(Method::GET, "/metrics")).await?;
    let text = response.text().await?;
    Ok(parse_metrics(&text))
}

/// Reads the `_sum` and `_count` lines of the two latency histograms, keyed
/// `store <operation>` and `http <METHOD> <route>`.
pub fn parse_metrics(text: &str) -> BTreeMap<String, Series> {
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines() {
        let (name_labels, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match name_labels.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        let label = |key: &str| -> String {
            labels
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        let (prefix, field) = if let Some(prefix) = name.strip_suffix("_sum") {
            (prefix, 0)
        } else if let Some(prefix) = name.strip_suffix("_count") {
            (prefix, 1)
        } else if let Some(prefix) = name.strip_suffix("_bucket") {
            (prefix, 2)
        } else {
            continue;
        };
        let key = match prefix {
            "flotilla_store_operation_duration_seconds" => format!("store {}", label("operation")),
            "flotilla_http_request_duration_seconds" => format!("http {} {}", label("method"), label("route")),
            _ => continue,
        };
        let entry = series.entry(key).or_default();
        match field {
            0 => entry.sum += value,
            1 => entry.count += value,
            _ => {
                let le = label("le");
                let bound = if le == "+Inf" {
                    u64::MAX
                } else {
                    le.parse::<f64>().map_or(u64::MAX, |seconds| (seconds * 1e6).round() as u64)
                };
                *entry.buckets.entry(bound).or_default() += value;
            }
        }
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_histograms_are_summed_by_series() {
        let text = "# HELP x y\n\
            flotilla_store_operation_duration_seconds_sum{operation=\"commit\"} 2.5\n\
            flotilla_store_operation_duration_seconds_count{operation=\"commit\"} 1000\n\
            flotilla_store_operation_duration_seconds_bucket{le=\"0.1\",operation=\"commit\"} 10\n\
            flotilla_http_request_duration_seconds_sum{method=\"GET\",route=\"/healthz\"} 0.5\n\
            flotilla_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 5000\n\
            flotilla_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 5000\n";
        let series = parse_metrics(text);
        assert_eq!(series.len(), 2);
        assert_eq!(series["store commit"].buckets[&100_000], 10.0);
        assert_eq!(series["store commit"].sum, 2.5);
        assert_eq!(series["store commit"].count, 1000.0);
        assert_eq!(series["http GET /healthz"].count, 5000.0);
    }

    #[test]
    fn slow_requests_are_grouped_into_stalls() {
        let ms = Duration::from_millis;
        let timeline = [(ms(0), ms(3)), (ms(10), ms(40)), (ms(12), ms(38)), (ms(500), ms(25)), (ms(900), ms(2))];
        let tail = tail(&timeline, ms(20), ms(100));
        assert_eq!(tail.over, 3);
        assert_eq!(tail.windows, vec![ms(0), ms(500)]);
        assert_eq!(tail.worst_at, ms(10));
    }

    #[test]
    fn seeded_documents_parse() {
        let doc: Value = serde_json::from_str(&workspace_document(42)).unwrap();
        assert_eq!(doc["metadata"]["name"], "bench-00042");
        assert_eq!(doc["metadata"]["labels"]["shard"], "s10");
    }
}
