//! Helpers of the tests that run the embedded runtime as a cluster driver.

use flotilla_driver::workload::WorkloadKey;
use flotilla_local::cri::Cri;
use flotilla_local::driver::{LocalDriver, LocalOptions};
use flotilla_local::instance::workload_selector;
use flotilla_local::networks::NetworkAllocator;
use serde_json::Value;

pub const IMAGE: &str = "flotilla.local/test/app:1";

pub fn key(short: &str) -> WorkloadKey {
    WorkloadKey { project: format!("p{short}"), environment: "test".into(), application: "shop".into() }
}

#[allow(unused_imports)] // each test crate uses some of them
pub use flotilla_driver::conformance::{complete, component, wait_for, workload};

/// The suite's web component with this crate's test image.
pub fn web(replicas: u32, greeting: &str, readiness_port: u16, deadline: u32) -> Value {
    flotilla_driver::conformance::web(IMAGE, replicas, greeting, readiness_port, deadline)
}

/// Driver options of the test's runtime: its own service range, no upstream name server
/// (test traffic stays on the machine).
pub fn options(runtime: &super::Runtime) -> LocalOptions {
    let mut options = LocalOptions::new(runtime.dir.join("runtime"));
    options.service_range = runtime.service_range;
    options.upstream_dns = Vec::new();
    options
}

pub async fn start_driver(runtime: &super::Runtime) -> LocalDriver {
    start_driver_with(runtime, options(runtime)).await
}

pub async fn start_driver_with(runtime: &super::Runtime, options: LocalOptions) -> LocalDriver {
    let cri = Cri::connect(&runtime.socket).await.unwrap();
    let networks = NetworkAllocator::new(runtime.networks_dir.clone().unwrap(), runtime.network_octet);
    LocalDriver::start(cri, networks, options).await.unwrap()
}

/// Runs `test` on a fresh runtime with per-environment networks, with a workload key of
/// its own; every pod of that workload is removed afterwards.
pub async fn with_driver_runtime<F, Fut>(test: F)
where
    F: FnOnce(super::Runtime, WorkloadKey) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let short = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let key = key(&short);
    let options = super::Options {
        cleanup_labels: vec![workload_selector(&key)],
        per_environment_networks: true,
        ..Default::default()
    };
    super::with_runtime_options(options, move |runtime| test(runtime, key)).await
}
