//! What the embedded runtime does beyond the driver conformance suite (`conformance.rs`),
//! for real: a crashed container restarts in its own pod; a new driver adopts running
//! instances without restarting them; per-instance cgroups and disk counters; log rotation;
//! image pulls retried with a doubling back-off, and one that hangs holding up nothing else; pods
//! no workload owns, and networks no environment uses, swept away.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use flotilla_driver::status::{EventType, InstanceState};
use flotilla_driver::{ClusterDriver, DriverError, LogQuery, LogStream};
use flotilla_local::cri::Cri;
use flotilla_local::instance::workload_selector;
use flotilla_local::oci_archive::LayerFile;
use futures::StreamExt;
use serde_json::json;

use support::drivers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_driver_adopts_running_instances_without_restarting_them() {
    with_driver_runtime(|runtime, key| async move {
        let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"shop\n".to_vec() };
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
        let driver = start_driver(&runtime).await;
        let v1 = workload(&key, 1, json!({"environment": "test", "components": [web(3, "one", 8080, 600)]}));
        driver.apply(&v1).await.unwrap();
        let status = wait_for(&driver, &key, 60, "3 web instances ready", |s| complete(s, 1)).await;

        // A crashed container is restarted in its own pod (same instance, same address).
        let victim = status.instances[0].clone();
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        let selector = std::collections::HashMap::from([("flotilla.io/instance".to_string(), victim.name.clone())]);
        let containers = cri.list_containers(selector).await.unwrap();
        cri.stop_container(&containers[0].id, 0).await.unwrap();
        let status = wait_for(&driver, &key, 30, "the stopped container restarted and ready", |s| {
            s.instances.iter().any(|i| i.name == victim.name && i.restarts >= 1 && i.is_ready())
        })
        .await;
        let restarted = status.instances.iter().find(|i| i.name == victim.name).unwrap();
        assert_eq!(restarted.ip, victim.ip, "the pod and its address are kept");
        assert!(
            status.events.iter().any(|e| e.reason == "BackOff" && e.kind == EventType::Warning),
            "{:#?}",
            status.events
        );

        // A new driver (the control plane restarted) adopts the instances: nothing restarts.
        let before: Vec<(String, u32)> = status.instances.iter().map(|i| (i.name.clone(), i.restarts)).collect();
        drop(driver);
        let driver = start_driver(&runtime).await;
        driver.apply(&v1).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = wait_for(&driver, &key, 30, "adopted and ready", |s| complete(s, 1)).await;
        let mut now: Vec<(String, u32)> = after.instances.iter().map(|i| (i.name.clone(), i.restarts)).collect();
        let mut expected = before;
        now.sort();
        expected.sort();
        assert_eq!(now, expected, "the same instances, adopted, not restarted: {after:#?}");

        driver.delete(&key, false).await.unwrap();
        assert!(matches!(driver.status(&key).await, Err(DriverError::NotFound(_))));
        let left = cri.list_pod_sandboxes(workload_selector(&key)).await.unwrap();
        assert!(left.is_empty(), "delete removed every pod: {left:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_come_back_per_instance() {
    with_driver_runtime(|runtime, key| async move {
        let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"shop\n".to_vec() };
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
        let driver = start_driver(&runtime).await;
        // The shell itself (not a child that exits) writes 4 MiB to a file, then stays.
        let writer = json!({"name": "writer", "image": IMAGE, "command": ["/bin/sh", "-c",
            "b=0123456789abcdef; b=$b$b$b$b$b$b$b$b; b=$b$b$b$b$b$b$b$b; i=0; while [ $i -lt 4096 ]; do echo \"$b$b$b$b$b$b$b$b\" >> /blob; i=$((i+1)); done; sync; touch /done; sleep 3600"]});
        driver
            .apply(&workload(&key, 1, json!({"environment": "test", "components": [web(1, "one", 8080, 600), writer]})))
            .await
            .unwrap();
        let status = wait_for(&driver, &key, 30, "ready", |s| complete(s, 1)).await;
        let instance = status.instances.iter().find(|i| i.component == "web").unwrap().name.clone();
        let metrics = driver.metrics(&key).await.unwrap();
        assert_eq!(metrics.len(), 2);
        let m = metrics.iter().find(|m| m.instance == instance).unwrap();
        assert!(m.cpu_usage_nanos.is_some_and(|c| c > 0), "{m:?}");
        assert!(m.memory_bytes > 0, "{m:?}");
        assert!(
            m.network_rx_bytes.is_some_and(|b| b > 0) && m.network_tx_bytes.is_some_and(|b| b > 0),
            "the readiness probes' traffic: {m:?}"
        );
        // Disk writes: from blkio where the kernel accounts it, else from /proc/<pid>/io.
        let started = std::time::Instant::now();
        while !driver.exec(&key, "writer", None, vec!["/bin/cat".into(), "/done".into()]).await.is_ok_and(|o| o.exit_code == 0) {
            assert!(started.elapsed() < Duration::from_secs(30), "the writer did not finish");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let metrics = driver.metrics(&key).await.unwrap();
        let written = metrics.iter().find(|m| m.instance.starts_with("writer-")).unwrap();
        assert!(written.disk_write_bytes.is_some_and(|b| b >= 4 << 20), "4 MiB written: {written:?}");
        assert!(written.disk_write_bytes.is_some_and(|b| b < 64 << 20), "{written:?}");
        let cgroup = format!("/sys/fs/cgroup/memory/flotilla/{instance}");
        assert!(std::path::Path::new(&cgroup).exists(), "the instance's containers are in its pod cgroup");
        driver.delete(&key, false).await.unwrap();
        assert!(!std::path::Path::new(&cgroup).exists(), "the instance's cgroup is removed with it");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_followed_and_rotated() {
    with_driver_runtime(|runtime, key| async move {
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![]).await;
        let mut options = options(&runtime);
        options.max_log_bytes = 400;
        let driver = start_driver_with(&runtime, options).await;
        let talker = json!({"name": "talker", "image": IMAGE, "command": ["/bin/sh", "-c",
            "i=0; while true; do echo line $i; echo warn $i >&2; i=$((i+1)); sleep 0.1; done"]});
        driver.apply(&workload(&key, 1, json!({"environment": "test", "components": [talker]}))).await.unwrap();
        wait_for(&driver, &key, 30, "running", |s| complete(s, 1)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let query = LogQuery { tail: Some(3), ..Default::default() };
        let lines: Vec<_> = driver.logs(&key, query).await.unwrap().collect().await;
        assert_eq!(lines.len(), 3, "{lines:?}");
        let lines: Vec<_> = lines.into_iter().map(Result::unwrap).collect();
        assert!(lines.iter().any(|l| l.stream == LogStream::Stderr && l.text.starts_with("warn ")), "{lines:?}");
        assert!(lines.windows(2).all(|w| w[0].time_micros <= w[1].time_micros), "merged by time");

        // Following goes on across rotations (400 bytes is a few tenths of a second of output).
        let query = LogQuery { tail: Some(0), follow: true, component: Some("talker".into()), ..Default::default() };
        let mut stream = driver.logs(&key, query).await.unwrap();
        let mut numbers = Vec::new();
        while numbers.len() < 30 {
            let line =
                tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("a line").unwrap().unwrap();
            if let Some(n) = line.text.strip_prefix("line ") {
                numbers.push(n.parse::<u64>().unwrap());
            }
        }
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "no line lost or repeated across rotations: {numbers:?}");
        let logs = runtime.dir.join("runtime/instances");
        let rotated = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .any(|instance| instance.path().join("logs/talker.log.1").exists());
        assert!(rotated, "the log was rotated");
        driver.delete(&key, false).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_is_reported_and_retried_with_back_off() {
    with_driver_runtime(|runtime, key| async move {
        let driver = start_driver(&runtime).await;
        // Nothing listens on loopback port 9: the registry is unreachable.
        let missing = "127.0.0.1:9/shop/web:1";
        let web = json!({"name": "web", "image": missing, "command": ["/bin/sleep", "3600"]});
        driver.apply(&workload(&key, 1, json!({"environment": "test", "components": [web]}))).await.unwrap();
        let status = wait_for(&driver, &key, 30, "the pull error reported", |s| {
            component(s, "web").message.as_deref().is_some_and(|m| m.contains("cannot be pulled"))
        })
        .await;
        assert!(status.instances.is_empty(), "no instance without its image: {status:#?}");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let status = driver.status(&key).await.unwrap();
        let attempts = status.events.iter().filter(|e| e.reason == "ImagePullBackOff").count();
        assert!((2..=4).contains(&attempts), "1 s, 2 s, 4 s between attempts, not every pass: {attempts} in ~4 s");
        assert!(status.events.iter().all(|e| e.reason != "ImagePullBackOff" || e.message.contains(missing)));

        // Once the image is there, the next attempt starts the instance.
        runtime.import_busybox(missing, &["/bin/sh"], vec![]).await;
        wait_for(&driver, &key, 30, "running once the image is there", |s| complete(s, 1)).await;
        driver.delete(&key, false).await.unwrap();
    })
    .await;
}

/// A pull that hangs (a registry that accepts connections and never answers) holds up
/// nothing else: the workload's other component comes up meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_image_pull_holds_up_nothing_else() {
    with_driver_runtime(|runtime, key| async move {
        let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"shop\n".to_vec() };
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
        let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hanging = format!("{}/shop/slow:1", registry.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((connection, _)) = registry.accept().await {
                connections.push(connection);
            }
        });
        let driver = start_driver(&runtime).await;
        let slow = json!({"name": "slow", "image": hanging, "command": ["/bin/sleep", "3600"]});
        let spec = json!({"environment": "test", "components": [slow, web(1, "x", 8080, 600)]});
        driver.apply(&workload(&key, 1, spec)).await.unwrap();
        let status =
            wait_for(&driver, &key, 30, "web ready while slow's image is pulled", |s| component(s, "web").ready == 1)
                .await;
        assert_eq!(component(&status, "slow").ready, 0, "{status:#?}");
        assert!(
            status.events.iter().any(|e| e.reason == "Pulling" && e.message.contains(&hanging)),
            "{:#?}",
            status.events
        );
        driver.delete(&key, false).await.unwrap();
        held.abort();
    })
    .await;
}

/// Pods still being created when the application is scaled down or deleted are not left
/// behind: creations not begun are dropped, those under way are removed once done; a
/// deletion waits for the pods being removed, and the environment's last one releases its
/// network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_still_being_created_are_not_left_behind() {
    with_driver_runtime(|runtime, key| async move {
        let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"shop\n".to_vec() };
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
        let driver = start_driver(&runtime).await;
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        let spec = |replicas| json!({"environment": "test", "components": [web(replicas, "x", 8080, 600)]});
        // Pods are created a few at a time, so most of the 8 are still to come when scaled to 1.
        driver.apply(&workload(&key, 1, spec(8))).await.unwrap();
        wait_for(&driver, &key, 30, "instances being created", |s| {
            s.instances.iter().any(|i| matches!(i.state, InstanceState::Pending { .. }))
        })
        .await;
        driver.apply(&workload(&key, 2, spec(1))).await.unwrap();
        let status = wait_for(&driver, &key, 60, "scaled to 1", |s| complete(s, 2) && s.instances.len() == 1).await;
        let pods = pods_settling_at(&mut cri, &key, 1).await;
        assert_eq!(pods[0].labels.get("flotilla.io/instance"), Some(&status.instances[0].name), "{pods:#?}");

        let namespace = flotilla_local::networks::NetworkAllocator::namespace(&key.project, &key.environment);
        let network_file = runtime.networks_dir.clone().unwrap().join(format!("{namespace}.json"));
        let network: flotilla_local::cni_plugin::EnvironmentNetwork =
            serde_json::from_slice(&std::fs::read(&network_file).unwrap()).unwrap();
        assert!(std::path::Path::new("/sys/class/net").join(&network.bridge).exists(), "the bridge is up");

        // Deleted while pods are being removed: the deletion waits for them.
        driver.apply(&workload(&key, 3, spec(5))).await.unwrap();
        wait_for(&driver, &key, 60, "5 ready", |s| complete(s, 3) && s.instances.len() == 5).await;
        driver.apply(&workload(&key, 4, spec(1))).await.unwrap();
        wait_for(&driver, &key, 30, "scaled to 1", |s| s.instances.len() == 1).await;
        driver.delete(&key, false).await.expect("deleting while pods are being removed");
        pods_settling_at(&mut cri, &key, 0).await;
        // The environment's last application: its network goes with it.
        assert!(!network_file.exists(), "the network was released");
        assert!(!std::path::Path::new("/sys/class/net").join(&network.bridge).exists(), "the bridge was deleted");

        // Deleted right after an apply: the deletion waits for the creations under way and
        // removes their pods, then releases the network; no pod's network set-up runs after
        // that release to leave its bridge or rules behind.
        driver.apply(&workload(&key, 5, spec(6))).await.unwrap();
        let network = loop {
            if let Ok(text) = std::fs::read(&network_file) {
                break serde_json::from_slice::<flotilla_local::cni_plugin::EnvironmentNetwork>(&text).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // While the first pods are being set up.
        tokio::time::sleep(Duration::from_millis(100)).await;
        driver.delete(&key, false).await.unwrap();
        let pods = cri.list_pod_sandboxes(workload_selector(&key)).await.unwrap();
        assert!(pods.is_empty(), "no pod outlives the deletion: {pods:#?}");
        assert!(!network_file.exists(), "the network was released");
        // What pods still being set up when the deletion returned would add.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!std::path::Path::new("/sys/class/net").join(&network.bridge).exists(), "the bridge was deleted");
        let left = rules_of(&network);
        assert!(left.is_empty(), "rules of the released network are left: {left:#?}");
    })
    .await;
}

/// A pod labelled as one of the driver's that no workload owns (as a removal that failed
/// leaves behind) is removed by the periodic sweep; the workload's own pod is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_no_workload_owns_are_swept() {
    with_driver_runtime(|runtime, key| async move {
        let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"shop\n".to_vec() };
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
        let mut options = options(&runtime);
        options.sweep_interval = Duration::from_secs(1);
        let root = options.root.clone();
        let driver = start_driver_with(&runtime, options).await;
        let app = workload(&key, 1, json!({"environment": "test", "components": [web(1, "x", 8080, 600)]}));
        driver.apply(&app).await.unwrap();
        let status = wait_for(&driver, &key, 60, "1 ready", |s| complete(s, 1)).await;

        let name = format!("web-1-orphan{}", runtime.short);
        let orphan = flotilla_local::instance::InstancePlan {
            workload: &app,
            component: &app.components[0],
            name: name.clone(),
            namespace: flotilla_local::networks::NetworkAllocator::namespace(&key.project, &key.environment),
            dir: flotilla_local::instance::instance_dir(&root, &name),
            volumes_dir: root.join("volumes"),
            dns: None,
        };
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        cri.run_pod_sandbox(orphan.sandbox()).await.expect("the orphan pod starts");
        assert_eq!(cri.list_pod_sandboxes(workload_selector(&key)).await.unwrap().len(), 2);
        let pods = pods_settling_at(&mut cri, &key, 1).await;
        assert_eq!(pods[0].labels.get("flotilla.io/instance"), Some(&status.instances[0].name), "{pods:#?}");
        let now = driver.status(&key).await.unwrap();
        assert_eq!(now.instances, status.instances, "the workload's instance was not touched");
    })
    .await;
}

/// A control plane stopped during a deletion, after the pods were removed but before the
/// environment's network was released, leaves that network allocated with its bridge and
/// rules; the next driver's sweep releases it. A network whose pods run on is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_no_environment_uses_are_released_by_the_sweep() {
    let short = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let kept = key(&short);
    let left = flotilla_driver::workload::WorkloadKey { environment: "stage".into(), ..kept.clone() };
    let harness = support::Options {
        cleanup_labels: vec![workload_selector(&kept), workload_selector(&left)],
        per_environment_networks: true,
        ..Default::default()
    };
    support::with_runtime_options(harness, move |runtime| async move {
        let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"shop\n".to_vec() };
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
        let driver = start_driver(&runtime).await;
        let mut statuses = Vec::new();
        for key in [&kept, &left] {
            let spec = json!({"environment": key.environment, "components": [web(1, "x", 8080, 600)]});
            driver.apply(&workload(key, 1, spec)).await.unwrap();
            statuses.push(wait_for(&driver, key, 60, "1 ready", |s| complete(s, 1)).await);
        }
        let network_file = |key: &flotilla_driver::workload::WorkloadKey| {
            let namespace = flotilla_local::networks::NetworkAllocator::namespace(&key.project, &key.environment);
            runtime.networks_dir.clone().unwrap().join(format!("{namespace}.json"))
        };
        let network_of = |key| -> flotilla_local::cni_plugin::EnvironmentNetwork {
            serde_json::from_slice(&std::fs::read(network_file(key)).unwrap()).unwrap()
        };
        let (kept_network, left_network) = (network_of(&kept), network_of(&left));

        // Stopped in the middle of deleting `left`: its pods are gone, its network is not.
        drop(driver);
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        for pod in cri.list_pod_sandboxes(workload_selector(&left)).await.unwrap() {
            cri.stop_pod_sandbox(&pod.id).await.unwrap();
            cri.remove_pod_sandbox(&pod.id).await.unwrap();
        }
        assert!(bridge_exists(&left_network) && !rules_of(&left_network).is_empty(), "{left_network:?} is set up");

        let mut options = options(&runtime);
        options.sweep_interval = Duration::from_secs(1);
        let driver = start_driver_with(&runtime, options).await;
        let started = std::time::Instant::now();
        while network_file(&left).exists() {
            assert!(started.elapsed() < Duration::from_secs(30), "the unused network is still allocated");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(!bridge_exists(&left_network), "the unused network's bridge was deleted");
        let rules = rules_of(&left_network);
        assert!(rules.is_empty(), "rules of the unused network are left: {rules:#?}");

        // The environment whose pod runs on keeps its network, and its instance its address.
        assert!(network_file(&kept).exists() && bridge_exists(&kept_network), "{kept_network:?} is kept");
        assert!(!rules_of(&kept_network).is_empty(), "{kept_network:?} keeps its rules");
        let adopted = wait_for(&driver, &kept, 30, "adopted", |s| s.instances.len() == 1).await;
        assert_eq!(adopted.instances[0].name, statuses[0].instances[0].name);
        assert_eq!(adopted.instances[0].ip, statuses[0].instances[0].ip);
    })
    .await;
}

fn bridge_exists(network: &flotilla_local::cni_plugin::EnvironmentNetwork) -> bool {
    std::path::Path::new("/sys/class/net").join(&network.bridge).exists()
}

/// The host's iptables rules that name `network`'s bridge or subnet.
fn rules_of(network: &flotilla_local::cni_plugin::EnvironmentNetwork) -> Vec<String> {
    let rules = std::process::Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&rules.stdout)
        .lines()
        .filter(|line| line.contains(network.bridge.as_str()) || line.contains(network.subnet.as_str()))
        .map(str::to_string)
        .collect()
}

/// Waits (at most 30 s) until the workload has `count` pods, and returns them.
async fn pods_settling_at(
    cri: &mut Cri,
    key: &flotilla_driver::workload::WorkloadKey,
    count: usize,
) -> Vec<flotilla_local::cri::api::PodSandbox> {
    let started = std::time::Instant::now();
    loop {
        let pods = cri.list_pod_sandboxes(workload_selector(key)).await.unwrap();
        if pods.len() == count {
            return pods;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{} pods, not {count}: {pods:#?}", pods.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
