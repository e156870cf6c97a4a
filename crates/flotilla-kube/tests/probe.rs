//! Probing a registered cluster over the fake API server: what a reachable cluster reports,
//! and precise errors for refused credentials, a missing permission and no server at all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use flotilla_core::kinds::ClusterSpec;
use flotilla_driver::DriverError;
use flotilla_driver::cluster::ClusterConnector;
use flotilla_kube::KubeConnector;
use flotilla_kube::fake::FakeApiServer;
use serde_json::json;

/// Probes the cluster `spec` registers, through the driver the control plane would make.
async fn probe(name: &str, spec: &ClusterSpec) -> Result<flotilla_driver::cluster::ClusterInfo, DriverError> {
    KubeConnector.connect(name, spec).await?.probe().await
}

fn token_spec(server: &str, token: &str) -> ClusterSpec {
    serde_json::from_value(json!({"type": "kubernetes", "apiServer": server, "token": token})).unwrap()
}

fn node(name: &str, ready: bool, cpu: &str, memory: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"unschedulable": !ready},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.0",
                "kernelVersion": "6.1", "kubeProxyVersion": "v1.33.1", "machineID": "m", "operatingSystem": "linux",
                "osImage": "Debian", "systemUUID": "u"}}})
}

fn pod(name: &str, node: &str, phase: &str, cpu: &str, memory: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        "status": {"phase": phase}})
}

#[tokio::test]
async fn a_reachable_cluster_reports_version_nodes_capacity_and_storage_classes() {
    let server = FakeApiServer::start("good-token", "v1.33.1").await;
    server.insert(node("n1", true, "4", "8Gi"));
    server.insert(node("n2", false, "2000m", "4194304Ki"));
    server.insert(pod("a", "n1", "Running", "250m", "256Mi"));
    server.insert(pod("b", "n1", "Pending", "0.5", "1Gi"));
    server.insert(pod("done", "n1", "Succeeded", "1", "1Gi"));
    server.insert(pod("elsewhere", "n2", "Running", "100m", "64Mi"));
    server.insert(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "ebs.csi.aws.com"}));
    server.insert(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "slow"},
        "provisioner": "nfs"}));

    let info = probe("c", &token_spec(&server.url, "good-token")).await.expect("probe");
    assert_eq!(info.version, "v1.33.1");
    let n1 = info.nodes.iter().find(|n| n.name == "n1").unwrap();
    assert!(n1.ready && n1.schedulable);
    assert_eq!((n1.allocatable_cpu_millis, n1.allocatable_memory_bytes), (4000, 8 << 30));
    assert_eq!(n1.requested_cpu_millis, 750, "running and pending pods count, finished ones do not");
    assert_eq!(n1.requested_memory_bytes, (256 << 20) + (1 << 30));
    let n2 = info.nodes.iter().find(|n| n.name == "n2").unwrap();
    assert!(!n2.ready && !n2.schedulable);
    assert_eq!((n2.allocatable_cpu_millis, n2.allocatable_memory_bytes, n2.requested_cpu_millis), (2000, 4 << 30, 100));
    assert_eq!(info.capacity().ready_nodes, 1);
    let default: Vec<_> = info.storage_classes.iter().filter(|c| c.default).map(|c| c.name.as_str()).collect();
    assert_eq!(default, ["fast"]);
    assert_eq!(info.storage_classes.len(), 2);

    // The same through a kubeconfig.
    let spec: ClusterSpec =
        serde_json::from_value(json!({"type": "kubernetes", "kubeconfig": server.kubeconfig("good-token")})).unwrap();
    assert_eq!(probe("c", &spec).await.expect("probe").nodes.len(), 2);
}

#[tokio::test]
async fn lists_are_read_a_page_at_a_time() {
    let server = FakeApiServer::start("t", "v1.29.4").await;
    for i in 0..1203 {
        server.insert(pod(&format!("p{i:04}"), "n1", "Running", "1m", "1Mi"));
    }
    server.insert(node("n1", true, "64", "256Gi"));
    let info = probe("c", &token_spec(&server.url, "t")).await.expect("probe");
    assert_eq!(info.nodes[0].requested_cpu_millis, 1203, "every page was read");
}

#[tokio::test]
async fn refused_credentials_a_missing_permission_and_no_server_are_told_apart() {
    let server = FakeApiServer::start("good-token", "v1.33.1").await;
    let refused = probe("c", &token_spec(&server.url, "stolen-and-revoked")).await.unwrap_err();
    let DriverError::Unauthorized(message) = &refused else { panic!("{refused:?}") };
    assert!(message.contains("401"), "{message}");
    assert!(!message.contains("stolen-and-revoked"), "the token is never quoted: {message}");

    server.forbid("nodes");
    let forbidden = probe("c", &token_spec(&server.url, "good-token")).await.unwrap_err();
    let DriverError::Unauthorized(message) = &forbidden else { panic!("{forbidden:?}") };
    assert!(message.starts_with("listing nodes") && message.contains("403"), "{message}");

    let address = server.url.clone();
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let unreachable = probe("c", &token_spec(&address, "good-token")).await.unwrap_err();
    let DriverError::Unreachable(message) = &unreachable else { panic!("{unreachable:?}") };
    assert!(message.to_lowercase().contains("connect"), "says the connection failed: {message}");
}
