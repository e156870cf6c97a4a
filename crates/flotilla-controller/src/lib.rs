//! Controllers: they make clusters run what the stored objects ask for.
//!
//! [`ApplicationController`] hands every `Application` to the driver of the cluster its
//! environment is bound to, as a resolved [`Workload`] (its revision is the object's
//! `generation`, which grows with every spec change), and removes from the clusters what no
//! longer has an `Application`. It resyncs periodically and on [`ApplicationController::wake`];
//! a pass re-resolves only applications whose resource version changed, plus all of them
//! every [`FULL_RESYNC`] (a changed Secret does not change the application's version).
//!
//! # Automatic rollback
//! The controller remembers, per application, the spec of the last revision whose rollout
//! completed. When a newer revision misses its progress deadline, it writes that spec back
//! to the Application (a new revision, as `kubectl rollout undo` does), as the `system` user,
//! with an audit record saying which revision failed and why. The failed revision is not
//! retried until the spec changes again. A completed revision is also marked in the revision
//! history (`flotilla.io/rolled-out`), so a restarted control plane still knows where to go
//! back to.
//!
//! # Cluster health
//! [`clusters::ClusterMonitor`] probes every registered cluster and shows what it found as
//! the Cluster's status. A cluster the controller cannot reach (or whose credentials it
//! refuses) is set aside and tried again later, with one application, rather than asked
//! again for each application on every pass ([`backoff`]).
//!
//! # Revision history
//! Each revision handed to a cluster is recorded as an `ApplicationRevision` ([`revisions`]),
//! the newest ten per application; they go when the application does.

pub mod backoff;
pub mod clusters;
pub mod revisions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_core::audit::Outcome;
use flotilla_core::kinds::application_revision::CHANGE_CAUSE_ANNOTATION;
use flotilla_core::kinds::{ApplicationSpec, EnvironmentSpec, SecretKeyRef};
use flotilla_core::operation::{Operation, OperationVerb};
use flotilla_core::{Object, ObjectKey};
use flotilla_driver::status::RolloutPhase;
use flotilla_driver::workload::{Workload, WorkloadKey};
use flotilla_driver::{ClusterDriver, DriverError};
use flotilla_store::{AuditNote, Change, ListQuery, Mutation, Store};
use tokio::sync::{Mutex, Notify};

use backoff::ClusterBackoff;

/// What clusters report about stored objects, for the API to show as their `status`.
#[async_trait::async_trait]
pub trait StatusView: Send + Sync + 'static {
    /// The observed status of `object`, when a cluster reports one.
    async fn status_of(&self, object: &Object) -> Option<serde_json::Value>;

    /// `key` was just written (through the API): a controller that cares acts now.
    fn written(&self, _key: &ObjectKey) {}

    /// The driver of the cluster `object` (an Application) runs on, and its workload there:
    /// for logs, exec and metrics.
    async fn workload_of(&self, _object: &Object) -> Option<(Arc<dyn ClusterDriver>, WorkloadKey, String)> {
        None
    }

    /// The driver of the cluster named `cluster`, if this control plane drives it.
    fn driver(&self, _cluster: &str) -> Option<Arc<dyn ClusterDriver>> {
        None
    }

    /// Every cluster this control plane drives, by name.
    fn drivers(&self) -> Vec<(String, Arc<dyn ClusterDriver>)> {
        Vec::new()
    }
}

/// The workload of `spec` at `revision`, its Secret values looked up in the store.
pub async fn resolve(
    store: &dyn Store,
    key: &WorkloadKey,
    revision: u64,
    spec: &ApplicationSpec,
) -> Result<Workload, String> {
    let mut values = HashMap::new();
    let mut references: Vec<SecretKeyRef> = Vec::new();
    for component in &spec.components {
        references.extend(component.env.iter().filter_map(|e| e.from_secret.clone()));
        references.extend(component.files.iter().filter_map(|f| f.from_secret.clone()));
    }
    for reference in references {
        let secret_key = ObjectKey::new("Secret", Some(key.project.clone()), &reference.secret);
        let Some(secret) = store.get(&secret_key).await.map_err(|e| e.to_string())? else { continue };
        if let Some(value) = secret.spec.get("data").and_then(|d| d.get(&reference.key)).and_then(|v| v.as_str()) {
            values.insert((reference.secret.clone(), reference.key.clone()), value.to_string());
        }
    }
    let lookup = |reference: &SecretKeyRef| values.get(&(reference.secret.clone(), reference.key.clone())).cloned();
    Workload::resolve(key.clone(), revision, spec, &lookup).map_err(|e| e.to_string())
}

