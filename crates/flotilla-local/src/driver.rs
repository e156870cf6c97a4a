//! [`LocalDriver`]: the embedded runtime as a [`ClusterDriver`].
//!
//! # Expected flow
//! `apply` records the desired workload and wakes the reconciler. The reconciler (one task)
//! runs every `interval`, and at once when something it started finishes. Per workload, a
//! pass lists the containers (asking for the detail of those not running), restarts exited
//! containers per their restart policy with a doubling back-off (a crash loop), acts on the
//! probe results that came back, kills containers whose liveness fails, starts the probes
//! now due, and moves each component along its rolling update ([`rollout::next_step`]). A
//! rollout that makes no progress within the component's progress deadline is reported as
//! `DeadlineExceeded`; rolling back is the control plane's decision.
//!
//! # Work in the background
//! A pass never waits for a pull, a pod or a probe ([`Background`]): image pulls, pod
//! creations, pod removals and probes run as tasks, a bounded number of each kind at once,
//! and report to the next pass.
//! A pod being created counts for the rollout as a not-ready instance of its revision (as a
//! pending pod does for a Deployment); a pod being removed no longer counts. So a rollout
//! starts a replacement as soon as an instance becomes ready, not once per pass.
//!
//! # Restarts of the control plane
//! Pods carry labels naming their workload, component, revision and instance. A new driver
//! adopts the pods it finds; nothing is restarted. Until the control plane applies the
//! workload again, adopted instances are kept running as they are.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotilla_core::kinds::RestartPolicy;
use flotilla_driver::cluster::{ClusterInfo, NodeInfo, StorageClassInfo};
use flotilla_driver::rollout::{self, Progress, Strategy};
use flotilla_driver::status::{
    ComponentStatus, Event, EventType, InstanceState, InstanceStatus, RolloutPhase, ServiceAddress, WorkloadStatus,
};
use flotilla_driver::workload::{ComponentWorkload, Workload, WorkloadKey, labels};
use flotilla_driver::{ClusterDriver, DriverError, ExecOutput, InstanceMetrics, LogLine, LogQuery};
use futures::stream::BoxStream;
use ipnet::Ipv4Net;
use tokio::sync::{Mutex, Notify, Semaphore, broadcast};

use crate::LocalError;
use crate::cni_plugin::EnvironmentNetwork;
use crate::cri::{Cri, api};
use crate::dns::DnsServer;
use crate::instance::{INSTANCE_LABEL, InstancePlan, disk_io, instance_dir, remove_pod_cgroup, workload_selector};
use crate::networks::NetworkAllocator;
use crate::probe::{self, ProbeKind, ProbeTracker};
use crate::services::{AddressAllocator, Chains, Service, ServiceKey, ServicePort};

/// Settings of the embedded runtime.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Instance directories (files, logs) and persistent volumes live here.
    pub root: PathBuf,
    /// How often the reconciler runs.
    pub interval: Duration,
    /// First restart delay of a crashing container; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Events kept per workload.
    pub max_events: usize,
    /// A log file larger than this is rotated.
    pub max_log_bytes: u64,
    /// Rotated log files kept per instance.
    pub log_files_kept: usize,
    /// Pods created (or removed) at once during a rollout step.
    pub parallel_starts: usize,
    /// Service addresses are taken from here.
    pub service_range: Ipv4Net,
    /// Service names are `<component>.<application>.<environment>.<project>.<dns_domain>`.
    pub dns_domain: String,
    /// Where the name server answers on each environment's gateway (53: `resolv.conf` has
    /// no port).
    pub dns_port: u16,
    /// Where names outside `dns_domain` are forwarded: the host's name servers.
    pub upstream_dns: Vec<SocketAddr>,
    /// How often pods labelled as ours that no workload owns are looked for and removed
    /// (left behind by a removal that failed).
    pub sweep_interval: Duration,
}

impl LocalOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            interval: Duration::from_millis(250),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_events: 200,
            max_log_bytes: 10 * 1024 * 1024,
            log_files_kept: 2,
            parallel_starts: 4,
            service_range: Ipv4Net::new(std::net::Ipv4Addr::new(10, 90, 0, 0), 16).unwrap_or_default(),
            dns_domain: "flotilla.internal".into(),
            dns_port: 53,
            upstream_dns: crate::dns::name_servers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// The machine's memory (`MemTotal` of /proc/meminfo), in bytes.
fn memory_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl From<LocalError> for DriverError {
    fn from(error: LocalError) -> Self {
        match error {
            LocalError::Containerd(message) => DriverError::Unreachable(message),
            other => DriverError::Failed(other.to_string()),
        }
    }
}

/// How long deleting a workload waits for its pods already being removed.
const REMOVAL_WAIT: Duration = Duration::from_secs(60);

/// Probes run at once, at most.
const PARALLEL_PROBES: usize = 16;

/// Image pulls run at once, at most (each is mostly waiting for a registry).
const PARALLEL_PULLS: usize = 3;

/// One instance (pod) the driver looks after.
#[derive(Debug)]
struct Tracked {
    name: String,
    component: String,
    /// The revision the instance counts for: the one it was created for, or a later one
    /// with the same template (scaled, or rolled back to its spec).
    revision: u64,
    /// [`ComponentWorkload::template_hash`] of the spec it runs.
    template: String,
    sandbox_id: String,
    container_id: Option<String>,
    attempt: u32,
    ip: Option<String>,
    state: InstanceState,
    restarts: u32,
    backoff: Duration,
    restart_at: Option<Instant>,
    started: Option<Instant>,
    started_micros: Option<i64>,
    started_up: bool,
    ready: bool,
    startup: ProbeTracker,
    readiness: ProbeTracker,
    liveness: ProbeTracker,
}

impl Tracked {
    fn probe_mut(&mut self, kind: ProbeKind) -> &mut ProbeTracker {
        match kind {
            ProbeKind::Startup => &mut self.startup,
            ProbeKind::Liveness => &mut self.liveness,
            ProbeKind::Readiness => &mut self.readiness,
        }
    }
}

/// An instance being created in the background: until its pod is up it counts for the
/// rollout as a not-ready instance of its revision.
#[derive(Debug)]
struct Creating {
    component: String,
    revision: u64,
    template: String,
    /// Set when the rollout no longer wants it: not created, or removed once created.
    cancelled: Arc<AtomicBool>,
    /// Set when the creating task has ended, however it ended (its pod, if any, exists).
    ended: Arc<AtomicBool>,
}

impl Creating {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }
}

/// Sets its flag when dropped: held by a creating task for its whole life.
struct EndsOnDrop(Arc<AtomicBool>);

impl Drop for EndsOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Per-component rollout tracking.
#[derive(Debug, Clone)]
struct RolloutTracker {
    revision: u64,
    last: Progress,
    since: Instant,
    phase: RolloutPhase,
}

/// What the driver knows of one workload.
#[derive(Debug, Default)]
struct WorkloadState {
    desired: Option<Workload>,
    /// Every revision that still has instances (each is probed and restarted by its own
    /// spec), the desired one included.
    revisions: BTreeMap<u64, Arc<Workload>>,
    instances: BTreeMap<String, Tracked>,
    /// Instances whose pods are being created, by name.
    creating: BTreeMap<String, Creating>,
    events: VecDeque<Event>,
    rollouts: HashMap<String, RolloutTracker>,
    warnings: Vec<String>,
    published: Option<WorkloadStatus>,
    /// Images that could not be pulled: retried with a doubling back-off.
    pulls: HashMap<String, PullBackoff>,
    /// The service of each component with ports.
    services: BTreeMap<String, ServiceAddress>,
}

/// A failing image pull.
#[derive(Debug, Clone)]
struct PullBackoff {
    failures: u32,
    retry_at: Instant,
    message: String,
}

impl WorkloadState {
    fn event(
        &mut self,
        max: usize,
        kind: EventType,
        reason: &str,
        message: String,
        component: Option<&str>,
        instance: Option<&str>,
    ) {
        if kind == EventType::Warning {
            tracing::warn!(reason, %message, instance, "workload event");
        } else {
            tracing::info!(reason, %message, instance, "workload event");
        }
        self.events.push_back(Event {
            time_micros: jiff::Timestamp::now().as_microsecond(),
            kind,
            reason: reason.to_string(),
            message,
            component: component.map(str::to_string),
            instance: instance.map(str::to_string),
        });
        while self.events.len() > max {
            self.events.pop_front();
        }
    }

