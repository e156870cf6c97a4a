//! The embedded-runtime benchmarks: a second `flotilla server`, with the embedded runtime
//! enabled (its own containerd under a temporary data directory), driven through the API.
//!
//! 1. apply → instance running (and → ready), sample by sample, alternating with two floors
//!    on the same containerd and image: a pod made with direct CRI calls (RunPodSandbox,
//!    CreateContainer, StartContainer) in the environment's pod namespace, so with its CNI
//!    network, the floor of the 1.3x target; and `ctr run -d`, a bare container (no sandbox,
//!    no network), an informative lower floor;
//! 2. a rolling update of 50 replicas whose instances are ready about 1 s after they start;
//! 3. a rollback: from a rollout stuck on a revision that never becomes ready, the previous
//!    spec written back (as `flotilla rollout undo` does) until it is complete again.
//!
//! The runtime needs root; without it the three sections say they did not run. Whatever
//! happens, the scenarios' applications are deleted and their pods waited for (pods outlive
//! the control plane by design), the floors' pods and containers left behind are removed,
//! then the server is stopped (it stops its containerd), and
//! what the runtime leaves on the host (bridges, firewall and service rules) and the data
//! directory are removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use flotilla_client::Client;
use flotilla_core::Object;
use flotilla_local::cri::{Cri, api};
use flotilla_local::instance::INSTANCE_LABEL;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::probe::{Probe, Usage};
use crate::progress;
use crate::report::{Row, Section, Verdict, ms, ratio};
use crate::server::{self, Server};
use crate::stats::{Samples, Summary, fmt_duration};

/// The image every scenario runs (and the floor too).
const IMAGE: &str = "flotilla.local/bench/busybox:1";
const ENVIRONMENT: &str = "test";
const COMPONENT: &str = "web";
/// Settings of the runtime server: networks and service addresses of its own.
const NETWORK_OCTET: &str = "149";
const SERVICE_RANGE: &str = "10.148.0.0/16";
/// `ctr run` containers of the floor are named after this.
const FLOOR_PREFIX: &str = "bench-floor-";
/// Pods of the direct CRI floor are named after this.
const CRI_FLOOR_PREFIX: &str = "bench-cri-floor-";
/// The label (key, value) of the direct CRI floor's pods, by which the clean-up finds them.
const CRI_FLOOR_LABEL: (&str, &str) = ("flotilla-bench", "cri-floor");

const RATIO_TARGET: f64 = 1.3;
const READY_P99_LIMIT: Duration = Duration::from_secs(1);
const ROLLING_LIMIT: Duration = Duration::from_secs(15);
const ROLLBACK_LIMIT: Duration = Duration::from_secs(5);

/// How long one apply may take before the scenario fails.
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a rollout of all replicas may take before the scenario fails.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Status polling: the apply samples, the rollouts.
const APPLY_POLL: Duration = Duration::from_millis(10);
const ROLLOUT_POLL: Duration = Duration::from_millis(100);

/// Ready about 1 s after it starts: its web server (which the readiness probe asks) starts
/// after a 1 s sleep.
const READY_AFTER_1S: &str = "mkdir -p /www; echo ok > /www/index.html; sleep 1; exec httpd -f -p 8080 -h /www";

/// Counts of the runtime scenarios.
pub struct RuntimePlan {
    /// Measured apply samples (after one unmeasured first sample).
    pub samples: usize,
    pub replicas: u32,
    /// How long revision 3 is left stuck before the rollback.
    pub stuck: Duration,
}

impl RuntimePlan {
    pub fn new(quick: bool) -> Self {
        Self { samples: if quick { 5 } else { 20 }, replicas: 50, stuck: Duration::from_secs(3) }
    }

    /// (max surge, max unavailable) of the default strategy (25 % each: surge rounded up,
    /// unavailable down, as Kubernetes does).
    fn quarter(&self) -> (u32, u32) {
        (self.replicas.div_ceil(4), self.replicas / 4)
    }
}

fn apply_method(plan: &RuntimePlan) -> (String, String) {
    (
        "Embedded runtime: apply → instance running".into(),
        format!(
            "A second `flotilla server` (the same release binary, its own temporary data directory) runs with the \
             embedded runtime enabled: it starts its own containerd under the data directory (environment networks \
             in `10.{NETWORK_OCTET}.0.0/16`, service addresses in `{SERVICE_RANGE}`). A busybox image (the host's \
             static `/bin/busybox` in an OCI archive built in process) is imported with `ctr images import`: no \
             registry is involved. A workspace, a project and its `test` environment on the `local` cluster are \
             created through the API, and an application of one instance that stays there during the samples (an \
             environment's network is released with its last application; this one keeps it, as other \
             applications would). Then {n} rounds, after one unmeasured first round (shown on its own row), \
             alternate three measurements so that drift on the \
             machine affects all of them. **Floor: a pod through the CRI** (the floor of the {RATIO_TARGET}x \
             target: the lowest-level calls doing the same work as the runtime for an instance, a pod with CNI \
             networking): the benchmark calls containerd's CRI itself, on the runtime's own socket \
             (`<data dir>/runtime/containerd/containerd.sock`): `RunPodSandbox` of a `PodSandboxConfig` with its \
             metadata (name, uid, namespace, attempt 0), a hostname, a log directory under the data directory, \
             default Linux settings and the label `{label_key}={label_value}`; then `CreateContainer` in it of a \
             `ContainerConfig` with a name, the image `{IMAGE}`, the command `/bin/sleep 3600` and a log path; then \
             `StartContainer`. The pod's namespace is the environment's (`<project>--{ENVIRONMENT}`), by which the \
             runtime's CNI plugin (`flotilla-net`) puts the sandbox on the environment's network (bridge port, \
             veth, address), as it does an instance's: that network exists once the runtime has created an \
             instance in the environment, so this floor is taken from the first apply on (one unmeasured sample \
             right after it). Timed from just before `RunPodSandbox` until `StartContainer` returned; then the pod \
             is stopped and removed (untimed). **Second floor, informative: a bare container**: `ctr --address \
             SOCK --namespace k8s.io run -d {IMAGE} ID /bin/sleep 3600` on the same containerd and image, timed \
             from spawning `ctr` until it exits (with `-d` it returns once the task has started); then killed and \
             removed (untimed). **Apply**: `POST /api/v1/projects/P/applications` of a new Application with one \
             component of 1 replica running `/bin/sleep 3600`, no probes, timed from just before the POST until a \
             `GET` of the application (polled every {poll} ms) shows its instance `running`. The runtime shows an \
             instance `running` as soon as its own `StartContainer` call for it has returned (after \
             `RunPodSandbox`, the sandbox's status for its address and `CreateContainer`): the apply and the CRI \
             floor end at the same event, and neither waits for the process to do anything. Apply → ready runs \
             until the GET shows `ready: true`. Then the application is deleted, and the next round starts once its \
             pod is gone from containerd (untimed). Both floors are lower bounds: nothing of them goes through the \
             API, the store or the controller. The CRI pod has none of what the runtime adds to an instance's pod \
             (DNS configuration, a cgroup parent, the kubelet's namespace options, files, mounts, resource limits, \
             the image check before creating it); `ctr run` moreover makes no pod sandbox (no pause container), no \
             CNI network (no bridge port, veth or address) and no log file, and does not go through the CRI.",
            n = plan.samples,
            poll = APPLY_POLL.as_millis(),
            label_key = CRI_FLOOR_LABEL.0,
            label_value = CRI_FLOOR_LABEL.1,
        ),
    )
}