/// The drivers of the clusters this control plane drives, by cluster name: fixed (the
/// embedded runtime), or following the registered clusters ([`clusters::ClusterMonitor`]).
pub trait Drivers: Send + Sync + 'static {
    fn get(&self, cluster: &str) -> Option<Arc<dyn ClusterDriver>>;
    fn all(&self) -> Vec<(String, Arc<dyn ClusterDriver>)>;
}

impl Drivers for HashMap<String, Arc<dyn ClusterDriver>> {
    fn get(&self, cluster: &str) -> Option<Arc<dyn ClusterDriver>> {
        HashMap::get(self, cluster).cloned()
    }

    fn all(&self) -> Vec<(String, Arc<dyn ClusterDriver>)> {
        self.iter().map(|(name, driver)| (name.clone(), driver.clone())).collect()
    }
}

/// Several views as one: the first that knows an object answers.
pub struct StatusViews(pub Vec<Arc<dyn StatusView>>);

#[async_trait::async_trait]
impl StatusView for StatusViews {
    async fn status_of(&self, object: &Object) -> Option<serde_json::Value> {
        for view in &self.0 {
            if let Some(status) = view.status_of(object).await {
                return Some(status);
            }
        }
        None
    }

    fn written(&self, key: &ObjectKey) {
        for view in &self.0 {
            view.written(key);
        }
    }

    async fn workload_of(&self, object: &Object) -> Option<(Arc<dyn ClusterDriver>, WorkloadKey, String)> {
        for view in &self.0 {
            if let Some(found) = view.workload_of(object).await {
                return Some(found);
            }
        }
        None
    }

    fn driver(&self, cluster: &str) -> Option<Arc<dyn ClusterDriver>> {
        self.0.iter().find_map(|view| view.driver(cluster))
    }

    fn drivers(&self) -> Vec<(String, Arc<dyn ClusterDriver>)> {
        self.0.iter().flat_map(|view| view.drivers()).collect()
    }
}

/// Every application is re-resolved at least this often.
pub const FULL_RESYNC: Duration = Duration::from_secs(60);

/// Page size when listing applications.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("store: {0}")]
    Store(#[from] flotilla_store::StoreError),
}

/// What the controller last handed to a cluster.
#[derive(Debug, Clone)]
struct Applied {
    cluster: String,
    resource_version: u64,
    revision: u64,
    spec: ApplicationSpec,
    at: Instant,
}

/// Hands applications to cluster drivers.
pub struct ApplicationController {
    store: Arc<dyn Store>,
    /// Per application: the revision and spec of the last rollout that completed.
    last_good: Mutex<HashMap<WorkloadKey, (u64, ApplicationSpec)>>,
    /// Per application: the revision that was rolled back (not applied again).
    rolled_back: Mutex<HashMap<WorkloadKey, u64>>,
    /// Cluster name → its driver.
    drivers: Arc<dyn Drivers>,
    applied: Mutex<HashMap<WorkloadKey, Applied>>,
    /// Clusters left alone for now (unreachable, or refusing the credentials).
    backoff: std::sync::Mutex<ClusterBackoff>,
    /// Per application: why it was last not handed over, as logged (a failure is logged when
    /// it starts or changes, not on every pass while it lasts).
    failing: Mutex<HashMap<WorkloadKey, String>>,
    wake: Notify,
    interval: Duration,
}

/// Why an application was not handed to its cluster.
enum NotHanded {
    /// Its cluster is set aside: it waits, and is not counted as failed again.
    Waiting,
    Failed(String),
}

impl From<String> for NotHanded {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub applied: usize,
    pub deleted: usize,
    pub failed: usize,
    pub rolled_back: usize,
    /// Applications not handed over because their cluster is set aside.
    pub waiting: usize,
}

