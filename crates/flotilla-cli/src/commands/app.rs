//! Operating applications: `logs`, `exec`, `scale`, `top`, and `rollout status|history|undo`.
//!
//! `scale` and `rollout undo` are ordinary updates of the Application (read, change, write
//! back with its resourceVersion, so a concurrent change is refused rather than lost); the
//! server checks quotas and audits them as it does every update.

use std::io::Write as _;
use std::time::{Duration, Instant};

use flotilla_client::Client;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::CliError;
use crate::output::{ReportFormat, Table, emit, note, short_time, structured};
use crate::session::Session;

/// The annotation saying why an application changed (copied into its revision).
const CHANGE_CAUSE: &str = "flotilla.io/change-cause";

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The application
    pub application: String,
    #[arg(short, long)]
    pub project: String,
    /// Only this component
    #[arg(short, long)]
    pub component: Option<String>,
    /// Only this instance
    #[arg(short, long)]
    pub instance: Option<String>,
    /// Keep printing new lines until interrupted
    #[arg(short, long)]
    pub follow: bool,
    /// Lines since this long ago (30s, 10m, 2h, 1d) or this RFC 3339 time
    #[arg(long)]
    pub since: Option<String>,
    /// The last N lines of each instance
    #[arg(long)]
    pub tail: Option<usize>,
    /// Prefix each line with its time
    #[arg(long)]
    pub timestamps: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The application
    pub application: String,
    #[arg(short, long)]
    pub project: String,
    /// The component whose instance runs the command
    #[arg(short, long)]
    pub component: String,
    /// A particular instance [default: any running one]
    #[arg(short, long)]
    pub instance: Option<String>,
    /// The command and its arguments (after `--`)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// The application
    pub application: String,
    #[arg(short, long)]
    pub project: String,
    /// The component to scale (required when the application has several)
    #[arg(short, long)]
    pub component: Option<String>,
    /// The number of instances
    #[arg(long)]
    pub replicas: u32,
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The application
    pub application: String,
    #[arg(short, long)]
    pub project: String,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The application
    pub application: String,
    #[arg(short, long)]
    pub project: String,
    /// The Kubernetes cluster (default: the first Kubernetes cluster of its environment)
    #[arg(long)]
    pub cluster: Option<String>,
    /// `yaml`: a stream of manifests (for kubectl or a GitOps repository); `json`: the answer
    #[arg(short, long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub output: ManifestFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    Yaml,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Wait for the current revision to be rolled out; fails if it misses its deadline
    Status {
        application: String,
        #[arg(short, long)]
        project: String,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// The recorded revisions of the application
    History {
        application: String,
        #[arg(short, long)]
        project: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: ReportFormat,
    },
    /// Restart every instance, rolling (a new revision with the same spec)
    Restart {
        application: String,
        #[arg(short, long)]
        project: String,
    },
    /// Roll back to the previous revision, or to the one given
    Undo {
        application: String,
        #[arg(short, long)]
        project: String,
        #[arg(long, value_name = "N")]
        to_revision: Option<u64>,
    },
}

pub async fn logs(session: &Session, args: LogsArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let mut params = vec![("follow", args.follow.to_string())];
    params.extend(args.component.map(|c| ("component", c)));
    params.extend(args.instance.map(|i| ("instance", i)));
    params.extend(args.since.map(|s| ("since", s)));
    params.extend(args.tail.map(|t| ("tail", t.to_string())));
    let response = client.application_logs(&args.project, &args.application, &params).await?;
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CliError::Io(format!("the log stream broke off: {e}")))?;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(value) = serde_json::from_slice::<Value>(&line) else { continue };
            if let Some(error) = value.get("error").and_then(Value::as_str) {
                note(&format!("error: {error}"));
                continue;
            }
            let text = log_line(&value, args.timestamps);
            writeln!(stdout, "{text}").map_err(|e| CliError::Io(e.to_string()))?;
        }
        stdout.flush().map_err(|e| CliError::Io(e.to_string()))?;
    }
    Ok(())
}