fn rolling_method(plan: &RuntimePlan) -> (String, String) {
    let (surge, unavailable) = plan.quarter();
    (
        format!("Embedded runtime: rolling update of {} replicas", plan.replicas),
        format!(
            "On the same server: an Application with one component of {r} replicas running `/bin/sh -c '{cmd}'` \
             with a readiness probe `httpGet: {{port: 8080, path: /}}` every 1 s (an instance is ready 1 to 2 s \
             after it starts: \"1 s readiness\"; an exec probe is compared below) and the default strategy (`maxSurge: 25%`, `maxUnavailable: 25%`: \
             {surge} and {unavailable} of {r}). It is created and waited for until its rollout is complete \
             (revision 1, an informative row). Then its spec is changed (an environment variable `V=2`) with a \
             `PUT` carrying the object's resourceVersion, and the update is timed from just before the PUT until \
             a `GET` of the application (polled every {poll} ms) shows `status.revision` = the new generation \
             (2), every component `complete` and {r} instances, all ready. Where the time goes comes from the \
             same polls: the instances of the new and the old revision as the API shows them, and containerd's \
             pod sandboxes, listed through the CRI at each poll (when each was created, when it was last seen \
             running, when it was gone), with each instance's container start time (`startedMicros`).",
            r = plan.replicas,
            cmd = READY_AFTER_1S,
            poll = ROLLOUT_POLL.as_millis()
        ),
    )
}

fn rollback_method(plan: &RuntimePlan) -> (String, String) {
    (
        "Embedded runtime: rollback".into(),
        format!(
            "From the complete revision 2 of the rolling update above ({r} ready instances), the spec is updated \
             to a revision 3 whose readiness probe never passes (`httpGet` on port 8081, where nothing listens). \
             Once the status shows \
             instances of revision 3, and {stuck} s more (time enough for them to have become ready, were they \
             able to), the rollout is stuck half-way (within `maxUnavailable` it has stopped some old instances \
             and started new ones that never become ready), and the spec of revision 2 is written back with a `PUT` carrying the \
             current resourceVersion, as `flotilla rollout undo` does: it becomes revision 4. Timed from just \
             before that PUT until a `GET` of the application (polled every {poll} ms) shows `status.revision` = \
             4, every component `complete` and {r} instances, all ready. The automatic rollback on the progress \
             deadline (600 s here) is not involved.",
            r = plan.replicas,
            stuck = plan.stuck.as_secs(),
            poll = ROLLOUT_POLL.as_millis()
        ),
    )
}

/// One line of the set-up of the report, when the runtime scenarios ran.
pub fn setup_text() -> String {
    format!(
        "The embedded-runtime sections use a second server started after the API scenarios, with the runtime \
         enabled (its own containerd under its data directory, networks in `10.{NETWORK_OCTET}.0.0/16`, services in \
         `{SERVICE_RANGE}`), log level `warn`."
    )
}

/// A scenario's result with its title and method (for a failed section).
pub type Outcome = (anyhow::Result<Section>, String, String);

/// Runs the three scenarios on a server of their own, then cleans up. Never fails as a
/// whole: each section says what happened.
pub async fn run(plan: &RuntimePlan, flotilla: &Path, usage: &mut Vec<Usage>) -> Vec<Outcome> {
    let methods = [apply_method(plan), rolling_method(plan), rollback_method(plan)];
    let all_failed = |why: String| -> Vec<Outcome> {
        methods.iter().map(|(title, method)| (Err(anyhow!("{why}")), title.clone(), method.clone())).collect()
    };
    if let Some(uid) = not_root() {
        return all_failed(format!(
            "not run: the embedded runtime needs root, and this benchmark runs as uid {uid} (run scripts/bench as \
             root, or pass --skip-runtime)"
        ));
    }
    let mut host = match Host::new() {
        Ok(host) => host,
        Err(error) => return all_failed(format!("not run: {error:#}")),
    };
    let outcomes = match host.start(flotilla).await {
        Err(error) => all_failed(format!("not run: the runtime server could not be prepared: {error:#}")),
        Ok(env) => {
            let [apply, rolling, rollback] = methods;
            progress(&format!(
                "runtime: apply → running, {} samples alternating with a pod through the CRI and `ctr run -d`",
                plan.samples
            ));
            let a = apply_benchmark(&env, plan, usage).await;
            if let Err(error) = &a {
                progress(&format!("runtime: apply → running failed: {error:#}"));
            }
            progress(&format!("runtime: rolling update of {} replicas", plan.replicas));
            let b = rolling_benchmark(&env, plan, usage).await;
            let (b, c) = match b {
                Ok((section, app)) => {
                    progress("runtime: rollback");
                    let c = rollback_benchmark(&env, plan, app, usage).await;
                    (Ok(section), c)
                }
                Err(error) => {
                    progress(&format!("runtime: rolling update failed: {error:#}"));
                    (Err(error), Err(anyhow!("not run: it starts from the rolling update, which failed")))
                }
            };
            vec![(a, apply.0, apply.1), (b, rolling.0, rolling.1), (c, rollback.0, rollback.1)]
        }
    };
    progress("runtime: deleting the applications, stopping the runtime server, cleaning up");
    let problems = host.teardown().await;
    let mut outcomes = outcomes;
    if !problems.is_empty() {
        for problem in &problems {
            progress(&format!("runtime clean-up: {problem}"));
        }
        if let Some((Ok(section), _, _)) = outcomes.last_mut() {
            section.notes.push(format!("Clean-up after the runtime scenarios: {}", problems.join("; ")));
        }
    }
    outcomes
}

/// `Some(effective uid)` unless it is root.
fn not_root() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse::<u32>().ok()?;
    (uid != 0).then_some(uid)
}

/// Six hex digits that differ between runs (names of the project and its network).
fn short_id() -> String {
    let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
    hex::encode(Sha256::digest(seed.as_bytes()))[..6].to_string()
}

/// What has to be undone whatever happens: the data directory, the server, the pods.
struct Host {
    data: Option<tempfile::TempDir>,
    /// `<data dir>/runtime`, canonical (as the server sees it).
    runtime_dir: PathBuf,
    socket: PathBuf,
    server: Option<Server>,
    client: Option<Client>,
    project: String,
}

/// What the scenarios use.
struct Env {
    client: Client,
    cri: Cri,
    socket: PathBuf,
    project: String,
    /// The pod namespace of the project's environment (its network is chosen by it).
    namespace: String,
    /// The data directory (the CRI floor's log directories go under it).
    data_dir: PathBuf,
    /// Where the runtime keeps its environment networks.
    networks_dir: PathBuf,
    probe: Probe,
}