impl ApplicationController {
    pub fn new(store: Arc<dyn Store>, drivers: Arc<dyn Drivers>, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            last_good: Mutex::new(HashMap::new()),
            rolled_back: Mutex::new(HashMap::new()),
            drivers,
            applied: Mutex::new(HashMap::new()),
            backoff: std::sync::Mutex::new(ClusterBackoff::default()),
            failing: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            interval,
        })
    }

    /// Runs passes until the returned task is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let controller = self.clone();
        tokio::spawn(async move {
            loop {
                match controller.sync_once().await {
                    Ok(report) if report != SyncReport { waiting: report.waiting, ..SyncReport::default() } => {
                        tracing::info!(?report, "applications synced");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "application sync failed; will retry"),
                }
                let _ = tokio::time::timeout(controller.interval, controller.wake.notified()).await;
            }
        })
    }

    /// Asks for a pass now (after a write that concerns applications).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One pass over every application.
    pub async fn sync_once(&self) -> Result<SyncReport, ControllerError> {
        let mut report = SyncReport::default();
        let mut seen: HashMap<WorkloadKey, ()> = HashMap::new();
        let mut continue_token = None;
        loop {
            let query = ListQuery {
                kind: "Application".into(),
                limit: PAGE,
                continue_token: continue_token.take(),
                ..Default::default()
            };
            let page = self.store.list(&query).await?;
            for object in &page.items {
                let Ok(spec) = serde_json::from_value::<ApplicationSpec>(object.spec.clone()) else { continue };
                let Some(project) = object.metadata.project.clone() else { continue };
                let key = WorkloadKey {
                    project,
                    environment: spec.environment.clone(),
                    application: object.metadata.name.clone(),
                };
                seen.insert(key.clone(), ());
                match self.sync_application(&key, object, &spec).await {
                    Ok(handed) => {
                        report.applied += usize::from(handed);
                        if handed {
                            self.failing.lock().await.remove(&key);
                        }
                    }
                    Err(NotHanded::Waiting) => report.waiting += 1,
                    Err(NotHanded::Failed(message)) => {
                        report.failed += 1;
                        let mut failing = self.failing.lock().await;
                        if failing.get(&key) != Some(&message) {
                            tracing::warn!(application = %key, %message, "cannot apply the application");
                            failing.insert(key.clone(), message);
                        }
                    }
                }
                match self.watch_rollout(&key, object, &spec).await {
                    Ok(true) => report.rolled_back += 1,
                    Ok(false) => {}
                    Err(message) => tracing::warn!(application = %key, %message, "cannot roll back"),
                }
            }
            match page.continue_token {
                Some(token) => continue_token = Some(token),
                None => break,
            }
        }
        self.failing.lock().await.retain(|key, _| seen.contains_key(key));
        // What the clusters run without an application behind it any more.
        for (cluster, driver) in self.drivers.all() {
            if self.set_aside(&cluster).is_some() {
                continue;
            }
            let running = match driver.workloads().await {
                Ok(running) => running,
                Err(error) => {
                    self.cluster_failed(&cluster, &error);
                    continue;
                }
            };
            for key in running.into_iter().filter(|k| !seen.contains_key(k)) {
                match driver.delete(&key, false).await {
                    Ok(()) => {
                        report.deleted += 1;
                        self.applied.lock().await.remove(&key);
                        tracing::info!(application = %key, %cluster, "removed: its application is gone");
                        let application = ObjectKey::new("Application", Some(key.project.clone()), &key.application);
                        if matches!(self.store.get(&application).await, Ok(None))
                            && let Err(error) = revisions::forget(&self.store, &key.project, &key.application).await
                        {
                            tracing::warn!(application = %key, %error, "cannot delete the revision history");
                        }
                    }
                    Err(error) => tracing::warn!(application = %key, %cluster, %error, "cannot remove"),
                }
            }
        }
        Ok(report)
    }

    /// Why `cluster` is left alone for now (and until when), if it is.
    fn set_aside(&self, cluster: &str) -> Option<backoff::SetAside> {
        let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff.set_aside(cluster, Instant::now()).cloned()
    }

    /// `cluster` failed a request with `error`: when the failure is the cluster's (it cannot
    /// be reached, or refuses the credentials), it is set aside, and that is logged once.
    fn cluster_failed(&self, cluster: &str, error: &DriverError) {
        if !matches!(error, DriverError::Unreachable(_) | DriverError::Unauthorized(_)) {
            return;
        }
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let delay = backoff.failed(cluster, error.to_string(), Instant::now());
        tracing::warn!(%cluster, %error, retry_in_secs = delay.as_secs(), "cluster set aside: its applications wait");
    }

    fn cluster_answered(&self, cluster: &str) {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner()).succeeded(cluster);
    }

    /// Hands one application to its cluster; true when it did (false: unchanged).
    async fn sync_application(
        &self,
        key: &WorkloadKey,
        object: &Object,
        spec: &ApplicationSpec,
    ) -> Result<bool, NotHanded> {
        let resource_version = object.resource_version().unwrap_or_default();
        if let Some(applied) = self.applied.lock().await.get(key)
            && applied.resource_version == resource_version
            && applied.at.elapsed() < FULL_RESYNC
        {
            return Ok(false);
        }
        let environment_key = ObjectKey::new("Environment", Some(key.project.clone()), &key.environment);
        let environment = self
            .store
            .get(&environment_key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("environment {:?} does not exist", key.environment))?;
        let environment: EnvironmentSpec = serde_json::from_value(environment.spec).map_err(|e| e.to_string())?;
        let Some((cluster, driver)) =
            environment.clusters.iter().find_map(|c| self.drivers.get(c).map(|d| (c.clone(), d)))
        else {
            return Err(NotHanded::Failed(format!(
                "environment {:?} is bound to {:?}, none of which this control plane can drive",
                key.environment, environment.clusters
            )));
        };
        if self.set_aside(&cluster).is_some() {
            return Err(NotHanded::Waiting);
        }
        let revision = object.metadata.generation.unwrap_or(1).max(1) as u64;
        let workload = resolve(self.store.as_ref(), key, revision, spec).await?;
        // Replacing a revision whose rollout completed: it is the one to roll back to.
        let replaced = self.applied.lock().await.get(key).filter(|a| a.revision != revision).cloned();
        if let Some(replaced) = replaced
            && let Some(old_driver) = self.drivers.get(&replaced.cluster)
            && let Ok(status) = old_driver.status(key).await
            && status.revision == replaced.revision
            && status.components.iter().all(|c| c.phase == RolloutPhase::Complete)
        {
            self.last_good.lock().await.insert(key.clone(), (replaced.revision, replaced.spec.clone()));
        }
        let new_revision = self.applied.lock().await.get(key).is_none_or(|a| a.revision != revision);
        if new_revision && let Err(error) = revisions::record(&self.store, object, spec, revision).await {
            tracing::warn!(application = %key, revision, %error, "cannot record the revision");
        }
        if let Err(error) = driver.apply(&workload).await {
            self.cluster_failed(&cluster, &error);
            return Err(NotHanded::Failed(error.to_string()));
        }
        self.cluster_answered(&cluster);
        let applied =
            Applied { cluster: cluster.clone(), resource_version, revision, spec: spec.clone(), at: Instant::now() };
        let previous = self.applied.lock().await.insert(key.clone(), applied);
        // The environment moved to another cluster: the old one stops running it.
        if let Some(previous) = previous.filter(|p| p.cluster != cluster)
            && let Some(old) = self.drivers.get(&previous.cluster)
            && let Err(error) = old.delete(key, true).await
        {
            tracing::warn!(application = %key, cluster = %previous.cluster, %error, "cannot remove from the previous cluster");
        }
        Ok(true)
    }

    /// Remembers a completed revision; rolls a revision past its deadline back to the last
    /// completed one. True when it rolled back.
    async fn watch_rollout(&self, key: &WorkloadKey, object: &Object, spec: &ApplicationSpec) -> Result<bool, String> {
        let Some(cluster) = self.applied.lock().await.get(key).map(|a| a.cluster.clone()) else { return Ok(false) };
        let Some(driver) = self.drivers.get(&cluster) else { return Ok(false) };
        if self.set_aside(&cluster).is_some() {
            return Ok(false);
        }
        let status = match driver.status(key).await {
            Ok(status) => status,
            Err(error) => {
                self.cluster_failed(&cluster, &error);
                return Ok(false);
            }
        };
        let revision = object.metadata.generation.unwrap_or(1).max(1) as u64;
        if status.revision != revision {
            return Ok(false);
        }
        if status.components.iter().all(|c| c.phase == RolloutPhase::Complete) {
            let previous = self.last_good.lock().await.insert(key.clone(), (revision, spec.clone()));
            if previous.is_none_or(|(known, _)| known != revision)
                && let Err(error) =
                    revisions::mark_rolled_out(&self.store, &key.project, &key.application, revision).await
            {
                tracing::warn!(application = %key, revision, %error, "cannot mark the revision rolled out");
            }
            return Ok(false);
        }
        let failed: Vec<String> = status
            .components
            .iter()
            .filter(|c| c.phase == RolloutPhase::DeadlineExceeded)
            .map(|c| format!("{}: {} of {} instances of the revision ready", c.name, c.updated_ready, c.desired))
            .collect();
        if failed.is_empty() {
            return Ok(false);
        }
        let remembered = self.last_good.lock().await.get(key).cloned();
        let good = match remembered {
            Some(good) => Some(good),
            // Restarted since: the revision history says which one completed last.
            None => revisions::last_rolled_out(&self.store, &key.project, &key.application, revision)
                .await
                .map_err(|e| e.to_string())?,
        };
        let Some((good_revision, good_spec)) = good else {
            return Ok(false);
        };
        if good_revision >= revision || self.rolled_back.lock().await.get(key) == Some(&revision) {
            return Ok(false);
        }
        let reason = format!(
            "revision {revision} missed its progress deadline ({}); rolled back to the spec of revision {good_revision}",
            failed.join("; ")
        );
        let mut restored = object.clone();
        restored.spec = serde_json::to_value(&good_spec).map_err(|e| e.to_string())?;
        restored.metadata.annotations.insert(
            CHANGE_CAUSE_ANNOTATION.into(),
            format!("automatic rollback to revision {good_revision}: revision {revision} missed its progress deadline"),
        );
        let actor = revisions::system_actor(format!("rollback-{}-{revision}", key.application));
        let operation = Operation {
            id: format!("rollback-{}-{}-{revision}", key.project, key.application),
            verb: OperationVerb::Update,
            key: object.key(),
            object: Some(restored),
            precondition: object.resource_version(),
        };
        self.store
            .commit(Mutation { actor: actor.clone(), change: Change::Object(operation) })
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .commit(Mutation {
                actor,
                change: Change::Record(AuditNote {
                    action: "rollback".into(),
                    kind: Some("Application".into()),
                    project: Some(key.project.clone()),
                    name: Some(key.application.clone()),
                    outcome: Some(Outcome::Success),
                    message: Some(reason.clone()),
                }),
            })
            .await
            .map_err(|e| e.to_string())?;
        self.rolled_back.lock().await.insert(key.clone(), revision);
        tracing::warn!(application = %key, %reason, "automatic rollback");
        self.wake();
        Ok(true)
    }
}

