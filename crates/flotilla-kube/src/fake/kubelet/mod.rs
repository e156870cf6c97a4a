//! A kubelet for the fake cluster that runs its pods for real, through a CRI runtime
//! (containerd, as a real node's kubelet does): with it, a pod's containers are processes
//! that exit, write logs and answer probes, instead of the simulation's stand-ins.
//!
//! Each pass (five a second) it takes the pods scheduled to the node and, per pod: pulls
//! the image when it is not present (a failed pull is `ErrImagePull`, retried), runs the
//! sandbox (its network namespace and address come from the runtime's CNI network), creates
//! and starts each container (env resolved from values, ConfigMaps and Secrets; configMap,
//! secret, claim and emptyDir volumes as host directories; CPU and memory limits), runs the
//! startup, liveness and readiness probes (HTTP and TCP from the node to the pod's address,
//! exec in the container), restarts containers that exit or fail their liveness probe
//! (`restartPolicy`, back-off from the second restart on: 10 s doubling to 5 min), and
//! writes the pod's status and Events the way the kubelet words them. Pods that are gone
//! from the API are stopped and removed.
//!
//! The API server's `pods/log`, `pods/exec` and `metrics.k8s.io` answer from what this
//! kubelet publishes in [`NodeView`]: the containers' CRI log files, exec through the CRI,
//! CPU rates and memory from the runtime's stats.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_local::cri::{Cri, api};
use flotilla_local::probe::{self, ProbeTracker};
use serde_json::{Value, json};

mod pod_spec;
mod serve;

pub(crate) use pod_spec::environment;
use pod_spec::{container_config, resolve_probe};
pub(crate) use serve::{exec, log, usage};

use super::simulate::now_rfc3339;
use super::{Collection, FakeState};

/// The second restart waits this long, each later one twice the one before...
const BACKOFF_START: Duration = Duration::from_secs(10);
/// ...up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long starts again without back-off when it exits.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// A failed image pull is tried again after this.
const PULL_RETRY: Duration = Duration::from_secs(5);

/// One container of a running pod, as the API server's handlers need it.
#[derive(Debug, Clone)]
pub(crate) struct ContainerView {
    pub name: String,
    /// The runtime's container, while there is one.
    pub id: Option<String>,
    /// The log file of the current attempt, and of the one before (`previous=true`).
    pub log: PathBuf,
    pub previous_log: Option<PathBuf>,
    /// CPU in billionths of a core over the last sample interval, and memory in bytes.
    pub usage: Option<(u64, u64)>,
}

/// What the kubelet publishes of its pods, by (namespace, name).
#[derive(Debug, Default)]
pub(crate) struct NodeView {
    pods: Mutex<HashMap<(String, String), Vec<ContainerView>>>,
}

impl NodeView {
    /// The containers of a pod the kubelet runs.
    pub(crate) fn containers(&self, namespace: &str, pod: &str) -> Option<Vec<ContainerView>> {
        self.pods.lock().expect("node view").get(&(namespace.to_string(), pod.to_string())).cloned()
    }
}

/// The kubelet of the fake cluster's node, running pods through `cri`.
pub(crate) struct Kubelet {
    pub(crate) cri: Cri,
    pub(crate) view: NodeView,
    /// Added to every sandbox (so that a test can remove what it left behind).
    labels: HashMap<String, String>,
    /// Pod directories: logs, volumes.
    dir: PathBuf,
}

impl Kubelet {
    pub(crate) fn new(cri: Cri, labels: HashMap<String, String>, dir: PathBuf) -> Self {
        Self { cri, view: NodeView::default(), labels, dir }
    }
}

/// What the kubelet keeps of one container between passes.
pub(super) struct ContainerRun {
    spec: Value,
    id: Option<String>,
    attempt: u32,
    restarts: u32,
    started: Option<Instant>,
    started_at: Option<String>,
    /// Why it is not running (reason, message), while it is not.
    waiting: Option<(String, String)>,
    /// How the previous attempt ended.
    last_state: Option<Value>,
    restart_at: Option<Instant>,
    /// Exited for good (its pod's restart policy says so).
    done: bool,
    backoff: Option<Duration>,
    started_ok: bool,
    ready: bool,
    startup: ProbeTracker,
    liveness: ProbeTracker,
    readiness: ProbeTracker,
    cpu_sample: Option<(Instant, u64)>,
    usage: Option<(u64, u64)>,
}