    /// The instances of `component` as the rollout planner sees them, those being created
    /// included; `current` when of `revision`.
    fn rollout_view(&self, component: &str, revision: u64) -> Vec<rollout::Instance<String>> {
        let running = self.instances.values().filter(|i| i.component == component).map(|i| rollout::Instance {
            id: i.name.clone(),
            current: i.revision == revision,
            ready: i.ready,
        });
        let creating = self
            .creating
            .iter()
            .filter(|(_, c)| c.component == component)
            .map(|(name, c)| rollout::Instance { id: name.clone(), current: c.revision == revision, ready: false });
        running.chain(creating).collect()
    }

    fn status(&self) -> WorkloadStatus {
        let mut components = Vec::new();
        if let Some(desired) = &self.desired {
            for component in &desired.components {
                let of: Vec<&Tracked> = self.instances.values().filter(|i| i.component == component.name).collect();
                let creating = self
                    .creating
                    .values()
                    .filter(|c| c.component == component.name && c.revision == desired.revision)
                    .count() as u32;
                components.push(ComponentStatus {
                    name: component.name.clone(),
                    desired: component.replicas,
                    updated: of.iter().filter(|i| i.revision == desired.revision).count() as u32 + creating,
                    updated_ready: of.iter().filter(|i| i.revision == desired.revision && i.ready).count() as u32,
                    ready: of.iter().filter(|i| i.ready).count() as u32,
                    // A tracker of an earlier revision says nothing about this one yet.
                    phase: self
                        .rollouts
                        .get(&component.name)
                        .filter(|r| r.revision == desired.revision)
                        .map_or(RolloutPhase::Progressing, |r| r.phase),
                    message: self.pulls.get(&component.image).map(|pull| {
                        let wait = pull.retry_at.saturating_duration_since(Instant::now()).as_secs();
                        format!("image {} cannot be pulled: {}; retrying in {wait} s", component.image, pull.message)
                    }),
                    service: self.services.get(&component.name).cloned(),
                });
            }
        }
        WorkloadStatus {
            revision: self.desired.as_ref().map_or(0, |d| d.revision),
            components,
            instances: self
                .instances
                .values()
                .map(|i| InstanceStatus {
                    name: i.name.clone(),
                    component: i.component.clone(),
                    revision: i.revision,
                    state: i.state.clone(),
                    ip: i.ip.clone(),
                    restarts: i.restarts,
                    started_micros: i.started_micros,
                })
                .chain(self.creating.iter().map(|(name, c)| InstanceStatus {
                    name: name.clone(),
                    component: c.component.clone(),
                    revision: c.revision,
                    state: InstanceState::Pending { reason: "creating".into() },
                    ip: None,
                    restarts: 0,
                    started_micros: None,
                }))
                .collect(),
            events: self.events.iter().cloned().collect(),
            warnings: self.warnings.clone(),
        }
    }
}

/// What a background task (see [`Background`]) reports to the next reconcile pass.
enum Finished {
    Created { key: WorkloadKey, name: String, result: Box<Result<Tracked, LocalError>> },
    Probed { key: WorkloadKey, instance: String, container: String, kind: ProbeKind, result: Result<(), String> },
    Pulled { key: WorkloadKey, component: String, image: String, result: Result<(), String> },
}

/// Work the reconciler starts and does not wait for, so that one slow pod or probe holds up
/// nothing else: image pulls, pod creations and removals and probes, each kind a bounded
/// number at once.
/// Results queue here until the next pass takes them.
struct Background {
    parallel_pods: usize,
    creations: Arc<Semaphore>,
    removals: Arc<Semaphore>,
    /// While pods are being created, removals go one at a time: a new instance is what a
    /// rollout waits for, and an old one is out of its service already.
    removals_yielding: Arc<Semaphore>,
    probes: Arc<Semaphore>,
    pulls: Arc<Semaphore>,
    /// The images being pulled (each once, whichever workloads want it).
    pulling: std::sync::Mutex<HashSet<String>>,
    finished: std::sync::Mutex<Vec<Finished>>,
    /// The sandboxes of the pods being removed.
    removing: std::sync::Mutex<HashSet<String>>,
}

impl Background {
    fn new(parallel_pods: usize) -> Self {
        let parallel_pods = parallel_pods.max(1);
        Self {
            parallel_pods,
            creations: Arc::new(Semaphore::new(parallel_pods)),
            removals: Arc::new(Semaphore::new(parallel_pods)),
            removals_yielding: Arc::new(Semaphore::new(1)),
            probes: Arc::new(Semaphore::new(PARALLEL_PROBES)),
            pulls: Arc::new(Semaphore::new(PARALLEL_PULLS)),
            pulling: std::sync::Mutex::default(),
            finished: std::sync::Mutex::default(),
            removing: std::sync::Mutex::default(),
        }
    }

    fn removing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.removing.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn pulling(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.pulling.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn creating(&self) -> bool {
        self.creations.available_permits() < self.parallel_pods
    }

    fn finish(&self, done: Finished) {
        self.finished.lock().unwrap_or_else(|poison| poison.into_inner()).push(done);
    }

    fn take(&self) -> Vec<Finished> {
        std::mem::take(&mut *self.finished.lock().unwrap_or_else(|poison| poison.into_inner()))
    }
}

struct Inner {
    cri: Cri,
    background: Background,
    options: LocalOptions,
    networks: NetworkAllocator,
    workloads: Mutex<HashMap<WorkloadKey, WorkloadState>>,
    wake: Notify,
    changes: broadcast::Sender<(WorkloadKey, WorkloadStatus)>,
    addresses: std::sync::Mutex<AddressAllocator>,
    dns: DnsServer,
    chains: Chains,
    /// The services whose rules are loaded, and the bridges given `route_localnet`.
    loaded: Mutex<Option<(Vec<Service>, Vec<String>)>>,
    /// Set when the driver is dropped: a rule load still queued then does nothing.
    stopped: Arc<AtomicBool>,
    /// The (address version, network count) the DNS records and listeners were made for.
    dns_synced: std::sync::Mutex<Option<(u64, usize)>>,
    /// The last status of each workload, read without waiting for a reconcile in progress.
    statuses: std::sync::RwLock<HashMap<WorkloadKey, WorkloadStatus>>,
}

impl Inner {
    /// Makes `status` what `status()` answers for `key` and tells watchers if it changed.
    fn publish(&self, key: &WorkloadKey, state: &mut WorkloadState) {
        let status = state.status();
        if state.published.as_ref() == Some(&status) {
            return;
        }
        state.published = Some(status.clone());
        self.statuses.write().unwrap_or_else(|poison| poison.into_inner()).insert(key.clone(), status.clone());
        let _ = self.changes.send((key.clone(), status));
    }
}

/// The embedded runtime.
pub struct LocalDriver {
    inner: Arc<Inner>,
    reconciler: tokio::task::JoinHandle<()>,
}

impl Drop for LocalDriver {
    fn drop(&mut self) {
        // Pods keep running: stopping the driver is not stopping the applications. Their
        // rules stay as they are: nothing of this driver changes them from now on.
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.reconciler.abort();
    }
}

fn service_key(key: &WorkloadKey, component: &str) -> ServiceKey {
    ServiceKey {
        project: key.project.clone(),
        environment: key.environment.clone(),
        application: key.application.clone(),
        component: component.to_string(),
    }
}

fn is_of(service: &ServiceKey, key: &WorkloadKey) -> bool {
    service.project == key.project && service.environment == key.environment && service.application == key.application
}

fn micros_now() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// A DNS-safe, unique instance name: `<component>-<revision>-<5 hex>`.
fn instance_name(component: &str, revision: u64) -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..5];
    let mut base = format!("{component}-{revision}");
    base.truncate(56);
    format!("{base}-{suffix}")
}

impl LocalDriver {
    /// Starts the driver on a CRI connection, adopting the pods it finds.
    pub async fn start(cri: Cri, networks: NetworkAllocator, options: LocalOptions) -> Result<Self, LocalError> {
        let (changes, _) = broadcast::channel(1024);
        let addresses = AddressAllocator::open(options.service_range, options.root.join("services.json"));
        let zone = Arc::new(crate::dns::Zone::new(&options.dns_domain));
        let dns = DnsServer::new(zone, options.upstream_dns.clone(), options.dns_port);
        let inner = Arc::new(Inner {
            cri,
            background: Background::new(options.parallel_starts),
            chains: Chains::of(&options.root),
            options,
            networks,
            workloads: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            changes,
            addresses: std::sync::Mutex::new(addresses),
            dns,
            loaded: Mutex::new(None),
            stopped: Arc::new(AtomicBool::new(false)),
            statuses: std::sync::RwLock::default(),
            dns_synced: std::sync::Mutex::new(None),
        });
        inner.adopt().await?;
        let reconciler = tokio::spawn(reconcile_forever(inner.clone()));
        Ok(Self { inner, reconciler })
    }
}

