//! The conformance suite of [`ClusterDriver`]: what every driver must do, the same way, on a
//! real cluster (the embedded runtime) or a faithful fake of one (Kubernetes' API server).
//! Each scenario takes a [`Subject`] from the driver's test harness and panics when the
//! driver falls short; the harness runs each in a test of its own and cleans up after it.
//!
//! Scenarios only use the trait: what they check is what the control plane relies on.

use std::time::{Duration, Instant};

use flotilla_core::kinds::ApplicationSpec;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::status::{ComponentStatus, EventType, RolloutPhase, WorkloadStatus};
use crate::workload::{Workload, WorkloadKey};
use crate::{ClusterDriver, DriverError, LogQuery, LogStream};

/// What a scenario runs against.
pub struct Subject<'a> {
    pub driver: &'a dyn ClusterDriver,
    /// An image the cluster can run, with a static busybox at `/bin/busybox`, its applets
    /// `/bin/sh`, `/bin/httpd`, `/bin/cat`, `/bin/sleep` reachable, and `/www/index.html`.
    pub image: String,
    /// The scenario's own workload (environment `test`); the harness removes what is left.
    pub key: WorkloadKey,
}

/// A resolved workload of `spec` (an ApplicationSpec as JSON) at `revision`.
pub fn workload(key: &WorkloadKey, revision: u64, spec: Value) -> Workload {
    let spec: ApplicationSpec = serde_json::from_value(spec).expect("a valid application spec");
    Workload::resolve(key.clone(), revision, &spec, &|_| None).expect("a resolvable application spec")
}

/// Polls the driver's status until `done` holds, for at most `seconds`.
pub async fn wait_for(
    driver: &dyn ClusterDriver,
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

/// The status of component `name`.
pub fn component<'a>(status: &'a WorkloadStatus, name: &str) -> &'a ComponentStatus {
    status.components.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no component {name}: {status:#?}"))
}

/// Revision `revision` runs everywhere, every instance ready.
pub fn complete(status: &WorkloadStatus, revision: u64) -> bool {
    status.revision == revision
        && status.components.iter().all(|c| c.phase == RolloutPhase::Complete)
        && status.instances.iter().all(|i| i.revision == revision && i.is_ready())
}

/// A web component: busybox httpd on 8080, ready when `readiness_port` answers.
pub fn web(image: &str, replicas: u32, greeting: &str, readiness_port: u16, deadline: u32) -> Value {
    json!({
        "name": "web", "image": image, "replicas": replicas,
        "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
        "env": [{"name": "GREETING", "value": greeting}],
        "ports": [{"name": "http", "port": 8080}],
        "probes": {"readiness": {"http": {"port": readiness_port, "path": "/"}, "periodSeconds": 1}},
        "update": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": deadline}
    })
}

