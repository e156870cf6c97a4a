//! The driver conformance suite (`flotilla_driver::conformance`) on the embedded runtime, for
//! real: each scenario on a containerd of its own, with a busybox image built by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use flotilla_driver::conformance::{self, Subject};
use flotilla_local::oci_archive::LayerFile;
use support::drivers::*;

/// Runs `scenario` against a fresh driver with the suite's image.
macro_rules! conformance {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            with_driver_runtime(|runtime, key| async move {
                let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"hello\n".to_vec() };
                runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
                let driver = start_driver(&runtime).await;
                conformance::$name(Subject { driver: &driver, image: IMAGE.to_string(), key }).await;
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
