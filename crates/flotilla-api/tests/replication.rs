//! Replication through the API against Debian's `docker-registry` on loopback: a push rule
//! copies each pushed tag on its own, a pull rule run by hand brings images into the
//! project, runs are audited, and the external registry's password is never shown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use flotilla_registry::test_image::image_layout_variant;
use flotilla_registry::test_registry::start_distribution;
use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, TestServer};

async fn skopeo(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("skopeo").arg("--insecure-policy").args(args).output().await.unwrap()
}

async fn raw_digest(creds: Option<&str>, image: &str) -> Option<String> {
    let source = format!("docker://{image}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--creds", creds]);
    }
    args.push(&source);
    let output = skopeo(&args).await;
    output.status.success().then(|| flotilla_registry::digest::of(&output.stdout).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_copy_pushed_tags_out_and_pull_images_in() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let distribution = start_distribution().unwrap();
    let host = server.base.trim_start_matches("http://").to_string();
    let admin_creds = format!("admin:{ADMIN_PASSWORD}");

    let registry = json!({"apiVersion": "flotilla.io/v1", "kind": "ExternalRegistry", "metadata": {"name": "dist"},
        "spec": {"url": format!("http://{}", distribution.host), "credentials": {"username": "mirror", "password": "s3cret-pass"}}});
    server.admin.create("externalregistries", None, &registry).await.unwrap();
    let shown = serde_json::to_value(server.admin.get("externalregistries", None, "dist").await.unwrap()).unwrap();
    assert!(!shown.to_string().contains("s3cret-pass"), "the password is never shown: {shown}");
    let audit = server.admin.audit_query(&[("kind", "ExternalRegistry".into())]).await.unwrap();
    assert!(!audit.to_string().contains("s3cret-pass"), "nor audited in clear");

    let push_rule = json!({"apiVersion": "flotilla.io/v1", "kind": "ReplicationRule", "metadata": {"name": "out", "project": "shop"},
        "spec": {"registry": "dist", "direction": "push", "repositories": ["web"], "tags": ["v*"], "onPush": true, "remoteNamespace": "backup"}});
    server.admin.create("replicationrules", Some("shop"), &push_rule).await.unwrap();

    // A pushed tag the rule selects reaches distribution by itself; one it does not, does not.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("image");
    image_layout_variant(&layout, "1", 7);
    let oci = format!("oci:{}:1", layout.display());
    for tag in ["v1", "dev"] {
        let destination = format!("docker://{host}/shop/web:{tag}");
        let pushed =
            skopeo(&["copy", "--dest-tls-verify=false", "--dest-creds", &admin_creds, &oci, &destination]).await;
        assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    }
    let ours = raw_digest(Some(&admin_creds), &format!("{host}/shop/web:v1")).await.unwrap();
    let started = std::time::Instant::now();
    while raw_digest(None, &format!("{}/backup/web:v1", distribution.host)).await.as_deref() != Some(ours.as_str()) {
        assert!(started.elapsed() < Duration::from_secs(30), "v1 was not replicated on push");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(raw_digest(None, &format!("{}/backup/web:dev", distribution.host)).await.is_none(), "dev is not selected");

    // A pull rule run by hand brings distribution's image in; a second run finds it in place.
    let vendor = format!("docker://{}/vendor/base:3", distribution.host);
    let pushed = skopeo(&["copy", "--dest-tls-verify=false", &oci, &vendor]).await;
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let pull_rule = json!({"apiVersion": "flotilla.io/v1", "kind": "ReplicationRule", "metadata": {"name": "in", "project": "shop"},
        "spec": {"registry": "dist", "direction": "pull", "repositories": ["base"], "remoteNamespace": "vendor"}});
    server.admin.create("replicationrules", Some("shop"), &pull_rule).await.unwrap();
    let run = |name: &'static str| {
        let admin = server.admin.clone();
        async move {
            let request =
                admin.request(reqwest::Method::POST, &format!("/api/v1/projects/shop/replicationrules/{name}/run"));
            admin.send(request).await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let report = run("in").await;
    assert_eq!((report["tags"].as_u64(), report["failures"].as_array().map(Vec::len)), (Some(1), Some(0)), "{report}");
    assert_eq!(
        raw_digest(Some(&admin_creds), &format!("{host}/shop/base:3")).await,
        raw_digest(None, &format!("{}/vendor/base:3", distribution.host)).await
    );
    let again = run("in").await;
    assert_eq!(again["unchanged"], 1, "{again}");

    // Runs are audited; the image pulled in was pushed by replication.
    let runs = server.admin.audit_query(&[("action", "replication.run".into())]).await.unwrap();
    assert!(runs["items"].as_array().unwrap().len() >= 3, "{runs}");
    let versions = server.admin.repository_versions("shop", "base", &[]).await.unwrap();
    assert_eq!(versions["items"][0]["pushedBy"], "system:replication", "{versions}");

    // A viewer may not run rules.
    let vera = server.user("vera").await;
    server.grant("vera", "viewer", Some("shop"), None).await;
    let denied = vera.send(vera.request(reqwest::Method::POST, "/api/v1/projects/shop/replicationrules/in/run")).await;
    assert_eq!(denied.unwrap_err().status(), Some(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_cache_project_fetches_on_first_pull_and_then_serves_locally() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let distribution = start_distribution().unwrap();
    let host = server.base.trim_start_matches("http://").to_string();
    let admin_creds = format!("admin:{ADMIN_PASSWORD}");
    let registry = json!({"apiVersion": "flotilla.io/v1", "kind": "ExternalRegistry", "metadata": {"name": "upstream"},
        "spec": {"url": format!("http://{}", distribution.host)}});
    server.admin.create("externalregistries", None, &registry).await.unwrap();
    let project = json!({"apiVersion": "flotilla.io/v1", "kind": "Project", "metadata": {"name": "hub"},
        "spec": {"workspace": "retail", "registry": {"proxyCache": {"registry": "upstream", "remoteNamespace": "library", "tagTtlSeconds": 1}}}});
    server.admin.create("projects", None, &project).await.unwrap();

    let work = tempfile::tempdir().unwrap();
    let mut layouts = Vec::new();
    for variant in [1u32, 2] {
        let layout = work.path().join(format!("v{variant}"));
        image_layout_variant(&layout, "1", variant);
        layouts.push(format!("oci:{}:1", layout.display()));
    }
    let upstream_image = format!("docker://{}/library/busybox:1", distribution.host);
    assert!(skopeo(&["copy", "--dest-tls-verify=false", &layouts[0], &upstream_image]).await.status.success());

    // First pull: fetched from upstream, digest unchanged, pushed here by the cache.
    let cached = format!("{host}/hub/busybox:1");
    let upstream_digest = raw_digest(None, &format!("{}/library/busybox:1", distribution.host)).await.unwrap();
    assert_eq!(raw_digest(Some(&admin_creds), &cached).await.as_deref(), Some(upstream_digest.as_str()));
    let copy = work.path().join("copy");
    let pulled = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &admin_creds,
        &format!("docker://{cached}"),
        &format!("oci:{}:1", copy.display()),
    ])
    .await;
    assert!(pulled.status.success(), "the whole image is served: {}", String::from_utf8_lossy(&pulled.stderr));
    let versions = server.admin.repository_versions("hub", "busybox", &[]).await.unwrap();
    assert_eq!(versions["items"][0]["pushedBy"], "system:proxy-cache", "{versions}");

    // The tag moves upstream: after its TTL the next pull follows it.
    assert!(skopeo(&["copy", "--dest-tls-verify=false", &layouts[1], &upstream_image]).await.status.success());
    let moved = raw_digest(None, &format!("{}/library/busybox:1", distribution.host)).await.unwrap();
    assert_ne!(moved, upstream_digest);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(raw_digest(Some(&admin_creds), &cached).await.as_deref(), Some(moved.as_str()));

    // Upstream gone: the cached copy is still served.
    drop(distribution);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        raw_digest(Some(&admin_creds), &cached).await.as_deref(),
        Some(moved.as_str()),
        "stale rather than down"
    );
    assert!(raw_digest(Some(&admin_creds), &format!("{host}/hub/never-fetched:1")).await.is_none());
}
