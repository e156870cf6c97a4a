//! The registry served by the API, with the token flow and project roles, driven by real
//! `skopeo`: an admin pushes; a viewer pulls but cannot push; nobody pushes anonymously or
//! into a project that does not exist; pushes and pulls are audited.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use flotilla_registry::test_image::image_layout;
use serde_json::Value;
use support::{ADMIN_PASSWORD, TestServer};

async fn skopeo(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("skopeo").arg("--insecure-policy").args(args).output().await.unwrap()
}

/// `skopeo copy` of the OCI layout `oci` to `image` (`HOST/REPOSITORY:TAG`) as `creds`.
async fn push(creds: &str, oci: &str, image: &str) -> std::process::Output {
    let destination = format!("docker://{image}");
    skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds, oci, &destination]).await
}

/// `skopeo inspect --raw` of `image`, as `creds` (anonymously without).
async fn inspect(creds: Option<&str>, image: &str) -> std::process::Output {
    let source = format!("docker://{image}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--creds", creds]);
    }
    args.push(&source);
    skopeo(&args).await
}

async fn audit_of(server: &TestServer, params: &[(&str, &str)]) -> Vec<Value> {
    let params: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let page = server.admin.audit_query(&params).await.unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pushed_and_pulled_with_tokens_that_project_roles_decide() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let host = server.base.trim_start_matches("http://").to_string();

    // Without a token: a challenge naming the token endpoint.
    let refused = reqwest::get(format!("{}/v2/", server.base)).await.unwrap();
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert_eq!(challenge, format!("Bearer realm=\"http://{host}/v2/token\",service=\"flotilla\""));

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let manifest = image_layout(&source, "1");
    let oci = format!("oci:{}:1", source.display());
    let admin_creds = format!("admin:{ADMIN_PASSWORD}");
    let image = format!("{host}/shop/web:1");
    let pushed = push(&admin_creds, &oci, &image).await;
    assert!(pushed.status.success(), "the admin pushes: {}", String::from_utf8_lossy(&pushed.stderr));

    // A viewer of the project pulls, and cannot push.
    server.user("vera").await;
    server.grant("vera", "viewer", Some("shop"), None).await;
    let viewer_creds = "vera:vera password 123";
    let raw = inspect(Some(viewer_creds), &image).await;
    assert!(raw.status.success(), "the viewer pulls: {}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(raw.stdout, manifest, "byte for byte");
    let denied = push(viewer_creds, &oci, &format!("{host}/shop/web:2")).await;
    assert!(!denied.status.success(), "a viewer cannot push");
    let stderr = String::from_utf8_lossy(&denied.stderr).to_lowercase();
    assert!(stderr.contains("unauthorized") || stderr.contains("denied"), "{stderr}");

    // Nobody pulls anonymously, and nothing is pushed outside a project.
    assert!(!inspect(None, &image).await.status.success(), "no anonymous pull of a private repository");
    let nowhere = push(&admin_creds, &oci, &format!("{host}/noproject/web:1")).await;
    assert!(!nowhere.status.success(), "repositories live under projects");
    assert!(!inspect(Some("vera:wrong"), &image).await.status.success());

    // An API token works in place of the password, until its user is disabled.
    let login = server.anonymous().login_token("vera", "vera password 123", "registry", None).await.unwrap();
    let token_creds = format!("vera:{}", login.token);
    assert!(inspect(Some(&token_creds), &image).await.status.success(), "an API token as the password");
    let mut user = serde_json::to_value(server.admin.get("users", None, "vera").await.unwrap()).unwrap();
    user["spec"]["disabled"] = serde_json::json!(true);
    server.admin.update("users", None, "vera", &user).await.unwrap();
    assert!(!inspect(Some(&token_creds), &image).await.status.success(), "not once the user is disabled");

    // Audited: the push and the pull by their users, the wrong password as a denied login.
    let pushes = audit_of(&server, &[("action", "registry.push"), ("user", "admin")]).await;
    assert!(pushes.iter().any(|r| r["name"] == "shop/web:1" && r["outcome"] == "success"), "{pushes:#?}");
    let pulls = audit_of(&server, &[("action", "registry.pull"), ("user", "vera")]).await;
    assert!(!pulls.is_empty(), "the viewer's pull is audited");
    let logins = audit_of(&server, &[("user", "vera"), ("outcome", "denied")]).await;
    assert!(!logins.is_empty(), "the wrong password is a denied login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_push_with_their_secret_and_versions_show_who_pushed_and_who_runs_them() {
    // Applications name the registry by a host of its own (`registry.hosts`).
    let server = TestServer::start_with(|config| config.registry.hosts = vec!["registry.test:5000".into()]).await;
    server.seed_shop().await;
    let host = server.base.trim_start_matches("http://").to_string();
    let robot = serde_json::json!({"apiVersion": "flotilla.io/v1", "kind": "Robot",
        "metadata": {"name": "ci", "project": "shop"},
        "spec": {"permissions": [{"repositories": ["web"], "actions": ["pull", "push"]}], "expiresAt": "2099-01-01T00:00:00Z"}});
    server.admin.create("robots", Some("shop"), &robot).await.unwrap();
    let issued = server.admin.issue_robot_secret("shop", "ci").await.unwrap();
    assert_eq!(issued["account"], "robot$shop+ci");
    let secret = issued["secret"].as_str().unwrap().to_string();
    let robot_creds = format!("robot$shop+ci:{secret}");

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    image_layout(&source, "1");
    let oci = format!("oci:{}:1", source.display());
    let pushed = push(&robot_creds, &oci, &format!("{host}/shop/web:1")).await;
    assert!(pushed.status.success(), "the robot pushes to web: {}", String::from_utf8_lossy(&pushed.stderr));
    let elsewhere = push(&robot_creds, &oci, &format!("{host}/shop/api:1")).await;
    assert!(!elsewhere.status.success(), "its permissions name web only");

    // The secret opens the registry and nothing else.
    let rest = server.anonymous().with_token(Some(secret.clone())).whoami().await.unwrap_err();
    assert_eq!(rest.status(), Some(401), "a robot cannot use the REST API");
    let login = server.anonymous().login_token("robot$shop+ci", &secret, "console", None).await.unwrap_err();
    assert_eq!(login.status(), Some(401), "nor log in");

    // A new secret replaces the old one.
    let reissued = server.admin.issue_robot_secret("shop", "ci").await.unwrap();
    let image = format!("{host}/shop/web:1");
    assert!(!inspect(Some(&robot_creds), &image).await.status.success(), "the old secret stopped working");
    let new_creds = format!("robot$shop+ci:{}", reissued["secret"].as_str().unwrap());
    assert!(inspect(Some(&new_creds), &image).await.status.success());

    // An application runs the version; the versions view says who pushed it and who runs it.
    let app = serde_json::json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
        "metadata": {"name": "storefront", "project": "shop"},
        "spec": {"environment": "test", "components": [{"name": "web", "image": "registry.test:5000/shop/web:1"}]}});
    server.admin.create("applications", Some("shop"), &app).await.unwrap();
    let repositories = server.admin.repositories("shop", &[]).await.unwrap();
    assert_eq!(repositories["items"][0]["name"], "shop/web", "{repositories}");
    let vera = server.user("vera").await;
    server.grant("vera", "viewer", Some("shop"), None).await;
    let versions = vera.repository_versions("shop", "web", &[]).await.unwrap();
    let version = &versions["items"][0];
    assert_eq!(version["tags"], serde_json::json!(["1"]), "{versions}");
    assert_eq!(version["pushedBy"], "robot$shop+ci");
    assert!(version["size"].as_u64().unwrap() > 600_000, "the image with its layers: {version}");
    assert_eq!(version["applications"][0]["name"], "storefront", "{version}");
    let outsider = server.user("otto").await;
    assert_eq!(outsider.repository_versions("shop", "web", &[]).await.unwrap_err().status(), Some(403));

    // Garbage collection is for platform admins, and keeps what is referenced.
    assert_eq!(vera.registry_gc(true, Some(0)).await.unwrap_err().status(), Some(403));
    let report = server.admin.registry_gc(true, Some(0)).await.unwrap();
    assert_eq!(report["gc"]["blobsRemoved"], 0, "{report}");
    assert!(inspect(Some(&new_creds), &image).await.status.success(), "the image is whole after collection");
}

