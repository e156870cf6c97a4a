//! Operating a running application through its cluster's driver: its logs (streamed as
//! NDJSON, followed while the client listens), a command run in one of its instances, and
//! its instances' resource use.
//!
//! Reading logs and metrics takes the right to read the Application; exec takes the right to
//! change it, and is audited (the command, before it runs) like any other change.

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use flotilla_core::audit::Outcome;
use flotilla_core::rbac::Verb;
use flotilla_core::{Object, ObjectKey};
use flotilla_driver::workload::WorkloadKey;
use flotilla_driver::{ClusterDriver, LogQuery};
use flotilla_store::{AuditNote, Change, Mutation};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::objects::authorize;
use crate::state::AppState;

/// The application, after checking that `caller` may `verb` it, with the driver running it.
async fn running(
    state: &AppState,
    caller: &Caller,
    verb: Verb,
    action: &str,
    project: &str,
    name: &str,
) -> Result<(Object, std::sync::Arc<dyn ClusterDriver>, WorkloadKey), ApiError> {
    let key = ObjectKey::new("Application", Some(project.to_string()), name);
    let object = state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let info = state.kinds.lookup("Application").ok_or_else(|| ApiError::Internal("no Application kind".into()))?;
    authorize(state, caller, verb, action, info, &object).await?;
    let observed = state.observed.as_ref().ok_or_else(|| ApiError::Unavailable("no cluster is connected".into()))?;
    let (driver, workload, _cluster) = observed
        .workload_of(&object)
        .await
        .ok_or_else(|| ApiError::Unavailable(format!("{key} is not running on any cluster yet")))?;
    Ok((object, driver, workload))
}

/// Query of `GET …/applications/{name}/logs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogParams {
    pub component: Option<String>,
    pub instance: Option<String>,
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
    /// Lines written since this long ago (`30s`, `10m`, `2h`, `1d`) or since this time
    /// (RFC 3339).
    pub since: Option<String>,
    /// The last N lines of each instance.
    pub tail: Option<usize>,
}

/// Parses `since`: a duration back from `now_micros`, or a timestamp.
pub fn parse_since(since: &str, now_micros: i64) -> Result<i64, String> {
    let units = [('s', 1_000_000i64), ('m', 60_000_000), ('h', 3_600_000_000), ('d', 86_400_000_000)];
    for (suffix, micros) in units {
        if let Some(number) = since.strip_suffix(suffix)
            && let Ok(count) = number.parse::<i64>()
        {
            if count < 0 {
                return Err(format!("{since:?} is negative"));
            }
            return Ok(now_micros.saturating_sub(count.saturating_mul(micros)));
        }
    }
    since.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).map_err(|_| {
        format!("{since:?} is neither a duration (30s, 10m, 2h, 1d) nor an RFC 3339 time (2026-11-24T08:00:00Z)")
    })
}

/// `GET /api/v1/projects/{project}/applications/{name}/logs`: one JSON object per line
/// (`timeMicros`, `instance`, `stream`, `text`), oldest first.
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Query(params): Query<LogParams>,
) -> Result<Response, ApiError> {
    let since_micros = params
        .since
        .as_deref()
        .map(|since| parse_since(since, jiff::Timestamp::now().as_microsecond()))
        .transpose()
        .map_err(|message| ApiError::bad_field("since", message))?;
    let (_, driver, workload) = running(&state, &caller, Verb::Get, "application.logs", &project, &name).await?;
    let query = LogQuery {
        component: params.component,
        instance: params.instance,
        since_micros,
        tail: params.tail,
        follow: params.follow,
    };
    let lines = driver.logs(&workload, query).await?;
    let body = lines.map(|line| {
        let mut bytes = match line {
            Ok(line) => serde_json::to_vec(&line),
            Err(error) => serde_json::to_vec(&json!({"error": error.to_string()})),
        }
        .unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(bytes))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Body of `POST …/applications/{name}/exec`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecRequest {
    pub component: String,
    /// A particular instance; any running one of the component otherwise.
    pub instance: Option<String>,
    pub command: Vec<String>,
}

/// What the command wrote and how it ended (output as UTF-8, invalid bytes replaced).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResponse {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `POST /api/v1/projects/{project}/applications/{name}/exec`: runs a command in an instance.
pub async fn exec(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Json(request): Json<ExecRequest>,
) -> Result<Json<ExecResponse>, ApiError> {
    if request.command.is_empty() || request.command[0].is_empty() {
        return Err(ApiError::bad_field("command", "must name a program to run"));
    }
    if request.component.is_empty() {
        return Err(ApiError::bad_field("component", "must name a component of the application"));
    }
    let (object, driver, workload) =
        running(&state, &caller, Verb::Update, "application.exec", &project, &name).await?;
    let target = match &request.instance {
        Some(instance) => format!("instance {instance} of {}", request.component),
        None => format!("component {}", request.component),
    };
    let note = AuditNote {
        action: "application.exec".into(),
        kind: Some(object.kind.clone()),
        project: Some(project.clone()),
        name: Some(name.clone()),
        outcome: Some(Outcome::Success),
        message: Some(format!("in {target}: {}", request.command.join(" "))),
    };
    state.store.commit(Mutation { actor: caller.actor(), change: Change::Record(note) }).await?;
    let output = driver.exec(&workload, &request.component, request.instance.as_deref(), request.command).await?;
    Ok(Json(ExecResponse {
        exit_code: output.exit_code,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }))
}

/// `GET /api/v1/projects/{project}/applications/{name}/metrics`: each instance's CPU time,
/// memory, network and disk counters, now.
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, driver, workload) = running(&state, &caller, Verb::Get, "application.metrics", &project, &name).await?;
    let items = driver.metrics(&workload).await?;
    Ok(Json(json!({ "items": items })))
}