/// `[instance] text`, with the time first when asked.
pub fn log_line(line: &Value, timestamps: bool) -> String {
    let instance = line.get("instance").and_then(Value::as_str).unwrap_or_default();
    let text = line.get("text").and_then(Value::as_str).unwrap_or_default();
    let time = line
        .get("timeMicros")
        .and_then(Value::as_i64)
        .and_then(|micros| jiff::Timestamp::from_microsecond(micros).ok())
        .filter(|_| timestamps)
        .map(|t| format!("{t} "))
        .unwrap_or_default();
    format!("{time}[{instance}] {text}")
}

pub async fn exec(session: &Session, args: ExecArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let output = client
        .application_exec(&args.project, &args.application, &args.component, args.instance.as_deref(), &args.command)
        .await?;
    let text = |name: &str| output.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    print!("{}", text("stdout"));
    eprint!("{}", text("stderr"));
    let _ = std::io::stdout().flush();
    match output.get("exitCode").and_then(Value::as_i64).unwrap_or(1) {
        0 => Ok(()),
        code => Err(CliError::CommandExited(code as i32)),
    }
}

/// Reads the application, lets `change` edit it, writes it back (refused if it changed
/// meanwhile). Returns the written object.
async fn update_application(
    client: &Client,
    project: &str,
    name: &str,
    change: impl FnOnce(&mut Value) -> Result<(), CliError>,
) -> Result<Value, CliError> {
    let object = client.get("applications", Some(project), name).await?;
    let mut value = serde_json::to_value(&object).map_err(|e| CliError::Protocol(e.to_string()))?;
    change(&mut value)?;
    if let Some(status) = value.as_object_mut() {
        status.remove("status");
    }
    let written = client.update("applications", Some(project), name, &value).await?;
    serde_json::to_value(&written).map_err(|e| CliError::Protocol(e.to_string()))
}

fn set_cause(object: &mut Value, cause: String) {
    let metadata = &mut object["metadata"];
    if !metadata.get("annotations").is_some_and(Value::is_object) {
        metadata["annotations"] = json!({});
    }
    metadata["annotations"][CHANGE_CAUSE] = Value::String(cause);
}

fn generation(object: &Value) -> u64 {
    object.pointer("/metadata/generation").and_then(Value::as_u64).unwrap_or(1)
}

/// Sets the replicas of `component` (or of the only component) in an Application.
pub fn scale_spec(object: &mut Value, component: Option<&str>, replicas: u32) -> Result<String, CliError> {
    let components = object
        .pointer_mut("/spec/components")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| CliError::Protocol("the application has no components".into()))?;
    let names: Vec<String> =
        components.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string)).collect();
    let index = match component {
        Some(wanted) => names.iter().position(|n| n == wanted).ok_or_else(|| {
            CliError::usage(format!("the application has no component {wanted:?} (it has {})", names.join(", ")))
        })?,
        None if names.len() == 1 => 0,
        None => {
            return Err(CliError::usage(format!(
                "the application has {} components ({}): name one with -c/--component",
                names.len(),
                names.join(", ")
            )));
        }
    };
    components[index]["replicas"] = json!(replicas);
    Ok(names[index].clone())
}

pub async fn scale(session: &Session, args: ScaleArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let mut scaled = String::new();
    let written = update_application(&client, &args.project, &args.application, |object| {
        scaled = scale_spec(object, args.component.as_deref(), args.replicas)?;
        set_cause(object, format!("scale {scaled} to {}", args.replicas));
        Ok(())
    })
    .await?;
    emit(&format!(
        "application {} scaled: {scaled} to {} instance{} (revision {})\n",
        args.application,
        args.replicas,
        if args.replicas == 1 { "" } else { "s" },
        generation(&written)
    ))
}