fn shell(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

async fn exec_stdout(subject: &Subject<'_>, component: &str, script: &str) -> String {
    let output = subject.driver.exec(&subject.key, component, None, shell(script)).await.expect("exec");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Replicas come up ready with addresses of their own; a container that exits and one that
/// fails its liveness probe are restarted; a new revision replaces every instance.
pub async fn runs_restarts_and_rolls_out(subject: Subject<'_>) {
    let (driver, key, image) = (subject.driver, &subject.key, subject.image.as_str());
    let crasher = json!({"name": "crasher", "image": image, "command": ["/bin/sh", "-c",
        "mkdir -p /tmp; while [ ! -f /tmp/crash ]; do sleep 0.2; done; exit 3"]});
    let sick = json!({"name": "sick", "image": image,
        "command": ["/bin/sh", "-c", "mkdir -p /tmp; touch /tmp/healthy; sleep 3; rm /tmp/healthy; exec sleep 3600"],
        "probes": {"liveness": {"exec": {"command": ["/bin/cat", "/tmp/healthy"]}, "periodSeconds": 1,
            "failureThreshold": 1, "initialDelaySeconds": 1}}});
    let spec = |greeting: &str| json!({"environment": "test", "components": [web(image, 3, greeting, 8080, 600), crasher.clone(), sick.clone()]});
    driver.apply(&workload(key, 1, spec("one"))).await.expect("apply");
    let status = wait_for(driver, key, 60, "3 web instances ready", |s| {
        component(s, "web").ready == 3 && component(s, "web").phase == RolloutPhase::Complete
    })
    .await;
    let mut ips: Vec<String> =
        status.instances.iter().filter(|i| i.component == "web").filter_map(|i| i.ip.clone()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "each instance has an address of its own: {status:#?}");
    assert_eq!(exec_stdout(&subject, "web", "echo $GREETING").await, "one", "the environment is set");

    // The crasher's process exits: its container is started again.
    exec_stdout(&subject, "crasher", "touch /tmp/crash").await;
    wait_for(driver, key, 30, "the crashed container restarted and running", |s| {
        s.instances.iter().any(|i| i.component == "crasher" && i.restarts >= 1 && i.is_ready())
    })
    .await;

    // The sick component stops passing its liveness probe after 3 s: it is restarted.
    let status = wait_for(driver, key, 30, "the sick instance restarted", |s| {
        s.instances.iter().any(|i| i.component == "sick" && i.restarts >= 1)
    })
    .await;
    assert!(
        status.events.iter().any(|e| e.kind == EventType::Warning && e.component.as_deref() == Some("sick")),
        "a warning says why: {:#?}",
        status.events
    );

    // Revision 2 replaces every web instance.
    driver.apply(&workload(key, 2, spec("two"))).await.expect("apply");
    let status = wait_for(driver, key, 60, "revision 2 of web complete", |s| {
        s.revision == 2 && component(s, "web").phase == RolloutPhase::Complete
    })
    .await;
    let web: Vec<_> = status.instances.iter().filter(|i| i.component == "web").collect();
    assert_eq!(web.len(), 3, "{status:#?}");
    assert!(web.iter().all(|i| i.revision == 2 && i.is_ready()), "{status:#?}");
    assert_eq!(exec_stdout(&subject, "web", "echo $GREETING").await, "two");
    driver.delete(key, false).await.expect("delete");
}

/// A revision that never becomes ready is reported past its deadline while the instances of
/// the previous one keep serving (maxUnavailable 0).
pub async fn never_ready_revision_misses_its_deadline(subject: Subject<'_>) {
    let (driver, key, image) = (subject.driver, &subject.key, subject.image.as_str());
    let spec =
        |port: u16, deadline: u32| json!({"environment": "test", "components": [web(image, 2, "x", port, deadline)]});
    driver.apply(&workload(key, 1, spec(8080, 600))).await.expect("apply");
    wait_for(driver, key, 60, "revision 1 complete", |s| complete(s, 1)).await;
    // Revision 2's readiness probe asks a port nothing listens on.
    driver.apply(&workload(key, 2, spec(9999, 3))).await.expect("apply");
    let status = wait_for(driver, key, 60, "revision 2 past its deadline", |s| {
        s.revision == 2 && component(s, "web").phase == RolloutPhase::DeadlineExceeded
    })
    .await;
    let serving = status.instances.iter().filter(|i| i.revision == 1 && i.is_ready()).count();
    assert_eq!(serving, 2, "both old instances still serve: {status:#?}");
    assert!(status.events.iter().any(|e| e.kind == EventType::Warning), "{:#?}", status.events);
    driver.delete(key, false).await.expect("delete");
}

/// Scaling keeps the running instances; going back to the spec of instances that still run
/// (an undo of a stuck rollout) keeps them too, and removes the new revision's.
pub async fn scaling_and_undo_keep_matching_instances(subject: Subject<'_>) {
    let (driver, key, image) = (subject.driver, &subject.key, subject.image.as_str());
    let names = |status: &WorkloadStatus| {
        let mut names: Vec<String> = status.instances.iter().map(|i| i.name.clone()).collect();
        names.sort();
        names
    };
    let spec =
        |replicas: u32, port: u16| json!({"environment": "test", "components": [web(image, replicas, "x", port, 600)]});
    driver.apply(&workload(key, 1, spec(2, 8080))).await.expect("apply");
    let first = names(&wait_for(driver, key, 60, "revision 1 complete", |s| complete(s, 1)).await);
    driver.apply(&workload(key, 2, spec(3, 8080))).await.expect("apply");
    let scaled = wait_for(driver, key, 60, "scaled to 3", |s| complete(s, 2) && s.instances.len() == 3).await;
    let scaled = names(&scaled);
    assert!(first.iter().all(|n| scaled.contains(n)), "scaling kept {first:?}: {scaled:?}");
    // Revision 3 never becomes ready (maxUnavailable 0 keeps revision 2's instances)...
    driver.apply(&workload(key, 3, spec(3, 9999))).await.expect("apply");
    wait_for(driver, key, 60, "revision 3 started", |s| s.instances.iter().any(|i| i.revision == 3)).await;
    // ...and is undone: revision 4 has revision 2's spec, which those instances run.
    driver.apply(&workload(key, 4, spec(3, 8080))).await.expect("apply");
    let undone = wait_for(driver, key, 60, "revision 4 complete", |s| complete(s, 4) && s.instances.len() == 3).await;
    assert_eq!(names(&undone), scaled, "the instances of the same spec were kept: {undone:#?}");
    driver.delete(key, false).await.expect("delete");
}

/// Logs (tail, both streams, follow), exec (output and exit code) and metrics.
pub async fn logs_exec_and_metrics(subject: Subject<'_>) {
    let (driver, key, image) = (subject.driver, &subject.key, subject.image.as_str());
    let talker = json!({"name": "talker", "image": image, "replicas": 2, "command": ["/bin/sh", "-c",
        "i=0; while true; do echo line $i; echo warn $i >&2; i=$((i+1)); sleep 0.2; done"]});
    driver.apply(&workload(key, 1, json!({"environment": "test", "components": [talker]}))).await.expect("apply");
    let status = wait_for(driver, key, 60, "running", |s| complete(s, 1)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let lines: Vec<_> =
        driver.logs(key, LogQuery { tail: Some(2), ..Default::default() }).await.expect("logs").collect().await;
    let lines: Vec<_> = lines.into_iter().map(|l| l.expect("a line")).collect();
    assert_eq!(lines.len(), 4, "the last 2 lines of each of 2 instances: {lines:?}");
    // Both streams are there, each line labelled by its stream where the driver can tell
    // them apart (Kubernetes' log API merges them: `Combined`).
    assert!(lines.iter().any(|l| l.text.starts_with("warn ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.text.starts_with("line ")), "{lines:?}");
    assert!(
        lines.iter().all(|l| match l.stream {
            LogStream::Stdout => l.text.starts_with("line "),
            LogStream::Stderr => l.text.starts_with("warn "),
            LogStream::Combined => true,
        }),
        "{lines:?}"
    );
    assert!(lines.windows(2).all(|w| w[0].time_micros <= w[1].time_micros), "merged by time: {lines:?}");
    let first = &status.instances[0].name;
    let query = LogQuery { instance: Some(first.clone()), tail: Some(0), follow: true, ..Default::default() };
    let mut stream = driver.logs(key, query).await.expect("logs");
    for _ in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a followed line within 10 s")
            .expect("the stream goes on")
            .expect("a line");
        assert_eq!(&line.instance, first);
    }
    drop(stream);

    let output = driver.exec(key, "talker", None, shell("echo out; echo err >&2; exit 3")).await.expect("exec");
    assert_eq!(output.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "out");
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim(), "err");
    let missing = driver.exec(key, "nothing", None, shell("true")).await;
    assert!(matches!(missing, Err(DriverError::NotFound(_))), "{missing:?}");

    let metrics = driver.metrics(key).await.expect("metrics");
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    assert!(
        metrics.iter().all(|m| m.cpu_usage_nanos.or(m.cpu_nanocores).is_some_and(|c| c > 0) && m.memory_bytes > 0),
        "{metrics:?}"
    );
    driver.delete(key, false).await.expect("delete");
}

/// An image that cannot be pulled is reported, naming it, and nothing runs.
pub async fn an_unpullable_image_is_reported(subject: Subject<'_>) {
    let (driver, key) = (subject.driver, &subject.key);
    // Nothing listens on loopback port 9: the registry is unreachable.
    let missing = "127.0.0.1:9/conformance/web:1";
    let web = json!({"name": "web", "image": missing, "command": ["/bin/sleep", "3600"]});
    driver.apply(&workload(key, 1, json!({"environment": "test", "components": [web]}))).await.expect("apply");
    let status = wait_for(driver, key, 60, "the pull error reported", |s| {
        component(s, "web").message.as_deref().is_some_and(|m| m.contains(missing))
    })
    .await;
    assert!(status.instances.iter().all(|i| !i.is_ready()), "{status:#?}");
    assert_eq!(component(&status, "web").phase, RolloutPhase::Progressing);
    driver.delete(key, false).await.expect("delete");
}

/// Delete removes the workload: no status, not among the cluster's workloads.
pub async fn delete_removes_everything(subject: Subject<'_>) {
    let (driver, key, image) = (subject.driver, &subject.key, subject.image.as_str());
    let spec = json!({"environment": "test", "components": [web(image, 2, "x", 8080, 600)]});
    driver.apply(&workload(key, 1, spec)).await.expect("apply");
    wait_for(driver, key, 60, "running", |s| complete(s, 1)).await;
    assert!(driver.workloads().await.expect("workloads").contains(key));
    driver.delete(key, false).await.expect("delete");
    assert!(matches!(driver.status(key).await, Err(DriverError::NotFound(_))));
    let started = Instant::now();
    while driver.workloads().await.expect("workloads").contains(key) {
        assert!(started.elapsed() < Duration::from_secs(30), "the workload is still listed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    driver.delete(key, false).await.expect("deleting twice is not an error");
}

/// A probe reports the cluster's version, at least one ready node with room, a default
/// storage class, and counts what a workload's instances request.
pub async fn probe_reports_the_cluster(subject: Subject<'_>) {
    let (driver, key, image) = (subject.driver, &subject.key, subject.image.as_str());
    let before = driver.probe().await.expect("probe");
    assert!(!before.version.is_empty(), "{before:?}");
    let capacity = before.capacity();
    assert!(capacity.ready_nodes >= 1, "{before:?}");
    assert!(capacity.allocatable_cpu_millis > 0 && capacity.allocatable_memory_bytes > 0, "{before:?}");
    assert!(before.storage_classes.iter().any(|c| c.default), "a default storage class: {before:?}");
    let mut sleeper = json!({"name": "sleeper", "image": image, "replicas": 2, "command": ["/bin/sleep", "3600"],
        "resources": {"requests": {"cpu": "150m", "memory": "48Mi"}}});
    sleeper["resources"]["limits"] = json!({"cpu": "1", "memory": "64Mi"});
    driver.apply(&workload(key, 1, json!({"environment": "test", "components": [sleeper]}))).await.expect("apply");
    wait_for(driver, key, 60, "running", |s| complete(s, 1)).await;
    let after = driver.probe().await.expect("probe").capacity();
    assert_eq!(after.requested_cpu_millis, capacity.requested_cpu_millis + 300, "{after:?}");
    assert_eq!(after.requested_memory_bytes, capacity.requested_memory_bytes + 96 * 1024 * 1024, "{after:?}");
    driver.delete(key, false).await.expect("delete");
}