/// `GET /metrics/instances`: every instance's counters in the Prometheus text format, for
/// platform admins and auditors (a scraper authenticates with an API token).
pub async fn instance_metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if !(caller.principal.is_admin() || caller.principal.is_auditor()) {
        return Err(ApiError::Forbidden(format!(
            "user {:?} may not read every instance's metrics (platform admins and auditors may)",
            caller.user()
        )));
    }
    let mut samples = Vec::new();
    for (cluster, driver) in state.observed.as_ref().map(|o| o.drivers()).unwrap_or_default() {
        for workload in driver.workloads().await.unwrap_or_default() {
            for metrics in driver.metrics(&workload).await.unwrap_or_default() {
                samples.push((cluster.clone(), workload.clone(), metrics));
            }
        }
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
        .body(Body::from(prometheus_text(&samples)))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The Prometheus text exposition of instance counters.
pub fn prometheus_text(samples: &[(String, WorkloadKey, flotilla_driver::InstanceMetrics)]) -> String {
    use std::fmt::Write as _;
    // What a cluster does not report is left out, never shown as zero.
    type Value = fn(&flotilla_driver::InstanceMetrics) -> Option<String>;
    let families: [(&str, &str, &str, Value); 7] = [
        ("flotilla_instance_cpu_seconds_total", "counter", "CPU time used", |m| {
            m.cpu_usage_nanos.map(|c| format!("{}", c as f64 / 1e9))
        }),
        ("flotilla_instance_cpu_usage_cores", "gauge", "CPU in use now", |m| {
            m.cpu_nanocores.map(|c| format!("{}", c as f64 / 1e9))
        }),
        ("flotilla_instance_memory_working_set_bytes", "gauge", "Memory in use", |m| Some(m.memory_bytes.to_string())),
        ("flotilla_instance_network_receive_bytes_total", "counter", "Bytes received", |m| {
            m.network_rx_bytes.map(|b| b.to_string())
        }),
        ("flotilla_instance_network_transmit_bytes_total", "counter", "Bytes sent", |m| {
            m.network_tx_bytes.map(|b| b.to_string())
        }),
        ("flotilla_instance_disk_read_bytes_total", "counter", "Bytes read from storage", |m| {
            m.disk_read_bytes.map(|b| b.to_string())
        }),
        ("flotilla_instance_disk_write_bytes_total", "counter", "Bytes written to storage", |m| {
            m.disk_write_bytes.map(|b| b.to_string())
        }),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for (cluster, workload, metrics) in samples {
            let Some(value) = value(metrics) else { continue };
            let _ = writeln!(
                out,
                "{name}{{cluster=\"{}\",project=\"{}\",environment=\"{}\",application=\"{}\",instance=\"{}\"}} {}",
                escape(cluster),
                escape(&workload.project),
                escape(&workload.environment),
                escape(&workload.application),
                escape(&metrics.instance),
                value
            );
        }
    }
    out
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_back_or_a_time() {
        let now = 10_000_000_000;
        assert_eq!(parse_since("30s", now), Ok(now - 30_000_000));
        assert_eq!(parse_since("2h", now), Ok(now - 7_200_000_000));
        assert_eq!(parse_since("2026-11-24T08:00:00Z", now), Ok(1_795_507_200_000_000));
        let error = parse_since("yesterday", now).unwrap_err();
        assert!(error.contains("yesterday") && error.contains("RFC 3339"), "{error}");
        assert!(parse_since("-5m", now).is_err());
    }

    #[test]
    fn instance_counters_are_prometheus_text() {
        let workload = WorkloadKey { project: "shop".into(), environment: "prod".into(), application: "store".into() };
        let metrics = flotilla_driver::InstanceMetrics {
            instance: "web-1-abcde".into(),
            time_micros: 0,
            cpu_usage_nanos: Some(1_500_000_000),
            cpu_nanocores: None,
            memory_bytes: 4096,
            network_rx_bytes: Some(1),
            network_tx_bytes: Some(2),
            disk_read_bytes: Some(3),
            disk_write_bytes: Some(4),
        };
        let kubernetes = flotilla_driver::InstanceMetrics {
            instance: "api-0".into(),
            time_micros: 0,
            cpu_usage_nanos: None,
            cpu_nanocores: Some(250_000_000),
            memory_bytes: 1024,
            network_rx_bytes: None,
            network_tx_bytes: None,
            disk_read_bytes: None,
            disk_write_bytes: None,
        };
        let text =
            prometheus_text(&[("local".into(), workload.clone(), metrics), ("east".into(), workload, kubernetes)]);
        assert!(text.contains("flotilla_instance_cpu_usage_cores{cluster=\"east\",project=\"shop\",environment=\"prod\",application=\"store\",instance=\"api-0\"} 0.25\n"), "{text}");
        assert!(!text.contains("instance=\"api-0\"} 0\n"), "nothing unreported shows as zero: {text}");
        assert!(text.contains("# TYPE flotilla_instance_cpu_seconds_total counter\n"), "{text}");
        assert!(text.contains("flotilla_instance_cpu_seconds_total{cluster=\"local\",project=\"shop\",environment=\"prod\",application=\"store\",instance=\"web-1-abcde\"} 1.5\n"), "{text}");
        assert!(text.contains("flotilla_instance_disk_write_bytes_total{") && text.ends_with("} 4\n"), "{text}");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
