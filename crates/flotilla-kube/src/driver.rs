//! [`KubeDriver`]: the [`ClusterDriver`] of a Kubernetes cluster.
//!
//! - `apply` makes sure the environment's namespace and isolation policy exist, applies every
//!   rendered object with server-side apply (field manager `flotilla`, forced: Flotilla owns
//!   the fields it sets), then prunes objects labelled as the application's that the
//!   revision no longer has (claims excepted: data goes only with the application).
//! - `status` reads the application's Deployments/StatefulSets, pods and Events (label
//!   selectors in its namespace) and reports them as every driver does; `watch` sends a
//!   status whenever it changes.
//! - Every [`DRIFT_INTERVAL`], what was applied is compared with the live objects: drift is
//!   reported (status warnings, a `Drift` event) and, when the application asks for
//!   self-healing, corrected by applying again.
//! - `delete` removes everything labelled as the application's, nothing else.
//! - `logs` reads the pods' logs (following them on a client without a response timeout),
//!   `exec` runs a command over the WebSocket exec protocol; `probe` reports the cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_driver::cluster::ClusterInfo;
use flotilla_driver::status::{Event, EventType, WorkloadStatus};
use flotilla_driver::workload::{Workload, WorkloadKey, labels};
use flotilla_driver::{ClusterDriver, DriverError, ExecOutput, InstanceMetrics, LogLine, LogQuery, LogStream};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::cache::api_resource;
use crate::connect::classify;
use crate::namespaces;
use crate::render::{self, MANAGED_BY};

/// How often applied objects are compared with the live ones, by default.
pub const DRIFT_INTERVAL: Duration = Duration::from_secs(10);

/// The field manager of everything Flotilla applies.
pub const FIELD_MANAGER: &str = "flotilla";

/// The kinds Flotilla creates in an application's namespace: `(group, version, kind, plural)`.
const NAMESPACED: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("", "v1", "Service", "services"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
];

fn resource_of(api_version: &str, kind: &str) -> Option<ApiResource> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if kind == "Namespace" {
        return Some(api_resource("", "v1", "Namespace", "namespaces"));
    }
    NAMESPACED
        .iter()
        .find(|(g, v, k, _)| *g == group && *v == version && *k == kind)
        .map(|(g, v, k, plural)| api_resource(g, v, k, plural))
}

fn resource(index: usize) -> ApiResource {
    let (group, version, kind, plural) = NAMESPACED[index];
    api_resource(group, version, kind, plural)
}

/// The label selector of everything of one workload.
fn workload_selector(key: &WorkloadKey) -> String {
    format!(
        "{}={},{}={},{}={},{}={}",
        labels::PROJECT,
        key.project,
        labels::ENVIRONMENT,
        key.environment,
        labels::APPLICATION,
        key.application,
        MANAGED_BY.0,
        MANAGED_BY.1
    )
}

/// What the driver was last asked to run.
struct Desired {
    workload: Workload,
    /// Template hash to the latest revision that had it.
    revisions: HashMap<String, u64>,
    /// Every object applied for it (the environment's included).
    objects: Vec<Value>,
    /// Where the live objects differ from them, as last checked.
    drift: Vec<String>,
    /// What the drift checks found and did.
    events: Vec<Event>,
}

struct Inner {
    client: kube::Client,
    /// A client without a response timeout, for followed logs.
    streaming_client: kube::Client,
    desired: Mutex<HashMap<WorkloadKey, Desired>>,
    changes: broadcast::Sender<(WorkloadKey, WorkloadStatus)>,
    /// How often applied objects are compared with the live ones.
    drift_interval: Duration,
    caches: crate::cache::Caches,
    /// Workloads deleted through this driver (until applied again): gone, even while the
    /// caches still show their objects on their way out.
    deleted: Mutex<std::collections::HashSet<WorkloadKey>>,
}

/// The driver of one Kubernetes cluster.
#[derive(Clone)]
pub struct KubeDriver {
    inner: Arc<Inner>,
    publisher: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeDriver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.publisher) == 1 {
            self.publisher.abort();
        }
    }
}

impl KubeDriver {
    /// A driver over `client`, publishing status changes of the workloads it runs.
    /// A driver over `client` (requests) and `streaming_client` (followed logs: no response
    /// timeout).
    pub fn new(client: kube::Client, streaming_client: kube::Client) -> Self {
        Self::with_drift_interval(client, streaming_client, DRIFT_INTERVAL)
    }

