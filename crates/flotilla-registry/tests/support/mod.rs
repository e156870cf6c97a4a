//! A registry on a loopback port over a real store (SQLite in a temporary directory) that
//! has the projects the tests push to.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use flotilla_core::audit::Actor;
use flotilla_core::kinds::KindRegistry;
use flotilla_core::operation::{Operation, OperationVerb};
use flotilla_registry::digest;
use flotilla_registry::http::{self, Registry};
use flotilla_registry::storage::fs::FsBlobStore;
use flotilla_store::sql::{SqlStore, SqlStoreOptions, SystemClock};
use flotilla_store::{Change, Mutation, Store};
use serde_json::{Value, json};

pub struct Running {
    pub base: String,
    pub host: String,
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn tester() -> Actor {
    Actor { user: "tester".into(), auth: "token".into(), source_ip: "127.0.0.1".into(), ..Actor::default() }
}

/// Creates (or replaces) a document as the API would.
pub async fn put(store: &dyn Store, document: Value) {
    let object = KindRegistry::builtin().parse_document(document).unwrap();
    let operation = Operation {
        id: uuid::Uuid::new_v4().to_string(),
        verb: OperationVerb::Apply,
        key: object.key(),
        object: Some(object),
        precondition: None,
    };
    store.commit(Mutation { actor: tester(), change: Change::Object(operation) }).await.unwrap();
}

/// Project `name` of workspace `retail`, with `registry` settings.
pub async fn project(store: &dyn Store, name: &str, registry: Value) {
    put(
        store,
        json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": "retail"}, "spec": {}}),
    )
    .await;
    put(
        store,
        json!({"apiVersion": "flotilla.io/v1", "kind": "Project", "metadata": {"name": name},
               "spec": {"workspace": "retail", "registry": registry}}),
    )
    .await;
}

/// A registry with project `shop` (no rules).
pub async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/flotilla.db?mode=rwc", dir.path().display());
    let store = SqlStore::connect(
        SqlStoreOptions::new(url, b"registry tests audit key".to_vec()),
        Arc::new(KindRegistry::builtin()),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    project(store.as_ref(), "shop", json!({})).await;
    let blobs = Arc::new(FsBlobStore::open(dir.path().join("registry")).unwrap());
    let registry = Arc::new(Registry::new(blobs, store.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = http::router(registry.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Running { base: format!("http://{host}"), host, registry, store, dir, server }
}

pub async fn skopeo(args: &[&str]) -> String {
    skopeo_result(args).await.unwrap_or_else(|stderr| panic!("skopeo {args:?}: {stderr}"))
}

/// skopeo's output, or its error output when it fails.
pub async fn skopeo_result(args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("skopeo").arg("--insecure-policy").args(args).output().await.unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

/// Copies the image of an OCI layout at `layout` (tag `tag`) to `docker://<host>/<target>`.
pub async fn push_layout(host: &str, layout: &std::path::Path, tag: &str, target: &str) -> Result<String, String> {
    let source = format!("oci:{}:{tag}", layout.display());
    let destination = format!("docker://{host}/{target}");
    skopeo_result(&["copy", "--preserve-digests", "--dest-tls-verify=false", &source, &destination]).await
}

pub async fn push_blob(client: &reqwest::Client, base: &str, repository: &str, content: &[u8]) -> String {
    let digest = digest::of(content).to_string();
    let started = client.post(format!("{base}/v2/{repository}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let half = content.len() / 2;
    let patched = client
        .patch(format!("{base}{location}"))
        .header("Content-Range", format!("0-{}", half.saturating_sub(1)))
        .body(content[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 202);
    let done =
        client.put(format!("{base}{location}?digest={digest}")).body(content[half..].to_vec()).send().await.unwrap();
    assert_eq!(done.status(), 201, "{}", done.text().await.unwrap());
    digest
}

pub async fn put_manifest(
    client: &reqwest::Client,
    base: &str,
    repository: &str,
    reference: &str,
    manifest: &Value,
) -> reqwest::Response {
    let media_type = manifest["mediaType"].as_str().unwrap().to_string();
    client
        .put(format!("{base}/v2/{repository}/manifests/{reference}"))
        .header("Content-Type", media_type)
        .body(serde_json::to_vec(manifest).unwrap())
        .send()
        .await
        .unwrap()
}

pub async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_string()
}