/// Runs until the driver is dropped (which aborts it).
async fn reconcile_forever(driver: Arc<Inner>) {
    let mut last_sweep = Instant::now();
    loop {
        driver.reconcile_all().await;
        if last_sweep.elapsed() >= driver.options.sweep_interval {
            if let Err(error) = driver.sweep().await {
                tracing::warn!(%error, "cannot look for pods no workload owns; will retry");
            }
            last_sweep = Instant::now();
        }
        let _ = tokio::time::timeout(driver.options.interval, driver.wake.notified()).await;
    }
}

impl Inner {
    /// Rebuilds the state from the pods on the runtime (after a restart of the control plane).
    async fn adopt(&self) -> Result<(), LocalError> {
        let mut cri = self.cri.clone();
        let sandboxes = cri.list_pod_sandboxes(HashMap::new()).await?;
        let containers = cri.list_containers(HashMap::new()).await?;
        let mut workloads = self.workloads.lock().await;
        for sandbox in sandboxes {
            let label = |key: &str| sandbox.labels.get(key).cloned();
            let (Some(project), Some(environment), Some(application), Some(component), Some(revision), Some(name)) = (
                label(labels::PROJECT),
                label(labels::ENVIRONMENT),
                label(labels::APPLICATION),
                label(labels::COMPONENT),
                label(labels::REVISION).and_then(|r| r.parse::<u64>().ok()),
                label(INSTANCE_LABEL),
            ) else {
                continue;
            };
            if sandbox.state != api::PodSandboxState::SandboxReady as i32 {
                let _ = cri.remove_pod_sandbox(&sandbox.id).await;
                continue;
            }
            let latest = containers.iter().filter(|c| c.pod_sandbox_id == sandbox.id).max_by_key(|c| c.created_at);
            if latest.is_none() {
                // Half-created when the control plane stopped: made again if still wanted.
                tracing::info!(instance = %name, "removing a pod that has no container");
                self.remove_pod(&sandbox.id, &name).await;
                continue;
            }
            let key = WorkloadKey { project, environment, application };
            let ip = cri.pod_ip(&sandbox.id).await.ok().flatten();
            let running = latest.is_some_and(|c| c.state == api::ContainerState::ContainerRunning as i32);
            let tracked = Tracked {
                name: name.clone(),
                component,
                revision,
                template: label(labels::TEMPLATE).unwrap_or_default(),
                sandbox_id: sandbox.id.clone(),
                container_id: latest.map(|c| c.id.clone()),
                attempt: latest.and_then(|c| c.metadata.as_ref()).map_or(0, |m| m.attempt),
                ip,
                state: InstanceState::Running { ready: running },
                restarts: latest.and_then(|c| c.metadata.as_ref()).map_or(0, |m| m.attempt),
                backoff: self.options.initial_backoff,
                restart_at: None,
                started: Some(Instant::now()),
                started_micros: latest.map(|c| c.created_at / 1000),
                started_up: true,
                ready: running,
                startup: ProbeTracker::default(),
                readiness: ProbeTracker::default(),
                liveness: ProbeTracker::default(),
            };
            tracing::info!(instance = %name, workload = %key, "adopted a running instance");
            workloads.entry(key).or_default().instances.insert(name, tracked);
        }
        for (key, state) in workloads.iter_mut() {
            self.publish(key, state);
        }
        Ok(())
    }

    /// Removes the pods labelled as ours that no workload tracks, creates or is removing:
    /// those a failed removal left behind (containerd or a shim did not answer in time);
    /// then releases the networks of environments that have no workload and no pod: those a
    /// stop of the control plane in the middle of a deletion left allocated (see
    /// [`Self::release_network`]). The workloads stay locked throughout, so no apply can
    /// start using such a network meanwhile.
    async fn sweep(self: &Arc<Self>) -> Result<(), LocalError> {
        let workloads = self.workloads.lock().await;
        let sandboxes = self.cri.clone().list_pod_sandboxes(HashMap::new()).await?;
        let orphans: Vec<(String, String)> = {
            let mut removing = self.background.removing();
            let owned = |name: &String| {
                workloads.values().any(|state| state.instances.contains_key(name) || state.creating.contains_key(name))
            };
            sandboxes
                .iter()
                .filter(|sandbox| sandbox.labels.contains_key(labels::PROJECT))
                .filter_map(|sandbox| Some((sandbox.labels.get(INSTANCE_LABEL)?.clone(), sandbox.id.clone())))
                .filter(|(name, id)| !owned(name) && removing.insert(id.clone()))
                .collect()
        };
        for (name, _) in &orphans {
            tracing::warn!(instance = %name, "removing a pod that no workload owns (an earlier removal failed)");
        }
        self.remove_pods_in_background(orphans);

        // By the pods' namespace, which is what the network plugin goes by.
        let used: HashSet<String> = workloads
            .keys()
            .map(|key| NetworkAllocator::namespace(&key.project, &key.environment))
            .chain(sandboxes.into_iter().filter_map(|sandbox| Some(sandbox.metadata?.namespace)))
            .collect();
        for (namespace, network) in self.networks.allocated().into_iter().filter(|(n, _)| !used.contains(n)) {
            tracing::warn!(environment = %namespace, "releasing a network no workload or pod uses (a deletion was interrupted)");
            self.release_network(&namespace, network).await;
        }
        Ok(())
    }

    async fn reconcile_all(self: &Arc<Self>) {
        let finished = self.background.take();
        let keys: Vec<WorkloadKey> = {
            let mut workloads = self.workloads.lock().await;
            for done in finished {
                self.absorb(&mut workloads, done);
            }
            workloads.keys().cloned().collect()
        };
        for key in keys {
            let mut workloads = self.workloads.lock().await;
            let Some(state) = workloads.get_mut(&key) else { continue };
            if let Err(error) = self.reconcile(&key, state).await {
                tracing::warn!(workload = %key, %error, "reconcile failed; will retry");
            }
            self.publish(&key, state);
        }
        self.sync_services().await;
    }

    /// Releases the network of `key`'s environment once no workload and no pod of the
    /// environment is left: its bridge, rules, name server listener and subnet.
    async fn release_network_unless_used(
        &self,
        workloads: &HashMap<WorkloadKey, WorkloadState>,
        key: &WorkloadKey,
    ) -> Result<(), LocalError> {
        if workloads.keys().any(|other| other.project == key.project && other.environment == key.environment) {
            return Ok(());
        }
        let environment = HashMap::from([
            (labels::PROJECT.to_string(), key.project.clone()),
            (labels::ENVIRONMENT.to_string(), key.environment.clone()),
        ]);
        if !self.cri.clone().list_pod_sandboxes(environment).await?.is_empty() {
            return Ok(());
        }
        let namespace = NetworkAllocator::namespace(&key.project, &key.environment);
        if let Some(network) = self.networks.get(&namespace) {
            self.release_network(&namespace, network).await;
        }
        Ok(())
    }

    /// Removes `network`'s bridge, rules and name server listener, then forgets its allocation.
    async fn release_network(&self, namespace: &str, network: EnvironmentNetwork) {
        if let Some(gateway) = network.gateway() {
            self.dns.stop_listening(gateway);
        }
        tracing::info!(environment = %namespace, bridge = %network.bridge, "releasing the environment's network");
        let _ = tokio::task::spawn_blocking(move || crate::cni_plugin::remove_network(&network)).await;
        // Only now that its bridge and rules are gone: a stop before this point leaves the
        // allocation, which names what is left to remove (and is reused by the environment's
        // next application, or released by the sweep), rather than rules nothing names any more.
        self.networks.release(namespace);
    }

