//! `flotilla server` brings the embedded runtime up under its data dir (its own containerd,
//! the pause image built and imported, the network plugin) and stops its containerd on a
//! clean shutdown; a kill -9 of the server leaves containerd running and the next start
//! adopts it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_local::containerd::Containerd;
use flotilla_local::cri::Cri;
use flotilla_local::embedded::PAUSE_IMAGE;
use support::*;

/// A web component serving /www on 8080, ready when `readiness_port` answers.
fn web_component(readiness_port: u16, deadline: u32) -> serde_json::Value {
    serde_json::json!({"name": "web", "image": IMAGE, "replicas": 2,
        "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
        "env": [{"name": "GREETING", "value": "hello"}],
        "ports": [{"name": "http", "port": 8080}],
        "probes": {"readiness": {"http": {"port": readiness_port}, "periodSeconds": 1}},
        "update": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": deadline}})
}

/// Polls the Application through the API until `done` holds for its status.
async fn wait_for_status(
    admin: &flotilla_client::Client,
    project: &str,
    what: &str,
    done: impl Fn(&flotilla_core::Object) -> bool,
) -> flotilla_core::Object {
    let started = std::time::Instant::now();
    loop {
        let app = admin.get("applications", Some(project), "shop").await.unwrap();
        if done(&app) {
            return app;
        }
        assert!(started.elapsed() < Duration::from_secs(45), "{what}: {}", app.status);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn web_status(app: &flotilla_core::Object) -> serde_json::Value {
    app.status["components"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "web").cloned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_its_own_containerd_and_adopts_it_after_a_kill() {
    with_server_dir(|dir, socket, _short| async move {
        let mut server = start(&dir);
        let containerd = Containerd::existing(&socket).await.expect("the server's containerd answers");
        drop(containerd);
        let mut cri = Cri::connect(&socket).await.unwrap();
        assert!(cri.image_id(PAUSE_IMAGE).await.unwrap().is_some(), "the pause image was built and imported");
        assert!(dir.join("runtime/cni-bin/flotilla-net").exists(), "the network plugin is installed");

        // kill -9: containerd keeps running; the next start adopts it.
        server.kill().unwrap();
        server.wait().unwrap();
        assert!(Containerd::existing(&socket).await.is_ok(), "containerd outlives a killed server");
        let mut server = start(&dir);
        assert!(Containerd::existing(&socket).await.is_ok());

        // A clean shutdown stops the containerd this server started... which it did not:
        // it adopted it, so it leaves it running.
        assert!(terminate(&mut server).success());
        assert!(Containerd::existing(&socket).await.is_ok(), "an adopted containerd is left running");
        stop_containerd(&dir, &socket).await;
        assert!(Containerd::existing(&socket).await.is_err());

        // A server that started its own containerd stops it on SIGTERM.
        let mut server = start(&dir);
        assert!(Containerd::existing(&socket).await.is_ok());
        assert!(terminate(&mut server).success());
        assert!(Containerd::existing(&socket).await.is_err(), "containerd stopped with the server");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_applied_through_the_api_runs_on_the_embedded_runtime() {
    use flotilla_driver::workload::WorkloadKey;
    use flotilla_local::instance::workload_selector;
    use serde_json::json;

    with_server_dir(|dir, socket, short| async move {
        let (mut server, admin, project) = prepare(&dir, &socket, &short).await;
        let application = json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
        "metadata": {"name": "shop", "project": project},
        "spec": {"environment": "test", "components": [
            web_component(8080, 600),
            {"name": "worker", "image": IMAGE, "command": ["/bin/sleep", "3600"]}
        ]}});
        admin.create("applications", Some(project.as_str()), &application).await.unwrap();

        let key = WorkloadKey { project: project.clone(), environment: "test".into(), application: "shop".into() };
        let mut cri = Cri::connect(&socket).await.unwrap();
        let started = std::time::Instant::now();
        loop {
            let pods = cri.list_pod_sandboxes(workload_selector(&key)).await.unwrap();
            let containers = cri.list_containers(workload_selector(&key)).await.unwrap();
            let running = containers
                .iter()
                .filter(|c| c.state == flotilla_local::cri::api::ContainerState::ContainerRunning as i32)
                .count();
            if pods.len() == 3 && running == 3 {
                let web = containers.iter().find(|c| c.labels["flotilla.io/component"] == "web").unwrap();
                let output = cri
                    .exec_sync(&web.id, vec!["/bin/sh".into(), "-c".into(), "echo $GREETING".into()], 5)
                    .await
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "hello");
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "3 instances did not come up: {pods:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // The application's status, as the API shows it, is what the runtime reports.
        let app = wait_for_status(&admin, &project, "web ready", |app| {
            web_status(app)["ready"] == 2 && web_status(app)["phase"] == "complete"
        })
        .await;
        assert_eq!(app.status["cluster"], "local");
        assert_eq!(app.status["revision"], 1);
        assert_eq!(app.status["instances"].as_array().unwrap().len(), 3, "{}", app.status);

        admin.delete("applications", Some(project.as_str()), "shop", None).await.unwrap();
        let started = std::time::Instant::now();
        while !cri.list_pod_sandboxes(workload_selector(&key)).await.unwrap().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(30), "the deleted application's instances remain");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(terminate(&mut server).success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_never_becomes_ready_is_rolled_back_automatically() {
    use serde_json::json;
    with_server_dir(|dir, socket, short| async move {
        let (mut server, admin, project) = prepare(&dir, &socket, &short).await;
        let mut application = json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
                "metadata": {"name": "shop", "project": project},
                "spec": {"environment": "test", "components": [web_component(8080, 3)]}});
        admin.create("applications", Some(project.as_str()), &application).await.unwrap();
        wait_for_status(&admin, &project, "revision 1 complete", |app| web_status(app)["phase"] == "complete").await;

        // Revision 1 is marked rolled out in the history, so a control plane restarted in the
        // middle of revision 2's rollout (kill -9) still knows to roll back to it.
        let started = std::time::Instant::now();
        loop {
            let revision = admin.get("applicationrevisions", Some(project.as_str()), "shop-1").await.unwrap();
            if revision.metadata.annotations.get("flotilla.io/rolled-out").is_some_and(|v| v == "true") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "revision 1 never marked rolled out: {revision:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // Revision 2 is never ready (its readiness probe asks a port nothing listens on).
        application["spec"]["components"][0] = web_component(9999, 3);
        admin.update("applications", Some(project.as_str()), "shop", &application).await.unwrap();
        wait_for_status(&admin, &project, "revision 2 rolling out", |app| app.status["revision"] == 2).await;
        server.kill().unwrap();
        server.wait().unwrap();
        let (restarted, base) = start_at(&dir);
        server = restarted;
        let admin = admin.with_base(&base);
        let app = wait_for_status(&admin, &project, "rolled back and complete", |app| {
            app.metadata.generation == Some(3) && app.status["revision"] == 3 && web_status(app)["phase"] == "complete"
        })
        .await;
        assert_eq!(app.spec["components"][0]["probes"]["readiness"]["http"]["port"], 8080, "revision 1's spec is back");
        let records = admin.audit_query(&[("action", "rollback".to_string())]).await.unwrap();
        let record = &records["items"][0];
        assert_eq!(record["user"], "system");
        assert!(record["message"].as_str().unwrap().contains("revision 2 missed its progress deadline"), "{record}");

        // Revision 4 names an image nobody has: its pull fails, it misses its deadline, and
        // revision 3's spec (good) comes back as revision 5.
        let mut application = serde_json::to_value(&app).unwrap();
        application["spec"]["components"][0]["image"] = json!("flotilla.local/e2e/missing:404");
        application.as_object_mut().unwrap().remove("status");
        admin.update("applications", Some(project.as_str()), "shop", &application).await.unwrap();
        let app = wait_for_status(&admin, &project, "the bad image rolled back", |app| {
            app.metadata.generation == Some(5) && app.status["revision"] == 5 && web_status(app)["phase"] == "complete"
        })
        .await;
        assert_eq!(app.spec["components"][0]["image"], IMAGE);
        let records = admin.audit_query(&[("action", "rollback".to_string())]).await.unwrap();
        assert!(records["items"][0]["message"].as_str().unwrap().contains("revision 4 missed"), "{records}");
        admin.delete("applications", Some(project.as_str()), "shop", None).await.unwrap();
        let mut cri = Cri::connect(&socket).await.unwrap();
        let started = std::time::Instant::now();
        while !cri.list_pod_sandboxes(std::collections::HashMap::new()).await.unwrap().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(30), "the deleted application's instances remain");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(terminate(&mut server).success());
    })
    .await;
}

/// Runs the CLI against `base` with `token`; (exit code, stdout, stderr).
fn cli(dir: &Path, base: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env("FLOTILLA_CONFIG", dir.join("cli.toml"))
        .env("FLOTILLA_SERVER", base)
        .env("FLOTILLA_TOKEN", token)
        .output()
        .expect("the CLI runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_is_operated_from_the_cli() {
    use serde_json::json;
    with_server_dir(|dir, socket, short| async move {
        let (mut server, admin, project) = prepare(&dir, &socket, &short).await;
        let base = admin.base().to_string();
        let token = admin.create_token("cli", None).await.unwrap()["token"].as_str().unwrap().to_string();
        let p = project.as_str();
        let run = |args: &[&str]| cli(&dir, &base, &token, args);

        // The image comes in as an archive through the CLI.
        const IMPORTED: &str = "flotilla.local/e2e/imported:1";
        let mut image =
            flotilla_local::oci_archive::busybox_image(Path::new("/bin/busybox"), vec!["/bin/sh".into()]).unwrap();
        image.files.push(flotilla_local::oci_archive::LayerFile {
            path: "www/index.html".into(),
            mode: 0o644,
            content: b"imported\n".to_vec(),
        });
        let archive = dir.join("imported.tar");
        image.write_archive(IMPORTED, &archive).unwrap();
        let (code, out, err) = run(&["image", "import", archive.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), format!("imported {IMPORTED} into cluster local"));
        let records = admin.audit_query(&[("action", "image.import".to_string())]).await.unwrap();
        let message = records["items"][0]["message"].as_str().unwrap();
        assert!(message.contains(IMPORTED) && message.contains("sha256:"), "{message}");
        let (code, _, err) = run(&["image", "import", "/etc/hostname"]);
        assert_eq!(code, 6, "not an archive: {err}");

        let application = json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
            "metadata": {"name": "shop", "project": project},
            "spec": {"environment": "test", "components": [{"name": "web", "image": IMPORTED, "replicas": 2,
                "command": ["/bin/sh", "-c", "echo hello from $(hostname); exec httpd -f -p 8080 -h /www"],
                "env": [{"name": "GREETING", "value": "hello"}],
                "ports": [{"name": "http", "port": 8080}],
                "probes": {"readiness": {"http": {"port": 8080}, "periodSeconds": 1}}}]}});
        admin.create("applications", Some(p), &application).await.unwrap();

        let (code, out, err) = run(&["rollout", "status", "shop", "-p", p, "--timeout", "60"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("successfully rolled out (revision 1)"), "{out}");

        let (code, out, err) = run(&["get", "applications", "-p", p]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("2/2") && out.contains("Running"), "the list shows the observed status: {out}");

        let (code, out, err) = run(&["logs", "shop", "-p", p, "-c", "web"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.matches("] hello from web-1-").count(), 2, "one line per instance: {out}");

        // exec: output and exit code come back; the command is audited.
        let (code, out, _) =
            run(&["exec", "shop", "-p", p, "-c", "web", "--", "/bin/sh", "-c", "echo $GREETING; exit 3"]);
        assert_eq!((code, out.trim()), (3, "hello"));
        let records = admin.audit_query(&[("action", "application.exec".to_string())]).await.unwrap();
        assert!(records["items"][0]["message"].as_str().unwrap().contains("echo $GREETING"), "{records}");

        let (code, out, err) = run(&["top", "shop", "-p", p, "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        let metrics: serde_json::Value = serde_json::from_str(&out).unwrap();
        let items = metrics["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{out}");
        assert!(items.iter().all(|i| i["memoryBytes"].as_u64().unwrap() > 0), "{out}");

        // Every instance's counters, for Prometheus.
        let scrape = admin.send(admin.request(flotilla_client::Method::GET, "/metrics/instances")).await.unwrap();
        let text = scrape.text().await.unwrap();
        let memory = format!("flotilla_instance_memory_working_set_bytes{{cluster=\"local\",project=\"{p}\",environment=\"test\",application=\"shop\",instance=\"web-1-");
        assert_eq!(text.matches(&memory).count(), 2, "{text}");

        // Following: a line written after the command started arrives.
        let mut follow = Command::new(BIN)
            .args(["logs", "shop", "-p", p, "-c", "web", "-f", "--tail", "0"])
            .env("FLOTILLA_CONFIG", dir.join("cli.toml"))
            .env("FLOTILLA_SERVER", &base)
            .env("FLOTILLA_TOKEN", &token)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut followed = BufReader::new(follow.stdout.take().unwrap()).lines();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (code, _, err) =
            run(&["exec", "shop", "-p", p, "-c", "web", "--", "/bin/sh", "-c", "echo followed-line > /proc/1/fd/1"]);
        assert_eq!(code, 0, "{err}");
        let reader = tokio::task::spawn_blocking(move || followed.next().unwrap().unwrap());
        let line = tokio::time::timeout(Duration::from_secs(20), reader).await;
        follow.kill().unwrap();
        let _ = follow.wait();
        let line = line.expect("the followed line arrives within 20 s").unwrap();
        assert!(line.ends_with("followed-line"), "{line}");

        // scale, then roll back to revision 1 (two instances again).
        let (code, out, err) = run(&["scale", "shop", "-p", p, "--replicas", "3"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("web to 3 instances (revision 2)"), "{out}");
        let (code, out, err) = run(&["rollout", "status", "shop", "-p", p, "--timeout", "60"]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(web_status(&admin.get("applications", Some(p), "shop").await.unwrap())["ready"], 3);
        let (code, out, err) = run(&["rollout", "history", "shop", "-p", p]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("2 (current)") && out.contains("scale web to 3"), "{out}");
        let (code, out, err) = run(&["rollout", "undo", "shop", "-p", p]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("rolled back to revision 1 (now revision 3)"), "{out}");
        let (code, out, err) = run(&["rollout", "status", "shop", "-p", p, "--timeout", "60"]);
        assert_eq!(code, 0, "{out}{err}");
        let app = wait_for_status(&admin, p, "two instances again", |app| {
            app.status["instances"].as_array().is_some_and(|i| i.len() == 2)
        })
        .await;
        assert_eq!(app.spec["components"][0]["replicas"], 2);
        let (_, out, _) = run(&["rollout", "history", "shop", "-p", p]);
        assert!(out.contains("3 (current)") && out.contains("rollback to revision 1"), "{out}");
        let (code, _, err) = run(&["rollout", "undo", "shop", "-p", p, "--to-revision", "9"]);
        assert_eq!(code, 7, "{err}");
        assert!(err.contains("no revision 9"), "{err}");

        // kill -9 of the server: the instances keep running, and the next server adopts them
        // without restarting any.
        let before = admin.get("applications", Some(p), "shop").await.unwrap().status["instances"].clone();
        server.kill().unwrap();
        server.wait().unwrap();
        let (code, _, _) = run(&["get", "apps", "-p", p]);
        assert_eq!(code, 3, "the server is down");
        let (restarted, base) = start_at(&dir);
        server = restarted;
        let admin = admin.with_base(&base);
        let run = |args: &[&str]| cli(&dir, &base, &token, args);
        let after = wait_for_status(&admin, p, "re-adopted and ready", |app| {
            web_status(app)["ready"] == 2 && web_status(app)["phase"] == "complete"
        })
        .await;
        let names = |instances: &serde_json::Value| {
            let mut list: Vec<(String, u64)> = instances
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["name"].as_str().unwrap().to_string(), i["restarts"].as_u64().unwrap()))
                .collect();
            list.sort();
            list
        };
        assert_eq!(names(&after.status["instances"]), names(&before), "the same instances, not restarted");
        let (code, out, _) = run(&["exec", "shop", "-p", p, "-c", "web", "--", "/bin/cat", "/www/index.html"]);
        assert_eq!((code, out.trim()), (0, "imported"));

        // Deleting the application deletes its history.
        admin.delete("applications", Some(p), "shop", None).await.unwrap();
        let started = std::time::Instant::now();
        loop {
            let page = admin.list("applicationrevisions", Some(p), &[]).await.unwrap();
            if page["items"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the history remains: {page}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(terminate(&mut server).success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pushed_to_the_registry_runs_from_a_template() {
    use serde_json::json;
    with_server_dir(|dir, socket, short| async move {
        let (mut server, admin, project) = prepare(&dir, &socket, &short).await;
        let base = admin.base().to_string();
        let host = base.trim_start_matches("http://").to_string();
        let p = project.as_str();

        // The project's repositories are public, so the runtime pulls without credentials.
        let mut project_object = serde_json::to_value(admin.get("projects", None, p).await.unwrap()).unwrap();
        project_object["spec"]["registry"] = json!({"publicRepositories": ["**"]});
        admin.update("projects", None, p, &project_object).await.unwrap();

        // An image of its own, pushed with skopeo into the built-in registry.
        let mut image =
            flotilla_local::oci_archive::busybox_image(Path::new("/bin/busybox"), vec!["/bin/sh".into()]).unwrap();
        image.files.push(flotilla_local::oci_archive::LayerFile {
            path: "www/index.html".into(),
            mode: 0o644,
            content: b"from the registry\n".to_vec(),
        });
        let archive = dir.join("pushed.tar");
        image.write_archive("flotilla.local/e2e/pushed:1", &archive).unwrap();
        let reference = format!("{host}/{p}/web:1");
        let pushed = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false", "--dest-creds"])
            .arg(format!("admin:{PASSWORD}"))
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(pushed.status.success(), "skopeo pushes: {}", String::from_utf8_lossy(&pushed.stderr));

        let template = json!({"apiVersion": "flotilla.io/v1", "kind": "Template",
            "metadata": {"name": "static-site", "project": project},
            "spec": {"versions": [{"version": "1.0",
                "parameters": {"type": "object", "required": ["image"], "properties": {
                    "image": {"type": "string"}, "replicas": {"type": "integer", "minimum": 1, "default": 1}}},
                "application": {"environment": "test", "components": [{"name": "web", "image": "${image}",
                    "replicas": "${replicas}", "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                    "ports": [{"name": "http", "port": 8080}],
                    "probes": {"readiness": {"http": {"port": 8080}, "periodSeconds": 1}}}]}}]}});
        admin.create("templates", Some(p), &template).await.unwrap();

        let token = admin.create_token("cli", None).await.unwrap()["token"].as_str().unwrap().to_string();
        let run = |args: &[&str]| cli(&dir, &base, &token, args);
        let image_value = format!("image={reference}");
        let (code, _, err) =
            run(&["template", "instantiate", "static-site", "-p", p, "--name", "shop", "--set", "replicas=0"]);
        assert_eq!(code, 6, "refused values: {err}");
        assert!(err.contains("values.replicas") && err.contains("values.image"), "{err}");
        let (code, out, err) = run(&[
            "template",
            "instantiate",
            "static-site",
            "-p",
            p,
            "--name",
            "shop",
            "--set",
            &image_value,
            "--set",
            "replicas=2",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("from Template/") && out.contains("@1.0"), "{out}");

        let (code, out, err) = run(&["rollout", "status", "shop", "-p", p, "--timeout", "90"]);
        assert_eq!(code, 0, "the runtime pulled the image from the registry and ran it: {out}{err}");
        let served =
            admin.application_exec(p, "shop", "web", None, &["cat".into(), "/www/index.html".into()]).await.unwrap();
        assert_eq!(served["stdout"], "from the registry\n", "{served}");

        // The versions view names the application that runs the pushed version.
        let versions = admin.repository_versions(p, "web", &[]).await.unwrap();
        assert_eq!(versions["items"][0]["applications"][0]["name"], "shop", "{versions}");

        admin.delete("applications", Some(p), "shop", None).await.unwrap();
        assert!(terminate(&mut server).success());
    })
    .await;
}

/// Runs `flotilla runtime reset` on `dir` with `args`; returns its exit code and output.
fn reset(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN).args(["runtime", "reset", "--data-dir"]).arg(dir).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// The host's iptables rules and chains (nat and filter) that mention `word`.
fn iptables_mentioning(word: &str) -> Vec<String> {
    ["nat", "filter"]
        .iter()
        .flat_map(|table| {
            let output = Command::new("iptables").args(["-w", "5", "-t", table, "-S"]).output().unwrap();
            String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect::<Vec<_>>()
        })
        .filter(|line| line.contains(word))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_reset_takes_instances_networks_and_rules_off_the_host() {
    use flotilla_local::cni_plugin::EnvironmentNetwork;
    use serde_json::json;

    with_server_dir(|dir, socket, short| async move {
        let (mut server, admin, project) = prepare(&dir, &socket, &short).await;
        let application = json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
        "metadata": {"name": "shop", "project": project},
        "spec": {"environment": "test", "components": [web_component(8080, 600)]}});
        admin.create("applications", Some(project.as_str()), &application).await.unwrap();
        wait_for_status(&admin, &project, "web ready", |app| web_status(app)["ready"] == 2).await;
        let mut cri = Cri::connect(&socket).await.unwrap();
        let pods: Vec<String> =
            cri.list_pod_sandboxes(Default::default()).await.unwrap().into_iter().map(|pod| pod.id).collect();
        assert_eq!(pods.len(), 2, "{pods:?}");
        let runtime = dir.join("runtime");
        let chains = flotilla_local::services::Chains::of(&runtime).prefix().to_string();
        assert!(!iptables_mentioning(&chains).is_empty(), "the service has rules in chains {chains}*");
        let network_files: Vec<_> =
            std::fs::read_dir(runtime.join("networks")).unwrap().flatten().map(|entry| entry.path()).collect();
        let bridges: Vec<String> = network_files
            .iter()
            .map(|path| serde_json::from_slice::<EnvironmentNetwork>(&std::fs::read(path).unwrap()).unwrap().bridge)
            .collect();
        assert_eq!(bridges.len(), 1, "the test environment's network: {network_files:?}");
        let link_exists =
            |bridge: &str| Command::new("ip").args(["link", "show", bridge]).output().unwrap().status.success();
        assert!(link_exists(&bridges[0]));

        // Refused while the server runs the runtime, and without confirmation.
        let (code, text) = reset(&dir, &["--yes"]);
        assert_eq!(code, 75, "{text}");
        assert!(text.contains("in use by another process") && text.contains(&server.id().to_string()), "{text}");
        server.kill().unwrap();
        server.wait().unwrap();
        let (code, text) = reset(&dir, &[]);
        assert_eq!(code, 2, "{text}");
        assert!(text.contains("--yes"), "{text}");
        assert_eq!(cri.list_pod_sandboxes(Default::default()).await.unwrap().len(), 2, "nothing removed unconfirmed");

        // After a kill -9: containerd and the instances kept running; the reset removes them.
        let (code, text) = reset(&dir, &["--yes"]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("Removed 2 instance(s)") && text.contains("Stopped its containerd"), "{text}");
        assert!(text.contains(&bridges[0]), "{text}");
        assert!(Containerd::existing(&socket).await.is_err(), "containerd is stopped");
        let config = runtime.join("containerd/config.toml").display().to_string();
        let running = Command::new("pgrep").args(["-f", &config]).output().unwrap();
        assert!(running.stdout.is_empty(), "no process runs with {config}");
        assert!(iptables_mentioning(&chains).is_empty(), "{:#?}", iptables_mentioning(&chains));
        assert!(iptables_mentioning(&bridges[0]).is_empty(), "{:#?}", iptables_mentioning(&bridges[0]));
        assert!(!link_exists(&bridges[0]), "bridge {} is deleted", bridges[0]);
        assert!(network_files.iter().all(|path| !path.exists()), "the network allocation is forgotten");

        // The application stays declared: a server started again runs it again, in new pods.
        let (mut server, base) = start_at(&dir);
        let anonymous = flotilla_client::Client::new(&base, None).unwrap();
        let login = anonymous.login_token("admin", PASSWORD, "e2e", None).await.unwrap();
        let admin = anonymous.with_token(Some(login.token));
        wait_for_status(&admin, &project, "web ready again", |app| web_status(app)["ready"] == 2).await;
        let mut cri = Cri::connect(&socket).await.unwrap();
        let now: Vec<String> =
            cri.list_pod_sandboxes(Default::default()).await.unwrap().into_iter().map(|pod| pod.id).collect();
        assert_eq!(now.len(), 2, "{now:?}");
        assert!(now.iter().all(|pod| !pods.contains(pod)), "the old pods are gone: {pods:?} vs {now:?}");

        // After a clean stop (containerd stopped, the instances still running under their
        // shims), with the runtime's data too.
        assert!(terminate(&mut server).success());
        let (code, text) = reset(&dir, &["--yes", "--remove-data"]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("Removed 2 instance(s)"), "{text}");
        assert!(!runtime.exists(), "{} is deleted", runtime.display());
        assert!(Containerd::existing(&socket).await.is_err());
        assert!(iptables_mentioning(&chains).is_empty(), "{:#?}", iptables_mentioning(&chains));
        let (code, text) = reset(&dir, &["--yes"]);
        assert_eq!((code, text.contains("nothing to reset")), (0, true), "{text}");
    })
    .await;
}
