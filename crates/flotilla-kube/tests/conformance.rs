//! The driver conformance suite (`flotilla_driver::conformance`) on the kubernetes driver,
//! over the fake API server: its simulated controllers, and a kubelet that runs the pods for
//! real on a containerd of the test's own (containers are processes: they exit, log, answer
//! probes and exec, and use CPU), with a busybox image built by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use flotilla_core::kinds::ClusterSpec;
use flotilla_driver::cluster::ClusterConnector;
use flotilla_driver::conformance::{self, Subject};
use flotilla_driver::workload::WorkloadKey;
use flotilla_kube::KubeConnector;
use flotilla_kube::fake::FakeApiServer;
use flotilla_local::oci_archive::LayerFile;
use flotilla_local::testing::with_runtime;
use serde_json::json;

const IMAGE: &str = "flotilla.local/conformance/busybox:1";

macro_rules! conformance {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            with_runtime(vec![], |runtime| async move {
                let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"hello\n".to_vec() };
                runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
                let mut fake = FakeApiServer::start("conformance-token", "v1.33.1").await;
                fake.add_node("node-1", "8", "32Gi");
                fake.serve_metrics();
                fake.run_pods(&runtime.socket, runtime.selector(), runtime.dir.join("kubelet")).await;
                let spec: ClusterSpec = serde_json::from_value(
                    json!({"type": "kubernetes", "apiServer": fake.url, "token": "conformance-token"}),
                )
                .unwrap();
                let driver = KubeConnector.connect("fake", &spec).await.unwrap();
                let key = WorkloadKey {
                    project: format!("p{}", runtime.short),
                    environment: "test".into(),
                    application: stringify!($name).replace('_', "-").chars().take(40).collect(),
                };
                conformance::$name(Subject { driver: driver.as_ref(), image: IMAGE.to_string(), key }).await;
            })
            .await;
        }
    };
}

conformance!(runs_restarts_and_rolls_out);
conformance!(never_ready_revision_misses_its_deadline);
conformance!(scaling_and_undo_keep_matching_instances);
conformance!(logs_exec_and_metrics);
conformance!(an_unpullable_image_is_reported);
conformance!(delete_removes_everything);
conformance!(probe_reports_the_cluster);