    /// Takes in what a background task finished: a created instance joins its workload
    /// (or is removed again when no longer wanted), a probe result waits in its tracker.
    fn absorb(self: &Arc<Self>, workloads: &mut HashMap<WorkloadKey, WorkloadState>, done: Finished) {
        let max_events = self.options.max_events;
        match done {
            Finished::Created { key, name, result } => {
                let creating = workloads.get_mut(&key).and_then(|state| state.creating.remove(&name));
                match (workloads.get_mut(&key).zip(creating), *result) {
                    (Some((state, creating)), Ok(mut tracked)) => {
                        // Its revision may have been renumbered meanwhile (same template).
                        tracked.revision = creating.revision;
                        state.event(
                            max_events,
                            EventType::Normal,
                            "Started",
                            format!("instance of revision {} started", creating.revision),
                            Some(&creating.component),
                            Some(&name),
                        );
                        state.instances.insert(name, tracked);
                    }
                    (Some((state, creating)), Err(error)) => state.event(
                        max_events,
                        EventType::Warning,
                        "FailedCreate",
                        error.to_string(),
                        Some(&creating.component),
                        Some(&name),
                    ),
                    // Cancelled, or its workload deleted, while the pod was being created.
                    (None, Ok(tracked)) => self.remove_in_background(vec![tracked]),
                    (None, Err(_)) => {}
                }
            }
            Finished::Probed { key, instance, container, kind, result } => {
                let tracked = workloads.get_mut(&key).and_then(|state| state.instances.get_mut(&instance));
                // A result for a container since replaced says nothing about the new one.
                if let Some(tracked) = tracked.filter(|t| t.container_id.as_deref() == Some(container.as_str())) {
                    tracked.probe_mut(kind).finished(result);
                }
            }
            Finished::Pulled { key, component, image, result } => {
                if let Some(state) = workloads.get_mut(&key) {
                    self.pulled(state, &component, &image, result);
                }
            }
        }
    }

    /// Points the DNS names at the service addresses and listens on every network's gateway;
    /// only after either changed.
    fn sync_names(&self) {
        let networks = self.networks.all();
        let addresses = self.addresses.lock().unwrap_or_else(|poison| poison.into_inner());
        let seen = (addresses.version(), networks.len());
        let mut synced = self.dns_synced.lock().unwrap_or_else(|poison| poison.into_inner());
        if *synced == Some(seen) {
            return;
        }
        let domain = &self.options.dns_domain;
        self.dns.zone().set(addresses.all().map(|(service, address)| (service.dns_name(domain), address)).collect());
        for gateway in networks.iter().filter_map(EnvironmentNetwork::gateway) {
            if let Err(error) = self.dns.listen(gateway) {
                tracing::warn!(%gateway, %error, "the name server cannot listen here");
            }
        }
        *synced = Some(seen);
    }

    /// Points the DNS names at the service addresses, and the service rules at the ready
    /// instances.
    async fn sync_services(&self) {
        self.sync_names();
        let mut services = Vec::new();
        let mut bridges = Vec::new();
        {
            let workloads = self.workloads.lock().await;
            for (key, state) in workloads.iter() {
                let Some(desired) = &state.desired else {
                    // Adopted after a restart, not applied yet: its ports are unknown, so the
                    // rules in the kernel stay as they are until it is.
                    if state.instances.is_empty() {
                        continue;
                    }
                    return;
                };
                for component in desired.components.iter().filter(|c| !c.ports.is_empty()) {
                    let Some(address) = state.services.get(&component.name).and_then(|s| s.address.parse().ok()) else {
                        continue;
                    };
                    let mut endpoints: Vec<std::net::Ipv4Addr> = state
                        .instances
                        .values()
                        .filter(|i| i.component == component.name && i.ready)
                        .filter_map(|i| i.ip.as_deref().and_then(|ip| ip.parse().ok()))
                        .collect();
                    endpoints.sort();
                    let ports = component
                        .ports
                        .iter()
                        .map(|p| ServicePort {
                            name: p.name.clone(),
                            protocol: p.protocol,
                            port: p.port,
                            publish: p.publish,
                        })
                        .collect();
                    if component.ports.iter().any(|p| p.publish.is_some())
                        && let Ok(network) =
                            self.networks.ensure(&NetworkAllocator::namespace(&key.project, &key.environment))
                    {
                        bridges.push(network.bridge);
                    }
                    services.push(Service { key: service_key(key, &component.name), address, ports, endpoints });
                }
            }
        }
        services.sort_by(|a, b| a.key.cmp(&b.key));
        bridges.sort();
        bridges.dedup();
        let mut loaded = self.loaded.lock().await;
        if loaded.as_ref().is_some_and(|(s, b)| *s == services && *b == bridges) {
            return;
        }
        let chains = self.chains.clone();
        let (to_load, bridges_to_load, stopped) = (services.clone(), bridges.clone(), self.stopped.clone());
        let outcome =
            tokio::task::spawn_blocking(move || crate::services::apply(&chains, &to_load, &bridges_to_load, &stopped))
                .await;
        match outcome {
            Ok(Ok(())) => *loaded = Some((services, bridges)),
            Ok(Err(error)) => tracing::warn!(%error, "cannot load the service rules; will retry"),
            Err(error) => tracing::warn!(%error, "cannot load the service rules; will retry"),
        }
    }

    async fn reconcile(self: &Arc<Self>, key: &WorkloadKey, state: &mut WorkloadState) -> Result<(), LocalError> {
        let mut cri = self.cri.clone();
        let desired = state.desired.clone().map(Arc::new);
        // One listing says which containers run; only the others are asked for their detail.
        let running: HashSet<String> = match cri.list_containers(workload_selector(key)).await {
            Ok(containers) => containers
                .into_iter()
                .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
                .map(|c| c.id)
                .collect(),
            Err(error) => {
                tracing::warn!(workload = %key, %error, "cannot list the containers; asking one by one");
                HashSet::new()
            }
        };
        let names: Vec<String> = state.instances.keys().cloned().collect();
        for name in names {
            let (revision, component_name) = {
                let tracked = &state.instances[&name];
                (tracked.revision, tracked.component.clone())
            };
            let spec = state.revisions.get(&revision).cloned();
            let component = spec.as_ref().and_then(|w| w.components.iter().find(|c| c.name == component_name));
            self.look_after(&mut cri, state, &name, spec.as_deref(), component, &running).await?;
        }
        self.start_due_probes(key, state);
        let Some(desired) = desired else { return Ok(()) };
        state.services = self.assign_addresses(key, &desired)?;
        let live: std::collections::BTreeSet<u64> = state.instances.values().map(|i| i.revision).collect();
        state.revisions.retain(|revision, _| *revision == desired.revision || live.contains(revision));
        // Components no longer wanted.
        let wanted = |component: &str| desired.components.iter().any(|c| c.name == component);
        state.creating.retain(|_, creating| {
            let keep = wanted(&creating.component);
            if !keep {
                creating.cancel();
            }
            keep
        });
        let gone: Vec<String> =
            state.instances.values().filter(|i| !wanted(&i.component)).map(|i| i.name.clone()).collect();
        self.stop_instances(state, &gone, "the component was removed from the application");
        for component in &desired.components {
            self.roll(&mut cri, key, state, &desired, component).await?;
        }
        Ok(())
    }

    /// A service address for each component of `desired` with ports; the addresses of its
    /// other components are freed.
    fn assign_addresses(
        &self,
        key: &WorkloadKey,
        desired: &Workload,
    ) -> Result<BTreeMap<String, ServiceAddress>, LocalError> {
        let mut addresses = self.addresses.lock().unwrap_or_else(|poison| poison.into_inner());
        let with_ports: Vec<&ComponentWorkload> = desired.components.iter().filter(|c| !c.ports.is_empty()).collect();
        addresses.retain(|service| !is_of(service, key) || with_ports.iter().any(|c| c.name == service.component))?;
        let mut services = BTreeMap::new();
        for component in with_ports {
            let service = service_key(key, &component.name);
            let address = addresses.ensure(&service)?;
            let dns_name = service.dns_name(&self.options.dns_domain);
            services.insert(component.name.clone(), ServiceAddress { address: address.to_string(), dns_name });
        }
        Ok(services)
    }