    /// A driver that compares what it applied with the live objects every `drift_interval`.
    pub fn with_drift_interval(client: kube::Client, streaming_client: kube::Client, drift_interval: Duration) -> Self {
        let (changes, _) = broadcast::channel(1024);
        let mut applied: Vec<ApiResource> = (0..NAMESPACED.len()).map(resource).collect();
        applied.push(api_resource("", "v1", "Namespace", "namespaces"));
        let caches = crate::cache::Caches::start(&client, &applied);
        let inner = Arc::new(Inner {
            client,
            streaming_client,
            desired: Mutex::new(HashMap::new()),
            changes,
            drift_interval,
            caches,
            deleted: Mutex::new(Default::default()),
        });
        let publisher = Arc::new(tokio::spawn(publish(Arc::downgrade(&inner))));
        KubeDriver { inner, publisher }
    }

    fn api(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        self.inner.api(resource, namespace)
    }

    async fn apply_object(&self, object: &Value) -> Result<(), DriverError> {
        self.inner.apply_object(object).await
    }

    /// Every object of `key` of the namespaced kinds, as (kind index, name).
    async fn owned(&self, key: &WorkloadKey) -> Result<Vec<(usize, String)>, DriverError> {
        let namespace = render::namespace_name(&key.project, &key.environment);
        let params = ListParams::default().labels(&workload_selector(key));
        let mut found = Vec::new();
        for (index, (_, _, _, plural)) in NAMESPACED.iter().enumerate() {
            let api = self.api(&resource(index), Some(&namespace));
            let list = api.list(&params).await.map_err(|e| classify(e, &format!("listing {plural}")))?;
            found.extend(list.items.into_iter().filter_map(|o| o.metadata.name).map(|name| (index, name)));
        }
        Ok(found)
    }
}

impl Inner {
    async fn apply_object(&self, object: &Value) -> Result<(), DriverError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = resource_of(api_version, kind)
            .ok_or_else(|| DriverError::Failed(format!("no resource for {api_version} {kind}")))?;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let api = self.api(&resource, object["metadata"]["namespace"].as_str());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(name, &params, &Patch::Apply(object))
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &format!("applying {kind} {name}")))
    }

    fn api(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    async fn list_values(
        &self,
        resource: &ApiResource,
        namespace: &str,
        params: &ListParams,
    ) -> Result<Vec<Value>, DriverError> {
        let list = self
            .api(resource, Some(namespace))
            .list(params)
            .await
            .map_err(|e| classify(e, &format!("listing {}", resource.plural)))?;
        Ok(list.items.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect())
    }

    /// The workload's Deployments and StatefulSets, pods, and its namespace's Events: from
    /// the watch-fed caches once they have synced, else listed.
    async fn objects_of(&self, key: &WorkloadKey) -> Result<(Vec<Value>, Vec<Value>, Vec<Value>), DriverError> {
        let namespace = render::namespace_name(&key.project, &key.environment);
        let is_ours = |labels_of: &std::collections::BTreeMap<String, String>| {
            labels_of.get(labels::PROJECT) == Some(&key.project)
                && labels_of.get(labels::ENVIRONMENT) == Some(&key.environment)
                && labels_of.get(labels::APPLICATION) == Some(&key.application)
        };
        // Never wait for a cache: an unreachable cluster's never syncs, and the controller
        // asks about every cluster in turn.
        if self.caches.ready(Duration::ZERO).await {
            let application = crate::cache::application_key(&namespace, &key.application);
            let values = |cache: &crate::cache::Cache| -> Vec<Value> {
                cache
                    .indexed(&application)
                    .iter()
                    .filter(|o| o.metadata.labels.as_ref().is_some_and(is_ours))
                    .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
                    .collect()
            };
            let mut objects = values(&self.caches.deployments);
            objects.extend(values(&self.caches.stateful_sets));
            let pods = values(&self.caches.pods);
            let events: Vec<Value> = self
                .caches
                .events
                .indexed(&namespace)
                .iter()
                .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
                .collect();
            return Ok((objects, pods, events));
        }
        let params = ListParams::default().labels(&workload_selector(key));
        let mut objects = Vec::new();
        for kind in ["Deployment", "StatefulSet"] {
            let resource = resource_of("apps/v1", kind).ok_or_else(|| DriverError::Failed(kind.into()))?;
            objects.extend(self.list_values(&resource, &namespace, &params).await?);
        }
        let pods_resource = api_resource("", "v1", "Pod", "pods");
        let pods = self.list_values(&pods_resource, &namespace, &params).await?;
        let events_resource = api_resource("", "v1", "Event", "events");
        let events = self.list_values(&events_resource, &namespace, &ListParams::default()).await?;
        Ok((objects, pods, events))
    }

    async fn status(&self, key: &WorkloadKey) -> Result<WorkloadStatus, DriverError> {
        if self.deleted.lock().unwrap_or_else(|e| e.into_inner()).contains(key) {
            return Err(DriverError::NotFound(key.to_string()));
        }
        let (objects, pods, events) = self.objects_of(key).await?;
        if objects.is_empty() {
            return Err(DriverError::NotFound(key.to_string()));
        }
        let (revision, desired_hashes, revisions) = {
            let desired = self.desired.lock().unwrap_or_else(|e| e.into_inner());
            match desired.get(key) {
                Some(d) => (
                    d.workload.revision,
                    d.workload.components.iter().map(|c| (c.name.clone(), c.template_hash())).collect(),
                    d.revisions.clone(),
                ),
                None => {
                    // Applied before this control plane started: the objects say which revision.
                    let revision = objects
                        .iter()
                        .filter_map(|o| o["metadata"]["labels"][labels::REVISION].as_str()?.parse::<u64>().ok())
                        .max()
                        .unwrap_or(0);
                    (revision, HashMap::new(), HashMap::new())
                }
            }
        };
        let mut status =
            crate::status::workload_status(revision, &objects, &desired_hashes, &revisions, &pods, &events);
        if let Some(desired) = self.desired.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            status.warnings.extend(desired.drift.iter().map(|d| format!("drift: {d}")));
            status.events.extend(desired.events.iter().cloned());
            status.events.sort_by_key(|e| e.time_micros);
        }
        Ok(status)
    }
}

