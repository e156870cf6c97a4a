//! What a cluster is, as a probe finds it: its version, its nodes with what they can hold
//! and what is already asked of them, and its storage classes. The same shape for the
//! embedded runtime (one node: this machine) and for a Kubernetes cluster.

use async_trait::async_trait;
use flotilla_core::kinds::ClusterSpec;
use serde::{Deserialize, Serialize};

use crate::{ClusterDriver, DriverError};

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    /// The node reports itself ready (Kubernetes' `Ready` condition).
    pub ready: bool,
    /// Whether new instances may be placed on it (not cordoned).
    pub schedulable: bool,
    /// Kubelet or runtime version.
    pub version: String,
    pub allocatable_cpu_millis: u64,
    pub allocatable_memory_bytes: u64,
    /// Requests of the instances placed on it that have not finished.
    pub requested_cpu_millis: u64,
    pub requested_memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassInfo {
    pub name: String,
    pub provisioner: String,
    /// The class a volume gets when it names none.
    pub default: bool,
}

/// Everything a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// The API server's version (`v1.33.2`), or the embedded runtime's.
    pub version: String,
    pub nodes: Vec<NodeInfo>,
    pub storage_classes: Vec<StorageClassInfo>,
}

/// Sums over the nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    pub nodes: u32,
    pub ready_nodes: u32,
    pub allocatable_cpu_millis: u64,
    pub allocatable_memory_bytes: u64,
    pub requested_cpu_millis: u64,
    pub requested_memory_bytes: u64,
}

impl ClusterInfo {
    /// What the cluster holds in all: ready nodes count, and the allocatable and requested
    /// amounts of every node.
    pub fn capacity(&self) -> Capacity {
        self.nodes.iter().fold(Capacity::default(), |mut sum, node| {
            sum.nodes += 1;
            sum.ready_nodes += u32::from(node.ready);
            sum.allocatable_cpu_millis += node.allocatable_cpu_millis;
            sum.allocatable_memory_bytes += node.allocatable_memory_bytes;
            sum.requested_cpu_millis += node.requested_cpu_millis;
            sum.requested_memory_bytes += node.requested_memory_bytes;
            sum
        })
    }
}

/// Reaches clusters the control plane knows only by their registration (Kubernetes):
/// implemented by the Kubernetes driver crate.
#[async_trait]
pub trait ClusterConnector: Send + Sync + 'static {
    /// The driver of the cluster `spec` describes (connecting lazily: an unreachable
    /// cluster still gets a driver, whose calls fail until it is back). Its `probe` checks
    /// the cluster; `Unreachable` and `Unauthorized` errors say precisely what failed, and
    /// credentials never appear in them.
    async fn connect(&self, name: &str, spec: &ClusterSpec) -> Result<std::sync::Arc<dyn ClusterDriver>, DriverError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_sums_every_node() {
        let node = |name: &str, ready: bool, cpu: u64| NodeInfo {
            name: name.into(),
            ready,
            schedulable: true,
            version: "v1.33.0".into(),
            allocatable_cpu_millis: cpu,
            allocatable_memory_bytes: 1 << 30,
            requested_cpu_millis: cpu / 4,
            requested_memory_bytes: 1 << 28,
        };
        let info = ClusterInfo {
            version: "v1.33.0".into(),
            nodes: vec![node("a", true, 4000), node("b", false, 2000)],
            storage_classes: vec![],
        };
        let capacity = info.capacity();
        assert_eq!((capacity.nodes, capacity.ready_nodes), (2, 1));
        assert_eq!((capacity.allocatable_cpu_millis, capacity.requested_cpu_millis), (6000, 1500));
        assert_eq!(capacity.allocatable_memory_bytes, 2 << 30);
    }
}
