//! [`ClusterMonitor`]: the health of every registered cluster. It probes each one through
//! its driver (the embedded runtime's, or the one the [`ClusterConnector`] makes for a
//! Kubernetes cluster) on registration, when its registration changes, and every interval,
//! and keeps what it found: `Ready` since when, `Unreachable` or `Unauthorized`
//! since when with the last error, and the version, nodes, capacity and storage classes of
//! the last successful probe. The API shows it as the Cluster's `status`.
//!
//! It also keeps a driver for each registered Kubernetes cluster (made anew when the
//! registration changes), which the application controller deploys through.
//!
//! A cluster is shown `Ready` only on the strength of a recent probe: when the last probe is
//! older than three intervals (the monitor is stuck, the control plane was paused), the
//! phase is `Unknown`; when the registration changed since, `Pending`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::kinds::ClusterSpec;
use flotilla_core::{Object, ObjectKey};
use flotilla_driver::cluster::{ClusterConnector, ClusterInfo};
use flotilla_driver::{ClusterDriver, DriverError};
use flotilla_store::{ListQuery, Store};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{ControllerError, StatusView};

/// How long one probe may take before the cluster counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Clusters probed at the same time.
const CONCURRENT_PROBES: usize = 8;
const PAGE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Not probed yet (just registered, or its registration changed).
    Pending,
    Ready,
    Unreachable,
    Unauthorized,
    /// No recent probe to go by.
    Unknown,
}

/// What the monitor knows of one cluster.
#[derive(Debug, Clone)]
struct Health {
    /// The registration probed (its resource version).
    resource_version: String,
    phase: Phase,
    since_micros: i64,
    last_probe_micros: i64,
    /// The last probe's error.
    message: Option<String>,
    /// What the last successful probe found.
    info: Option<ClusterInfo>,
    last_ready_micros: Option<i64>,
}

/// A Kubernetes cluster's driver and the registration (resource version) it was made from.
type Connected = (String, Arc<dyn ClusterDriver>);

/// Probes clusters and keeps their health.
pub struct ClusterMonitor {
    store: Arc<dyn Store>,
    connector: Arc<dyn ClusterConnector>,
    /// Clusters this control plane runs itself (the embedded runtime), by name.
    built_in: HashMap<String, Arc<dyn ClusterDriver>>,
    /// Drivers of registered Kubernetes clusters, with the registration (resource version)
    /// each was made from.
    connected: Mutex<HashMap<String, Connected>>,
    health: Mutex<HashMap<String, Health>>,
    interval: Duration,
    wake: Notify,
}

fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

fn timestamp(micros: i64) -> Value {
    jiff::Timestamp::from_microsecond(micros).map(|t| json!(t.to_string())).unwrap_or(Value::Null)
}

