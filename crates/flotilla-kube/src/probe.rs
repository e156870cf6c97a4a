//! What a Kubernetes cluster is now: the API server's version, every node with its
//! allocatable resources and what the pods placed on it request, and the storage classes.
//! Lists are paged (500 at a time), so a large cluster is read in bounded pieces.

use std::collections::BTreeMap;

use flotilla_core::kinds::quantity::{parse_bytes, parse_cpu_millis};
use flotilla_driver::DriverError;
use flotilla_driver::cluster::{ClusterInfo, NodeInfo, StorageClassInfo};
use k8s_openapi::api::core::v1::{Node, Pod, ResourceRequirements};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

use crate::connect::classify;

/// Items per list request.
const PAGE: u32 = 500;
/// The annotation marking the default storage class.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// Every item of `api` matching `params`, a page at a time.
async fn list_all<K>(api: &Api<K>, params: ListParams, doing: &str) -> Result<Vec<K>, DriverError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut params = params.limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(|e| classify(e, doing))?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

fn cpu(quantity: Option<&Quantity>) -> u64 {
    quantity.and_then(|q| parse_cpu_millis(&q.0).ok()).unwrap_or_default()
}

fn memory(quantity: Option<&Quantity>) -> u64 {
    quantity.and_then(|q| parse_bytes(&q.0).ok()).unwrap_or_default()
}

/// A pod's effective requests, as the scheduler counts them: the sum over its containers,
/// or the largest init container's when that is more, plus the pod's overhead.
fn pod_requests(pod: &Pod) -> (u64, u64) {
    let Some(spec) = &pod.spec else { return (0, 0) };
    let requests = |r: &Option<ResourceRequirements>| {
        let requests = r.as_ref().and_then(|r| r.requests.as_ref());
        (cpu(requests.and_then(|r| r.get("cpu"))), memory(requests.and_then(|r| r.get("memory"))))
    };
    let (mut cpu_sum, mut memory_sum) = (0, 0);
    for container in &spec.containers {
        let (c, m) = requests(&container.resources);
        cpu_sum += c;
        memory_sum += m;
    }
    for init in spec.init_containers.iter().flatten() {
        let (c, m) = requests(&init.resources);
        cpu_sum = cpu_sum.max(c);
        memory_sum = memory_sum.max(m);
    }
    let overhead = spec.overhead.as_ref();
    (cpu_sum + cpu(overhead.and_then(|o| o.get("cpu"))), memory_sum + memory(overhead.and_then(|o| o.get("memory"))))
}

/// Probes the cluster behind `client`.
pub async fn probe(client: &kube::Client) -> Result<ClusterInfo, DriverError> {
    let version = client.apiserver_version().await.map_err(|e| classify(e, "reading the API server's version"))?;
    let nodes: Vec<Node> = list_all(&Api::all(client.clone()), ListParams::default(), "listing nodes").await?;
    // Pods that hold resources: neither succeeded nor failed, placed on a node.
    let running = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let pods: Vec<Pod> = list_all(&Api::all(client.clone()), running, "listing pods").await?;
    let mut requested: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for pod in &pods {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            let (c, m) = pod_requests(pod);
            let entry = requested.entry(node).or_default();
            entry.0 += c;
            entry.1 += m;
        }
    }
    let classes: Vec<StorageClass> =
        list_all(&Api::all(client.clone()), ListParams::default(), "listing storage classes").await?;
    let nodes = nodes
        .into_iter()
        .map(|node| {
            let name = node.metadata.name.clone().unwrap_or_default();
            let status = node.status.unwrap_or_default();
            let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            let allocatable = status.allocatable.unwrap_or_default();
            let (requested_cpu_millis, requested_memory_bytes) = requested.get(&name).copied().unwrap_or_default();
            NodeInfo {
                ready,
                schedulable: !node.spec.and_then(|s| s.unschedulable).unwrap_or(false),
                version: status.node_info.map(|i| i.kubelet_version).unwrap_or_default(),
                allocatable_cpu_millis: cpu(allocatable.get("cpu")),
                allocatable_memory_bytes: memory(allocatable.get("memory")),
                requested_cpu_millis,
                requested_memory_bytes,
                name,
            }
        })
        .collect();
    let storage_classes = classes
        .into_iter()
        .map(|class| StorageClassInfo {
            default: class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS))
                .is_some_and(|v| v == "true"),
            name: class.metadata.name.unwrap_or_default(),
            provisioner: class.provisioner,
        })
        .collect();
    Ok(ClusterInfo { version: version.git_version, nodes, storage_classes })
}
