//! The driver conformance suite (`flotilla_driver::conformance`) on the kubernetes driver,
//! over the fake API server (its simulated controllers and kubelet). The scenarios that need
//! a container's own behaviour (exec, logs, crashes, liveness) run on the embedded runtime
//! only until the kubernetes driver has exec and the fake runs processes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use flotilla_core::kinds::ClusterSpec;
use flotilla_driver::cluster::ClusterConnector;
use flotilla_driver::conformance::{self, Subject};
use flotilla_driver::workload::WorkloadKey;
use flotilla_kube::KubeConnector;
use flotilla_kube::fake::FakeApiServer;
use serde_json::json;

macro_rules! conformance {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let fake = FakeApiServer::start("conformance-token", "v1.33.1").await;
            fake.add_node("node-1", "8", "32Gi");
            let spec: ClusterSpec = serde_json::from_value(
                json!({"type": "kubernetes", "apiServer": fake.url, "token": "conformance-token"}),
            )
            .unwrap();
            let driver = KubeConnector.connect("fake", &spec).await.unwrap();
            let key = WorkloadKey {
                project: "conformance".into(),
                environment: "test".into(),
                application: stringify!($name).replace('_', "-").chars().take(40).collect(),
            };
            let image = "registry.example/conformance/busybox:1".to_string();
            conformance::$name(Subject { driver: driver.as_ref(), image, key }).await;
        }
    };
}

conformance!(never_ready_revision_misses_its_deadline);
conformance!(scaling_and_undo_keep_matching_instances);
conformance!(an_unpullable_image_is_reported);
conformance!(delete_removes_everything);
conformance!(probe_reports_the_cluster);