    /// Restarts, probes and state of one instance.
    async fn look_after(
        &self,
        cri: &mut Cri,
        state: &mut WorkloadState,
        name: &str,
        revision: Option<&Workload>,
        component: Option<&ComponentWorkload>,
        running: &HashSet<String>,
    ) -> Result<(), LocalError> {
        let max_events = self.options.max_events;
        let Some(instance) = state.instances.get_mut(name) else { return Ok(()) };
        let Some(container_id) = instance.container_id.clone() else { return Ok(()) };
        let status = if running.contains(&container_id) {
            api::ContainerStatus { state: api::ContainerState::ContainerRunning as i32, ..Default::default() }
        } else {
            match cri.container_status(&container_id).await {
                Ok(status) => status,
                Err(error) => {
                    instance.state = InstanceState::Pending { reason: error.to_string() };
                    instance.ready = false;
                    return Ok(());
                }
            }
        };
        if status.state == api::ContainerState::ContainerExited as i32 {
            instance.ready = false;
            let oom = status.reason == "OOMKilled";
            let policy = component.map_or(RestartPolicy::Always, |c| c.restart_policy);
            let restart = match policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => status.exit_code != 0,
                RestartPolicy::Never => false,
            };
            if !restart {
                instance.state =
                    if oom { InstanceState::OomKilled } else { InstanceState::Exited { exit_code: status.exit_code } };
                return Ok(());
            }
            let Some(component) = component else { return Ok(()) };
            match instance.restart_at {
                None => {
                    // Ran for a while: a fresh failure, not a loop.
                    if instance.started.is_some_and(|s| s.elapsed() >= Duration::from_secs(60)) {
                        instance.backoff = self.options.initial_backoff;
                    }
                    let backoff = instance.backoff;
                    instance.restart_at = Some(Instant::now() + backoff);
                    instance.state = if oom {
                        InstanceState::OomKilled
                    } else {
                        InstanceState::CrashLoop { exit_code: status.exit_code, backoff_seconds: backoff.as_secs() }
                    };
                    instance.backoff = (backoff * 2).min(self.options.max_backoff);
                    let (reason, message) = if oom {
                        ("OOMKilled", format!("killed for exceeding its memory limit; restarting in {backoff:?}"))
                    } else {
                        ("BackOff", format!("exited with {}; restarting in {backoff:?}", status.exit_code))
                    };
                    let (component_name, instance_name) = (instance.component.clone(), instance.name.clone());
                    state.event(
                        max_events,
                        EventType::Warning,
                        reason,
                        message,
                        Some(&component_name),
                        Some(&instance_name),
                    );
                }
                Some(at) if Instant::now() >= at => {
                    let _ = cri.remove_container(&container_id).await;
                    instance.attempt += 1;
                    instance.restarts += 1;
                    instance.restart_at = None;
                    if let Some(workload) = revision {
                        self.start_container(cri, workload, component, instance).await?;
                    }
                    let (component_name, instance_name, restarts) =
                        (instance.component.clone(), instance.name.clone(), instance.restarts);
                    state.event(
                        max_events,
                        EventType::Normal,
                        "Restarted",
                        format!("restart {restarts}"),
                        Some(&component_name),
                        Some(&instance_name),
                    );
                }
                Some(_) => {}
            }
            return Ok(());
        }
        if status.state != api::ContainerState::ContainerRunning as i32 {
            instance.state = InstanceState::Pending { reason: "container created".into() };
            return Ok(());
        }
        // Running: probes.
        let Some(component) = component else {
            instance.ready = true;
            instance.state = InstanceState::Running { ready: true };
            return Ok(());
        };
        instance.started.get_or_insert_with(Instant::now);
        // Act on the probe results that came back since the last pass.
        let mut failure: Option<(String, String)> = None;
        // Why a ready instance stopped being ready, for an event.
        let mut unready: Option<String> = None;
        if !instance.started_up {
            match &component.startup {
                None => instance.started_up = true,
                Some(probe) => match instance.startup.take() {
                    Some(Ok(())) if instance.startup.successes >= probe.success_threshold => instance.started_up = true,
                    Some(Err(why)) if instance.startup.failures >= probe.failure_threshold => {
                        failure = Some(("startup".into(), why));
                    }
                    _ => {}
                },
            }
        }
        if instance.started_up && failure.is_none() {
            if let Some(probe) = &component.liveness
                && let Some(Err(why)) = instance.liveness.take()
                && instance.liveness.failures >= probe.failure_threshold
            {
                failure = Some(("liveness".into(), why));
            }
            match &component.readiness {
                None => instance.ready = true,
                Some(probe) => match instance.readiness.take() {
                    Some(Ok(())) if instance.readiness.successes >= probe.success_threshold => instance.ready = true,
                    Some(Err(why)) if instance.readiness.failures >= probe.failure_threshold => {
                        if instance.ready {
                            unready = Some(format!(
                                "readiness probe failed {} times in a row: {why}; taken out of service",
                                instance.readiness.failures
                            ));
                        }
                        instance.ready = false;
                    }
                    _ => {}
                },
            }
        }
        instance.state = InstanceState::Running { ready: instance.ready };
        let log = instance_dir(&self.options.root, name).join("logs").join(format!("{}.log", instance.component));
        match crate::logs::rotate_if_larger(&log, self.options.max_log_bytes, self.options.log_files_kept) {
            Ok(true) => cri.reopen_container_log(&container_id).await?,
            Ok(false) => {}
            Err(error) => tracing::warn!(instance = name, %error, "cannot rotate the log"),
        }
        // (A container killed below for a failed probe says so in its own event.)
        if failure.is_none()
            && let Some(why) = unready
        {
            let (component_name, instance_name) = (instance.component.clone(), instance.name.clone());
            state.event(max_events, EventType::Warning, "Unhealthy", why, Some(&component_name), Some(&instance_name));
            return Ok(());
        }
        if let Some((which, why)) = failure {
            instance.ready = false;
            instance.started = None;
            instance.started_up = false;
            instance.startup = ProbeTracker::default();
            instance.liveness = ProbeTracker::default();
            instance.readiness = ProbeTracker::default();
            let (component_name, instance_name) = (instance.component.clone(), instance.name.clone());
            state.event(
                max_events,
                EventType::Warning,
                "Unhealthy",
                format!("{which} probe failed: {why}; killing the container"),
                Some(&component_name),
                Some(&instance_name),
            );
            cri.stop_container(&container_id, 5).await?;
        }
        Ok(())
    }

    /// Starts the probes due now of every running instance, in the background (an exec probe
    /// takes tens of milliseconds; a pass waiting for dozens of them would hold up every
    /// rollout). Each result waits in its tracker for the next pass; one that changes the
    /// instance's state (ready or not, started up, failing) wakes the reconciler at once.
    fn start_due_probes(self: &Arc<Self>, key: &WorkloadKey, state: &mut WorkloadState) {
        let WorkloadState { instances, revisions, .. } = state;
        for instance in instances.values_mut() {
            let (Some(container), Some(started)) = (instance.container_id.clone(), instance.started) else { continue };
            if !matches!(instance.state, InstanceState::Running { .. }) {
                continue;
            }
            let Some(component) = revisions
                .get(&instance.revision)
                .and_then(|w| w.components.iter().find(|c| c.name == instance.component))
            else {
                continue;
            };
            let wanted = if instance.started_up {
                vec![(ProbeKind::Liveness, &component.liveness), (ProbeKind::Readiness, &component.readiness)]
            } else {
                vec![(ProbeKind::Startup, &component.startup)]
            };
            for (kind, probe) in wanted {
                let Some(probe) = probe else { continue };
                let tracker = instance.probe_mut(kind);
                if !tracker.due(probe, started) {
                    continue;
                }
                tracker.started();
                let (inner, key, probe) = (Arc::clone(self), key.clone(), probe.clone());
                let (name, ip, container, ready) =
                    (instance.name.clone(), instance.ip.clone(), container.clone(), instance.ready);
                tokio::spawn(async move {
                    let Ok(_permit) = inner.background.probes.clone().acquire_owned().await else { return };
                    let mut cri = inner.cri.clone();
                    let timeout = Duration::from_secs(u64::from(probe.timeout_seconds));
                    let result = probe::run(&mut cri, &probe.action, ip.as_deref(), &container, timeout).await;
                    let news = match kind {
                        ProbeKind::Startup => result.is_ok(),
                        ProbeKind::Liveness => result.is_err(),
                        ProbeKind::Readiness => result.is_ok() != ready,
                    };
                    inner.background.finish(Finished::Probed { key, instance: name, container, kind, result });
                    if news {
                        inner.wake.notify_one();
                    }
                });
            }
        }
    }

    /// One step of the rolling update of `component`.
    async fn roll(
        self: &Arc<Self>,
        cri: &mut Cri,
        key: &WorkloadKey,
        state: &mut WorkloadState,
        workload: &Arc<Workload>,
        component: &ComponentWorkload,
    ) -> Result<(), LocalError> {
        let max_events = self.options.max_events;
        // Instances already running this template count for this revision: nothing to replace.
        let template = component.template_hash();
        for instance in state.instances.values_mut() {
            if instance.component == component.name
                && instance.revision != workload.revision
                && instance.template == template
            {
                instance.revision = workload.revision;
            }
        }
        for creating in state.creating.values_mut() {
            if creating.component == component.name
                && creating.revision != workload.revision
                && creating.template == template
            {
                creating.revision = workload.revision;
            }
        }
        let instances = state.rollout_view(&component.name, workload.revision);
        let progress = Progress::of(&instances);
        let strategy = Strategy {
            replicas: component.replicas,
            max_surge: component.max_surge,
            max_unavailable: component.max_unavailable,
        };
        // Progress tracking.
        let tracker = state.rollouts.entry(component.name.clone()).or_insert(RolloutTracker {
            revision: workload.revision,
            last: progress,
            since: Instant::now(),
            phase: RolloutPhase::Progressing,
        });
        if tracker.revision != workload.revision {
            *tracker = RolloutTracker {
                revision: workload.revision,
                last: progress,
                since: Instant::now(),
                phase: RolloutPhase::Progressing,
            };
        }
        let advanced = progress.updated_ready > tracker.last.updated_ready || progress.old < tracker.last.old;
        if advanced {
            tracker.since = Instant::now();
        }
        tracker.last = progress;
        let complete = progress.is_complete(component.replicas);
        let previous = tracker.phase;
        tracker.phase = if complete {
            RolloutPhase::Complete
        } else if previous == RolloutPhase::DeadlineExceeded
            || tracker.since.elapsed() > Duration::from_secs(u64::from(component.progress_deadline_seconds))
        {
            RolloutPhase::DeadlineExceeded
        } else {
            RolloutPhase::Progressing
        };
        let phase = tracker.phase;
        if phase != previous {
            match phase {
                RolloutPhase::Complete => state.event(
                    max_events,
                    EventType::Normal,
                    "RolloutComplete",
                    format!("revision {} is ready on {} instances", workload.revision, component.replicas),
                    Some(&component.name),
                    None,
                ),
                RolloutPhase::DeadlineExceeded => state.event(
                    max_events,
                    EventType::Warning,
                    "ProgressDeadlineExceeded",
                    format!(
                        "revision {} made no progress for {} s ({} of {} updated instances ready)",
                        workload.revision,
                        component.progress_deadline_seconds,
                        progress.updated_ready,
                        component.replicas
                    ),
                    Some(&component.name),
                    None,
                ),
                RolloutPhase::Progressing => {}
            }
        }
        // Instances being stopped no longer count: a second step starts what the first one's
        // stops made room for, as the Deployment controller's next sync would.
        for _ in 0..2 {
            let step = rollout::next_step(strategy, &state.rollout_view(&component.name, workload.revision));
            let mut stopping = Vec::new();
            for name in &step.stop {
                if let Some(creating) = state.creating.remove(name) {
                    creating.cancel();
                } else if let Some(instance) = state.instances.remove(name) {
                    stopping.push(instance);
                }
            }
            self.stopped(state, &stopping, "replaced or scaled down");
            self.remove_in_background(stopping);
            if step.start == 0 || !self.image_ready(cri, key, state, &component.name, &component.image).await {
                break;
            }
            self.start_creations(key, state, workload, component, &template, step.start);
            if step.stop.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Starts creating `count` instances of `component` in the background, the creations of
    /// all workloads `parallel_starts` at a time (each spends most of its time in containerd,
    /// runc and the CNI plugins). Until created, each counts as a [`Creating`] instance.
    fn start_creations(
        self: &Arc<Self>,
        key: &WorkloadKey,
        state: &mut WorkloadState,
        workload: &Arc<Workload>,
        component: &ComponentWorkload,
        template: &str,
        count: u32,
    ) {
        for _ in 0..count {
            let name = instance_name(&component.name, workload.revision);
            let cancelled = Arc::new(AtomicBool::new(false));
            let ended = Arc::new(AtomicBool::new(false));
            state.creating.insert(
                name.clone(),
                Creating {
                    component: component.name.clone(),
                    revision: workload.revision,
                    template: template.to_string(),
                    cancelled: cancelled.clone(),
                    ended: ended.clone(),
                },
            );
            let (inner, key, workload, component) =
                (Arc::clone(self), key.clone(), Arc::clone(workload), component.name.clone());
            tokio::spawn(async move {
                let _ends = EndsOnDrop(ended);
                let Ok(_permit) = inner.background.creations.clone().acquire_owned().await else { return };
                let Some(component) = workload.components.iter().find(|c| c.name == component) else { return };
                if cancelled.load(Ordering::SeqCst) {
                    return;
                }
                let mut cri = inner.cri.clone();
                let result = inner.create_instance(&mut cri, &key, &workload, component, &name).await;
                inner.background.finish(Finished::Created { key, name, result: Box::new(result) });
                inner.wake.notify_one();
            });
        }
    }

    /// Whether `image` is present. If not, it is pulled in the background, unless a pull of
    /// it is under way or the back-off of the last failed one has not run out.
    async fn image_ready(
        self: &Arc<Self>,
        cri: &mut Cri,
        key: &WorkloadKey,
        state: &mut WorkloadState,
        component: &str,
        image: &str,
    ) -> bool {
        if matches!(cri.image_id(image).await, Ok(Some(_))) {
            state.pulls.remove(image);
            return true;
        }
        if state.pulls.get(image).is_some_and(|pull| Instant::now() < pull.retry_at)
            || !self.background.pulling().insert(image.to_string())
        {
            return false;
        }
        let max_events = self.options.max_events;
        state.event(max_events, EventType::Normal, "Pulling", format!("pulling {image}"), Some(component), None);
        let (inner, key, component, image) = (Arc::clone(self), key.clone(), component.to_string(), image.to_string());
        tokio::spawn(async move {
            let result = match inner.background.pulls.clone().acquire_owned().await {
                Ok(_permit) => inner.cri.clone().pull_image(&image).await.map(|_| ()).map_err(|e| e.to_string()),
                Err(_) => Err("the runtime is stopping".into()),
            };
            inner.background.pulling().remove(&image);
            inner.background.finish(Finished::Pulled { key, component, image, result });
            inner.wake.notify_one();
        });
        false
    }

    /// Records how a pull of `image` for `component` went: a failure is shown with the
    /// registry's message and retried after 1 s, 2 s, 4 s, … up to the maximum back-off.
    fn pulled(&self, state: &mut WorkloadState, component: &str, image: &str, result: Result<(), String>) {
        let max_events = self.options.max_events;
        match result {
            Ok(()) => {
                state.pulls.remove(image);
                state.event(max_events, EventType::Normal, "Pulled", format!("pulled {image}"), Some(component), None);
            }
            Err(message) => {
                let failures = state.pulls.get(image).map_or(0, |p| p.failures) + 1;
                let backoff = self
                    .options
                    .initial_backoff
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(self.options.max_backoff);
                state.event(
                    max_events,
                    EventType::Warning,
                    "ImagePullBackOff",
                    format!("cannot pull {image} (attempt {failures}): {message}; retrying in {backoff:?}"),
                    Some(component),
                    None,
                );
                state
                    .pulls
                    .insert(image.to_string(), PullBackoff { failures, retry_at: Instant::now() + backoff, message });
            }
        }
    }

    fn plan<'a>(
        &self,
        workload: &'a Workload,
        component: &'a ComponentWorkload,
        name: &str,
    ) -> Result<InstancePlan<'a>, LocalError> {
        let namespace = NetworkAllocator::namespace(&workload.key.project, &workload.key.environment);
        let network = self.networks.ensure(&namespace)?;
        let domain = &self.options.dns_domain;
        let (project, environment) = (&workload.key.project, &workload.key.environment);
        let dns = network.gateway().map(|gateway| api::DnsConfig {
            servers: vec![gateway.to_string()],
            searches: vec![format!("{environment}.{project}.{domain}"), format!("{project}.{domain}"), domain.clone()],
            // As Kubernetes: `web.store` tries the search domains before going upstream.
            options: vec!["ndots:5".into()],
        });
        Ok(InstancePlan {
            workload,
            component,
            name: name.to_string(),
            namespace,
            dir: instance_dir(&self.options.root, name),
            volumes_dir: self
                .options
                .root
                .join("volumes")
                .join(&workload.key.project)
                .join(&workload.key.environment)
                .join(&workload.key.application),
            dns,
        })
    }

    async fn create_instance(
        &self,
        cri: &mut Cri,
        key: &WorkloadKey,
        workload: &Workload,
        component: &ComponentWorkload,
        name: &str,
    ) -> Result<Tracked, LocalError> {
        let plan = self.plan(workload, component, name)?;
        std::fs::create_dir_all(plan.log_dir())
            .map_err(LocalError::io(format!("cannot create {}", plan.log_dir().display())))?;
        let sandbox_id = cri.run_pod_sandbox(plan.sandbox()).await?;
        let mut tracked = Tracked {
            name: name.to_string(),
            component: component.name.clone(),
            revision: workload.revision,
            template: component.template_hash(),
            sandbox_id: sandbox_id.clone(),
            container_id: None,
            attempt: 0,
            ip: cri.pod_ip(&sandbox_id).await.ok().flatten(),
            state: InstanceState::Pending { reason: "starting".into() },
            restarts: 0,
            backoff: self.options.initial_backoff,
            restart_at: None,
            started: None,
            started_micros: None,
            started_up: false,
            ready: false,
            startup: ProbeTracker::default(),
            readiness: ProbeTracker::default(),
            liveness: ProbeTracker::default(),
        };
        if let Err(error) = self.start_container(cri, workload, component, &mut tracked).await {
            let _ = cri.stop_pod_sandbox(&sandbox_id).await;
            let _ = cri.remove_pod_sandbox(&sandbox_id).await;
            return Err(error);
        }
        tracing::debug!(workload = %key, instance = name, "instance created");
        Ok(tracked)
    }

    async fn start_container(
        &self,
        cri: &mut Cri,
        workload: &Workload,
        component: &ComponentWorkload,
        tracked: &mut Tracked,
    ) -> Result<(), LocalError> {
        let plan = self.plan(workload, component, &tracked.name)?;
        let mut mounts = plan.write_files()?;
        mounts.extend(plan.volume_mounts()?);
        let mut config = plan.container(mounts);
        if let Some(metadata) = config.metadata.as_mut() {
            metadata.attempt = tracked.attempt;
        }
        let id = cri.create_container(&tracked.sandbox_id, config, plan.sandbox()).await?;
        cri.start_container(&id).await?;
        tracked.container_id = Some(id);
        tracked.started = Some(Instant::now());
        tracked.started_micros = Some(micros_now());
        // Without startup and readiness probes a started container is ready (as on
        // Kubernetes), now rather than at the next pass.
        let ready = component.startup.is_none() && component.readiness.is_none();
        tracked.started_up = component.startup.is_none();
        tracked.ready = ready;
        tracked.startup = ProbeTracker::default();
        tracked.readiness = ProbeTracker::default();
        tracked.liveness = ProbeTracker::default();
        tracked.state = InstanceState::Running { ready };
        Ok(())
    }

    /// Stops and removes instances (in the background).
    fn stop_instances(self: &Arc<Self>, state: &mut WorkloadState, names: &[String], why: &str) {
        let instances: Vec<Tracked> = names.iter().filter_map(|name| state.instances.remove(name)).collect();
        self.stopped(state, &instances, why);
        self.remove_in_background(instances);
    }

    /// Stops and removes the pods of `instances` (taken out of the state) in the background.
    fn remove_in_background(self: &Arc<Self>, instances: Vec<Tracked>) {
        self.remove_pods_in_background(instances.into_iter().map(|i| (i.name, i.sandbox_id)).collect());
    }

    /// Stops and removes `pods` (instance name, sandbox id) in the background, the removals
    /// of all workloads `parallel_starts` at a time.
    fn remove_pods_in_background(self: &Arc<Self>, pods: Vec<(String, String)>) {
        for (name, sandbox_id) in pods {
            let inner = Arc::clone(self);
            inner.background.removing().insert(sandbox_id.clone());
            tokio::spawn(async move {
                if let Ok(_permit) = inner.background.removals.clone().acquire_owned().await {
                    let _yielding = match inner.background.creating() {
                        true => inner.background.removals_yielding.clone().acquire_owned().await.ok(),
                        false => None,
                    };
                    inner.remove_pod(&sandbox_id, &name).await;
                }
                inner.background.removing().remove(&sandbox_id);
            });
        }
    }

    /// Stops and removes one instance's pod, its cgroup and its directory.
    async fn remove_pod(&self, sandbox: &str, name: &str) {
        let mut cri = self.cri.clone();
        if let Err(error) = cri.stop_pod_sandbox(sandbox).await {
            tracing::warn!(instance = name, %error, "cannot stop the pod");
        }
        if let Err(error) = cri.remove_pod_sandbox(sandbox).await {
            tracing::warn!(instance = name, %error, "cannot remove the pod");
        }
        remove_pod_cgroup(name);
        let _ = std::fs::remove_dir_all(instance_dir(&self.options.root, name));
    }

    /// Records that `instances` are stopped, and why.
    fn stopped(&self, state: &mut WorkloadState, instances: &[Tracked], why: &str) {
        for instance in instances {
            state.event(
                self.options.max_events,
                EventType::Normal,
                "Killing",
                format!("stopped instance of revision {}: {why}", instance.revision),
                Some(&instance.component),
                Some(&instance.name),
            );
        }
    }
}