/// Sends each workload's status when it changes (every second), until the driver goes.
async fn publish(inner: std::sync::Weak<Inner>) {
    let mut last: HashMap<WorkloadKey, WorkloadStatus> = HashMap::new();
    let mut last_drift_check = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(inner) = inner.upgrade() else { return };
        let keys: Vec<WorkloadKey> = inner.desired.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        if last_drift_check.elapsed() >= inner.drift_interval {
            last_drift_check = tokio::time::Instant::now();
            for key in &keys {
                inner.check_drift(key).await;
            }
        }
        if inner.changes.receiver_count() == 0 {
            continue;
        }
        for key in keys {
            if let Ok(status) = inner.status(&key).await
                && last.get(&key) != Some(&status)
            {
                last.insert(key.clone(), status.clone());
                let _ = inner.changes.send((key, status));
            }
        }
    }
}

/// A line of `kubectl logs --timestamps` output (`<RFC 3339 time> <text>`) of `instance`.
/// Kubernetes merges a container's stdout and stderr into one log.
fn log_line(instance: &str, line: &str) -> LogLine {
    let (time, text) = line.split_once(' ').unwrap_or(("", line));
    let time_micros = time.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).unwrap_or_default();
    LogLine { time_micros, instance: instance.to_string(), stream: LogStream::Combined, text: text.to_string() }
}

/// A CPU quantity (`2500000n`, `250u`, `5m`, `2`) in billionths of a core.
fn nanocores(quantity: &str) -> Option<u64> {
    let (number, scale) = match quantity.char_indices().last()? {
        (i, 'n') => (&quantity[..i], 1.0),
        (i, 'u') => (&quantity[..i], 1e3),
        (i, 'm') => (&quantity[..i], 1e6),
        _ => (quantity, 1e9),
    };
    let value: f64 = number.parse().ok()?;
    (value >= 0.0).then(|| (value * scale).round() as u64)
}

/// The exit code an exec's final `Status` reports (`NonZeroExitCode` carries it as a cause).
fn exit_code(status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> Result<i32, DriverError> {
    let Some(status) = status else { return Err(DriverError::Failed("exec ended without a status".into())) };
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| causes.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|cause| cause.message.as_deref()?.parse::<i32>().ok());
    code.ok_or_else(|| DriverError::Failed(format!("exec failed: {}", status.message.clone().unwrap_or_default())))
}

fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

