//! End-to-end tests of the `flotilla` binary: the server as a real process, the CLI as a
//! user runs it, and a kill -9 in the middle of a burst of writes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_client::Client;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const PASSWORD: &str = "end to end admin password";

/// A `flotilla server` process; killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    base: String,
    /// What the server logged (its stderr), also passed on to the test's stderr.
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("FLOTILLA_ADMIN_PASSWORD", PASSWORD)
            .env("FLOTILLA_LOG__LEVEL", "warn")
            // These tests are about the control plane; tests/runtime.rs covers the runtime.
            .env("FLOTILLA_RUNTIME__ENABLED", "false")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flotilla server starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("{line}");
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("server printed its address before exiting").unwrap();
            if let Some(address) = line.strip_prefix("flotilla listening on ") {
                break address.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base, log }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin(base: &str) -> Client {
    let anonymous = Client::new(base, None).unwrap();
    let login = anonymous.login_token("admin", PASSWORD, "e2e", None).await.unwrap();
    anonymous.with_token(Some(login.token))
}

fn workspace(name: &str) -> Value {
    json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": name}, "spec": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_no_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path());
    let client = admin(&server.base).await;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for writer in 0..16 {
        let client = client.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("burst-{writer}-{i}");
                match client.create("workspaces", None, &workspace(&name)).await {
                    Ok(_) => {
                        acknowledged.lock().unwrap().insert(name);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the burst run, then kill the server without warning.
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 300 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 300, "the burst wrote too little to mean anything: {}", acknowledged.len());

    let server = Server::start(data.path());
    let client = admin(&server.base).await;
    let mut stored = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![("limit", "1000".to_string()), ("q", "burst-".to_string())];
        if let Some(token) = &token {
            params.push(("continue", token.clone()));
        }
        let page = client.list("workspaces", None, &params).await.unwrap();
        stored.extend(
            page["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
        );
        token = page["metadata"]["continue"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged writes were lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    // Every stored write has its audit record, and the chain survived the crash.
    let report = client.audit_verify().await.unwrap();
    assert_eq!(report["problems"], json!([]), "{report}");
    let created = client
        .audit_query(&[
            ("action", "create".into()),
            ("kind", "Workspace".into()),
            ("outcome", "success".into()),
            ("limit", "10000".into()),
        ])
        .await
        .unwrap();
    let audited: BTreeSet<String> =
        created["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(audited, stored, "each stored object has exactly its create record");
}

fn cli(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("FLOTILLA_CONFIG", config)
        .env_remove("FLOTILLA_SERVER")
        .env_remove("FLOTILLA_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_apply_get_and_audit() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.yaml");
    let server = Server::start(data.path());

    let (code, _, stderr) = cli(&config, &["get", "workspaces"], None);
    assert_ne!(code, 0);
    assert!(stderr.contains("flotilla login"), "not logged in is explained: {stderr}");

    let (code, stdout, stderr) =
        cli(&config, &["login", &server.base, "-u", "admin", "--password-stdin"], Some(&format!("{PASSWORD}\n")));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("admin"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
            0o600,
            "the token file is private"
        );
    }

    let manifest = home.path().join("shop.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: flotilla.io/v1\nkind: Workspace\nmetadata: {name: retail}\nspec: {displayName: Retail}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Project\nmetadata: {name: shop}\nspec: {workspace: retail}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Environment\nmetadata: {name: prod, project: shop}\nspec: {tier: prod, clusters: [local]}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = cli(&config, &["apply", "-f", manifest.to_str().unwrap()], None);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("created"), "{stdout}");
    let (code, stdout, _) = cli(&config, &["apply", "-f", manifest.to_str().unwrap()], None);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches("unchanged").count(), 3, "{stdout}");

    let (code, stdout, stderr) = cli(&config, &["get", "environments", "-p", "shop", "-o", "json"], None);
    assert_eq!(code, 0, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list["items"][0]["spec"]["tier"], "prod");
    let (code, stdout, _) = cli(&config, &["get", "env", "-p", "shop"], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("NAME") && stdout.contains("prod"), "{stdout}");

    // A bad document: the CLI names the field and the line, and exits non-zero.
    let bad = home.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: flotilla.io/v1\nkind: Environment\nmetadata: {name: qa, project: shop}\nspec: {tier: qa, clusters: [local]}\n").unwrap();
    let (code, stdout, stderr) = cli(&config, &["apply", "-f", bad.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(format!("{stdout}{stderr}").contains("spec.tier"), "{stdout}{stderr}");

    let (code, stdout, stderr) = cli(&config, &["audit", "verify"], None);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("intact"), "{stdout}");
    let (code, stdout, _) = cli(&config, &["audit", "query", "--kind", "Environment", "-o", "json"], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("\"sourceIp\": \"127.0.0.1\""), "{stdout}");

    // Tamper with one record in the database; both the API and the offline check catch it.
    drop(server);
    let connection = rusqlite::Connection::open(data.path().join("flotilla.db")).unwrap();
    connection.execute("UPDATE audit_records SET outcome = 'denied' WHERE seq = 3", []).unwrap();
    drop(connection);
    let (code, stdout, stderr) = cli(&config, &["audit", "verify", "--data-dir", data.path().to_str().unwrap()], None);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(format!("{stdout}{stderr}").contains("seq 3"), "{stdout}{stderr}");
    let server = Server::start(data.path());
    let (code, stdout, stderr) = cli(&config, &["--server", &server.base, "audit", "verify"], None);
    assert_ne!(code, 0, "{stdout}{stderr}");
}

#[test]
fn bad_configuration_names_the_key_and_exits_78() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["server", "--data-dir"])
        .arg(data.path())
        .env("FLOTILLA_LOGIN__MAX_FAILURES", "many")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("max_failures"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_stores_and_fetches_artifacts_and_shows_registry_versions() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.yaml");
    let server = Server::start(data.path());
    let (code, stdout, stderr) =
        cli(&config, &["login", &server.base, "-u", "admin", "--password-stdin"], Some(&format!("{PASSWORD}\n")));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let admin = admin(&server.base).await;
    admin.create("workspaces", None, &workspace("retail")).await.unwrap();
    let project = json!({"apiVersion": "flotilla.io/v1", "kind": "Project", "metadata": {"name": "shop"},
        "spec": {"workspace": "retail", "registry": {"immutableTags": [{"repositories": ["releases/*"], "tags": ["1.*"]}]}}});
    admin.create("projects", None, &project).await.unwrap();

    // A 3 MB file stored as a versioned artifact and fetched back, checksum verified.
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = home.path().join("app.jar");
    std::fs::write(&file, &content).unwrap();
    let push = |version: &str| {
        cli(
            &config,
            &[
                "artifact",
                "push",
                file.to_str().unwrap(),
                "-p",
                "shop",
                "--repository",
                "releases/app",
                "--as",
                version,
                "--type",
                "application/java-archive",
            ],
            None,
        )
    };
    let (code, stdout, stderr) = push("1.0");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("3000000 bytes"), "{stdout}");
    let (code, _, stderr) = push("1.0");
    assert_ne!(code, 0, "version 1.0 is immutable");
    assert!(stderr.contains("immutable"), "{stderr}");

    let fetched = home.path().join("fetched");
    std::fs::create_dir_all(&fetched).unwrap();
    let target = fetched.join("copy.jar");
    let (code, stdout, stderr) = cli(
        &config,
        &[
            "artifact",
            "pull",
            "-p",
            "shop",
            "--repository",
            "releases/app",
            "--as",
            "1.0",
            "-f",
            target.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("verified"), "{stdout}");
    assert_eq!(std::fs::read(&target).unwrap(), content, "byte for byte");

    // The versions view shows the artifact, its type and who stored it.
    let (code, stdout, stderr) =
        cli(&config, &["registry", "versions", "releases/app", "-p", "shop", "-o", "json"], None);
    assert_eq!(code, 0, "{stderr}");
    let versions: Value = serde_json::from_str(&stdout).unwrap();
    let version = &versions["items"][0];
    assert_eq!(version["artifactType"], "application/java-archive");
    assert_eq!(version["tags"], json!(["1.0"]));
    assert_eq!(version["pushedBy"], "admin");
    let (code, stdout, _) = cli(&config, &["registry", "repos", "-p", "shop"], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("shop/releases/app"), "{stdout}");

    // The downloads are audited; a user with no role in the project gets nothing.
    let records = admin.audit_query(&[("action", "artifact.download".into())]).await.unwrap();
    assert_eq!(records["items"].as_array().unwrap().len(), 1, "{records}");
    admin
        .create(
            "users",
            None,
            &json!({"apiVersion": "flotilla.io/v1", "kind": "User", "metadata": {"name": "otto"}, "spec": {}}),
        )
        .await
        .unwrap();
    admin.set_password("otto", None, "otto password 123").await.unwrap();
    let otto = Client::new(&server.base, None).unwrap();
    let login = otto.login_token("otto", "otto password 123", "e2e", None).await.unwrap();
    let otto = otto.with_token(Some(login.token));
    assert_eq!(otto.download_artifact("shop", "releases/app", "1.0").await.unwrap_err().status(), Some(403));
}

/// Polls the Cluster `name` until its status phase is `phase`; its status then.
async fn cluster_status(client: &Client, name: &str, phase: &str) -> Value {
    let started = Instant::now();
    loop {
        let cluster = client.get("clusters", None, name).await.unwrap();
        if cluster.status["phase"] == phase {
            return cluster.status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{name} not {phase} within 30 s: {}", cluster.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_kubernetes_clusters_report_precise_health_and_never_show_credentials() {
    use flotilla_kube::fake::FakeApiServer;
    const TOKEN: &str = "e2e-cluster-token-5f0c9a";
    const REVOKED: &str = "e2e-revoked-token-77d1e4";
    let fake = FakeApiServer::start(TOKEN, "v1.33.2").await;
    fake.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}}));
    fake.insert(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "csi.example",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}));
    // A port that was just free: nothing listens on it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &[("FLOTILLA_CLUSTERS__PROBE_INTERVAL_SECS", "1")]);
    let client = admin(&server.base).await;
    let cluster = |name: &str, spec: Value| json!({"apiVersion": "flotilla.io/v1", "kind": "Cluster", "metadata": {"name": name}, "spec": spec});
    let clusters = [
        cluster("east", json!({"type": "kubernetes", "apiServer": fake.url, "token": TOKEN})),
        cluster("west", json!({"type": "kubernetes", "kubeconfig": fake.kubeconfig(TOKEN), "context": "fake"})),
        cluster("revoked", json!({"type": "kubernetes", "apiServer": fake.url, "token": REVOKED})),
        cluster("gone", json!({"type": "kubernetes", "apiServer": format!("http://{closed}"), "token": TOKEN})),
    ];
    let mut answers = Vec::new();
    for document in &clusters {
        answers.push(client.create("clusters", None, document).await.unwrap().spec);
    }
    // An unknown context is refused at the field.
    let wrong =
        cluster("north", json!({"type": "kubernetes", "kubeconfig": fake.kubeconfig(TOKEN), "context": "prod"}));
    let refused = client.create("clusters", None, &wrong).await.unwrap_err().to_string();
    assert!(refused.contains("spec.context") && refused.contains("\"prod\""), "{refused}");
    assert!(!refused.contains(TOKEN), "{refused}");

    let east = cluster_status(&client, "east", "Ready").await;
    assert_eq!(east["version"], "v1.33.2");
    assert_eq!(east["capacity"]["readyNodes"], 1);
    assert_eq!(east["capacity"]["allocatableCpuMillis"], 8000);
    assert_eq!(east["storageClasses"][0]["name"], "standard");
    assert_eq!(east["nodes"][0]["name"], "node-1");
    cluster_status(&client, "west", "Ready").await;
    let revoked = cluster_status(&client, "revoked", "Unauthorized").await;
    assert!(revoked["message"].as_str().unwrap().contains("401"), "{revoked}");
    let gone = cluster_status(&client, "gone", "Unreachable").await;
    assert!(gone["since"].is_string() && gone["message"].as_str().unwrap().contains("connect"), "{gone}");
    assert!(gone.get("version").is_none(), "nothing is known of a cluster never reached: {gone}");

    // The list shows each cluster's phase and capacity, not its nodes.
    let list = client.list("clusters", None, &[]).await.unwrap();
    let listed_east = list["items"].as_array().unwrap().iter().find(|c| c["metadata"]["name"] == "east").unwrap();
    assert_eq!(listed_east["status"]["phase"], "Ready");
    assert!(listed_east["status"].get("nodes").is_none(), "{listed_east}");

    // `flotilla render` prints what an application becomes there, as YAML manifests.
    let setup = "apiVersion: flotilla.io/v1\nkind: Workspace\nmetadata: {name: w}\nspec: {}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Project\nmetadata: {name: shop}\nspec: {workspace: w}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Environment\nmetadata: {name: prod, project: shop}\nspec: {tier: prod, clusters: [east]}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Application\nmetadata: {name: web, project: shop}\n\
         spec: {environment: prod, components: [{name: api, image: registry.local/api:1, replicas: 3, ports: [{name: http, port: 80}]}]}\n";
    assert_eq!(client.apply(setup.to_string()).await.unwrap()["failed"], 0);
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.yaml");
    let login =
        cli(&config, &["login", &server.base, "-u", "admin", "--password-stdin"], Some(&format!("{PASSWORD}\n")));
    assert_eq!(login.0, 0, "{login:?}");
    let (code, stdout, stderr) = cli(&config, &["render", "web", "-p", "shop"], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("# shop/web revision 1 for cluster east (namespace shop-prod)"), "{stdout}");
    for line in ["kind: Namespace", "kind: Deployment", "kind: Service", "kind: PodDisruptionBudget", "replicas: 3"] {
        assert!(stdout.lines().any(|l| l.trim() == line), "{line} in {stdout}");
    }

    // The application controller deploys it there through the kubernetes driver; its status
    // comes back from the cluster's objects.
    let started = Instant::now();
    let status = loop {
        let app = client.get("applications", Some("shop"), "web").await.unwrap();
        if app.status["components"][0]["phase"] == "complete" {
            break app.status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "web not rolled out on east: {}", app.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["cluster"], "east");
    assert_eq!(status["components"][0]["ready"], 3, "{status}");
    assert_eq!(status["instances"].as_array().unwrap().len(), 3, "{status}");
    let deployments = fake.objects("deployments");
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["metadata"]["namespace"], "shop-prod");
    let managers = &deployments[0]["metadata"]["managedFields"];
    assert_eq!(managers[0]["manager"], "flotilla", "server-side applied by the flotilla field manager: {managers}");
    assert_eq!(managers[0]["operation"], "Apply");

    // A revision that never becomes ready misses its progress deadline on Kubernetes too,
    // and the controller rolls back to the last good one, as on the embedded runtime.
    let mut app = serde_json::to_value(client.get("applications", Some("shop"), "web").await.unwrap()).unwrap();
    app.as_object_mut().unwrap().remove("status");
    app["spec"]["components"][0]["probes"] = json!({"readiness": {"http": {"port": 9999, "path": "/"}}});
    app["spec"]["components"][0]["update"] = json!({"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 2});
    client.update("applications", Some("shop"), "web", &app).await.unwrap();
    let started = Instant::now();
    let rolled_back = loop {
        let app = client.get("applications", Some("shop"), "web").await.unwrap();
        if app.metadata.generation == Some(3) && app.status["components"][0]["phase"] == "complete" {
            break app;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not rolled back: {:?} {}",
            app.metadata.generation,
            app.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        rolled_back.spec["components"][0]["probes"],
        json!({}),
        "revision 1's spec is back: {:?}",
        rolled_back.spec
    );
    let records = client.audit_query(&[("action", "rollback".to_string())]).await.unwrap();
    assert!(
        records["items"][0]["message"].as_str().unwrap().contains("revision 2 missed its progress deadline"),
        "{records}"
    );

    // `flotilla rollout restart` replaces every instance, rolling, as revision 4.
    let before: Vec<Value> = rolled_back.status["instances"].as_array().cloned().unwrap_or_default();
    let (code, stdout, stderr) = cli(&config, &["rollout", "restart", "web", "-p", "shop"], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("revision 4"), "{stdout}");
    let started = Instant::now();
    loop {
        let app = client.get("applications", Some("shop"), "web").await.unwrap();
        let names: Vec<&Value> = app.status["instances"].as_array().into_iter().flatten().map(|i| &i["name"]).collect();
        if app.status["revision"] == 4
            && app.status["components"][0]["phase"] == "complete"
            && names.len() == 3
            && before.iter().all(|b| !names.contains(&&b["name"]))
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not restarted: {}", app.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The API server goes away: the cluster turns Unreachable, and stays so, never Ready.
    drop(fake);
    let down = cluster_status(&client, "east", "Unreachable").await;
    assert_eq!(down["version"], "v1.33.2", "what was last seen is kept: {down}");
    assert!(down["lastReady"].is_string(), "{down}");

    // Credentials never leave: not in answers, not in audit records, not in the log.
    let audit = client.audit_query(&[("kind", "Cluster".into()), ("limit", "1000".into())]).await.unwrap();
    let everything = format!("{answers:?}{list}{audit}{}", server.log.lock().unwrap());
    for secret in [TOKEN, REVOKED] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    assert_eq!(answers[0]["token"], "(redacted)");
    assert_eq!(answers[1]["kubeconfig"], "(redacted)");
}

/// A cluster that cannot be reached is set aside and tried again later, with one
/// application: its applications do not each ask it on every pass of the controller (every
/// two seconds), and the tries leave no audit records behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_set_aside_rather_than_asked_for_every_application() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt as _;
    // A loopback port that reads each request's first line and closes the connection: every
    // request the control plane sends there fails. Writes (an application handed over: a
    // server-side apply is a PATCH) are counted; the reads of the driver's watch-fed caches
    // (GETs, retried with back-off per kind, not per application) are not.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = writes.clone();
    let closer = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 512];
                let read = stream.read(&mut head).await.unwrap_or(0);
                if read > 0 && !head[..read].starts_with(b"GET ") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });

    let data = tempfile::tempdir().unwrap();
    // Probed once, when registered: the connections counted after that are the controller's.
    let server = Server::start_with(data.path(), &[("FLOTILLA_CLUSTERS__PROBE_INTERVAL_SECS", "3600")]);
    let client = admin(&server.base).await;
    let applications = 20;
    let mut documents = format!(
        "apiVersion: flotilla.io/v1\nkind: Workspace\nmetadata: {{name: w}}\nspec: {{}}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Project\nmetadata: {{name: shop}}\nspec: {{workspace: w}}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Cluster\nmetadata: {{name: down}}\n\
         spec: {{type: kubernetes, apiServer: 'http://{address}', token: e2e-down-token}}\n---\n\
         apiVersion: flotilla.io/v1\nkind: Environment\nmetadata: {{name: test, project: shop}}\n\
         spec: {{tier: test, clusters: [down]}}\n"
    );
    for i in 0..applications {
        documents.push_str(&format!(
            "---\napiVersion: flotilla.io/v1\nkind: Application\nmetadata: {{name: app-{i:02}, project: shop}}\n\
             spec: {{environment: test, components: [{{name: web, image: 'registry.example/web:{i}', replicas: 1}}]}}\n"
        ));
    }
    let answer = client.apply(documents).await.unwrap();
    assert_eq!(answer["failed"], 0, "{answer}");
    cluster_status(&client, "down", "Unreachable").await;

    // Four or five passes: handing each application over on each would be 80 or more writes.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let tried = writes.load(Ordering::SeqCst);
    assert!((1..=5).contains(&tried), "{tried} writes in 9 s for {applications} applications");
    let log = server.log.lock().unwrap().clone();
    let set_aside = log.matches("cluster set aside").count();
    assert!((1..=4).contains(&set_aside), "one warning per try, not per application:\n{log}");
    let unreachable = log.lines().filter(|l| l.contains("cannot apply the application") && l.contains("unreachable"));
    assert!(unreachable.count() <= 1, "a failure is logged when it starts, not on every try:\n{log}");

    // Each try records the revision it hands over once: a second create, refused, would be
    // audited on every try.
    let refused = client
        .audit_query(&[
            ("kind", "ApplicationRevision".into()),
            ("outcome", "conflict".into()),
            ("limit", "1000".into()),
        ])
        .await
        .unwrap();
    assert_eq!(refused["items"], json!([]), "{refused}");
    closer.abort();
}