/// Runs buildah with its own image storage under `storage` (the vfs driver: it works on any
/// file system, overlay included, and leaves nothing in the machine's storage); its stdout,
/// or a panic with its stderr.
async fn buildah(storage: &std::path::Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new("buildah")
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("runroot"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "buildah {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_pushes_an_image_it_built() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let host = server.base.trim_start_matches("http://").to_string();
    let name = "localhost/flotilla-test:1";
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.path().join("bin/busybox")).unwrap();
    std::fs::write(root.path().join("hello.txt"), "built by buildah\n").unwrap();
    // The image storage is the test's own, removed with the temporary directory.
    let storage_dir = tempfile::tempdir().unwrap();
    let storage = storage_dir.path();
    let container = buildah(storage, &["from", "scratch"]).await;
    buildah(storage, &["copy", &container, root.path().to_str().unwrap(), "/"]).await;
    buildah(storage, &["config", "--cmd", "[\"/bin/busybox\", \"cat\", \"/hello.txt\"]", &container]).await;
    buildah(storage, &["commit", "--quiet", &container, name]).await;
    let destination = format!("docker://{host}/shop/built:1");
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let digest = buildah(
        storage,
        &["push", "--tls-verify=false", "--creds", &creds, "--digestfile", "/dev/stdout", name, &destination],
    )
    .await;
    assert!(digest.starts_with("sha256:"), "{digest}");
    let raw = inspect(Some(&format!("admin:{ADMIN_PASSWORD}")), &format!("{host}/shop/built:1")).await;
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(flotilla_registry::digest::of(&raw.stdout).to_string(), digest, "the digest buildah pushed is served");
}

/// The value of the sample `name` (no labels) in a `/metrics` scrape.
fn sample(metrics: &str, name: &str) -> u64 {
    let line = metrics.lines().find(|line| line.split_whitespace().next() == Some(name));
    let value =
        line.and_then(|line| line.split_whitespace().nth(1)).unwrap_or_else(|| panic!("no {name} in {metrics}"));
    value.parse().unwrap()
}