impl Host {
    fn new() -> anyhow::Result<Self> {
        // Short: containerd's socket path must fit in 108 bytes.
        let data =
            tempfile::Builder::new().prefix("flotilla-bench-rt-").tempdir().context("cannot create a data dir")?;
        let dir = std::fs::canonicalize(data.path())?;
        let runtime_dir = dir.join("runtime");
        let socket = runtime_dir.join("containerd/containerd.sock");
        Ok(Self {
            data: Some(data),
            runtime_dir,
            socket,
            server: None,
            client: None,
            project: format!("bench-rt-{}", short_id()),
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.runtime_dir.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// Starts the server, checks its runtime, imports the image and creates the project.
    async fn start(&mut self, flotilla: &Path) -> anyhow::Result<Env> {
        let password = crate::one_time_password();
        progress("runtime: starting a server with the embedded runtime");
        let settings = [
            ("FLOTILLA_RUNTIME__ENABLED", "true"),
            ("FLOTILLA_RUNTIME__NETWORK_OCTET", NETWORK_OCTET),
            ("FLOTILLA_RUNTIME__SERVICE_RANGE", SERVICE_RANGE),
        ];
        let server = Server::start_with_env(flotilla, &self.data_dir(), &password, &settings).await?;
        let pid = server.pid();
        let base = server.base.clone();
        self.server = Some(server);
        let anonymous = Client::new(&base, None)?.with_user_agent("flotilla-bench");
        let login = anonymous.login_token(server::ADMIN_USER, &password, "bench", None).await.context("login")?;
        let client = anonymous.with_token(Some(login.token));
        self.client = Some(client.clone());

        let mut cri = Cri::connect(&self.socket).await.with_context(|| {
            format!(
                "the server's embedded runtime did not start (no containerd on {}; see the server's messages)",
                self.socket.display()
            )
        })?;
        let version = cri.version().await.context("containerd's CRI does not answer")?;
        progress(&format!("runtime: {version} on {}", self.socket.display()));

        let mut image =
            flotilla_local::oci_archive::busybox_image(Path::new("/bin/busybox"), vec!["/bin/sh".into()])
                .context("cannot build the busybox image (it needs a static /bin/busybox: Debian's busybox-static)")?;
        // The readiness command's applets (a standalone busybox shell would find them anyway).
        for applet in ["mkdir", "httpd", "cat"] {
            image.links.push((format!("bin/{applet}"), "busybox".into()));
        }
        let archive = self.data_dir().join("busybox.tar");
        image.write_archive(IMAGE, &archive)?;
        flotilla_local::images::import(&self.socket, &archive).await?;
        let _ = std::fs::remove_file(&archive);

        let workspace = self.project.clone();
        let documents = [
            (
                "workspaces",
                None,
                json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": workspace}, "spec": {}}),
            ),
            (
                "projects",
                None,
                json!({"apiVersion": "flotilla.io/v1", "kind": "Project", "metadata": {"name": self.project},
                       "spec": {"workspace": workspace}}),
            ),
            (
                "environments",
                Some(self.project.as_str()),
                json!({"apiVersion": "flotilla.io/v1", "kind": "Environment",
                       "metadata": {"name": ENVIRONMENT, "project": self.project},
                       "spec": {"tier": "test", "clusters": ["local"]}}),
            ),
        ];
        for (plural, project, document) in &documents {
            client.create(plural, *project, document).await.with_context(|| format!("cannot create the {plural}"))?;
        }
        let probe = Probe::new(Some(client.clone()), pid).with_runtime(self.runtime_dir.display().to_string());
        Ok(Env {
            client,
            cri,
            socket: self.socket.clone(),
            project: self.project.clone(),
            namespace: flotilla_local::networks::NetworkAllocator::namespace(&self.project, ENVIRONMENT),
            data_dir: self.data_dir(),
            networks_dir: self.runtime_dir.join("networks"),
            probe,
        })
    }

    /// Deletes the applications and waits for their pods, stops the server (and with it its
    /// containerd), removes what the runtime left on the host and the data directory.
    /// Returns what could not be done.
    async fn teardown(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(client) = &self.client {
            match client.list("applications", Some(&self.project), &[("limit", "500".to_string())]).await {
                Ok(list) => {
                    for name in
                        list["items"].as_array().into_iter().flatten().filter_map(|i| i["metadata"]["name"].as_str())
                    {
                        if let Err(error) = client.delete("applications", Some(&self.project), name, None).await {
                            problems.push(format!("cannot delete application {name}: {error}"));
                        }
                    }
                }
                Err(error) => problems.push(format!("cannot list the applications: {error}")),
            }
        }
        if let Ok(mut cri) = Cri::connect(&self.socket).await {
            let left = remove_cri_floor(&mut cri).await;
            if left > 0 {
                progress(&format!("runtime: removed {left} pod(s) of the CRI floor left behind"));
            }
            if let Err(error) = pods_gone(&mut cri, Duration::from_secs(180)).await {
                problems.push(format!("{error:#}; removing the pods through the CRI"));
                remove_pods(&mut cri).await;
            }
            drop(cri);
            sweep_floor(&self.socket).await;
        }
        if let Some(server) = self.server.take()
            && let Err(error) = server.stop().await
        {
            problems.push(format!("stopping the server: {error:#}"));
        }
        // A server that was killed leaves its containerd running.
        let config = self.runtime_dir.join("containerd/config.toml").display().to_string();
        for pid in processes_naming(&config) {
            problems.push(format!("containerd (pid {pid}) outlived the server; stopping it"));
            stop_process(pid).await;
        }
        self.clean_host();
        if let Some(data) = self.data.take() {
            let root = self.data_dir().display().to_string();
            let mounted = mounts_under(&root);
            if mounted.is_empty() {
                if let Err(error) = data.close() {
                    problems.push(format!("cannot remove {root}: {error}"));
                }
            } else {
                let kept = data.keep();
                problems.push(format!(
                    "{} left in place: {} mount(s) remain under it ({})",
                    kept.display(),
                    mounted.len(),
                    mounted.join(", ")
                ));
            }
        }
        problems
    }

    /// The environment bridges, their isolation rules and the service rules of this runtime.
    fn clean_host(&self) {
        // `ip link delete`, `iptables`: short commands, run in place.
        let mut bridges = Vec::new();
        for entry in std::fs::read_dir(self.runtime_dir.join("networks")).into_iter().flatten().flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else { continue };
            let Ok(network) = serde_json::from_slice::<flotilla_local::cni_plugin::EnvironmentNetwork>(&bytes) else {
                continue;
            };
            let _ = std::process::Command::new("ip")
                .args(["link", "delete", &network.bridge])
                .stderr(std::process::Stdio::null())
                .status();
            bridges.push(network.bridge);
        }
        flotilla_local::cni_plugin::remove_isolation(&bridges);
        flotilla_local::services::remove(&flotilla_local::services::Chains::of(&self.runtime_dir));
        if !bridges.is_empty() {
            progress(&format!("runtime: removed the bridge(s) {} and their rules", bridges.join(", ")));
        }
    }
}

/// Waits until containerd has no pod sandbox left.
async fn pods_gone(cri: &mut Cri, limit: Duration) -> anyhow::Result<()> {
    pods_gone_of(cri, HashMap::new(), limit).await
}

/// Waits until no pod matching `selector` is left on containerd.
async fn pods_gone_of(cri: &mut Cri, selector: HashMap<String, String>, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let left = cri.list_pod_sandboxes(selector.clone()).await?.len();
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{left} pod(s) still on containerd {} s after their applications were deleted", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops and removes every pod sandbox (the last resort of the clean-up).
async fn remove_pods(cri: &mut Cri) {
    for sandbox in cri.list_pod_sandboxes(HashMap::new()).await.unwrap_or_default() {
        let _ = cri.stop_pod_sandbox(&sandbox.id).await;
        let _ = cri.remove_pod_sandbox(&sandbox.id).await;
        if let Some(instance) = sandbox.labels.get(flotilla_local::instance::INSTANCE_LABEL) {
            flotilla_local::instance::remove_pod_cgroup(instance);
        }
    }
}

/// The CRI floor's label as a selector (or the labels of its pods).
fn cri_floor_labels() -> HashMap<String, String> {
    HashMap::from([(CRI_FLOOR_LABEL.0.to_string(), CRI_FLOOR_LABEL.1.to_string())])
}

/// Stops and removes the CRI floor's pods still there; returns how many there were.
async fn remove_cri_floor(cri: &mut Cri) -> usize {
    let sandboxes = cri.list_pod_sandboxes(cri_floor_labels()).await.unwrap_or_default();
    for sandbox in &sandboxes {
        let _ = cri.stop_pod_sandbox(&sandbox.id).await;
        let _ = cri.remove_pod_sandbox(&sandbox.id).await;
    }
    sandboxes.len()
}

/// The CRI floor's pod `name` in pod namespace `namespace`: the simplest faithful sandbox.
fn cri_floor_sandbox(name: &str, namespace: &str, log_dir: &Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.to_string(),
            uid: name.to_string(),
            namespace: namespace.to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_dir.display().to_string(),
        labels: cri_floor_labels(),
        linux: Some(api::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// The CRI floor's container: the apply's command in the bench image.
fn cri_floor_container() -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: COMPONENT.to_string(), attempt: 0 }),
        image: Some(api::ImageSpec { image: IMAGE.to_string(), ..Default::default() }),
        command: vec!["/bin/sleep".into(), "3600".into()],
        labels: cri_floor_labels(),
        log_path: format!("{COMPONENT}.log"),
        ..Default::default()
    }
}

/// `ctr … ARGS` on the runtime's containerd, in the CRI's namespace.
fn ctr(socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("ctr");
    command.arg("--address").arg(socket).args(["--namespace", flotilla_local::images::CRI_NAMESPACE]).args(args);
    command.stdin(std::process::Stdio::null());
    command
}

/// Kills and removes the floor's container `id` (errors ignored: it may be gone already).
async fn remove_floor(socket: &Path, id: &str) {
    let _ = ctr(socket, &["task", "kill", "-s", "SIGKILL", id]).output().await;
    let _ = ctr(socket, &["task", "delete", "-f", id]).output().await;
    let _ = ctr(socket, &["container", "delete", id]).output().await;
}

/// Removes every floor container still there.
async fn sweep_floor(socket: &Path) {
    let Ok(listed) = ctr(socket, &["container", "list", "-q"]).output().await else { return };
    for id in String::from_utf8_lossy(&listed.stdout).lines().filter(|l| l.starts_with(FLOOR_PREFIX)) {
        remove_floor(socket, id.trim()).await;
    }
}

/// Processes whose command line contains `text`.
fn processes_naming(text: &str) -> Vec<u32> {
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (pid != own && String::from_utf8_lossy(&cmdline).contains(text)).then_some(pid)
        })
        .collect()
}