#[async_trait::async_trait]
impl StatusView for ApplicationController {
    /// An Application's status: the cluster it runs on and what that cluster's driver
    /// reports (revision, components, instances, events).
    ///
    /// A cluster set aside is not asked (a list of applications would wait for each of them
    /// in turn): the status says so, and when it will be tried again.
    async fn status_of(&self, object: &Object) -> Option<serde_json::Value> {
        let (driver, key, cluster) = self.workload_of(object).await?;
        if let Some(aside) = self.set_aside(&cluster) {
            let retry = aside.until.saturating_duration_since(Instant::now()).as_secs();
            let message = format!("{}; it is tried again within {retry} s", aside.error);
            return Some(serde_json::json!({ "cluster": cluster, "message": message }));
        }
        let status = match driver.status(&key).await {
            Ok(status) => status,
            Err(error) => {
                self.cluster_failed(&cluster, &error);
                return None;
            }
        };
        let mut value = serde_json::to_value(status).ok()?;
        value["cluster"] = serde_json::Value::String(cluster);
        Some(value)
    }

    async fn workload_of(&self, object: &Object) -> Option<(Arc<dyn ClusterDriver>, WorkloadKey, String)> {
        if object.kind != "Application" {
            return None;
        }
        let spec: ApplicationSpec = serde_json::from_value(object.spec.clone()).ok()?;
        let key = WorkloadKey {
            project: object.metadata.project.clone()?,
            environment: spec.environment,
            application: object.metadata.name.clone(),
        };
        let cluster = self.applied.lock().await.get(&key).map(|a| a.cluster.clone())?;
        let driver = self.drivers.get(&cluster)?;
        Some((driver, key, cluster))
    }

    fn driver(&self, cluster: &str) -> Option<Arc<dyn ClusterDriver>> {
        self.drivers.get(cluster)
    }

    fn drivers(&self) -> Vec<(String, Arc<dyn ClusterDriver>)> {
        self.drivers.all()
    }

    fn written(&self, key: &ObjectKey) {
        if matches!(key.kind.as_str(), "Application" | "Secret" | "Environment") {
            self.wake();
        }
    }
}
