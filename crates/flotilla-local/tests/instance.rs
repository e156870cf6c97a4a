//! An instance built from an application spec runs as specified: environment from config,
//! configuration and secret files (secrets readable by the owner only), a scratch volume,
//! CPU and memory limits in its cgroups, output captured to its log file; and a process over
//! its memory limit is reported as OOM-killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::{Duration, Instant};

use flotilla_core::kinds::ApplicationSpec;
use flotilla_driver::workload::{Workload, WorkloadKey};
use flotilla_local::cri::{Cri, api};
use flotilla_local::instance::{InstancePlan, instance_dir, workload_selector};
use serde_json::json;

const IMAGE: &str = "flotilla.local/test/tools:1";

fn workload(short: &str, spec: serde_json::Value) -> Workload {
    let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
    let key = WorkloadKey { project: format!("p{short}"), environment: "test".into(), application: "api".into() };
    Workload::resolve(key, 1, &spec, &|r| (r.secret == "db" && r.key == "password").then(|| "s3cret".into())).unwrap()
}

fn plan<'a>(app: &'a Workload, runtime: &support::Runtime, name: &str) -> InstancePlan<'a> {
    InstancePlan {
        workload: app,
        component: &app.components[0],
        name: name.to_string(),
        namespace: format!("{}--test", app.key.project),
        dir: instance_dir(&runtime.dir, name),
        volumes_dir: runtime.dir.join("volumes"),
        dns: None,
    }
}

/// Creates and starts the instance; returns (sandbox id, container id).
async fn run(cri: &mut Cri, plan: &InstancePlan<'_>) -> (String, String) {
    std::fs::create_dir_all(plan.log_dir()).unwrap();
    let sandbox = plan.sandbox();
    let sandbox_id = cri.run_pod_sandbox(sandbox.clone()).await.expect("sandbox");
    let mut mounts = plan.write_files().unwrap();
    mounts.extend(plan.volume_mounts().unwrap());
    let container_id = cri.create_container(&sandbox_id, plan.container(mounts), sandbox).await.expect("create");
    cri.start_container(&container_id).await.expect("start");
    (sandbox_id, container_id)
}

async fn shell(cri: &mut Cri, container: &str, script: &str) -> String {
    let output = cri.exec_sync(container, vec!["/bin/sh".into(), "-c".into(), script.into()], 10).await.unwrap();
    assert_eq!(output.exit_code, 0, "{script}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_runs_with_its_env_files_volumes_and_limits() {
    let short = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let app = workload(
        &short,
        json!({
            "environment": "test",
            "config": {"greeting": "hello", "conf": "listen=8080\n"},
            "components": [{
                "name": "api", "image": IMAGE,
                "command": ["/bin/sh", "-c", "echo started as $GREETING; exec sleep 3600"],
                "env": [{"name": "GREETING", "fromConfig": "greeting"}],
                "files": [{"path": "/etc/api.conf", "fromConfig": "conf"},
                          {"path": "/run/secrets/db", "fromSecret": {"secret": "db", "key": "password"}}],
                "volumes": [{"name": "work", "mountPath": "/work", "scratch": {}}],
                "resources": {"limits": {"cpu": "500m", "memory": "48Mi"}}
            }]
        }),
    );
    let selector = workload_selector(&app.key);
    support::with_runtime(vec![selector], move |runtime| async move {
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![]).await;
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        let name = format!("api-1-{}", runtime.short);
        let plan = plan(&app, &runtime, &name);
        let (sandbox_id, container) = run(&mut cri, &plan).await;
        assert!(cri.pod_ip(&sandbox_id).await.unwrap().unwrap().starts_with(&runtime.subnet_prefix));
        assert_eq!(shell(&mut cri, &container, "echo $GREETING").await, "hello");
        assert_eq!(shell(&mut cri, &container, "cat /etc/api.conf").await, "listen=8080");
        assert_eq!(shell(&mut cri, &container, "cat /run/secrets/db").await, "s3cret");
        assert_eq!(shell(&mut cri, &container, "stat -L -c %a /run/secrets/db /etc/api.conf").await, "400\n444");
        assert_eq!(shell(&mut cri, &container, "echo x > /work/f && cat /work/f").await, "x");
        let limit = shell(&mut cri, &container, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes").await;
        assert_eq!(limit, (48 * 1024 * 1024).to_string(), "the memory limit is in the cgroup");
        let quota =
            shell(&mut cri, &container, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us")
                .await;
        assert_eq!(quota, "50000\n100000", "500m of CPU");
        let status = cri.container_status(&container).await.unwrap();
        assert_eq!(status.labels["flotilla.io/instance"], name);
        assert_eq!(status.labels["flotilla.io/revision"], "1");
        let log = std::fs::read_to_string(plan.log_file()).unwrap();
        assert!(log.contains("stdout F started as hello"), "the log file is in the CRI format: {log}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_over_its_memory_limit_is_reported_oom_killed() {
    let short = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let app = workload(
        &short,
        json!({"environment": "test", "components": [{
            "name": "hog", "image": IMAGE,
            "command": ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
            "resources": {"limits": {"memory": "16Mi"}},
            "restartPolicy": "Never"
        }]}),
    );
    let selector = workload_selector(&app.key);
    support::with_runtime(vec![selector], move |runtime| async move {
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![]).await;
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        let name = format!("hog-1-{}", runtime.short);
        let plan = plan(&app, &runtime, &name);
        let (_, container) = run(&mut cri, &plan).await;
        let started = Instant::now();
        let status = loop {
            let status = cri.container_status(&container).await.unwrap();
            if status.state == api::ContainerState::ContainerExited as i32 {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "still running: {status:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status.reason, "OOMKilled", "{status:?}");
        assert_eq!(status.exit_code, 137);
    })
    .await;
}
