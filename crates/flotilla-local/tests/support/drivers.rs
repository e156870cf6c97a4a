//! Helpers of the tests that run the embedded runtime as a cluster driver.

use std::time::{Duration, Instant};

use flotilla_core::kinds::ApplicationSpec;
use flotilla_driver::ClusterDriver;
use flotilla_driver::status::{RolloutPhase, WorkloadStatus};
use flotilla_driver::workload::{Workload, WorkloadKey};
use flotilla_local::cri::Cri;
use flotilla_local::driver::{LocalDriver, LocalOptions};
use flotilla_local::instance::workload_selector;
use flotilla_local::networks::NetworkAllocator;
use serde_json::{Value, json};

pub const IMAGE: &str = "flotilla.local/test/app:1";

pub fn key(short: &str) -> WorkloadKey {
    WorkloadKey { project: format!("p{short}"), environment: "test".into(), application: "shop".into() }
}

pub fn workload(key: &WorkloadKey, revision: u64, spec: Value) -> Workload {
    let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
    Workload::resolve(key.clone(), revision, &spec, &|_| None).unwrap()
}

pub fn web(replicas: u32, greeting: &str, readiness_port: u16, deadline: u32) -> Value {
    json!({
        "name": "web", "image": IMAGE, "replicas": replicas,
        "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
        "env": [{"name": "GREETING", "value": greeting}],
        "ports": [{"name": "http", "port": 8080}],
        "probes": {"readiness": {"http": {"port": readiness_port, "path": "/"}, "periodSeconds": 1}},
        "update": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": deadline}
    })
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

/// Polls the driver's status until `done` holds (at most `seconds`).
pub async fn wait_for(
    driver: &LocalDriver,
    key: &WorkloadKey,
    seconds: u64,
    what: &str,
    done: impl Fn(&WorkloadStatus) -> bool,
) -> WorkloadStatus {
    let started = Instant::now();
    loop {
        if let Ok(status) = driver.status(key).await
            && done(&status)
        {
            return status;
        }
        if started.elapsed() > Duration::from_secs(seconds) {
            panic!("{what} within {seconds} s; last status: {:#?}", driver.status(key).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn component<'a>(status: &'a WorkloadStatus, name: &str) -> &'a flotilla_driver::status::ComponentStatus {
    status.components.iter().find(|c| c.name == name).unwrap()
}

pub fn complete(status: &WorkloadStatus, revision: u64) -> bool {
    status.revision == revision
        && status.components.iter().all(|c| c.phase == RolloutPhase::Complete)
        && status.instances.iter().all(|i| i.revision == revision && i.is_ready())
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