impl Inner {
    /// Compares every object applied for `key` with the live one; reports the differences
    /// (status warnings, a `Drift` event when they change) and, when the application asks
    /// for self-healing, applies the drifted objects again.
    async fn check_drift(&self, key: &WorkloadKey) {
        let Some((objects, self_heal)) = self
            .desired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map(|d| (d.objects.clone(), d.workload.self_heal))
        else {
            return;
        };
        let mut drift = Vec::new();
        let mut drifted = Vec::new();
        for object in &objects {
            let (kind, name) =
                (object["kind"].as_str().unwrap_or_default(), object["metadata"]["name"].as_str().unwrap_or_default());
            let Some(resource) = resource_of(object["apiVersion"].as_str().unwrap_or_default(), kind) else { continue };
            let namespace = object["metadata"]["namespace"].as_str();
            // The watched copy settles most checks without a request; only what it shows
            // missing or changed (or what is not cached yet) is read from the server.
            if let Some(Some(cached)) = self.caches.applied(&resource.plural, namespace, name).await
                && crate::drift::differences(object, &serde_json::to_value(&*cached).unwrap_or_default()).is_empty()
            {
                continue;
            }
            let live = match self.api(&resource, object["metadata"]["namespace"].as_str()).get(name).await {
                Ok(live) => serde_json::to_value(live).unwrap_or_default(),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    drift.push(format!("{kind} {name} was deleted"));
                    drifted.push(object.clone());
                    continue;
                }
                // Unreachable or refused: no verdict this time.
                Err(_) => return,
            };
            let differences = crate::drift::differences(object, &live);
            if !differences.is_empty() {
                drift.push(format!("{kind} {name}: {}", differences.join("; ")));
                drifted.push(object.clone());
            }
        }
        let mut corrected = Vec::new();
        if self_heal {
            for object in &drifted {
                if self.apply_object(object).await.is_ok() {
                    corrected.push(format!(
                        "{} {} applied again",
                        object["kind"].as_str().unwrap_or_default(),
                        object["metadata"]["name"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        let mut desired = self.desired.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = desired.get_mut(key) else { return };
        if !drift.is_empty() && (entry.drift != drift || self_heal) {
            let (kind, reason) =
                if self_heal { (EventType::Normal, "DriftCorrected") } else { (EventType::Warning, "Drift") };
            let message = if self_heal {
                format!("changed out of band: {}; {}", drift.join("; "), corrected.join("; "))
            } else {
                format!("changed out of band (the application does not ask for self-healing): {}", drift.join("; "))
            };
            tracing::warn!(workload = %key, %message, "drift");
            entry.events.push(Event {
                time_micros: now_micros(),
                kind,
                reason: reason.into(),
                message,
                component: None,
                instance: None,
            });
            let keep = entry.events.len().saturating_sub(20);
            entry.events.drain(..keep);
        }
        entry.drift = if self_heal && corrected.len() == drifted.len() { Vec::new() } else { drift };
    }
}

#[async_trait]
impl ClusterDriver for KubeDriver {
    async fn apply(&self, workload: &Workload) -> Result<(), DriverError> {
        let key = &workload.key;
        self.inner.deleted.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        let environment = render::environment_objects(&key.project, &key.environment);
        for object in &environment {
            self.apply_object(object).await?;
        }
        let rendered = render::render(workload);
        for object in &rendered.objects {
            self.apply_object(object).await?;
        }
        // Prune what this revision no longer has (claims stay: data goes with the application).
        let wanted: BTreeSet<(String, String)> = rendered
            .objects
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap_or_default().to_string(),
                    o["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let namespace = render::namespace_name(&key.project, &key.environment);
        for (index, name) in self.owned(key).await? {
            let kind = NAMESPACED[index].2;
            if kind == "PersistentVolumeClaim" || wanted.contains(&(kind.to_string(), name.clone())) {
                continue;
            }
            tracing::info!(workload = %key, kind, name, "pruning what the revision no longer has");
            match self.api(&resource(index), Some(&namespace)).delete(&name, &DeleteParams::background()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(error) => return Err(classify(error, &format!("pruning {kind} {name}"))),
            }
        }
        let mut desired = self.inner.desired.lock().unwrap_or_else(|e| e.into_inner());
        let entry = desired.entry(key.clone()).or_insert_with(|| Desired {
            workload: workload.clone(),
            revisions: HashMap::new(),
            objects: Vec::new(),
            drift: Vec::new(),
            events: Vec::new(),
        });
        entry.workload = workload.clone();
        entry.objects = environment.into_iter().chain(rendered.objects).collect();
        entry.drift.clear();
        for component in &workload.components {
            entry.revisions.insert(component.template_hash(), workload.revision);
        }
        Ok(())
    }

    async fn delete(&self, key: &WorkloadKey, keep_volumes: bool) -> Result<(), DriverError> {
        let namespace = render::namespace_name(&key.project, &key.environment);
        let params = ListParams::default().labels(&workload_selector(key));
        for (index, (_, _, kind, plural)) in NAMESPACED.iter().enumerate() {
            if keep_volumes && *kind == "PersistentVolumeClaim" {
                continue;
            }
            let api = self.api(&resource(index), Some(&namespace));
            match api.delete_collection(&DeleteParams::background(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(classify(error, &format!("deleting {plural}"))),
            }
        }
        self.inner.desired.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        self.inner.deleted.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone());
        if !keep_volumes {
            // The environment's namespace goes with its last application, when it is ours alone.
            let kinds: Vec<ApiResource> = (0..NAMESPACED.len()).map(resource).collect();
            match namespaces::release(&self.inner.client, &namespace, &key.application, FIELD_MANAGER, &kinds).await {
                Ok(namespaces::Release::Kept(why)) => tracing::debug!(application = %key, %why, "namespace kept"),
                Ok(namespaces::Release::Deleted) => tracing::info!(application = %key, %namespace, "namespace deleted"),
                Ok(namespaces::Release::Absent) => {}
                Err(error) => tracing::warn!(application = %key, %namespace, %error, "cannot release the namespace"),
            }
        }
        Ok(())
    }

    async fn workloads(&self) -> Result<Vec<WorkloadKey>, DriverError> {
        let key_of = |labels_of: &std::collections::BTreeMap<String, String>| {
            Some(WorkloadKey {
                project: labels_of.get(labels::PROJECT)?.clone(),
                environment: labels_of.get(labels::ENVIRONMENT)?.clone(),
                application: labels_of.get(labels::APPLICATION)?.clone(),
            })
        };
        let mut keys = BTreeSet::new();
        let caches = &self.inner.caches;
        if caches.ready(Duration::ZERO).await {
            // The caches hold only what is labelled as Flotilla's.
            for cache in [&caches.deployments, &caches.stateful_sets] {
                keys.extend(cache.store.state().iter().filter_map(|o| key_of(o.metadata.labels.as_ref()?)));
            }
        } else {
            let params = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
            for kind in ["Deployment", "StatefulSet"] {
                let resource = resource_of("apps/v1", kind).ok_or_else(|| DriverError::Failed(kind.into()))?;
                let list =
                    self.api(&resource, None).list(&params).await.map_err(|e| classify(e, "listing workloads"))?;
                keys.extend(list.items.iter().filter_map(|o| key_of(o.metadata.labels.as_ref()?)));
            }
        }
        // Deleted through this driver: gone, even while the caches still show it.
        let deleted = self.inner.deleted.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(keys.into_iter().filter(|k| !deleted.contains(k)).collect())
    }

    async fn status(&self, key: &WorkloadKey) -> Result<WorkloadStatus, DriverError> {
        self.inner.status(key).await
    }

    fn watch(&self) -> BoxStream<'static, (WorkloadKey, WorkloadStatus)> {
        let receiver = self.inner.changes.subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(change) => return Some((change, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    async fn logs(
        &self,
        key: &WorkloadKey,
        query: LogQuery,
    ) -> Result<BoxStream<'static, Result<LogLine, DriverError>>, DriverError> {
        let status = self.status(key).await?;
        let namespace = render::namespace_name(&key.project, &key.environment);
        let client = if query.follow { &self.inner.streaming_client } else { &self.inner.client };
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &namespace);
        let selected = status.instances.iter().filter(|i| {
            query.component.as_ref().is_none_or(|c| &i.component == c)
                && query.instance.as_ref().is_none_or(|n| &i.name == n)
        });
        let mut lines = Vec::new();
        let mut followed = Vec::new();
        for instance in selected {
            let params = LogParams {
                container: Some(instance.component.clone()),
                follow: query.follow,
                timestamps: true,
                tail_lines: query.tail.map(|t| t as i64),
                since_time: query
                    .since_micros
                    .and_then(|m| jiff::Timestamp::from_microsecond(m).ok())
                    .and_then(|t| t.to_string().parse().ok()),
                ..Default::default()
            };
            if query.follow {
                let reader =
                    pods.log_stream(&instance.name, &params).await.map_err(|e| classify(e, "following logs"))?;
                let name = instance.name.clone();
                let stream = futures::io::AsyncBufReadExt::lines(reader).map(move |line| {
                    line.map(|l| log_line(&name, &l))
                        .map_err(|e| DriverError::Unreachable(format!("following logs: {e}")))
                });
                followed.push(stream.boxed());
                continue;
            }
            let text = pods.logs(&instance.name, &params).await.map_err(|e| classify(e, "reading logs"))?;
            lines.extend(text.lines().map(|line| log_line(&instance.name, line)));
        }
        if query.follow {
            return Ok(futures::stream::select_all(followed).boxed());
        }
        lines.sort_by_key(|l| l.time_micros);
        Ok(futures::stream::iter(lines.into_iter().map(Ok)).boxed())
    }

    async fn exec(
        &self,
        key: &WorkloadKey,
        component: &str,
        instance: Option<&str>,
        command: Vec<String>,
    ) -> Result<ExecOutput, DriverError> {
        let status = self.status(key).await?;
        let mut candidates: Vec<_> = status
            .instances
            .iter()
            .filter(|i| i.component == component && instance.is_none_or(|name| i.name == name))
            .filter(|i| matches!(i.state, flotilla_driver::status::InstanceState::Running { .. }))
            .collect();
        candidates.sort_by_key(|i| !i.is_ready());
        let Some(target) = candidates.first() else {
            return Err(DriverError::NotFound(format!("a running instance of component {component:?} of {key}")));
        };
        let namespace = render::namespace_name(&key.project, &key.environment);
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.inner.client.clone(), &namespace);
        let params = kube::api::AttachParams::default().container(component).stdin(false).stdout(true).stderr(true);
        let mut process = pods.exec(&target.name, command, &params).await.map_err(|e| classify(e, "starting exec"))?;
        let (mut stdout_pipe, mut stderr_pipe) = (process.stdout(), process.stderr());
        let status_of = process.take_status();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(pipe) = stdout_pipe.as_mut() {
                let _ = tokio::io::AsyncReadExt::read_to_end(pipe, &mut stdout).await;
            }
        };
        let read_err = async {
            if let Some(pipe) = stderr_pipe.as_mut() {
                let _ = tokio::io::AsyncReadExt::read_to_end(pipe, &mut stderr).await;
            }
        };
        tokio::join!(read_out, read_err);
        let outcome = match status_of {
            Some(status) => status.await,
            None => None,
        };
        process.join().await.map_err(|e| DriverError::Failed(format!("exec: {e}")))?;
        let exit_code = exit_code(outcome.as_ref())?;
        Ok(ExecOutput { exit_code, stdout, stderr })
    }

    async fn metrics(&self, key: &WorkloadKey) -> Result<Vec<InstanceMetrics>, DriverError> {
        let namespace = render::namespace_name(&key.project, &key.environment);
        let resource = api_resource("metrics.k8s.io", "v1beta1", "PodMetrics", "pods");
        // PodMetrics carry their pods' labels.
        let selector = workload_selector(key);
        let list = match self.api(&resource, Some(&namespace)).list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(DriverError::Refused(
                    "the cluster does not serve metrics.k8s.io (no metrics-server): instance metrics are unavailable"
                        .into(),
                ));
            }
            Err(error) => return Err(classify(error, "reading instance metrics")),
        };
        Ok(list
            .items
            .into_iter()
            .map(|pod| {
                let containers = pod.data["containers"].as_array().cloned().unwrap_or_default();
                let usage = |resource: &str, parse: fn(&str) -> Option<u64>| -> u64 {
                    containers.iter().filter_map(|c| c["usage"][resource].as_str().and_then(parse)).sum()
                };
                InstanceMetrics {
                    instance: pod.metadata.name.clone().unwrap_or_default(),
                    time_micros: pod.data["timestamp"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .map_or_else(now_micros, |t| t.as_microsecond()),
                    cpu_usage_nanos: None,
                    cpu_nanocores: Some(usage("cpu", nanocores)),
                    memory_bytes: usage("memory", |q| flotilla_core::kinds::quantity::parse_bytes(q).ok()),
                    network_rx_bytes: None,
                    network_tx_bytes: None,
                    disk_read_bytes: None,
                    disk_write_bytes: None,
                }
            })
            .collect())
    }

    async fn probe(&self) -> Result<ClusterInfo, DriverError> {
        crate::probe::probe(&self.inner.client).await
    }
}
