//! The registry's governance with a real client: immutable tags, storage quotas, retention,
//! and garbage collection that keeps everything referenced while pushes go on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use flotilla_registry::gc::{apply_retention, collect_garbage};
use flotilla_registry::test_image::image_layout_variant;
use serde_json::{Value, json};
use support::{error_code, project, push_blob, push_layout, skopeo, start, tester};

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// The digest `repository:tag` resolves to, through skopeo.
async fn digest_of(host: &str, reference: &str) -> String {
    let inspected = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{host}/{reference}")]).await;
    serde_json::from_str::<Value>(&inspected).unwrap()["Digest"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_tag_refuses_overwrite_and_deletion() {
    let registry = start().await;
    project(registry.store.as_ref(), "locked", json!({"immutableTags": [{"repositories": ["web"], "tags": ["v*"]}]}))
        .await;
    let work = tempfile::tempdir().unwrap();
    let (first, second) = (work.path().join("first"), work.path().join("second"));
    image_layout_variant(&first, "1", 1);
    image_layout_variant(&second, "1", 2);
    push_layout(&registry.host, &first, "1", "locked/web:v1").await.unwrap();
    let pinned = digest_of(&registry.host, "locked/web:v1").await;

    let refused = push_layout(&registry.host, &second, "1", "locked/web:v1").await.unwrap_err();
    assert!(refused.contains("immutable"), "skopeo shows why: {refused}");
    assert_eq!(digest_of(&registry.host, "locked/web:v1").await, pinned, "v1 still points where it did");
    push_layout(&registry.host, &second, "1", "locked/web:latest").await.expect("latest is not immutable");
    push_layout(&registry.host, &second, "1", "locked/api:v1").await.expect("the rule covers web only");

    let client = reqwest::Client::new();
    let deleted = client.delete(format!("{}/v2/locked/web/manifests/v1", registry.base)).send().await.unwrap();
    assert_eq!(deleted.status(), 403);
    assert_eq!(error_code(deleted).await, "DENIED");
    let by_digest = client.delete(format!("{}/v2/locked/web/manifests/{pinned}", registry.base)).send().await.unwrap();
    assert_eq!(by_digest.status(), 403, "nor is its manifest deleted under it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_the_storage_quota_is_refused_with_the_numbers() {
    let registry = start().await;
    project(registry.store.as_ref(), "small", json!({"storageQuota": "500k"})).await;
    let work = tempfile::tempdir().unwrap();
    image_layout_variant(work.path(), "1", 1);
    // The image is about 600 kB: its third layer does not fit.
    let refused = push_layout(&registry.host, work.path(), "1", "small/web:1").await.unwrap_err();
    assert!(refused.contains("quota"), "skopeo shows why: {refused}");
    assert!(registry.store.registry().usage("small").await.unwrap() <= 500 * 1000);
    assert!(registry.store.registry().tag("small/web", "1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_everything_referenced_while_pushes_run() {
    let registry = start().await;
    let work = tempfile::tempdir().unwrap();
    let layouts: Vec<_> = (0..3u32)
        .map(|i| {
            let dir = work.path().join(format!("image{i}"));
            image_layout_variant(&dir, "1", i);
            dir
        })
        .collect();
    push_layout(&registry.host, &layouts[0], "1", "shop/web:1").await.unwrap();
    let client = reqwest::Client::new();
    let stray = push_blob(&client, &registry.base, "shop/web", b"a blob no manifest refers to").await;

    // Collections run back to back while two more images are pushed.
    let collecting = {
        let registry = registry.registry.clone();
        tokio::spawn(async move {
            let mut runs = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                collect_garbage(&registry, &tester(), Duration::from_secs(3600), now_micros()).await.unwrap();
                runs += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                if runs > 20 && registry.store.registry().tag("shop/api", "1").await.unwrap().is_some() {
                    break;
                }
            }
            runs
        })
    };
    push_layout(&registry.host, &layouts[1], "1", "shop/api:1").await.unwrap();
    push_layout(&registry.host, &layouts[2], "1", "shop/web:2").await.unwrap();
    assert!(collecting.await.unwrap() > 1, "collections ran during the pushes");

    // With no grace left, the stray blob goes; every image stays whole.
    let report = collect_garbage(&registry.registry, &tester(), Duration::ZERO, now_micros() + 1).await.unwrap();
    assert_eq!(report.blobs_removed, 1, "only the stray blob: {report:?}");
    let gone = client.head(format!("{}/v2/shop/web/blobs/{stray}", registry.base)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    for (reference, layout) in [("shop/web:1", &layouts[0]), ("shop/api:1", &layouts[1]), ("shop/web:2", &layouts[2])] {
        let copy = work.path().join(format!("copy-{}", reference.replace(['/', ':'], "-")));
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
            "--src-tls-verify=false",
            &format!("docker://{}/{reference}", registry.host),
            &format!("oci:{}:1", copy.display()),
        ])
        .await;
        let original: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let copied: Value = serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
        assert_eq!(copied["manifests"][0]["digest"], original["manifests"][0]["digest"], "{reference} is whole");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_and_gc_then_frees_the_rest() {
    let registry = start().await;
    project(
        registry.store.as_ref(),
        "tidy",
        json!({"retention": [{"tags": ["build-*"], "keepLast": 1}], "immutableTags": [{"tags": ["release-*"]}]}),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    for (variant, tag) in [(1, "build-1"), (2, "build-2"), (3, "build-3"), (4, "release-1"), (4, "latest")] {
        let dir = work.path().join(tag);
        image_layout_variant(&dir, "1", variant);
        push_layout(&registry.host, &dir, "1", &format!("tidy/web:{tag}")).await.unwrap();
    }
    let index = registry.store.registry();
    let before = index.usage("tidy").await.unwrap();
    let report = apply_retention(&registry.registry, &tester(), now_micros()).await.unwrap();
    assert_eq!((report.tags_removed, report.manifests_removed), (2, 2), "{report:?}");
    let tags: Vec<String> = index.tags("tidy/web", None, 100).await.unwrap().into_iter().map(|t| t.tag).collect();
    assert_eq!(tags, ["build-3", "latest", "release-1"], "the newest build, and what no rule covers");

    let collected = collect_garbage(&registry.registry, &tester(), Duration::ZERO, now_micros() + 1).await.unwrap();
    assert_eq!(collected.blobs_removed, 6, "two images' top layers, configs and manifests: {collected:?}");
    assert!(index.usage("tidy").await.unwrap() < before);
    skopeo(&["inspect", "--tls-verify=false", &format!("docker://{}/tidy/web:release-1", registry.host)]).await;
}