/// What the kubelet keeps of one pod between passes.
pub(super) struct PodRun {
    namespace: String,
    name: String,
    uid: String,
    restart_policy: String,
    /// `terminationGracePeriodSeconds`.
    grace_seconds: i64,
    sandbox: Option<(String, api::PodSandboxConfig)>,
    ip: Option<String>,
    start_time: Option<String>,
    /// When the image of each container was last tried, and why that failed.
    pulls: HashMap<String, (Instant, Option<String>)>,
    containers: Vec<ContainerRun>,
    events: Vec<(&'static str, &'static str, String)>,
}

pub(super) fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

/// Runs the kubelet until the task is aborted.
pub(crate) async fn run(shared: Arc<Mutex<FakeState>>, kubelet: Arc<Kubelet>) {
    let mut pods: HashMap<String, PodRun> = HashMap::new();
    loop {
        let scheduled: Vec<Value> = {
            let state = shared.lock().expect("fake state");
            state
                .objects
                .iter()
                .filter(|((gv, resource, _), _)| gv == "v1" && resource == "pods")
                .flat_map(|(_, items)| items.values())
                .filter(|pod| pod["spec"]["nodeName"].is_string())
                .cloned()
                .collect()
        };
        let wanted: BTreeMap<String, &Value> = scheduled
            .iter()
            .map(|pod| (pod["metadata"]["uid"].as_str().unwrap_or_default().to_string(), pod))
            .collect();
        let gone: Vec<String> = pods.keys().filter(|uid| !wanted.contains_key(*uid)).cloned().collect();
        for uid in gone {
            if let Some(run) = pods.remove(&uid) {
                stop_pod(&kubelet, run).await;
            }
        }
        for (uid, pod) in &wanted {
            let run = pods.entry(uid.clone()).or_insert_with(|| PodRun::new(pod));
            sync_pod(&kubelet, &shared, run, pod).await;
            let status = run.status(pod);
            let views = run.views(&kubelet.dir);
            kubelet.view.pods.lock().expect("node view").insert((run.namespace.clone(), run.name.clone()), views);
            let mut state = shared.lock().expect("fake state");
            let collection: Collection = ("v1".into(), "pods".into(), Some(run.namespace.clone()));
            let live = state.objects.get(&collection).and_then(|items| items.get(&run.name)).cloned();
            if let Some(live) = live.filter(|live| live["metadata"]["uid"] == pod["metadata"]["uid"]) {
                for (kind, reason, message) in run.events.drain(..) {
                    state.event(&run.namespace, &live, kind, reason, message);
                }
                if live["status"] != status {
                    let mut updated = live.clone();
                    updated["status"] = status;
                    state.store(collection, updated);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_pod(kubelet: &Kubelet, run: PodRun) {
    let mut cri = kubelet.cri.clone();
    if let Some((sandbox, _)) = &run.sandbox {
        let _ = cri.stop_pod_sandbox(sandbox).await;
        let _ = cri.remove_pod_sandbox(sandbox).await;
    }
    kubelet.view.pods.lock().expect("node view").remove(&(run.namespace.clone(), run.name.clone()));
    let _ = std::fs::remove_dir_all(pod_dir(&kubelet.dir, &run.uid));
}

pub(super) fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

impl PodRun {
    fn new(pod: &Value) -> Self {
        let containers = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|spec| ContainerRun {
                spec: spec.clone(),
                id: None,
                attempt: 0,
                restarts: 0,
                started: None,
                started_at: None,
                waiting: Some(("ContainerCreating".into(), String::new())),
                last_state: None,
                restart_at: None,
                done: false,
                backoff: None,
                started_ok: spec["startupProbe"].is_null(),
                ready: false,
                startup: ProbeTracker::default(),
                liveness: ProbeTracker::default(),
                readiness: ProbeTracker::default(),
                cpu_sample: None,
                usage: None,
            })
            .collect();
        PodRun {
            namespace: pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
            name: name_of(pod),
            uid: pod["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
            restart_policy: pod["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_string(),
            grace_seconds: pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30),
            sandbox: None,
            ip: None,
            start_time: None,
            pulls: HashMap::new(),
            containers,
            events: Vec::new(),
        }
    }

    fn warn(&mut self, reason: &'static str, message: String) {
        self.events.push(("Warning", reason, message));
    }

    fn note(&mut self, reason: &'static str, message: String) {
        self.events.push(("Normal", reason, message));
    }

    /// The pod's status as the kubelet reports it.
    fn status(&self, pod: &Value) -> Value {
        let statuses: Vec<Value> = self.containers.iter().map(ContainerRun::status).collect();
        let running = self.containers.iter().any(|c| c.id.is_some() && c.started_at.is_some());
        let all_ready = self.containers.iter().all(|c| c.ready);
        let flag = if all_ready { "True" } else { "False" };
        let mut status = json!({
            "phase": if running || self.containers.iter().any(|c| c.restarts > 0) { "Running" } else { "Pending" },
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": flag}, {"type": "Ready", "status": flag}],
            "hostIP": "127.0.0.1",
            "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
            "containerStatuses": statuses,
        });
        if let Some(ip) = &self.ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        if let Some(start) = &self.start_time {
            status["startTime"] = json!(start);
        }
        status
    }

    fn views(&self, root: &Path) -> Vec<ContainerView> {
        let logs = pod_dir(root, &self.uid).join("logs");
        self.containers
            .iter()
            .map(|c| {
                let name = c.spec["name"].as_str().unwrap_or_default().to_string();
                ContainerView {
                    log: logs.join(log_path(&name, c.attempt)),
                    previous_log: c.attempt.checked_sub(1).map(|a| logs.join(log_path(&name, a))),
                    id: c.id.clone(),
                    usage: c.usage,
                    name,
                }
            })
            .collect()
    }
}

/// A container's log file, relative to the pod's log directory (as the kubelet names it).
pub(super) fn log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

impl ContainerRun {
    fn name(&self) -> String {
        self.spec["name"].as_str().unwrap_or_default().to_string()
    }

    fn status(&self) -> Value {
        let state = match (&self.waiting, &self.started_at) {
            (Some((reason, message)), _) => {
                let mut waiting = json!({"reason": reason});
                if !message.is_empty() {
                    waiting["message"] = json!(message);
                }
                json!({"waiting": waiting})
            }
            (None, Some(started_at)) => json!({"running": {"startedAt": started_at}}),
            (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        let image = self.spec["image"].clone();
        let mut status = json!({"name": self.spec["name"], "image": image, "imageID": "", "ready": self.ready,
            "restartCount": self.restarts, "started": self.started_at.is_some() && self.waiting.is_none(),
            "state": state, "lastState": self.last_state.clone().unwrap_or_else(|| json!({}))});
        if let Some(id) = &self.id {
            status["containerID"] = json!(format!("containerd://{id}"));
        }
        status
    }
}

/// One pass over one pod.
async fn sync_pod(kubelet: &Kubelet, shared: &Arc<Mutex<FakeState>>, run: &mut PodRun, pod: &Value) {
    let mut cri = kubelet.cri.clone();
    // Images first: nothing starts before every image is there.
    let mut missing = false;
    for index in 0..run.containers.len() {
        let image = run.containers[index].spec["image"].as_str().unwrap_or_default().to_string();
        match pull(&mut cri, run, &image).await {
            Ok(()) => {}
            Err(message) => {
                missing = true;
                let container = &mut run.containers[index];
                container.waiting = Some(("ErrImagePull".into(), message));
            }
        }
    }
    if missing {
        return;
    }
    if run.sandbox.is_none() {
        let config = sandbox_config(kubelet, run, pod);
        match cri.run_pod_sandbox(config.clone()).await {
            Ok(id) => {
                run.ip = cri.pod_ip(&id).await.ok().flatten();
                run.start_time = Some(now_rfc3339());
                run.sandbox = Some((id, config));
            }
            Err(error) => {
                run.warn("FailedCreatePodSandBox", format!("Failed to create pod sandbox: {error}"));
                return;
            }
        }
    }
    let Some((sandbox, sandbox_config)) = run.sandbox.clone() else { return };
    for index in 0..run.containers.len() {
        sync_container(kubelet, shared, &mut cri, run, index, &sandbox, &sandbox_config).await;
    }
}

/// Makes sure `image` is present: `Err` says why a pull failed (tried again after a while).
async fn pull(cri: &mut Cri, run: &mut PodRun, image: &str) -> Result<(), String> {
    if let Some((tried, failure)) = run.pulls.get(image) {
        match failure {
            None => return Ok(()),
            Some(message) if tried.elapsed() < PULL_RETRY => return Err(message.clone()),
            Some(_) => {}
        }
    }
    let outcome = match cri.image_id(image).await {
        Ok(Some(_)) => {
            run.note("Pulled", format!("Container image \"{image}\" already present on machine"));
            Ok(())
        }
        _ => {
            run.note("Pulling", format!("Pulling image \"{image}\""));
            match cri.pull_image(image).await {
                Ok(_) => {
                    run.note("Pulled", format!("Successfully pulled image \"{image}\""));
                    Ok(())
                }
                Err(error) => {
                    let message = format!("Failed to pull image \"{image}\": {error}");
                    run.warn("Failed", message.clone());
                    Err(message)
                }
            }
        }
    };
    run.pulls.insert(image.to_string(), (Instant::now(), outcome.clone().err()));
    outcome
}

fn sandbox_config(kubelet: &Kubelet, run: &PodRun, pod: &Value) -> api::PodSandboxConfig {
    let mut labels = kubelet.labels.clone();
    labels.insert("io.kubernetes.pod.name".into(), run.name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), run.namespace.clone());
    labels.insert("io.kubernetes.pod.uid".into(), run.uid.clone());
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: run.name.clone(),
            uid: run.uid.clone(),
            namespace: run.namespace.clone(),
            attempt: 0,
        }),
        hostname: pod["spec"]["hostname"].as_str().unwrap_or(&run.name).to_string(),
        log_directory: pod_dir(&kubelet.dir, &run.uid).join("logs").display().to_string(),
        labels,
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(flotilla_local::instance::namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn sync_container(
    kubelet: &Kubelet,
    shared: &Arc<Mutex<FakeState>>,
    cri: &mut Cri,
    run: &mut PodRun,
    index: usize,
    sandbox: &str,
    sandbox_config: &api::PodSandboxConfig,
) {
    let name = run.containers[index].name();
    let pod_name = run.name.clone();
    // Start (or start again, once its back-off is over).
    if run.containers[index].id.is_none() {
        let container = &run.containers[index];
        if container.done || container.restart_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let config = {
            let state = shared.lock().expect("fake state");
            container_config(&state, kubelet, run, index)
        };
        let config = match config {
            Ok(config) => config,
            Err(message) => {
                run.containers[index].waiting = Some(("CreateContainerConfigError".into(), message.clone()));
                run.warn("Failed", format!("Error: {message}"));
                return;
            }
        };
        let created = cri.create_container(sandbox, config, sandbox_config.clone()).await;
        let started = match created {
            Ok(id) => cri.start_container(&id).await.map(|()| id),
            Err(error) => Err(error),
        };
        let container = &mut run.containers[index];
        match started {
            Ok(id) => {
                let restarted = container.started_at.is_some() || container.last_state.is_some();
                if restarted {
                    container.restarts += 1;
                }
                container.id = Some(id);
                container.started = Some(Instant::now());
                container.started_at = Some(now_rfc3339());
                container.waiting = None;
                container.restart_at = None;
                container.started_ok = container.spec["startupProbe"].is_null();
                container.ready = false;
                container.startup = ProbeTracker::default();
                container.liveness = ProbeTracker::default();
                container.readiness = ProbeTracker::default();
                run.note("Created", format!("Created container {name}"));
                run.note("Started", format!("Started container {name}"));
            }
            Err(error) => {
                container.waiting = Some(("CreateContainerError".into(), error.to_string()));
                container.restart_at = Some(Instant::now() + PULL_RETRY);
                run.warn("Failed", format!("Error: {error}"));
                return;
            }
        }
    }
    let Some(id) = run.containers[index].id.clone() else { return };

    // Has it exited?
    let status = match cri.container_status(&id).await {
        Ok(status) => status,
        Err(_) => return,
    };
    if status.state == api::ContainerState::ContainerExited as i32 {
        let container = &mut run.containers[index];
        let ran = container.started.map(|s| s.elapsed()).unwrap_or_default();
        let reason = match (status.reason.as_str(), status.exit_code) {
            ("OOMKilled", _) => "OOMKilled",
            (_, 0) => "Completed",
            _ => "Error",
        };
        let finished_at = jiff::Timestamp::from_nanosecond(i128::from(status.finished_at))
            .map(|t| t.to_string())
            .unwrap_or_else(|_| now_rfc3339());
        container.last_state = Some(json!({"terminated": {"exitCode": status.exit_code, "reason": reason,
            "startedAt": container.started_at, "finishedAt": finished_at,
            "containerID": format!("containerd://{id}")}}));
        container.ready = false;
        container.usage = None;
        container.cpu_sample = None;
        let _ = cri.remove_container(&id).await;
        container.id = None;
        let restart = match run.restart_policy.as_str() {
            "Never" => false,
            "OnFailure" => status.exit_code != 0,
            _ => true,
        };
        if !restart {
            container.waiting = Some(("Terminated".into(), format!("exited with {}", status.exit_code)));
            container.done = true;
            return;
        }
        if ran >= BACKOFF_RESET {
            container.backoff = None;
        }
        // The first restart is immediate; each later one waits twice as long as the last.
        let wait = container.backoff;
        container.backoff = Some(wait.map_or(BACKOFF_START, |w| (w * 2).min(BACKOFF_MAX)));
        container.attempt += 1;
        match wait {
            Some(wait) => {
                container.restart_at = Some(Instant::now() + wait);
                container.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!("back-off {}s restarting failed container={name} pod={pod_name}", wait.as_secs()),
                ));
                run.warn("BackOff", format!("Back-off restarting failed container {name} in pod {pod_name}"));
            }
            None => container.restart_at = None,
        }
        return;
    }

    sample_usage(cri, &mut run.containers[index], &id).await;
    probe_container(cri, run, index, &id).await;
}

/// CPU (a rate over the time since the last sample, as metrics-server computes it) and
/// memory (the working set) of a running container.
async fn sample_usage(cri: &mut Cri, container: &mut ContainerRun, id: &str) {
    let Ok(stats) = cri.container_stats(id).await else { return };
    let now = Instant::now();
    let cpu = stats.cpu.and_then(|c| c.usage_core_nano_seconds).map(|v| v.value);
    let memory = stats.memory.and_then(|m| m.working_set_bytes).map(|v| v.value);
    if let (Some(cpu), Some((then, before))) = (cpu, container.cpu_sample) {
        let elapsed = now.duration_since(then).as_nanos().max(1);
        if elapsed >= Duration::from_millis(900).as_nanos() {
            let rate = u128::from(cpu.saturating_sub(before)) * 1_000_000_000 / elapsed;
            container.usage = Some((u64::try_from(rate).unwrap_or(u64::MAX), memory.unwrap_or(0)));
            container.cpu_sample = Some((now, cpu));
        }
    } else if let Some(cpu) = cpu {
        container.cpu_sample = Some((now, cpu));
    }
}

/// Runs the probes that are due; a failed liveness (or startup) probe stops the container,
/// and the next pass restarts it.
async fn probe_container(cri: &mut Cri, run: &mut PodRun, index: usize, id: &str) {
    let ip = run.ip.clone();
    let name = run.containers[index].name();
    let Some(started) = run.containers[index].started else { return };
    let spec = run.containers[index].spec.clone();
    for (field, label) in [("startupProbe", "Startup"), ("livenessProbe", "Liveness"), ("readinessProbe", "Readiness")]
    {
        let Some(probe) = resolve_probe(&spec, field) else {
            if field == "readinessProbe" && run.containers[index].started_ok {
                run.containers[index].ready = true;
            }
            continue;
        };
        let container = &mut run.containers[index];
        if field != "startupProbe" && !container.started_ok {
            continue;
        }
        if field == "startupProbe" && container.started_ok {
            continue;
        }
        let tracker = match field {
            "startupProbe" => &mut container.startup,
            "livenessProbe" => &mut container.liveness,
            _ => &mut container.readiness,
        };
        if !tracker.due(&probe, started) {
            continue;
        }
        tracker.started();
        let timeout = Duration::from_secs(u64::from(probe.timeout_seconds.max(1)));
        let result = probe::run(cri, &probe.action, ip.as_deref(), id, timeout).await;
        tracker.finished(result);
        let Some(result) = tracker.take() else { continue };
        let (successes, failures) = (tracker.successes, tracker.failures);
        if let Err(message) = &result {
            run.warn("Unhealthy", format!("{label} probe failed: {message}"));
        }
        let container = &mut run.containers[index];
        match field {
            "startupProbe" if successes >= 1 => container.started_ok = true,
            "readinessProbe" => {
                if successes >= probe.success_threshold.max(1) {
                    container.ready = true;
                } else if failures >= probe.failure_threshold.max(1) {
                    container.ready = false;
                }
            }
            _ if failures >= probe.failure_threshold.max(1) => {
                container.ready = false;
                // The probe's grace period, else the pod's (as the kubelet's).
                let grace = spec[field]["terminationGracePeriodSeconds"].as_i64().unwrap_or(run.grace_seconds);
                run.note(
                    "Killing",
                    format!("Container {name} failed {} probe, will be restarted", label.to_lowercase()),
                );
                let _ = cri.stop_container(id, grace).await;
            }
            _ => {}
        }
    }
}