/// SIGTERM, then SIGKILL after 15 s (`kill`: this crate has no unsafe code for the syscall).
async fn stop_process(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    let started = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status().await;
    }
}

/// Mount points at or under `root`.
fn mounts_under(root: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| point.starts_with(root))
        .map(str::to_string)
        .collect()
}

/// An Application of one component `web`.
fn application(project: &str, name: &str, component: Value) -> Value {
    json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
           "metadata": {"name": name, "project": project},
           "spec": {"environment": ENVIRONMENT, "components": [component]}})
}

/// The component of the rollout scenarios: ready about 1 s after it starts.
fn ready_after_1s(replicas: u32) -> Value {
    json!({"name": COMPONENT, "image": IMAGE, "replicas": replicas,
           "command": ["/bin/sh", "-c", READY_AFTER_1S],
           "env": [{"name": "V", "value": "1"}],
           "probes": {"readiness": {"http": {"port": 8080, "path": "/"}, "periodSeconds": 1}},
           "update": {"maxSurge": "25%", "maxUnavailable": "25%", "progressDeadlineSeconds": 600}})
}

/// An update of `app` to `spec`, with its resourceVersion as the precondition.
fn update_of(app: &Object, spec: Value) -> Value {
    json!({"apiVersion": app.api_version, "kind": app.kind,
           "metadata": {"name": app.metadata.name, "project": app.metadata.project,
                        "resourceVersion": app.metadata.resource_version},
           "spec": spec})
}

/// What a GET of an application says about its instances, against the revision being
/// rolled out (`target`): its instances are "new", the others "old".
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// `status.revision`: the revision the runtime has been given.
    revision: u64,
    /// Every component's phase is `complete`.
    complete: bool,
    new: u32,
    new_ready: u32,
    old: u32,
    old_ready: u32,
}

impl Counts {
    fn of(status: &Value, target: u64) -> Self {
        let components = status["components"].as_array().map(Vec::as_slice).unwrap_or_default();
        let mut counts = Self {
            revision: status["revision"].as_u64().unwrap_or(0),
            complete: !components.is_empty() && components.iter().all(|c| c["phase"] == "complete"),
            ..Self::default()
        };
        for instance in status["instances"].as_array().into_iter().flatten() {
            let (_, ready) = instance_state(instance);
            if instance["revision"].as_u64() == Some(target) {
                counts.new += 1;
                counts.new_ready += u32::from(ready);
            } else {
                counts.old += 1;
                counts.old_ready += u32::from(ready);
            }
        }
        counts
    }

    /// Rolled out: the runtime has `target`, says it is complete, and runs `replicas`
    /// instances, all ready.
    fn rolled_out(&self, target: u64, replicas: u32) -> bool {
        self.revision == target
            && self.complete
            && self.new + self.old == replicas
            && self.new_ready + self.old_ready == replicas
    }

    fn text(&self, target: u64) -> String {
        format!(
            "status revision {}{}; {} instances of revision {target} ({} ready), {} of others ({} ready)",
            self.revision,
            if self.complete { " (complete)" } else { "" },
            self.new,
            self.new_ready,
            self.old,
            self.old_ready
        )
    }
}

/// (running, ready) of one instance of a status: `{"state": "running", "ready": true}`
/// (the state is flattened into the instance), or `{"state": {"running": {"ready": true}}}`.
fn instance_state(instance: &Value) -> (bool, bool) {
    match &instance["state"] {
        Value::String(state) if state == "running" => (true, instance["ready"].as_bool() == Some(true)),
        Value::Object(state) => match state.get("running") {
            Some(running) => (true, running["ready"].as_bool() == Some(true)),
            None => (false, false),
        },
        _ => (false, false),
    }
}

/// The wall clock in nanoseconds (containerd's `created_at` is on it).
fn wall_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// `nanos` (wall clock) as an offset from `origin`; `None` before it.
fn offset(nanos: i64, origin: i64) -> Option<Duration> {
    u64::try_from(nanos - origin).ok().map(Duration::from_nanos)
}

/// When each instance of a status had its container started (`startedMicros`), as offsets
/// from `origin`, by instance name.
fn container_starts(app: &Object, origin: i64) -> HashMap<String, Duration> {
    app.status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let started = offset(i["startedMicros"].as_i64()? * 1000, origin)?;
            Some((i["name"].as_str()?.to_string(), started))
        })
        .collect()
}

/// One pod sandbox on containerd, as the polls of a rollout saw it.
#[derive(Debug, Clone)]
struct Pod {
    instance: String,
    /// When containerd created its sandbox, from the change; `None` before the change.
    created: Option<Duration>,
    /// The last poll that saw its sandbox running.
    last_running: Option<Duration>,
    /// The first poll that no longer listed it.
    gone: Option<Duration>,
}

/// Merges intervals that overlap or nearly touch (`slack`): the stretches of time during
/// which at least one of them was under way, each with how many intervals it merged.
fn merge(mut intervals: Vec<(Duration, Duration)>, slack: Duration) -> Vec<(Duration, Duration, usize)> {
    intervals.sort();
    let mut merged: Vec<(Duration, Duration, usize)> = Vec::new();
    for (from, to) in intervals {
        match merged.last_mut() {
            Some(last) if from <= last.1 + slack => {
                last.1 = last.1.max(to);
                last.2 += 1;
            }
            _ => merged.push((from, to, 1)),
        }
    }
    merged
}

