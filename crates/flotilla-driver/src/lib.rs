//! The cluster-driver contract: what the control plane asks of a cluster and what it
//! reports back. The embedded runtime (`flotilla-local`) and the Kubernetes driver implement
//! [`ClusterDriver`]; one conformance suite runs against both.
//!
//! - [`workload`]: what a driver is asked to run, every value resolved.
//! - [`cluster`]: what a cluster is (version, nodes, capacity, storage classes) as probed.
//! - [`status`]: what it reports: instances, their states, rollout phase, events.
//! - [`rollout`]: the rolling-update arithmetic both follow (pure).
//! - `conformance` (feature `testsuite`): the scenarios every driver's tests run.
//!
//! The control plane stays in charge of decisions that must be the same everywhere: which
//! revision is desired, and rolling back when a rollout reports
//! [`status::RolloutPhase::DeadlineExceeded`]. A driver makes the cluster match the workload
//! it was last given, reports honestly, and owns nothing it did not label as its own.

pub mod cluster;
#[cfg(feature = "testsuite")]
pub mod conformance;
pub mod rollout;
pub mod status;
pub mod workload;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::status::WorkloadStatus;
use crate::workload::{Workload, WorkloadKey};

/// Errors of a driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The cluster cannot be reached (or its runtime is down).
    #[error("cluster unreachable: {0}")]
    Unreachable(String),
    /// The cluster did not accept the credentials, or they lack a permission needed.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The cluster refused the request (invalid for it, forbidden, conflicting).
    #[error("refused by the cluster: {0}")]
    Refused(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

/// Which lines of a workload's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub component: Option<String>,
    pub instance: Option<String>,
    /// Only lines at or after this time.
    pub since_micros: Option<i64>,
    /// Only the last N lines (per instance) before following.
    pub tail: Option<usize>,
    /// Keep streaming new lines.
    pub follow: bool,
}

/// One line of an instance's output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub time_micros: i64,
    pub instance: String,
    pub stream: LogStream,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Either: the cluster's log API merges a container's stdout and stderr (Kubernetes).
    Combined,
}

/// What a command run in an instance produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Resource use of one instance at one moment. What a cluster does not report is `None`
/// (Kubernetes' `metrics.k8s.io` gives CPU as a rate and memory, no totals, no I/O).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetrics {
    pub instance: String,
    pub time_micros: i64,
    /// Cumulative CPU time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage_nanos: Option<u64>,
    /// CPU in use now, in billionths of a core (averaged over the cluster's window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_nanocores: Option<u64>,
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_rx_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_tx_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_read_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_write_bytes: Option<u64>,
}

/// A cluster the control plane deploys to.
#[async_trait]
pub trait ClusterDriver: Send + Sync + 'static {
    /// Makes the cluster run `workload` (idempotent): rolls out a new revision, scales, or
    /// does nothing when it already runs. Returns once the change is underway, not done.
    async fn apply(&self, workload: &Workload) -> Result<(), DriverError>;

    /// Removes everything of the workload; its persistent volumes too unless `keep_volumes`.
    async fn delete(&self, key: &WorkloadKey, keep_volumes: bool) -> Result<(), DriverError>;

    /// Every workload the cluster runs something of (including ones adopted after a restart
    /// and not applied since), so that the control plane can remove what it no longer wants.
    async fn workloads(&self) -> Result<Vec<WorkloadKey>, DriverError>;

    /// The workload's current status; `NotFound` when the cluster runs nothing of it.
    async fn status(&self, key: &WorkloadKey) -> Result<WorkloadStatus, DriverError>;

    /// Every status change of every workload, as it happens.
    fn watch(&self) -> BoxStream<'static, (WorkloadKey, WorkloadStatus)>;

    async fn logs(
        &self,
        key: &WorkloadKey,
        query: LogQuery,
    ) -> Result<BoxStream<'static, Result<LogLine, DriverError>>, DriverError>;

    /// Runs `command` in a running instance of `component` (any one unless `instance`).
    async fn exec(
        &self,
        key: &WorkloadKey,
        component: &str,
        instance: Option<&str>,
        command: Vec<String>,
    ) -> Result<ExecOutput, DriverError>;

    async fn metrics(&self, key: &WorkloadKey) -> Result<Vec<InstanceMetrics>, DriverError>;

    /// What the cluster is now: version, nodes, capacity, storage classes.
    async fn probe(&self) -> Result<cluster::ClusterInfo, DriverError>;

    /// Loads the images of an OCI or Docker image archive into the cluster; their names.
    /// Clusters that take images from registries only refuse.
    async fn import_image(&self, _archive: &std::path::Path) -> Result<Vec<String>, DriverError> {
        Err(DriverError::Refused("this cluster takes images from registries only: push the image to one".into()))
    }
}