pub async fn top(session: &Session, args: TopArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let metrics = client.application_metrics(&args.project, &args.application).await?;
    if let Some(text) = structured(args.output, &metrics)? {
        return emit(&text);
    }
    // CPU is the time used so far where the cluster counts it, else the cores in use now
    // (`0.25 cores`); what a cluster does not report shows as `-`.
    let mut table = Table::new(["INSTANCE", "CPU", "MEMORY", "NET RX", "NET TX", "DISK READ", "DISK WRITE"]);
    for item in metrics.get("items").and_then(Value::as_array).into_iter().flatten() {
        let number = |name: &str| item.get(name).and_then(Value::as_u64);
        let size = |name: &str| number(name).map_or_else(|| "-".to_string(), bytes);
        let cpu = match (number("cpuUsageNanos"), number("cpuNanocores")) {
            (Some(total), _) => format!("{:.2}s", total as f64 / 1e9),
            (None, Some(rate)) => format!("{:.2} cores", rate as f64 / 1e9),
            (None, None) => "-".to_string(),
        };
        table.row([
            item.get("instance").and_then(Value::as_str).unwrap_or_default().to_string(),
            cpu,
            size("memoryBytes"),
            size("networkRxBytes"),
            size("networkTxBytes"),
            size("diskReadBytes"),
            size("diskWriteBytes"),
        ]);
    }
    emit(&table.render())
}

/// `flotilla render`: the manifests as YAML documents on stdout, what the cluster cannot
/// honour as asked on stderr.
pub async fn render(session: &Session, args: RenderArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let answer = client.application_manifests(&args.project, &args.application, args.cluster.as_deref()).await?;
    for warning in answer.get("warnings").and_then(Value::as_array).into_iter().flatten() {
        eprintln!("warning: {}", warning.as_str().unwrap_or_default());
    }
    if args.output == ManifestFormat::Json {
        return emit(&serde_json::to_string_pretty(&answer).unwrap_or_default());
    }
    let mut stream = format!(
        "# {}/{} revision {} for cluster {} (namespace {})\n",
        args.project,
        args.application,
        answer["revision"],
        answer["cluster"].as_str().unwrap_or_default(),
        answer["namespace"].as_str().unwrap_or_default()
    );
    for object in answer.get("objects").and_then(Value::as_array).into_iter().flatten() {
        let yaml = crate::output::to_yaml(object)?;
        stream.push_str("---\n");
        stream.push_str(&yaml);
    }
    emit(stream.trim_end())
}

/// `1.5Mi`-style sizes.
pub fn bytes(value: u64) -> String {
    let units = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut size = value as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < units.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value}") } else { format!("{size:.1}{}", units[unit]) }
}

pub async fn rollout(session: &Session, command: RolloutCommand) -> Result<(), CliError> {
    match command {
        RolloutCommand::Status { application, project, timeout } => {
            rollout_status(session, &project, &application, timeout).await
        }
        RolloutCommand::History { application, project, output } => {
            rollout_history(session, &project, &application, output).await
        }
        RolloutCommand::Restart { application, project } => rollout_restart(session, &project, &application).await,
        RolloutCommand::Undo { application, project, to_revision } => {
            rollout_undo(session, &project, &application, to_revision).await
        }
    }
}

/// Where a rollout stands, from an Application with its observed status.
#[derive(Debug, PartialEq, Eq)]
pub enum RolloutState {
    /// Not (yet) reported by a cluster, or still an older revision.
    Waiting(String),
    Progressing(String),
    Complete,
    Failed(String),
}

pub fn rollout_state(object: &Value) -> RolloutState {
    let wanted = generation(object);
    let Some(status) = object.get("status").filter(|s| s.get("revision").is_some()) else {
        return RolloutState::Waiting("no cluster reports the application yet".into());
    };
    let revision = status.get("revision").and_then(Value::as_u64).unwrap_or(0);
    if revision != wanted {
        return RolloutState::Waiting(format!("the cluster runs revision {revision}; waiting for {wanted}"));
    }
    let components = status.get("components").and_then(Value::as_array).cloned().unwrap_or_default();
    let count = |c: &Value, name: &str| c.get(name).and_then(Value::as_u64).unwrap_or(0);
    let mut progress = Vec::new();
    let mut failed = Vec::new();
    for component in &components {
        let name = component.get("name").and_then(Value::as_str).unwrap_or_default();
        let phase = component.get("phase").and_then(Value::as_str).unwrap_or_default();
        let line = format!(
            "{name}: {} of {} updated instances ready",
            count(component, "updatedReady"),
            count(component, "desired")
        );
        match phase {
            "complete" => {}
            "deadlineExceeded" => failed.push(line),
            _ => progress.push(match component.get("message").and_then(Value::as_str) {
                Some(message) => format!("{line} ({message})"),
                None => line,
            }),
        }
    }
    if !failed.is_empty() {
        RolloutState::Failed(failed.join("; "))
    } else if !progress.is_empty() {
        RolloutState::Progressing(progress.join("; "))
    } else {
        RolloutState::Complete
    }
}