/// The most intervals under way at one time.
fn most_at_once(intervals: &[(Duration, Duration)]) -> usize {
    let mut edges: Vec<(Duration, i32)> = intervals.iter().flat_map(|(from, to)| [(*from, 1), (*to, -1)]).collect();
    // An interval ending when another starts does not overlap it.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

fn total(stretches: &[(Duration, Duration, usize)]) -> Duration {
    stretches.iter().map(|(from, to, _)| to.saturating_sub(*from)).sum()
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

impl Env {
    async fn get(&self, name: &str) -> anyhow::Result<Object> {
        self.client.get("applications", Some(&self.project), name).await.with_context(|| format!("GET of {name}"))
    }

    /// One floor sample: `ctr run -d` timed from spawn to exit, then removed (untimed).
    async fn floor_sample(&self, id: &str) -> anyhow::Result<Duration> {
        let mut command = ctr(&self.socket, &["run", "-d", IMAGE, id, "/bin/sleep", "3600"]);
        let started = Instant::now();
        let output = command.output().await.context("cannot run ctr")?;
        let elapsed = started.elapsed();
        remove_floor(&self.socket, id).await;
        if !output.status.success() {
            bail!("ctr run failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(elapsed)
    }

    /// One CRI floor sample: a pod made with direct CRI calls in the environment's pod
    /// namespace (so on its network), timed from just before `RunPodSandbox` until
    /// `StartContainer` returned; then stopped and removed (untimed).
    async fn cri_floor_sample(&self, name: &str) -> anyhow::Result<CriSample> {
        let mut cri = self.cri.clone();
        let log_dir = self.data_dir.join("cri-floor").join(name);
        std::fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
        let sandbox = cri_floor_sandbox(name, &self.namespace, &log_dir);
        let (for_container, container) = (sandbox.clone(), cri_floor_container());
        // The environment's network, as the runtime makes sure of it before each pod (it is
        // released with the environment's last application).
        let octet: u8 = NETWORK_OCTET.parse().context("NETWORK_OCTET")?;
        flotilla_local::networks::NetworkAllocator::new(self.networks_dir.clone(), octet)
            .ensure(&self.namespace)
            .context("the CRI floor's network")?;
        let started = Instant::now();
        let id = cri.run_pod_sandbox(sandbox).await.context("the CRI floor's RunPodSandbox")?;
        let sandboxed = started.elapsed();
        let result = async {
            let container_id = cri.create_container(&id, container, for_container).await?;
            cri.start_container(&container_id).await
        }
        .await;
        let running = started.elapsed();
        let stopped = cri.stop_pod_sandbox(&id).await;
        let removed = cri.remove_pod_sandbox(&id).await;
        let _ = std::fs::remove_dir_all(&log_dir);
        result.context("the CRI floor's container")?;
        stopped.and(removed).context("cannot remove the CRI floor's pod")?;
        Ok(CriSample { sandbox: sandboxed, running })
    }

    /// One apply sample, from just before the POST.
    async fn apply_sample(&self, name: &str) -> anyhow::Result<ApplySample> {
        let document = application(
            &self.project,
            name,
            json!({"name": COMPONENT, "image": IMAGE, "replicas": 1, "command": ["/bin/sleep", "3600"]}),
        );
        let wall = wall_nanos();
        let started = Instant::now();
        self.client.create("applications", Some(&self.project), &document).await.context("POST of the application")?;
        let answered = started.elapsed();
        let mut running = None;
        let (app, ready) = loop {
            let app = self.get(name).await?;
            let now = started.elapsed();
            if let Some(instance) = app.status["instances"].as_array().and_then(|i| i.first()) {
                let (is_running, is_ready) = instance_state(instance);
                if is_running && running.is_none() {
                    running = Some(now);
                }
                if is_ready {
                    break (app, now);
                }
            }
            if now > APPLY_TIMEOUT {
                bail!(
                    "{name} was not running and ready {} s after it was applied; status: {}",
                    now.as_secs(),
                    app.status
                );
            }
            tokio::time::sleep(APPLY_POLL).await;
        };
        // Where its time went: when the runtime asked containerd for the pod, and when the
        // container was started.
        let instance = app.status["instances"][0]["name"].as_str().unwrap_or_default().to_string();
        let sandbox = self
            .cri
            .clone()
            .list_pod_sandboxes(HashMap::from([(INSTANCE_LABEL.to_string(), instance.clone())]))
            .await?;
        Ok(ApplySample {
            answered,
            running: running.unwrap_or(ready),
            ready,
            requested: sandbox.first().and_then(|s| offset(s.created_at, wall)),
            started: container_starts(&app, wall).get(&instance).copied(),
        })
    }

    /// Deletes an application and waits until its pods are gone.
    async fn delete_and_wait(&self, name: &str) -> anyhow::Result<()> {
        self.client
            .delete("applications", Some(&self.project), name, None)
            .await
            .with_context(|| format!("DELETE of {name}"))?;
        let application =
            HashMap::from([(flotilla_driver::workload::labels::APPLICATION.to_string(), name.to_string())]);
        pods_gone_of(&mut self.cri.clone(), application, APPLY_TIMEOUT).await
    }

    /// Polls `name` (the API) and containerd's pods from the change (`started`, `wall`)
    /// until revision `target` is rolled out on `replicas` instances.
    async fn watch(
        &self,
        name: &str,
        target: u64,
        replicas: u32,
        started: Instant,
        wall: i64,
    ) -> anyhow::Result<Watch> {
        let mut cri = self.cri.clone();
        let mut watch = Watch { wall, ..Watch::default() };
        loop {
            let asked = Instant::now();
            let app = self.get(name).await?;
            watch.get_latency.push(asked.elapsed());
            let at = started.elapsed();
            let counts = Counts::of(&app.status, target);
            if counts.new > 0 && watch.first_new.is_none() {
                watch.first_new = Some(at);
            }
            if counts.new >= replicas && watch.all_new.is_none() {
                watch.all_new = Some(at);
            }
            watch.ticks.push((at, counts));
            let sandboxes = cri.list_pod_sandboxes(HashMap::new()).await?;
            let seen_at = started.elapsed();
            for sandbox in &sandboxes {
                let pod = watch.pods.entry(sandbox.id.clone()).or_insert_with(|| Pod {
                    instance: sandbox.labels.get(INSTANCE_LABEL).cloned().unwrap_or_default(),
                    created: offset(sandbox.created_at, wall),
                    last_running: None,
                    gone: None,
                });
                if sandbox.state == api::PodSandboxState::SandboxReady as i32 {
                    pod.last_running = Some(seen_at);
                }
            }
            for (id, pod) in watch.pods.iter_mut() {
                if pod.gone.is_none() && !sandboxes.iter().any(|s| &s.id == id) {
                    pod.gone = Some(seen_at);
                }
            }
            if counts.rolled_out(target, replicas) {
                watch.elapsed = at;
                watch.app = Some(app);
                return Ok(watch);
            }
            if at > ROLLOUT_TIMEOUT {
                bail!(
                    "revision {target} of {name} was not rolled out {} s after the change: {}",
                    at.as_secs(),
                    counts.text(target)
                );
            }
            tokio::time::sleep(ROLLOUT_POLL).await;
        }
    }

    /// Times `samples` `ExecSync` calls of an exec readiness probe's kind of command in one running container.
    async fn exec_probe_cost(&self, samples: usize) -> anyhow::Result<Summary> {
        let mut cri = self.cri.clone();
        let containers = cri.list_containers(HashMap::new()).await?;
        let container = containers
            .iter()
            .find(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .context("no running container to probe")?;
        let mut latencies = Samples::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            cri.exec_sync(&container.id, vec!["/bin/cat".into(), "/www/index.html".into()], 5).await?;
            latencies.push(started.elapsed());
        }
        Ok(latencies.summary())
    }
}

/// One apply → running sample, each figure from just before the POST.
#[derive(Debug, Clone, Copy)]
struct ApplySample {
    /// The POST answered.
    answered: Duration,
    /// A GET showed the instance running, then ready.
    running: Duration,
    ready: Duration,
    /// containerd created the pod's sandbox (the runtime asked for the pod).
    requested: Option<Duration>,
    /// The instance's container was started (its `startedMicros`).
    started: Option<Duration>,
}

/// One CRI floor sample, each figure from just before `RunPodSandbox`.
#[derive(Debug, Clone, Copy)]
struct CriSample {
    /// `RunPodSandbox` returned (sandbox and network made).
    sandbox: Duration,
    /// `StartContainer` returned.
    running: Duration,
}

/// What polling a rollout saw.
#[derive(Debug, Default)]
struct Watch {
    /// The wall clock at the change (ns).
    wall: i64,
    /// From the change until rolled out.
    elapsed: Duration,
    /// The first poll showing an instance of the new revision, and all of them.
    first_new: Option<Duration>,
    all_new: Option<Duration>,
    ticks: Vec<(Duration, Counts)>,
    get_latency: Samples,
    /// Every pod sandbox seen, by id.
    pods: HashMap<String, Pod>,
    /// The application when rolled out.
    app: Option<Object>,
}

/// Where the time of a rollout went, from containerd's pods and the instances' start times.
#[derive(Debug, Default)]
struct Phases {
    /// Stretches during which new pods were being created (sandbox created → container started).
    creating: Vec<(Duration, Duration, usize)>,
    /// Stretches during which old pods were being stopped and removed (last seen running →
    /// gone; as precise as the polls).
    removing: Vec<(Duration, Duration, usize)>,
    /// Creating or removing.
    busy: Duration,
    /// Per new pod: sandbox created → container started.
    per_pod: Summary,
    /// The most new pods being created at one time.
    at_once: usize,
    /// Pods created after the change.
    created: usize,
}

impl Watch {
    fn app(&self) -> anyhow::Result<&Object> {
        self.app.as_ref().context("no application seen")
    }

    fn phases(&self) -> Phases {
        let starts = self.app.as_ref().map(|app| container_starts(app, self.wall)).unwrap_or_default();
        let mut creating = Vec::new();
        let mut per_pod = Samples::default();
        let mut removing = Vec::new();
        let mut created = 0;
        for pod in self.pods.values() {
            if let Some(from) = pod.created {
                created += 1;
                if let Some(to) = starts.get(&pod.instance) {
                    creating.push((from, *to));
                    per_pod.push(to.saturating_sub(from));
                }
            }
            if let Some(gone) = pod.gone {
                let from = pod.last_running.or(pod.created).unwrap_or_default();
                removing.push((from.min(gone), gone));
            }
        }
        let slack = Duration::from_millis(50);
        let busy = total(&merge(creating.iter().chain(&removing).copied().collect(), Duration::ZERO));
        Phases {
            at_once: most_at_once(&creating),
            creating: merge(creating, slack),
            removing: merge(removing, slack),
            busy,
            per_pod: per_pod.summary(),
            created,
        }
    }

    /// Counts about once a second: `1.0 s: 13 new (0 ready), 38 old (38 ready)`.
    fn timeline(&self) -> String {
        let mut next = Duration::ZERO;
        let mut parts = Vec::new();
        for (at, counts) in &self.ticks {
            if *at >= next {
                parts.push(format!(
                    "{} s: {} new ({} ready), {} old ({} ready)",
                    secs(*at),
                    counts.new,
                    counts.new_ready,
                    counts.old,
                    counts.old_ready
                ));
                next = *at + Duration::from_secs(1);
            }
        }
        parts.join("; ")
    }
}

/// "Where the time goes" of a rollout.
fn rollout_note(watch: &Watch, phases: &Phases, what: &str) -> String {
    let stretches = |list: &[(Duration, Duration, usize)]| {
        list.iter()
            .map(|(from, to, pods)| {
                format!("{}–{} s: {pods} pod{}", secs(*from), secs(*to), if *pods == 1 { "" } else { "s" })
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut get = watch.get_latency.clone();
    let get = get.summary();
    let first = phases.creating.first().map_or("-".to_string(), |(from, _, _)| fmt_duration(*from));
    format!(
        "Where the time of the {what} ({}) goes, from containerd's pods (listed at every poll) and the \
         instances' container start times; times from the change. The first new pod was asked of containerd at \
         {first}. New pods were being created (sandbox created → container started) during {} in all, in {} \
         stretch(es) ({}); at most {} at a time, one pod took {} at p50 and {} at most. Old pods were being stopped and removed \
         (from the last poll that saw them running until they were gone: as precise as the {} ms polls) \
         during {} ({}). Neither happened for {} of the {}: the rollout waited for new instances to become \
         ready (the 1 s sleep, then a passing probe) and for the runtime's next pass to act on it. The API showed every \
         new instance at {} and the rollout complete at {}. A GET of the application took {} at p50 and {} \
         at most ({} polls). Polls about once a second: {}.",
        fmt_duration(watch.elapsed),
        fmt_duration(total(&phases.creating)),
        phases.creating.len(),
        stretches(&phases.creating),
        phases.at_once,
        fmt_duration(phases.per_pod.p50),
        fmt_duration(phases.per_pod.max),
        ROLLOUT_POLL.as_millis(),
        fmt_duration(total(&phases.removing)),
        stretches(&phases.removing),
        fmt_duration(watch.elapsed.saturating_sub(phases.busy)),
        fmt_duration(watch.elapsed),
        watch.all_new.map_or("-".to_string(), fmt_duration),
        fmt_duration(watch.elapsed),
        fmt_duration(get.p50),
        fmt_duration(get.max),
        get.count,
        watch.timeline()
    )
}

/// The row splitting a rollout's time.
fn phases_row(watch: &Watch, phases: &Phases) -> Row {
    Row::new(
        "of which: creating pods / removing pods / neither (waiting for readiness and the runtime)",
        format!(
            "{} / {} / {}",
            ms(total(&phases.creating)),
            ms(total(&phases.removing)),
            ms(watch.elapsed.saturating_sub(phases.busy))
        ),
    )
}

/// The application that stays in the environment during the apply samples.
const KEEPER: &str = "keeper";

async fn apply_benchmark(env: &Env, plan: &RuntimePlan, usage: &mut Vec<Usage>) -> anyhow::Result<Section> {
    let (title, method) = apply_method(plan);
    let mut floor = Samples::with_capacity(plan.samples);
    let mut cri_floor = Vec::with_capacity(plan.samples);
    let mut samples = Vec::with_capacity(plan.samples);
    let mut first = None;
    // An environment's network goes with its last application: another one keeps it, as
    // in an environment of several applications.
    env.apply_sample(KEEPER).await.context("the application keeping the environment's network")?;
    let before = env.probe.snapshot().await;
    for i in 0..=plan.samples {
        let floor_sample = env.floor_sample(&format!("{FLOOR_PREFIX}{i}")).await?;
        // The environment's network exists once the first apply has made an instance in it.
        let cri_sample = match i {
            0 => None,
            _ => Some(env.cri_floor_sample(&format!("{CRI_FLOOR_PREFIX}{i}")).await?),
        };
        let name = format!("apply-{i}");
        let sample = env.apply_sample(&name).await?;
        env.delete_and_wait(&name).await?;
        match cri_sample {
            None => {
                let first_cri = env.cri_floor_sample(&format!("{CRI_FLOOR_PREFIX}{i}")).await?;
                first = Some((floor_sample, first_cri, sample));
            }
            Some(cri_sample) => {
                floor.push(floor_sample);
                cri_floor.push(cri_sample);
                samples.push(sample);
            }
        }
    }
    usage.push(env.probe.usage(
        &format!(
            "runtime: {} applies → running (with their deletions), pods through the CRI and `ctr run -d`",
            plan.samples + 1
        ),
        &before,
        &env.probe.snapshot().await,
    ));
    env.delete_and_wait(KEEPER).await?;
    let summary = |f: &dyn Fn(&ApplySample) -> Option<Duration>| {
        let mut values = Samples::default();
        for sample in &samples {
            if let Some(value) = f(sample) {
                values.push(value);
            }
        }
        values.summary()
    };
    let cri_summary = |f: &dyn Fn(&CriSample) -> Duration| {
        let mut values = Samples::with_capacity(cri_floor.len());
        for sample in &cri_floor {
            values.push(f(sample));
        }
        values.summary()
    };
    let floor = floor.summary();
    let cri = cri_summary(&|s| s.running);
    let cri_sandbox = cri_summary(&|s| s.sandbox);
    let cri_container = cri_summary(&|s| s.running.saturating_sub(s.sandbox));
    let running = summary(&|s| Some(s.running));
    let ready = summary(&|s| Some(s.ready));
    let answered = summary(&|s| Some(s.answered));
    let requested = summary(&|s| s.requested);
    let pod = summary(&|s| Some(s.started?.saturating_sub(s.requested?)));
    let shown = summary(&|s| Some(s.running.saturating_sub(s.started?)));
    let p50_ratio = running.p50.as_secs_f64() / cri.p50.as_secs_f64().max(1e-9);
    let ratios = |value: (Duration, Duration), of: (Duration, Duration)| {
        format!(
            "{} / {}",
            ratio(value.0.as_secs_f64(), of.0.as_secs_f64()),
            ratio(value.1.as_secs_f64(), of.1.as_secs_f64())
        )
    };
    let mut section = Section::new(title, method);
    section.rows.push(
        Row::new(format!("apply → running p50 ({} samples)", running.count), ms(running.p50))
            .target(
                format!("≤ {RATIO_TARGET}x the CRI pod floor"),
                if p50_ratio <= RATIO_TARGET {
                    Verdict::Pass
                } else {
                    Verdict::Miss(format!("{p50_ratio:.2}x the CRI pod floor, target {RATIO_TARGET}x"))
                },
            )
            .floor(
                format!("pod through the CRI p50 {}", ms(cri.p50)),
                ratio(running.p50.as_secs_f64(), cri.p50.as_secs_f64()),
            ),
    );
    section.rows.push(
        Row::new(
            "apply → running p90 / p99 / max",
            format!("{} / {} / {}", ms(running.p90), ms(running.p99), ms(running.max)),
        )
        .floor(
            format!("pod through the CRI {} / {} / {}", ms(cri.p90), ms(cri.p99), ms(cri.max)),
            ratio(running.p99.as_secs_f64(), cri.p99.as_secs_f64()),
        ),
    );
    section.rows.push(
        Row::new(
            format!(
                "CRI pod floor p50 / p99 ({} samples; RunPodSandbox → StartContainer returned), against a bare \
                 container",
                cri.count
            ),
            format!("{} / {}", ms(cri.p50), ms(cri.p99)),
        )
        .floor(
            format!("`ctr run -d` {} / {}", ms(floor.p50), ms(floor.p99)),
            ratios((cri.p50, cri.p99), (floor.p50, floor.p99)),
        ),
    );
    section.rows.push(
        Row::new(
            "second floor, informative: apply → running p50 / p99 against a bare container",
            format!("{} / {}", ms(running.p50), ms(running.p99)),
        )
        .floor(
            format!("`ctr run -d` {} / {}", ms(floor.p50), ms(floor.p99)),
            ratios((running.p50, running.p99), (floor.p50, floor.p99)),
        ),
    );
    section.rows.push(
        Row::new("apply → ready p99", ms(ready.p99))
            .target(format!("≤ {}", ms(READY_P99_LIMIT)), Verdict::at_most(ready.p99, READY_P99_LIMIT)),
    );
    section.rows.push(Row::new("apply → ready p50 / max", format!("{} / {}", ms(ready.p50), ms(ready.max))));
    section.rows.push(Row::new(
        "p50 of the parts: POST answered / pod asked of containerd / pod (sandbox created → container started) / \
         container started → API shows running",
        format!("{} / {} / {} / {}", ms(answered.p50), ms(requested.p50), ms(pod.p50), ms(shown.p50)),
    ));
    if let Some((first_floor, first_cri, first)) = first {
        section.rows.push(
            Row::new(
                "first round (not in the percentiles): running / \
                 ready",
                format!("{} / {}", ms(first.running), ms(first.ready)),
            )
            .floor(
                format!(
                    "pod through the CRI (right after it) {}; first `ctr run -d` {}",
                    ms(first_cri.running),
                    ms(first_floor)
                ),
                "",
            ),
        );
    }
    section.notes.push(format!(
        "The parts are measured separately (each its own p50, so they need not add up): the POST (validation, \
         the audited write, the answer); the controller and the runtime taking the application up, until \
         containerd creates the pod's sandbox (its `created_at`); the pod itself, sandbox (pause container, \
         network namespace, the `flotilla-net` CNI plugin) then the container, until the container was started \
         (the instance's `startedMicros`); and until a GET shows it running (up to one {} poll included). Against \
         the CRI pod floor's {} at p50 (`RunPodSandbox` {}, then `CreateContainer` and `StartContainer` {}, each \
         at p50), the runtime's pod alone took {}, and apply → running {} more than the floor. The bare \
         container of `ctr run -d` took {}: what a pod sandbox with its CNI network costs on top of a container \
         is about the difference between the two floors. Without a readiness probe an instance is marked ready \
         on the runtime's next pass over it: ready followed running by {} at p50.",
        ms(APPLY_POLL),
        ms(cri.p50),
        ms(cri_sandbox.p50),
        ms(cri_container.p50),
        ms(pod.p50),
        ms(running.p50.saturating_sub(cri.p50)),
        ms(floor.p50),
        ms(ready.p50.saturating_sub(running.p50))
    ));
    if let Some(phase) = usage.last() {
        section.notes.push(runtime_cpu_note(phase));
    }
    Ok(section)
}

/// CPU of a runtime phase: the server, the runtime's processes, the machine.
fn runtime_cpu_note(phase: &Usage) -> String {
    format!(
        "CPU during the phase: the server {:.2} cores, containerd and its shims at least {:.2}, the benchmark (and \
         its `ctr` runs) {:.2}, the whole machine {:.2} of {}.",
        phase.server_cores.unwrap_or(0.0),
        phase.runtime_cores.unwrap_or(0.0),
        phase.client_cores,
        phase.machine_cores,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

async fn rolling_benchmark(env: &Env, plan: &RuntimePlan, usage: &mut Vec<Usage>) -> anyhow::Result<(Section, Object)> {
    let (title, method) = rolling_method(plan);
    let name = "rolling";
    let replicas = plan.replicas;
    let before = env.probe.snapshot().await;
    let wall = wall_nanos();
    let created_at = Instant::now();
    let created = env
        .client
        .create("applications", Some(&env.project), &application(&env.project, name, ready_after_1s(replicas)))
        .await
        .context("POST of the application")?;
    let generation = created.metadata.generation.unwrap_or(1) as u64;
    let initial = env.watch(name, generation, replicas, created_at, wall).await.context("the first rollout")?;
    usage.push(env.probe.usage(
        &format!("runtime: first rollout of {replicas} replicas"),
        &before,
        &env.probe.snapshot().await,
    ));
    progress(&format!("runtime: {replicas} replicas ready in {}; updating", fmt_duration(initial.elapsed)));

    let app = initial.app()?;
    let mut spec = app.spec.clone();
    spec["components"][0]["env"] = json!([{"name": "V", "value": "2"}]);
    let document = update_of(app, spec);
    let before = env.probe.snapshot().await;
    let wall = wall_nanos();
    let started = Instant::now();
    let updated =
        env.client.update("applications", Some(&env.project), name, &document).await.context("PUT of the change")?;
    let generation = updated.metadata.generation.context("no generation in the answer")? as u64;
    let update = env.watch(name, generation, replicas, started, wall).await?;
    usage.push(env.probe.usage(
        &format!("runtime: rolling update of {replicas} replicas"),
        &before,
        &env.probe.snapshot().await,
    ));
    progress(&format!("runtime: rolling update done in {}", fmt_duration(update.elapsed)));
    let phases = update.phases();

    let mut section = Section::new(title, method);
    section.rows.push(
        Row::new(
            format!("rolling update of {replicas} replicas (revision {generation}), 1 s readiness"),
            ms(update.elapsed),
        )
        .target(format!("≤ {}", ms(ROLLING_LIMIT)), Verdict::at_most(update.elapsed, ROLLING_LIMIT)),
    );
    section.rows.push(phases_row(&update, &phases));
    section.rows.push(Row::new(
        "first / all instances of the new revision shown by the API",
        format!("{} / {}", update.first_new.map_or("-".into(), ms), update.all_new.map_or("-".into(), ms)),
    ));
    section.rows.push(Row::new(
        "one pod, sandbox created → container started: p50 / max",
        format!("{} / {}", ms(phases.per_pod.p50), ms(phases.per_pod.max)),
    ));
    section
        .rows
        .push(Row::new(format!("first rollout: {replicas} replicas from none (revision 1)"), ms(initial.elapsed)));
    let probe_cost = env.exec_probe_cost(20).await;
    if let Ok(cost) = &probe_cost {
        section.rows.push(Row::new(
            "for comparison: one exec probe (CRI `ExecSync` of `/bin/cat /www/index.html`), p50 / max of 20",
            format!("{} / {}", ms(cost.p50), ms(cost.max)),
        ));
    }
    section.notes.push(rollout_note(&update, &phases, "rolling update"));
    if let Ok(cost) = &probe_cost {
        let all = plan.replicas + plan.quarter().0;
        section.notes.push(format!(
            "The readiness probe is an HTTP GET from the host (as the kubelet's), which costs the runtime next to \
             nothing. An exec probe is a process started in the container through containerd, its shim and \
             `runc exec` (two Go programs started per probe): {} at the p50 measured above, after the update. \
             With up to {all} instances (replicas + surge) probed every second, exec probes alone would ask for \
             about {all} × {} = {} of work per second of these 2 cores, and pod creations would wait behind them; \
             so the figures above are for HTTP probes, the common kind.",
            ms(cost.p50),
            ms(cost.p50),
            ms(cost.p50 * all)
        ));
    }
    if let Some(phase) = usage.last() {
        section.notes.push(runtime_cpu_note(phase));
    }
    let rolled = update.app()?.clone();
    Ok((section, rolled))
}

async fn rollback_benchmark(
    env: &Env,
    plan: &RuntimePlan,
    app: Object,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<Section> {
    let (title, method) = rollback_method(plan);
    let name = app.metadata.name.clone();
    let replicas = plan.replicas;
    let good_spec = app.spec.clone();
    let good_revision = app.metadata.generation.unwrap_or(0);
    let mut broken = good_spec.clone();
    broken["components"][0]["probes"]["readiness"]["http"]["port"] = json!(8081);
    let before = env.probe.snapshot().await;
    let stuck = env
        .client
        .update("applications", Some(&env.project), &name, &update_of(&app, broken))
        .await
        .context("PUT of the revision that never becomes ready")?;
    let stuck_revision = stuck.metadata.generation.context("no generation in the answer")? as u64;
    // Stuck: its first instances are there, and had time to become ready, were they able to.
    let waiting = Instant::now();
    loop {
        let counts = Counts::of(&env.get(&name).await?.status, stuck_revision);
        if counts.new > 0 {
            break;
        }
        if waiting.elapsed() > ROLLOUT_TIMEOUT {
            bail!("no instance of revision {stuck_revision} appeared: {}", counts.text(stuck_revision));
        }
        tokio::time::sleep(ROLLOUT_POLL).await;
    }
    let appeared = waiting.elapsed();
    tokio::time::sleep(plan.stuck).await;
    let current = env.get(&name).await?;
    let at_undo = Counts::of(&current.status, stuck_revision);
    if at_undo.revision != stuck_revision || at_undo.complete || at_undo.new_ready > 0 {
        bail!("revision {stuck_revision} was expected stuck: {}", at_undo.text(stuck_revision));
    }
    let wall = wall_nanos();
    let started = Instant::now();
    let undone = env
        .client
        .update("applications", Some(&env.project), &name, &update_of(&current, good_spec))
        .await
        .context("PUT of revision 2's spec")?;
    let generation = undone.metadata.generation.context("no generation in the answer")? as u64;
    let watch = env.watch(&name, generation, replicas, started, wall).await?;
    usage.push(env.probe.usage(
        &format!("runtime: stuck revision, then rollback of {replicas} replicas"),
        &before,
        &env.probe.snapshot().await,
    ));
    progress(&format!("runtime: rollback done in {}", fmt_duration(watch.elapsed)));
    let phases = watch.phases();
    let final_counts = Counts::of(&watch.app()?.status, generation);

    let mut section = Section::new(title, method);
    section.rows.push(
        Row::new(
            format!("rollback of {replicas} replicas (revision {generation} = the spec of revision {good_revision})"),
            ms(watch.elapsed),
        )
        .target(format!("≤ {}", ms(ROLLBACK_LIMIT)), Verdict::at_most(watch.elapsed, ROLLBACK_LIMIT)),
    );
    section.rows.push(phases_row(&watch, &phases));
    section.rows.push(Row::new(
        "when undone",
        format!(
            "revision {stuck_revision}: {} instances ({} ready), shown {} after its PUT, then {} s more; older: {} \
             ({} ready)",
            at_undo.new,
            at_undo.new_ready,
            ms(appeared),
            plan.stuck.as_secs(),
            at_undo.old,
            at_undo.old_ready
        ),
    ));
    section.rows.push(Row::new(
        "pods created for the rollback / instances of the rolled-back revision at the end",
        format!("{} / {} of {replicas}", phases.created, final_counts.new),
    ));
    if phases.created as u32 >= replicas {
        section.notes.push(format!(
            "The runtime treats the rolled-back spec as a new revision: every instance of revision {good_revision} \
             was replaced by one of revision {generation}, although their specs are the same, so this rollback \
             costs as much as a rolling update (plus removing revision {stuck_revision}'s instances)."
        ));
    } else {
        section.notes.push(format!(
            "The {} instances of revision {good_revision} still running when undone were kept (they run the same \
             template, as a Deployment keeps the ReplicaSet it rolls back to); {} pods were created to make up the \
             {replicas} replicas, and revision {stuck_revision}'s instances were removed.",
            at_undo.old_ready, phases.created
        ));
    }
    section.notes.push(rollout_note(&watch, &phases, "rollback"));
    if let Some(phase) = usage.last() {
        section
            .notes
            .push(format!("{} (The phase includes revision {stuck_revision} being stuck.)", runtime_cpu_note(phase)));
    }
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_states_are_read_in_both_shapes() {
        assert_eq!(instance_state(&json!({"state": "running", "ready": true})), (true, true));
        assert_eq!(instance_state(&json!({"state": "running", "ready": false})), (true, false));
        assert_eq!(instance_state(&json!({"state": {"running": {"ready": true}}})), (true, true));
        assert_eq!(instance_state(&json!({"state": "pending", "reason": "starting"})), (false, false));
    }

    #[test]
    fn counts_say_when_a_revision_is_rolled_out() {
        let status = json!({"revision": 2, "components": [{"name": "web", "phase": "complete"}],
            "instances": [{"revision": 2, "state": "running", "ready": true},
                          {"revision": 2, "state": "running", "ready": true}]});
        let counts = Counts::of(&status, 2);
        assert!(counts.rolled_out(2, 2));
        assert!(!counts.rolled_out(3, 2));
        assert!(!counts.rolled_out(2, 3));
        let progressing = json!({"revision": 2, "components": [{"name": "web", "phase": "progressing"}],
            "instances": [{"revision": 1, "state": "running", "ready": true}]});
        let counts = Counts::of(&progressing, 2);
        assert_eq!((counts.new, counts.old, counts.old_ready), (0, 1, 1));
        assert!(!counts.rolled_out(2, 1));
    }

    #[test]
    fn overlapping_intervals_merge() {
        let s = Duration::from_secs;
        let merged = merge(vec![(s(5), s(6)), (s(0), s(2)), (s(1), s(3))], Duration::ZERO);
        assert_eq!(merged, vec![(s(0), s(3), 2), (s(5), s(6), 1)]);
        assert_eq!(total(&merged), s(4));
        assert_eq!(most_at_once(&[(s(0), s(2)), (s(1), s(3)), (s(2), s(4)), (s(5), s(6))]), 2);
        assert_eq!(offset(5, 7), None);
        assert_eq!(offset(7_000, 5_000), Some(Duration::from_micros(2)));
    }

    #[test]
    fn a_quarter_rounds_surge_up_and_unavailable_down() {
        assert_eq!(RuntimePlan::new(false).quarter(), (13, 12));
    }
}
