//! What only the kubernetes driver does, over the fake API server: server-side apply by the
//! `flotilla` field manager, pruning what a revision no longer has, deleting what is its own
//! and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use flotilla_core::kinds::ClusterSpec;
use flotilla_driver::ClusterDriver;
use flotilla_driver::cluster::ClusterConnector;
use flotilla_driver::conformance::workload;
use flotilla_driver::workload::WorkloadKey;
use flotilla_kube::KubeConnector;
use flotilla_kube::fake::FakeApiServer;
use serde_json::json;

async fn driver(fake: &FakeApiServer) -> std::sync::Arc<dyn ClusterDriver> {
    let spec: ClusterSpec =
        serde_json::from_value(json!({"type": "kubernetes", "apiServer": fake.url, "token": "t"})).unwrap();
    KubeConnector.connect("fake", &spec).await.unwrap()
}

fn names(fake: &FakeApiServer, resource: &str) -> Vec<String> {
    let mut names: Vec<String> =
        fake.objects(resource).iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

fn key(application: &str) -> WorkloadKey {
    WorkloadKey { project: "shop".into(), environment: "test".into(), application: application.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_applied_and_pruned_and_delete_touches_only_what_is_ours() {
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = driver(&fake).await;
    // Someone else's Deployment in the same namespace, and another application of ours.
    fake.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "theirs", "namespace": "shop-test", "labels": {"flotilla.io/application": "web"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"x": "y"}}, "template": {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": []}}}}));
    let other = json!({"environment": "test", "components": [{"name": "api", "image": "i"}]});
    driver.apply(&workload(&key("other"), 1, other)).await.unwrap();

    let spec = |with_worker: bool| {
        let mut components =
            vec![json!({"name": "web", "image": "registry.example/web:1", "ports": [{"name": "http", "port": 80}],
            "volumes": [{"name": "data", "mountPath": "/data", "persistent": {"size": "1Gi"}}]})];
        if with_worker {
            components.push(json!({"name": "worker", "image": "registry.example/worker:1", "replicas": 2}));
        }
        json!({"environment": "test", "components": components})
    };
    driver.apply(&workload(&key("web"), 1, spec(true))).await.unwrap();
    assert_eq!(names(&fake, "deployments"), ["other-api", "theirs", "web-web", "web-worker"]);
    assert_eq!(names(&fake, "services"), ["web-web"]);
    assert_eq!(names(&fake, "namespaces"), ["shop-test"]);
    let deployment = fake.objects("deployments").into_iter().find(|d| d["metadata"]["name"] == "web-worker").unwrap();
    assert_eq!(deployment["metadata"]["managedFields"][0]["manager"], "flotilla");
    assert_eq!(deployment["spec"]["replicas"], 2);

    // Revision 2 has no worker: its Deployment and PDB are pruned; the claim stays.
    driver.apply(&workload(&key("web"), 2, spec(false))).await.unwrap();
    assert_eq!(names(&fake, "deployments"), ["other-api", "theirs", "web-web"]);
    assert!(names(&fake, "poddisruptionbudgets").is_empty());
    assert_eq!(names(&fake, "persistentvolumeclaims"), ["web-web-data"]);
    let web = fake.objects("deployments").into_iter().find(|d| d["metadata"]["name"] == "web-web").unwrap();
    assert_eq!(web["metadata"]["labels"]["flotilla.io/revision"], "2");

    // Delete keeping volumes, then without: only what carries all of web's labels goes.
    driver.delete(&key("web"), true).await.unwrap();
    assert_eq!(names(&fake, "deployments"), ["other-api", "theirs"]);
    assert_eq!(names(&fake, "persistentvolumeclaims"), ["web-web-data"], "kept with keep_volumes");
    driver.delete(&key("web"), false).await.unwrap();
    assert!(names(&fake, "persistentvolumeclaims").is_empty());
    assert_eq!(names(&fake, "deployments"), ["other-api", "theirs"], "nothing else was touched");
    // The driver's workloads come from its watch-fed caches: they follow within moments.
    let started = std::time::Instant::now();
    while driver.workloads().await.unwrap() != [key("other")] {
        assert!(started.elapsed().as_secs() < 10, "workloads: {:?}", driver.workloads().await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A driver whose drift checks run every 200 ms.
async fn quick_driver(fake: &FakeApiServer) -> flotilla_kube::driver::KubeDriver {
    let spec: ClusterSpec =
        serde_json::from_value(json!({"type": "kubernetes", "apiServer": fake.url, "token": "t"})).unwrap();
    let client = flotilla_kube::connect::client(&spec, false).await.unwrap();
    let streaming = flotilla_kube::connect::client(&spec, true).await.unwrap();
    flotilla_kube::driver::KubeDriver::with_drift_interval(client, streaming, std::time::Duration::from_millis(200))
}

async fn replicas_of(fake: &FakeApiServer, name: &str) -> i64 {
    let deployment = fake.objects("deployments").into_iter().find(|d| d["metadata"]["name"] == name).unwrap();
    deployment["spec"]["replicas"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_and_corrected_only_when_the_application_asks() {
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = quick_driver(&fake).await;
    let spec = |self_heal: bool| {
        json!({"environment": "test", "selfHeal": self_heal,
            "components": [{"name": "web", "image": "registry.example/web:1", "replicas": 2}]})
    };
    driver.apply(&workload(&key("web"), 1, spec(false))).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(driver.status(&key("web")).await.unwrap().warnings.is_empty(), "no drift right after applying");
    // Checks that find no drift compare with the watched copies: no request per object.
    let kinds = ["namespaces", "networkpolicies", "deployments", "poddisruptionbudgets"];
    let gets = || kinds.map(|k| fake.get_requests(k));
    let before = gets();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(gets(), before, "five drift checks read nothing from the server");

    // Someone scales it by hand: reported, left alone.
    fake.edit("deployments", "shop-test", "web-web", &json!({"spec": {"replicas": 5}}));
    let started = std::time::Instant::now();
    let status = loop {
        let status = driver.status(&key("web")).await.unwrap();
        if !status.warnings.is_empty() {
            break status;
        }
        assert!(started.elapsed().as_secs() < 10, "drift not reported: {status:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status.warnings, ["drift: Deployment web-web: spec.replicas is 5, applied 2"]);
    assert!(status.events.iter().any(|e| e.reason == "Drift"), "{:#?}", status.events);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(replicas_of(&fake, "web-web").await, 5, "not corrected without selfHeal");

    // With self-healing, it is put back, and a deleted object is made again.
    driver.apply(&workload(&key("web"), 2, spec(true))).await.unwrap();
    fake.edit("deployments", "shop-test", "web-web", &json!({"spec": {"replicas": 7}}));
    let started = std::time::Instant::now();
    while replicas_of(&fake, "web-web").await != 2 {
        assert!(started.elapsed().as_secs() < 10, "drift not corrected");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = driver.status(&key("web")).await.unwrap();
    assert!(
        status.events.iter().any(|e| e.reason == "DriftCorrected" && e.message.contains("spec.replicas is 7")),
        "{:#?}",
        status.events
    );
    assert!(status.warnings.is_empty(), "{:?}", status.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_come_from_watched_caches_not_from_requests() {
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = driver(&fake).await;
    let spec = json!({"environment": "test", "components": [{"name": "web", "image": "registry.example/web:1", "replicas": 3}]});
    driver.apply(&workload(&key("web"), 1, spec)).await.unwrap();
    flotilla_driver::conformance::wait_for(driver.as_ref(), &key("web"), 30, "rolled out", |s| {
        flotilla_driver::conformance::complete(s, 1) && s.instances.len() == 3
    })
    .await;
    let before = ["deployments", "statefulsets", "pods", "events"].map(|r| fake.list_requests(r));
    for _ in 0..50 {
        assert_eq!(driver.status(&key("web")).await.unwrap().instances.len(), 3);
    }
    let after = ["deployments", "statefulsets", "pods", "events"].map(|r| fake.list_requests(r));
    assert_eq!(before, after, "50 statuses listed nothing");
    // A change reaches the cache through the watch.
    fake.edit("deployments", "shop-test", "web-web", &json!({"spec": {"replicas": 1}}));
    flotilla_driver::conformance::wait_for(driver.as_ref(), &key("web"), 30, "scaled by someone else", |s| {
        s.instances.len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_over_the_websocket_protocol_with_the_instance_environment() {
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = driver(&fake).await;
    let spec: flotilla_core::kinds::ApplicationSpec = serde_json::from_value(
        json!({"environment": "test", "components": [{"name": "web", "image": "registry.example/web:1",
            "env": [{"name": "GREETING", "value": "one"}, {"name": "TOKEN", "fromSecret": {"secret": "s", "key": "k"}}]}]}),
    )
    .unwrap();
    let app =
        flotilla_driver::workload::Workload::resolve(key("web"), 1, &spec, &|_| Some("from-a-secret".into())).unwrap();
    driver.apply(&app).await.unwrap();
    flotilla_driver::conformance::wait_for(driver.as_ref(), &key("web"), 30, "running", |s| {
        flotilla_driver::conformance::complete(s, 1)
    })
    .await;
    let shell = |script: &str| vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    let output =
        driver.exec(&key("web"), "web", None, shell("echo $GREETING $TOKEN; echo err >&2; exit 3")).await.unwrap();
    assert_eq!(output.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "one from-a-secret");
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim(), "err");
    let fine = driver.exec(&key("web"), "web", None, shell("true")).await.unwrap();
    assert_eq!((fine.exit_code, fine.stdout.len()), (0, 0));
    let missing = driver.exec(&key("web"), "nothing", None, shell("true")).await;
    assert!(matches!(missing, Err(flotilla_driver::DriverError::NotFound(_))), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_per_instance_and_followed() {
    use futures::StreamExt;
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = driver(&fake).await;
    let spec = json!({"environment": "test", "components": [{"name": "web", "image": "registry.example/web:1", "replicas": 2}]});
    driver.apply(&workload(&key("web"), 1, spec)).await.unwrap();
    let status = flotilla_driver::conformance::wait_for(driver.as_ref(), &key("web"), 30, "running", |s| {
        flotilla_driver::conformance::complete(s, 1)
    })
    .await;
    let lines: Vec<_> = driver.logs(&key("web"), Default::default()).await.unwrap().collect().await;
    let lines: Vec<_> = lines.into_iter().map(Result::unwrap).collect();
    assert_eq!(lines.len(), 2, "one line from each instance: {lines:?}");
    assert!(lines.iter().all(|l| l.time_micros > 0 && l.text.contains("started")), "{lines:?}");
    let first = status.instances[0].name.clone();
    let query = flotilla_driver::LogQuery { instance: Some(first.clone()), follow: true, ..Default::default() };
    let mut stream = driver.logs(&key("web"), query).await.unwrap();
    for _ in 0..3 {
        let line =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(line.instance, first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_metrics_come_from_metrics_k8s_io_when_the_cluster_serves_it() {
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = driver(&fake).await;
    let spec = json!({"environment": "test", "components": [{"name": "web", "image": "registry.example/web:1", "replicas": 2}]});
    driver.apply(&workload(&key("web"), 1, spec)).await.unwrap();
    flotilla_driver::conformance::wait_for(driver.as_ref(), &key("web"), 30, "running", |s| {
        flotilla_driver::conformance::complete(s, 1)
    })
    .await;
    let unavailable = driver.metrics(&key("web")).await.unwrap_err();
    assert!(
        unavailable.to_string().contains("metrics.k8s.io") && unavailable.to_string().contains("unavailable"),
        "{unavailable}"
    );
    fake.serve_metrics();
    let metrics = driver.metrics(&key("web")).await.unwrap();
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    for m in &metrics {
        assert_eq!((m.cpu_nanocores, m.memory_bytes), (Some(2_500_000), 12 << 20), "{m:?}");
        assert_eq!((m.cpu_usage_nanos, m.network_rx_bytes), (None, None), "not reported, not made up: {m:?}");
        assert!(m.time_micros > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replaces_every_pod_rolling() {
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = driver(&fake).await;
    let spec = |restarted: Option<&str>| {
        let mut spec = json!({"environment": "test", "components": [{"name": "web", "image": "registry.example/web:1",
            "replicas": 2, "update": {"maxSurge": 1, "maxUnavailable": 0}}]});
        if let Some(time) = restarted {
            spec["restartedAt"] = json!(time);
        }
        spec
    };
    let names = |status: &flotilla_driver::status::WorkloadStatus| {
        status.instances.iter().map(|i| i.name.clone()).collect::<std::collections::BTreeSet<_>>()
    };
    driver.apply(&workload(&key("web"), 1, spec(None))).await.unwrap();
    let before = flotilla_driver::conformance::wait_for(driver.as_ref(), &key("web"), 30, "running", |s| {
        flotilla_driver::conformance::complete(s, 1) && s.instances.len() == 2
    })
    .await;
    driver.apply(&workload(&key("web"), 2, spec(Some("2026-12-06T10:00:00Z")))).await.unwrap();
    let after = flotilla_driver::conformance::wait_for(driver.as_ref(), &key("web"), 30, "restarted", |s| {
        flotilla_driver::conformance::complete(s, 2) && s.instances.len() == 2
    })
    .await;
    assert!(
        names(&before).is_disjoint(&names(&after)),
        "every pod replaced: {:?} then {:?}",
        names(&before),
        names(&after)
    );
    let deployment = fake.objects("deployments").into_iter().find(|d| d["metadata"]["name"] == "web-web").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["flotilla.io/restarted-at"],
        "2026-12-06T10:00:00Z"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environments_namespace_goes_with_its_last_application_only_when_it_is_ours_alone() {
    let fake = FakeApiServer::start("t", "v1.33.1").await;
    fake.add_node("node-1", "8", "32Gi");
    let driver = driver(&fake).await;
    let in_env = |environment: &str, application: &str| WorkloadKey {
        project: "shop".into(),
        environment: environment.into(),
        application: application.into(),
    };
    let spec = |environment: &str| {
        json!({"environment": environment, "components": [{"name": "api", "image": "i",
            "volumes": [{"name": "data", "mountPath": "/data", "persistent": {"size": "1Gi"}}]}]})
    };
    let namespaces = || names(&fake, "namespaces");

    // Two applications of one environment: the namespace stays while either has objects.
    driver.apply(&workload(&in_env("test", "a"), 1, spec("test"))).await.unwrap();
    driver.apply(&workload(&in_env("test", "b"), 1, spec("test"))).await.unwrap();
    driver.delete(&in_env("test", "a"), false).await.unwrap();
    assert_eq!(namespaces(), ["shop-test"], "b still runs there");
    driver.delete(&in_env("test", "b"), true).await.unwrap();
    assert_eq!(namespaces(), ["shop-test"], "b's claim was kept");
    driver.delete(&in_env("test", "b"), false).await.unwrap();
    assert!(namespaces().is_empty(), "the last application took the namespace with it");
    assert!(names(&fake, "networkpolicies").is_empty(), "and its isolation policy");

    // Someone else's ConfigMap in it keeps the namespace, and the ConfigMap.
    driver.apply(&workload(&in_env("stage", "a"), 1, spec("stage"))).await.unwrap();
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "notes", "namespace": "shop-stage"}, "data": {"k": "v"}}));
    driver.delete(&in_env("stage", "a"), false).await.unwrap();
    assert_eq!(namespaces(), ["shop-stage"]);
    assert_eq!(names(&fake, "configmaps"), ["notes"]);

    // A namespace someone created before Flotilla used it is theirs: it stays.
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop-dev",
        "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1"}]}}));
    driver.apply(&workload(&in_env("dev", "a"), 1, spec("dev"))).await.unwrap();
    driver.delete(&in_env("dev", "a"), false).await.unwrap();
    assert_eq!(namespaces(), ["shop-dev", "shop-stage"]);
}