async fn rollout_status(session: &Session, project: &str, name: &str, timeout: u64) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let object = serde_json::to_value(client.get("applications", Some(project), name).await?)
            .map_err(|e| CliError::Protocol(e.to_string()))?;
        let revision = generation(&object);
        match rollout_state(&object) {
            RolloutState::Complete => {
                return emit(&format!("application {name} successfully rolled out (revision {revision})\n"));
            }
            RolloutState::Failed(why) => {
                return Err(CliError::Refused(format!(
                    "revision {revision} of {name} missed its progress deadline: {why}"
                )));
            }
            RolloutState::Waiting(what) | RolloutState::Progressing(what) => {
                let line = format!("waiting for revision {revision} of {name}: {what}");
                if line != last {
                    note(&line);
                    last = line;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(timeout) {
            return Err(CliError::Refused(format!("gave up after {timeout} s: {last}")));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The recorded revisions, newest first: (revision, object).
async fn revisions(client: &Client, project: &str, name: &str) -> Result<Vec<(u64, Value)>, CliError> {
    let page = client
        .list(
            "applicationrevisions",
            Some(project),
            &[("labelSelector", format!("flotilla.io/application={name}")), ("limit", "100".into())],
        )
        .await?;
    let mut items: Vec<(u64, Value)> = page
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item.pointer("/spec/application").and_then(Value::as_str) == Some(name))
        .filter_map(|item| item.pointer("/spec/revision").and_then(Value::as_u64).map(|r| (r, item.clone())))
        .collect();
    items.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    Ok(items)
}

pub fn history_table(revisions: &[(u64, Value)], current: u64) -> Table {
    let mut table = Table::new(["REVISION", "CREATED", "IMAGES", "CAUSE"]);
    for (revision, item) in revisions {
        let images: Vec<String> = item
            .pointer("/spec/template/components")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let field = |n: &str| c.get(n).and_then(Value::as_str).unwrap_or_default().to_string();
                format!("{}={}", field("name"), field("image"))
            })
            .collect();
        let created = item.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default();
        let marker = if *revision == current { " (current)" } else { "" };
        table.row([
            format!("{revision}{marker}"),
            short_time(created),
            images.join(","),
            item.pointer("/spec/cause").and_then(Value::as_str).unwrap_or_default().to_string(),
        ]);
    }
    table
}

async fn rollout_history(session: &Session, project: &str, name: &str, output: ReportFormat) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let current = generation(
        &serde_json::to_value(client.get("applications", Some(project), name).await?)
            .map_err(|e| CliError::Protocol(e.to_string()))?,
    );
    let revisions = revisions(&client, project, name).await?;
    let items: Vec<&Value> = revisions.iter().map(|(_, item)| item).collect();
    if let Some(text) = structured(output, &json!({ "items": items }))? {
        return emit(&text);
    }
    if revisions.is_empty() {
        return emit(&format!("application {name} has no recorded revisions yet\n"));
    }
    emit(&history_table(&revisions, current).render())
}

async fn rollout_restart(session: &Session, project: &str, name: &str) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string();
    let written = update_application(&client, project, name, |object| {
        object["spec"]["restartedAt"] = json!(now);
        set_cause(object, "restart".to_string());
        Ok(())
    })
    .await?;
    emit(&format!("application {name} restarting every instance (revision {})\n", generation(&written)))
}