impl ClusterMonitor {
    pub fn new(
        store: Arc<dyn Store>,
        connector: Arc<dyn ClusterConnector>,
        built_in: HashMap<String, Arc<dyn ClusterDriver>>,
        interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            connector,
            built_in,
            connected: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            interval,
            wake: Notify::new(),
        })
    }

    /// Probes every interval, or sooner when woken, until the task is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let monitor = self.clone();
        tokio::spawn(async move {
            loop {
                // Each pass in a task of its own: a panic in one does not end the monitoring.
                let pass = monitor.clone();
                match tokio::spawn(async move { pass.probe_all().await }).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "probing clusters failed; will retry"),
                    Err(error) => tracing::error!(%error, "a pass probing clusters panicked; will retry"),
                }
                let _ = tokio::time::timeout(monitor.interval, monitor.wake.notified()).await;
            }
        })
    }

    /// One pass: every registered cluster probed (at most [`CONCURRENT_PROBES`] at once),
    /// the health of removed ones forgotten.
    pub async fn probe_all(&self) -> Result<(), ControllerError> {
        let mut clusters = Vec::new();
        let mut continue_token = None;
        loop {
            let query = ListQuery {
                kind: "Cluster".into(),
                limit: PAGE,
                continue_token: continue_token.take(),
                ..Default::default()
            };
            let page = self.store.list(&query).await?;
            clusters.extend(page.items);
            match page.continue_token {
                Some(token) => continue_token = Some(token),
                None => break,
            }
        }
        let limit = tokio::sync::Semaphore::new(CONCURRENT_PROBES);
        let probes = futures::future::join_all(clusters.iter().map(|object| self.probe_limited(&limit, object))).await;
        self.connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| clusters.iter().any(|c| &c.metadata.name == name));
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.retain(|name, _| clusters.iter().any(|c| &c.metadata.name == name));
        for (object, result) in clusters.iter().zip(probes) {
            record(&mut health, object, result);
        }
        Ok(())
    }

    /// Probes `object` once a permit of `limit` is free, within [`PROBE_TIMEOUT`].
    async fn probe_limited(&self, limit: &tokio::sync::Semaphore, object: &Object) -> Result<ClusterInfo, DriverError> {
        let _permit = limit.acquire().await;
        tokio::time::timeout(PROBE_TIMEOUT, self.probe_one(object)).await.unwrap_or_else(|_| {
            Err(DriverError::Unreachable(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())))
        })
    }

    async fn probe_one(&self, object: &Object) -> Result<ClusterInfo, DriverError> {
        if let Some(driver) = self.built_in.get(&object.metadata.name) {
            return driver.probe().await;
        }
        let spec: ClusterSpec = serde_json::from_value(object.spec.clone())
            .map_err(|e| DriverError::Refused(format!("the registration cannot be read: {e}")))?;
        match spec.cluster_type {
            flotilla_core::kinds::ClusterType::Kubernetes => self.kubernetes_driver(object, &spec).await?.probe().await,
            flotilla_core::kinds::ClusterType::Local => {
                Err(DriverError::Unreachable("no embedded runtime runs under this name in this control plane".into()))
            }
        }
    }

    /// The driver of a registered Kubernetes cluster, made anew when its registration changed.
    async fn kubernetes_driver(
        &self,
        object: &Object,
        spec: &ClusterSpec,
    ) -> Result<Arc<dyn ClusterDriver>, DriverError> {
        let name = &object.metadata.name;
        let version = object.metadata.resource_version.clone().unwrap_or_default();
        if let Some((made_from, driver)) = self.connected.lock().unwrap_or_else(|e| e.into_inner()).get(name)
            && made_from == &version
        {
            return Ok(driver.clone());
        }
        let driver = self.connector.connect(name, spec).await?;
        self.connected.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), (version, driver.clone()));
        Ok(driver)
    }

    /// The status of the Cluster `object`.
    fn status(&self, object: &Object) -> Value {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner()).get(&object.metadata.name).cloned();
        let Some(health) = health else {
            return json!({"phase": Phase::Pending, "message": "not probed yet"});
        };
        let stale = Duration::from_micros((now_micros() - health.last_probe_micros).max(0) as u64)
            > self.interval * 3 + PROBE_TIMEOUT;
        let (phase, message) = if object.metadata.resource_version.as_deref() != Some(&health.resource_version) {
            (Phase::Pending, Some("the registration changed: probing it".to_string()))
        } else if stale {
            (Phase::Unknown, Some("no recent probe".to_string()))
        } else {
            (health.phase, health.message.clone())
        };
        let mut status = json!({
            "phase": phase,
            "since": timestamp(health.since_micros),
            "lastProbe": timestamp(health.last_probe_micros),
        });
        if let Some(message) = message {
            status["message"] = json!(message);
        }
        if let Some(ready) = health.last_ready_micros {
            status["lastReady"] = timestamp(ready);
        }
        if let Some(info) = &health.info {
            status["version"] = json!(info.version);
            status["capacity"] = json!(info.capacity());
            status["storageClasses"] = json!(info.storage_classes);
            status["nodes"] = json!(info.nodes);
        }
        status
    }
}

/// Folds one probe's result into what is known of the cluster.
fn record(health: &mut HashMap<String, Health>, object: &Object, result: Result<ClusterInfo, DriverError>) {
    let now = now_micros();
    let (phase, message, info) = match result {
        Ok(info) => (Phase::Ready, None, Some(info)),
        Err(DriverError::Unauthorized(message)) => (Phase::Unauthorized, Some(message), None),
        Err(error) => (Phase::Unreachable, Some(error.to_string()), None),
    };
    let name = object.metadata.name.clone();
    let resource_version = object.metadata.resource_version.clone().unwrap_or_default();
    let entry = health.entry(name.clone()).or_insert_with(|| Health {
        resource_version: resource_version.clone(),
        phase: Phase::Pending,
        since_micros: now,
        last_probe_micros: now,
        message: None,
        info: None,
        last_ready_micros: None,
    });
    if entry.phase != phase || entry.resource_version != resource_version {
        match &message {
            Some(message) => tracing::warn!(cluster = %name, ?phase, %message, "cluster health changed"),
            None => tracing::info!(cluster = %name, ?phase, "cluster health changed"),
        }
        entry.since_micros = now;
    }
    if phase == Phase::Ready {
        entry.last_ready_micros = Some(now);
    }
    if entry.resource_version != resource_version {
        // Another registration: what was found of the old one says nothing of this one.
        entry.info = None;
    }
    entry.phase = phase;
    entry.resource_version = resource_version;
    entry.last_probe_micros = now;
    entry.message = message;
    if info.is_some() {
        entry.info = info;
    }
}

impl crate::Drivers for ClusterMonitor {
    fn get(&self, cluster: &str) -> Option<Arc<dyn ClusterDriver>> {
        self.built_in.get(cluster).cloned().or_else(|| {
            self.connected.lock().unwrap_or_else(|e| e.into_inner()).get(cluster).map(|(_, driver)| driver.clone())
        })
    }

    fn all(&self) -> Vec<(String, Arc<dyn ClusterDriver>)> {
        let mut all: Vec<(String, Arc<dyn ClusterDriver>)> =
            self.built_in.iter().map(|(name, driver)| (name.clone(), driver.clone())).collect();
        let connected = self.connected.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(connected.iter().map(|(name, (_, driver))| (name.clone(), driver.clone())));
        all
    }
}

#[async_trait::async_trait]
impl StatusView for ClusterMonitor {
    async fn status_of(&self, object: &Object) -> Option<Value> {
        (object.kind == "Cluster").then(|| self.status(object))
    }

    fn written(&self, key: &ObjectKey) {
        if key.kind == "Cluster" {
            self.wake.notify_one();
        }
    }
}
