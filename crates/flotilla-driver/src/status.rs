//! What a driver reports: every instance with its state, per component the counts a rollout
//! is judged by, and events (what happened, when, why), the same on every kind of cluster.

use serde::{Deserialize, Serialize};

/// The state of one instance, with the reason where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum InstanceState {
    /// Being created (sandbox, network, image).
    Pending { reason: String },
    /// The image cannot be pulled; retried with backoff. `message` is the registry's.
    ImagePullError { message: String, retry_in_seconds: u64 },
    /// Running; `ready` once the readiness probe (if any) passes.
    Running { ready: bool },
    /// Exited and will be restarted after `backoff_seconds` (doubling, as a crash loop).
    CrashLoop { exit_code: i32, backoff_seconds: u64 },
    /// Killed for exceeding its memory limit.
    OomKilled,
    /// Exited and not restarted (restart policy).
    Exited { exit_code: i32 },
    /// Being stopped.
    Terminating,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    pub name: String,
    pub component: String,
    pub revision: u64,
    #[serde(flatten)]
    pub state: InstanceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_micros: Option<i64>,
}

impl InstanceStatus {
    pub fn is_ready(&self) -> bool {
        matches!(self.state, InstanceState::Running { ready: true })
    }
}

/// Where a component's rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutPhase {
    /// Moving towards the desired revision.
    Progressing,
    /// Every instance is of the desired revision and ready.
    Complete,
    /// No progress within the progress deadline: the control plane rolls back.
    DeadlineExceeded,
}

/// The counts of one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    pub desired: u32,
    /// Instances of the desired revision.
    pub updated: u32,
    /// Ready instances of the desired revision.
    pub updated_ready: u32,
    /// Ready instances of any revision.
    pub ready: u32,
    pub phase: RolloutPhase,
    /// Why the component cannot progress, when the cluster knows (an image that cannot be
    /// pulled: the registry's message and when it is tried again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the component's ports answer inside the cluster (components with ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceAddress>,
}

/// The stable address and DNS name of a component's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAddress {
    pub address: String,
    pub dns_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventType {
    Normal,
    Warning,
}

/// Something that happened to a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub time_micros: i64,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// CamelCase, stable: `Started`, `Unhealthy`, `Killing`, `BackOff`, `OOMKilled`,
    /// `ScaledUp`, `RolloutComplete`, `ProgressDeadlineExceeded`, …
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// Everything a driver knows of one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// The revision the driver is rolling towards.
    pub revision: u64,
    pub components: Vec<ComponentStatus>,
    pub instances: Vec<InstanceStatus>,
    /// Recent events, oldest first.
    pub events: Vec<Event>,
    /// Scheduling hints this cluster could not honour, and why.
    pub warnings: Vec<String>,
}
