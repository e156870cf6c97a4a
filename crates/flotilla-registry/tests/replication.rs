//! Replication against a real second registry (Debian's `docker-registry` on loopback):
//! images and a two-platform index pushed out with their digests unchanged, images pulled in
//! under the project's names, and a second run that finds everything in place.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use flotilla_core::kinds::ReplicationRuleSpec;
use flotilla_registry::http::OCI_INDEX;
use flotilla_registry::remote::{Endpoint, Remote};
use flotilla_registry::replicate::{plan, run_rule};
use flotilla_registry::test_image::image_layout_variant;
use flotilla_registry::test_registry::start_distribution;
use oci_client::secrets::RegistryAuth;
use serde_json::{Value, json};
use support::{push_layout, put_manifest, skopeo, start};

fn remote(host: &str) -> Remote {
    Remote::new(Endpoint { host: host.into(), plain_http: true, insecure: false, auth: RegistryAuth::Anonymous })
}

fn rule(document: Value) -> ReplicationRuleSpec {
    serde_json::from_value(document).unwrap()
}

async fn digest_of(host: &str, reference: &str) -> String {
    let inspected = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{host}/{reference}")]).await;
    flotilla_registry::digest::of(inspected.as_bytes()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_indexes_replicate_to_and_from_distribution() {
    let ours = start().await;
    let theirs = start_distribution().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut manifests = Vec::new();
    for variant in 1..=2u32 {
        let layout = work.path().join(format!("v{variant}"));
        image_layout_variant(&layout, "1", variant);
        push_layout(&ours.host, &layout, "1", &format!("shop/web:{variant}")).await.unwrap();
        let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        manifests.push(index["manifests"][0].clone());
    }
    // A two-platform index over the two images.
    let mut platforms = manifests.clone();
    platforms[0]["platform"] = json!({"architecture": "amd64", "os": "linux"});
    platforms[1]["platform"] = json!({"architecture": "arm64", "os": "linux"});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms});
    let client = reqwest::Client::new();
    let stored = put_manifest(&client, &ours.base, "shop/web", "multi", &index).await;
    assert_eq!(stored.status(), 201);
    push_layout(&ours.host, &work.path().join("v1"), "1", "shop/api:1").await.unwrap();

    // Push: web's tags (not api) to distribution under mirror/, digests unchanged.
    let push =
        rule(json!({"registry": "dist", "direction": "push", "repositories": ["web"], "remoteNamespace": "mirror"}));
    let local = remote(&ours.host);
    let external = remote(&theirs.host);
    let pairs = plan(&push, "shop", &["web".into(), "api".into()], &external).await.unwrap();
    assert_eq!(pairs.len(), 1);
    let report = run_rule(&push, &pairs, &local, &external, None).await;
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.tags, 3, "{report:?}");
    for tag in ["1", "2", "multi"] {
        assert_eq!(
            digest_of(&theirs.host, &format!("mirror/web:{tag}")).await,
            digest_of(&ours.host, &format!("shop/web:{tag}")).await,
            "{tag} arrived whole"
        );
    }
    let copied_index: Value = serde_json::from_str(
        &skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/mirror/web:multi", theirs.host)])
            .await,
    )
    .unwrap();
    assert_eq!(copied_index["manifests"][1]["platform"]["architecture"], "arm64");

    // A second run finds everything in place and sends nothing.
    let again = run_rule(&push, &pairs, &local, &external, None).await;
    assert_eq!((again.unchanged, again.blobs, again.bytes), (3, 0, 0), "{again:?}");

    // Pull: from distribution's catalog, by pattern, into project shop.
    push_layout(&theirs.host, &work.path().join("v2"), "1", "vendor/base/os:7").await.unwrap();
    push_layout(&theirs.host, &work.path().join("v1"), "1", "vendor/other:1").await.unwrap();
    let pull = rule(json!({"registry": "dist", "direction": "pull", "repositories": ["base/*"], "tags": ["7"],
        "remoteNamespace": "vendor"}));
    let pairs = plan(&pull, "shop", &[], &external).await.unwrap();
    assert_eq!(pairs.iter().map(|p| p.local.as_str()).collect::<Vec<_>>(), ["shop/base/os"]);
    let report = run_rule(&pull, &pairs, &local, &external, None).await;
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(digest_of(&ours.host, "shop/base/os:7").await, digest_of(&theirs.host, "vendor/base/os:7").await);
    assert!(ours.store.registry().tag("shop/other", "1").await.unwrap().is_none(), "other is not selected");

    // A tag that cannot be copied is reported, and the rest goes on.
    let missing = rule(
        json!({"registry": "dist", "direction": "pull", "repositories": ["nothing-here"], "remoteNamespace": "vendor"}),
    );
    let pairs = plan(&missing, "shop", &[], &external).await.unwrap();
    let report = run_rule(&missing, &pairs, &local, &external, None).await;
    assert_eq!(report.failures.len(), 1, "{report:?}");
}