async fn rollout_undo(session: &Session, project: &str, name: &str, to: Option<u64>) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let current = serde_json::to_value(client.get("applications", Some(project), name).await?)
        .map_err(|e| CliError::Protocol(e.to_string()))?;
    let revisions = revisions(&client, project, name).await?;
    let spec = current.get("spec").cloned().unwrap_or_default();
    let target = match to {
        Some(wanted) => revisions.iter().find(|(r, _)| *r == wanted).ok_or_else(|| {
            let known: Vec<String> = revisions.iter().map(|(r, _)| r.to_string()).collect();
            CliError::NotFound(format!("{name} has no revision {wanted} (recorded: {})", known.join(", ")))
        })?,
        // The newest earlier revision that differs from what runs now.
        None => revisions
            .iter()
            .find(|(r, item)| *r < generation(&current) && item.pointer("/spec/template") != Some(&spec))
            .ok_or_else(|| CliError::NotFound(format!("{name} has no earlier revision to roll back to")))?,
    };
    let (revision, item) = target;
    let template = item.pointer("/spec/template").cloned().unwrap_or_default();
    let written = update_application(&client, project, name, |object| {
        object["spec"] = template;
        set_cause(object, format!("rollback to revision {revision}"));
        Ok(())
    })
    .await?;
    emit(&format!("application {name} rolled back to revision {revision} (now revision {})\n", generation(&written)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_names_the_component_when_there_are_several() {
        let mut one = json!({"spec": {"components": [{"name": "web", "replicas": 1}]}});
        assert_eq!(scale_spec(&mut one, None, 4).unwrap(), "web");
        assert_eq!(one.pointer("/spec/components/0/replicas"), Some(&json!(4)));
        let mut two = json!({"spec": {"components": [{"name": "web"}, {"name": "worker"}]}});
        let error = scale_spec(&mut two, None, 2).unwrap_err().to_string();
        assert!(error.contains("web, worker") && error.contains("-c"), "{error}");
        let error = scale_spec(&mut two, Some("db"), 2).unwrap_err().to_string();
        assert!(error.contains("\"db\""), "{error}");
        assert_eq!(scale_spec(&mut two, Some("worker"), 2).unwrap(), "worker");
        assert_eq!(two.pointer("/spec/components/1/replicas"), Some(&json!(2)));
    }

    #[test]
    fn rollout_state_follows_the_observed_status() {
        let app = |status: Value| json!({"metadata": {"generation": 3}, "status": status});
        assert!(matches!(rollout_state(&json!({"metadata": {"generation": 3}})), RolloutState::Waiting(_)));
        assert!(matches!(rollout_state(&app(json!({"revision": 2, "components": []}))), RolloutState::Waiting(_)));
        let progressing = app(json!({"revision": 3, "components": [
            {"name": "web", "phase": "progressing", "desired": 3, "updatedReady": 1}]}));
        assert_eq!(
            rollout_state(&progressing),
            RolloutState::Progressing("web: 1 of 3 updated instances ready".into())
        );
        let failed = app(json!({"revision": 3, "components": [
            {"name": "web", "phase": "deadlineExceeded", "desired": 3, "updatedReady": 0}]}));
        assert!(matches!(rollout_state(&failed), RolloutState::Failed(_)));
        let done = app(json!({"revision": 3, "components": [{"name": "web", "phase": "complete"}]}));
        assert_eq!(rollout_state(&done), RolloutState::Complete);
    }

    #[test]
    fn log_lines_carry_their_instance() {
        let line = json!({"timeMicros": 1_795_507_200_000_000i64, "instance": "web-1-abc", "stream": "stdout", "text": "hello"});
        assert_eq!(log_line(&line, false), "[web-1-abc] hello");
        assert_eq!(log_line(&line, true), "2026-11-24T08:00:00Z [web-1-abc] hello");
        assert_eq!(bytes(1536), "1.5Ki");
        assert_eq!(bytes(512), "512");
    }
}