#[async_trait]
impl ClusterDriver for LocalDriver {
    async fn apply(&self, workload: &Workload) -> Result<(), DriverError> {
        let mut workloads = self.inner.workloads.lock().await;
        let state = workloads.entry(workload.key.clone()).or_default();
        let mut warnings: Vec<String> = workload
            .components
            .iter()
            .filter(|c| c.scheduling.has_hints())
            .map(|c| {
                format!("component {:?}: scheduling hints are ignored on the single-node embedded runtime", c.name)
            })
            .collect();
        warnings.extend(workload.components.iter().filter(|c| c.autoscaling.is_some()).map(|c| {
            format!(
                "component {:?}: the embedded runtime does not autoscale; it runs replicas ({})",
                c.name, c.replicas
            )
        }));
        state.warnings = warnings;
        state.revisions.insert(workload.revision, Arc::new(workload.clone()));
        state.desired = Some(workload.clone());
        self.inner.publish(&workload.key, state);
        drop(workloads);
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn delete(&self, key: &WorkloadKey, keep_volumes: bool) -> Result<(), DriverError> {
        let mut workloads = self.inner.workloads.lock().await;
        let mut cri = self.inner.cri.clone();
        let state = workloads.remove(key);
        // A pod still being created is removed when its creation reports back.
        state.iter().flat_map(|s| s.creating.values()).for_each(Creating::cancel);
        self.inner.statuses.write().unwrap_or_else(|poison| poison.into_inner()).remove(key);
        self.inner
            .addresses
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .retain(|service| !is_of(service, key))?;
        // Everything labelled as this workload's, including what the state may have missed;
        // pods already being removed in the background are waited for, and so are pods still
        // being created: the network must outlive them (a pod's network set-up running after
        // the network's release would leave its rules behind).
        let deadline = Instant::now() + REMOVAL_WAIT;
        loop {
            // Before listing: a creation ended by now has its pod in the list.
            let creations_ended = state.iter().flat_map(|s| s.creating.values()).all(Creating::has_ended);
            let sandboxes = cri.list_pod_sandboxes(workload_selector(key)).await?;
            let (mut busy, idle): (Vec<_>, Vec<_>) = {
                let removing = self.inner.background.removing();
                sandboxes.into_iter().partition(|sandbox| removing.contains(&sandbox.id))
            };
            let mut last_error = None;
            for sandbox in idle {
                // A cancelled creation may be removing the same pod right now ("already in
                // removing state"): such a pod is waited for like a busy one.
                let removed = match cri.stop_pod_sandbox(&sandbox.id).await {
                    Ok(()) => cri.remove_pod_sandbox(&sandbox.id).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = removed {
                    tracing::debug!(%error, pod = %sandbox.id, "pod not removed yet; trying again");
                    last_error = Some(error.to_string());
                    busy.push(sandbox);
                    continue;
                }
                if let Some(name) = sandbox.labels.get(INSTANCE_LABEL) {
                    remove_pod_cgroup(name);
                    let _ = std::fs::remove_dir_all(instance_dir(&self.inner.options.root, name));
                }
            }
            if busy.is_empty() && creations_ended {
                break;
            }
            if Instant::now() >= deadline {
                if !creations_ended {
                    return Err(DriverError::Failed(format!(
                        "pods of {key} are still being created after {REMOVAL_WAIT:?}"
                    )));
                }
                let why = last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default();
                return Err(DriverError::Failed(format!(
                    "{} pods of {key} are still being removed after {REMOVAL_WAIT:?}{why}",
                    busy.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.inner.release_network_unless_used(&workloads, key).await?;
        if !keep_volumes {
            let volumes = self
                .inner
                .options
                .root
                .join("volumes")
                .join(&key.project)
                .join(&key.environment)
                .join(&key.application);
            let _ = std::fs::remove_dir_all(volumes);
        }
        drop(state);
        Ok(())
    }

    async fn workloads(&self) -> Result<Vec<WorkloadKey>, DriverError> {
        Ok(self.inner.workloads.lock().await.keys().cloned().collect())
    }

    /// The status as of the workload's last reconcile (or apply): never waits for one.
    async fn status(&self, key: &WorkloadKey) -> Result<WorkloadStatus, DriverError> {
        let statuses = self.inner.statuses.read().unwrap_or_else(|poison| poison.into_inner());
        statuses.get(key).cloned().ok_or_else(|| DriverError::NotFound(key.to_string()))
    }

    fn watch(&self) -> BoxStream<'static, (WorkloadKey, WorkloadStatus)> {
        let receiver = self.inner.changes.subscribe();
        Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(change) => return Some((change, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// The instances' log files (rotated ones included), merged by time; with `follow`, new
    /// lines as they are written, across rotations, until the stream is dropped.
    async fn logs(
        &self,
        key: &WorkloadKey,
        query: LogQuery,
    ) -> Result<BoxStream<'static, Result<LogLine, DriverError>>, DriverError> {
        let files: Vec<(String, PathBuf)> = {
            let workloads = self.inner.workloads.lock().await;
            let state = workloads.get(key).ok_or_else(|| DriverError::NotFound(key.to_string()))?;
            state
                .instances
                .values()
                .filter(|i| query.component.as_ref().is_none_or(|c| *c == i.component))
                .filter(|i| query.instance.as_ref().is_none_or(|n| *n == i.name))
                .map(|i| {
                    let path = instance_dir(&self.inner.options.root, &i.name)
                        .join("logs")
                        .join(format!("{}.log", i.component));
                    (i.name.clone(), path)
                })
                .collect()
        };
        let keep = self.inner.options.log_files_kept;
        let mut initial = Vec::new();
        let mut followers = Vec::new();
        for (instance, current) in files {
            let rotated: Vec<PathBuf> =
                crate::logs::files(&current, keep).into_iter().filter(|p| *p != current).collect();
            let mut lines = crate::logs::read(&rotated, &instance, query.since_micros);
            let mut follower = crate::logs::Follower::new(current, instance);
            lines.extend(
                follower.poll().into_iter().filter(|l| query.since_micros.is_none_or(|since| l.time_micros >= since)),
            );
            initial.extend(crate::logs::tail(lines, query.tail));
            followers.push(follower);
        }
        initial.sort_by_key(|l| l.time_micros);
        let initial = futures::stream::iter(initial.into_iter().map(Ok));
        if !query.follow {
            return Ok(Box::pin(initial));
        }
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<LogLine, DriverError>>(1024);
        for mut follower in followers {
            let sender = sender.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    for line in follower.poll() {
                        if sender.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                    if sender.is_closed() {
                        return;
                    }
                }
            });
        }
        let live =
            futures::stream::unfold(
                receiver,
                |mut receiver| async move { receiver.recv().await.map(|l| (l, receiver)) },
            );
        Ok(Box::pin(futures::StreamExt::chain(initial, live)))
    }

    async fn exec(
        &self,
        key: &WorkloadKey,
        component: &str,
        instance: Option<&str>,
        command: Vec<String>,
    ) -> Result<ExecOutput, DriverError> {
        let container = {
            let workloads = self.inner.workloads.lock().await;
            let state = workloads.get(key).ok_or_else(|| DriverError::NotFound(key.to_string()))?;
            state
                .instances
                .values()
                .filter(|i| i.component == component && instance.is_none_or(|n| n == i.name))
                .filter(|i| matches!(i.state, InstanceState::Running { .. }))
                .find_map(|i| i.container_id.clone())
                .ok_or_else(|| DriverError::NotFound(format!("a running instance of {component} in {key}")))?
        };
        let mut cri = self.inner.cri.clone();
        let output = cri.exec_sync(&container, command, 60).await?;
        Ok(ExecOutput { exit_code: output.exit_code, stdout: output.stdout, stderr: output.stderr })
    }

    /// `ctr images import` into our containerd (containerd 1.6's CRI has no import call).
    async fn import_image(&self, archive: &std::path::Path) -> Result<Vec<String>, DriverError> {
        let report = crate::images::import(self.inner.cri.socket(), archive)
            .await
            .map_err(|error| DriverError::Refused(error.to_string()))?;
        let names = crate::images::imported_names(&report);
        if names.is_empty() {
            return Err(DriverError::Refused(format!("the archive holds no image ({report})")));
        }
        Ok(names)
    }

    /// CPU and memory from the CRI's container stats, network from the pod's, disk I/O from
    /// the pod's `blkio` cgroup (zero where the kernel does not account blkio, as on hosts
    /// whose root `blkio.throttle.io_service_bytes` reads "Total 0").
    async fn probe(&self) -> Result<ClusterInfo, DriverError> {
        let version = self.inner.cri.clone().version().await?;
        // What the instances now placed here ask for (each by the spec of its own revision).
        let (mut cpu, mut memory) = (0u64, 0u64);
        for state in self.inner.workloads.lock().await.values() {
            for instance in state.instances.values() {
                let spec = state
                    .revisions
                    .get(&instance.revision)
                    .and_then(|workload| workload.components.iter().find(|c| c.name == instance.component));
                if let Some(spec) = spec {
                    cpu += spec.cpu_request_millis.or(spec.cpu_limit_millis).unwrap_or_default();
                    memory += spec.memory_request_bytes.or(spec.memory_limit_bytes).unwrap_or_default();
                }
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let node = NodeInfo {
            name: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string(),
            ready: true,
            schedulable: true,
            version: version.clone(),
            allocatable_cpu_millis: cpus * 1000,
            allocatable_memory_bytes: memory_total().unwrap_or_default(),
            requested_cpu_millis: cpu,
            requested_memory_bytes: memory,
        };
        let storage = StorageClassInfo { name: "local".into(), provisioner: "flotilla.io/local".into(), default: true };
        Ok(ClusterInfo { version, nodes: vec![node], storage_classes: vec![storage] })
    }

    async fn metrics(&self, key: &WorkloadKey) -> Result<Vec<InstanceMetrics>, DriverError> {
        let instances: Vec<(String, String, Option<String>)> = {
            let workloads = self.inner.workloads.lock().await;
            let state = workloads.get(key).ok_or_else(|| DriverError::NotFound(key.to_string()))?;
            state.instances.values().map(|i| (i.name.clone(), i.sandbox_id.clone(), i.container_id.clone())).collect()
        };
        let mut cri = self.inner.cri.clone();
        let value = |v: Option<&api::UInt64Value>| v.map_or(0, |v| v.value);
        let mut metrics = Vec::with_capacity(instances.len());
        for (name, sandbox, container) in instances {
            let Some(container) = container else { continue };
            let Ok(stats) = cri.container_stats(&container).await else { continue };
            let network = cri
                .pod_sandbox_stats(&sandbox)
                .await
                .ok()
                .and_then(|s| s.linux)
                .and_then(|l| l.network)
                .map(|n| n.interfaces.into_iter().chain(n.default_interface).collect::<Vec<_>>())
                .unwrap_or_default();
            // The default interface may also be listed among the interfaces: count each once.
            let mut seen = std::collections::BTreeMap::new();
            for interface in network {
                seen.insert(
                    interface.name.clone(),
                    (value(interface.rx_bytes.as_ref()), value(interface.tx_bytes.as_ref())),
                );
            }
            let (read, write) = disk_io(&name);
            metrics.push(InstanceMetrics {
                instance: name,
                time_micros: micros_now(),
                cpu_usage_nanos: Some(value(stats.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds.as_ref()))),
                cpu_nanocores: None,
                memory_bytes: value(stats.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref())),
                network_rx_bytes: Some(seen.values().map(|(rx, _)| rx).sum()),
                network_tx_bytes: Some(seen.values().map(|(_, tx)| tx).sum()),
                disk_read_bytes: Some(read),
                disk_write_bytes: Some(write),
            });
        }
        Ok(metrics)
    }
}