/// A bearer token of the admin's, from the token endpoint, to pull and push `repository`.
async fn admin_push_token(http: &reqwest::Client, base: &str, repository: &str) -> String {
    let token: Value = http
        .get(format!("{base}/v2/token?service=flotilla&scope=repository:{repository}:pull,push"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["token"].as_str().unwrap().to_string()
}

/// A large blob pushed over HTTP is kept in memory as a recent blob and its pulls are sent
/// from there: `/metrics` shows the blob, its bytes, the buffers, and each read from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_push_is_pulled_from_memory_and_metrics_say_so() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let http = reqwest::Client::new();
    let scrape = || async { http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap() };
    let before = scrape().await;
    assert_eq!(sample(&before, "flotilla_registry_recent_blobs"), 0);
    assert_eq!(sample(&before, "flotilla_registry_blob_reads_from_memory_total"), 0);

    let bearer = admin_push_token(&http, &server.base, "shop/big").await;
    let content: Vec<u8> = (0..6 * 1024 * 1024 + 11u32).map(|i| ((i % 251) ^ (i >> 16)) as u8).collect();
    let digest = flotilla_registry::digest::of(&content);
    let started =
        http.post(format!("{}/v2/shop/big/blobs/uploads/", server.base)).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') { format!("{}{location}", server.base) } else { location };
    let separator = if location.contains('?') { '&' } else { '?' };
    let finished = http
        .put(format!("{location}{separator}digest={digest}"))
        .bearer_auth(&bearer)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 201, "{}", finished.text().await.unwrap());

    let after_push = scrape().await;
    assert_eq!(sample(&after_push, "flotilla_registry_recent_blobs"), 1);
    assert_eq!(sample(&after_push, "flotilla_registry_recent_blob_bytes"), content.len() as u64);
    assert!(sample(&after_push, "flotilla_registry_buffer_bytes") >= 2 * 4 * 1024 * 1024, "{after_push}");
    for pull in 1..=2 {
        let pulled =
            http.get(format!("{}/v2/shop/big/blobs/{digest}", server.base)).bearer_auth(&bearer).send().await.unwrap();
        assert_eq!(pulled.status(), 200);
        assert!(pulled.bytes().await.unwrap() == content, "pull {pull} is the blob");
    }
    assert_eq!(sample(&scrape().await, "flotilla_registry_blob_reads_from_memory_total"), 2);
}

/// Sends `head` with a body of `length` bytes on a connection of its own, written in the
/// background so that the server may answer first; returns the response head (lowercased)
/// and, if `until_closed`, whether the server then closed the connection within 10 s.
async fn send_raw(base: &str, head: &str, length: usize, until_closed: bool) -> (String, bool) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let request = format!("{head}Host: {address}\r\nContent-Length: {length}\r\n\r\n");
    let sender = tokio::spawn(async move {
        writer.write_all(request.as_bytes()).await?;
        writer.write_all(&vec![7u8; length]).await?;
        // Keep the write side open: only the server may end the connection.
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Ok::<_, std::io::Error>(writer)
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let head_done = received.windows(4).any(|w| w == b"\r\n\r\n");
            if head_done && !until_closed {
                return false;
            }
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return true,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await
    .unwrap_or(false);
    sender.abort();
    let text = String::from_utf8_lossy(&received).to_lowercase();
    (text.split("\r\n\r\n").next().unwrap_or_default().to_string(), ended)
}

/// A request refused before its body is read (by authentication, or by the registry itself)
/// gets a response that says `Connection: close`, and the connection is closed: a client does
/// not send its next request on a connection that is going away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_before_its_body_is_read_closes_its_connection() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let large = 8 * 1024 * 1024;
    let digest = flotilla_registry::digest::of(b"anything");
    let unauthenticated = format!("PUT /v2/shop/web/blobs/uploads/x?digest={digest} HTTP/1.1\r\n");
    let (head, closed) = send_raw(&server.base, &unauthenticated, large, true).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(closed, "the server closes the connection");

    let http = reqwest::Client::new();
    let bearer = admin_push_token(&http, &server.base, "shop/web").await;
    let started =
        http.post(format!("{}/v2/shop/web/blobs/uploads/", server.base)).bearer_auth(&bearer).send().await.unwrap();
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let path = location.trim_start_matches(&server.base);
    let misplaced =
        format!("PATCH {path} HTTP/1.1\r\nAuthorization: Bearer {bearer}\r\nContent-Range: 5-{}\r\n", large + 4);
    let (head, closed) = send_raw(&server.base, &misplaced, large, true).await;
    assert!(head.starts_with("http/1.1 416"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(closed, "the server closes the connection");

    // A request whose body is read keeps its connection.
    let small = format!("PATCH {path} HTTP/1.1\r\nAuthorization: Bearer {bearer}\r\n");
    let (head, _) = send_raw(&server.base, &small, 10, false).await;
    assert!(head.starts_with("http/1.1 202"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
}
