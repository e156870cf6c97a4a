//! The Distribution API with real clients: `skopeo` copies a multi-layer image in and out
//! (digests unchanged); chunked and resumed uploads, mounts, an index of two platforms, tag
//! paging, referrers and deletion over plain HTTP, as the specification describes them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use flotilla_registry::digest;
use flotilla_registry::http::{OCI_INDEX, OCI_MANIFEST};
use flotilla_registry::test_image::{image_layout, layer};
use serde_json::{Value, json};
use support::{error_code, push_blob, put_manifest, skopeo, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_a_multi_layer_image_in_and_out_with_its_digests() {
    let registry = start().await;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let manifest = image_layout(&source, "1");
    let remote = format!("docker://{}/shop/multi:1", registry.host);
    // --preserve-digests: as it is, not recompressed (skopeo gzips uncompressed layers by default).
    skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &format!("oci:{}:1", source.display()), &remote])
        .await;

    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &remote]).await;
    assert_eq!(raw.as_bytes(), manifest.as_slice(), "the manifest comes back byte for byte");
    let tags: Value = serde_json::from_str(
        &skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{}/shop/multi", registry.host)]).await,
    )
    .unwrap();
    assert_eq!(tags["Tags"], json!(["1"]));

    let copy = work.path().join("copy");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:1", copy.display()),
    ])
    .await;
    let document: Value = serde_json::from_slice(&manifest).unwrap();
    let mut digests: Vec<String> =
        document["layers"].as_array().unwrap().iter().map(|l| l["digest"].to_string()).collect();
    digests.push(document["config"]["digest"].to_string());
    digests.push(digest::of(&manifest).to_string());
    for digest in digests {
        let hex = digest.trim_matches('"').trim_start_matches("sha256:").to_string();
        let original = std::fs::read(source.join("blobs/sha256").join(&hex)).unwrap();
        let copied = std::fs::read(copy.join("blobs/sha256").join(&hex)).expect("the same blob in the copy");
        assert_eq!(original, copied, "{digest}");
    }
}

/// Uploads `content` as a blob of `repository` in two chunks; returns its digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_chunked_resumed_verified_and_mounted() {
    let registry = start().await;
    let (client, base) = (reqwest::Client::new(), registry.base.clone());
    let version = client.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(version.status(), 200);
    assert_eq!(version.headers()["docker-distribution-api-version"], "registry/2.0");

    // Chunks out of order are refused with the offset to resume from; the upload goes on.
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
    let digest = digest::of(&content).to_string();
    let started = client.post(format!("{base}/v2/shop/web/blobs/uploads/")).send().await.unwrap();
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let first = client
        .patch(format!("{base}{location}"))
        .header("Content-Range", "0-99999")
        .body(content[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.headers()["range"], "0-99999");
    let overlapping = client
        .patch(format!("{base}{location}"))
        .header("Content-Range", "50000-149999")
        .body(content[50_000..150_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(overlapping.status(), 416);
    assert_eq!(overlapping.headers()["range"], "0-99999");
    let status = client.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!((status.status().as_u16(), status.headers()["range"].to_str().unwrap()), (204, "0-99999"));
    // A PATCH without Content-Range appends (streamed upload).
    let rest = client.patch(format!("{base}{location}")).body(content[100_000..].to_vec()).send().await.unwrap();
    assert_eq!(rest.headers()["range"], "0-199999");
    let wrong = digest::of(b"not this").to_string();
    let refused = client.put(format!("{base}{location}?digest={wrong}")).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "DIGEST_INVALID");
    let missing = client.head(format!("{base}/v2/shop/web/blobs/{digest}")).send().await.unwrap();
    assert_eq!(missing.status(), 404, "a failed upload leaves nothing behind");

    let pushed = push_blob(&client, &base, "shop/web", &content).await;
    assert_eq!(pushed, digest);
    let head = client.head(format!("{base}/v2/shop/web/blobs/{digest}")).send().await.unwrap();
    assert_eq!(head.headers()["content-length"], "200000");
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    let ranged =
        client.get(format!("{base}/v2/shop/web/blobs/{digest}")).header("Range", "bytes=10-19").send().await.unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["content-range"], "bytes 10-19/200000");
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &content[10..20]);
    let whole = client.get(format!("{base}/v2/shop/web/blobs/{digest}")).send().await.unwrap();
    assert_eq!(whole.bytes().await.unwrap().as_ref(), content.as_slice());

    // Another repository cannot read it until it is mounted there (no second upload).
    let elsewhere = client.head(format!("{base}/v2/shop/api/blobs/{digest}")).send().await.unwrap();
    assert_eq!(elsewhere.status(), 404);
    let mounted =
        client.post(format!("{base}/v2/shop/api/blobs/uploads/?mount={digest}&from=shop/web")).send().await.unwrap();
    assert_eq!(mounted.status(), 201);
    assert_eq!(mounted.headers()["location"], format!("/v2/shop/api/blobs/{digest}").as_str());
    let unknown = digest::of(b"nowhere").to_string();
    let fallback =
        client.post(format!("{base}/v2/shop/api/blobs/uploads/?mount={unknown}&from=shop/web")).send().await.unwrap();
    assert_eq!(fallback.status(), 202, "an unknown blob is not mounted: an upload starts instead");

    // Monolithic upload in the POST.
    let small = b"monolithic".to_vec();
    let small_digest = digest::of(&small).to_string();
    let posted = client
        .post(format!("{base}/v2/shop/api/blobs/uploads/?digest={small_digest}"))
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    let bad_name = client.post(format!("{base}/v2/Shop/blobs/uploads/")).send().await.unwrap();
    assert_eq!(bad_name.status(), 400);
    assert_eq!(error_code(bad_name).await, "NAME_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_indexes_tags_referrers_and_deletion() {
    let registry = start().await;
    let (client, base) = (reqwest::Client::new(), registry.base.clone());
    let mut platforms = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = serde_json::to_vec(
            &json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
        )
        .unwrap();
        let layer = layer(&[("arch", arch.as_bytes().to_vec())]);
        let config_digest = push_blob(&client, &base, "shop/app", &config).await;
        let layer_digest = push_blob(&client, &base, "shop/app", &layer).await;
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
        });
        let manifest_digest = digest::of(&serde_json::to_vec(&manifest).unwrap()).to_string();
        let created = put_manifest(&client, &base, "shop/app", &manifest_digest, &manifest).await;
        assert_eq!(created.status(), 201);
        assert_eq!(created.headers()["docker-content-digest"], manifest_digest.as_str());
        platforms.push((arch, manifest_digest, serde_json::to_vec(&manifest).unwrap().len()));
    }
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": platforms.iter().map(|(arch, digest, size)| json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": {"architecture": arch, "os": "linux"}
        })).collect::<Vec<_>>()
    });
    assert_eq!(put_manifest(&client, &base, "shop/app", "1.0", &index).await.status(), 201);
    let fetched = client.get(format!("{base}/v2/shop/app/manifests/1.0")).send().await.unwrap();
    assert_eq!(fetched.headers()["content-type"], OCI_INDEX);
    let index_digest = digest::of(&serde_json::to_vec(&index).unwrap()).to_string();
    assert_eq!(fetched.headers()["docker-content-digest"], index_digest.as_str());
    assert_eq!(fetched.json::<Value>().await.unwrap(), index);

    // A manifest naming a blob the repository does not have is refused.
    let dangling = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest::of(b"no").to_string(), "size": 2},
        "layers": []
    });
    let refused = put_manifest(&client, &base, "shop/app", "broken", &dangling).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "MANIFEST_BLOB_UNKNOWN");
    let refused = put_manifest(&client, &base, "shop/app", digest::of(b"other").as_ref(), &index).await;
    assert_eq!(error_code(refused).await, "DIGEST_INVALID", "a digest reference must be the content's digest");

    // Tags page by `n` and `last`, with a Link to the next page.
    for tag in ["1.1", "2.0", "latest"] {
        assert_eq!(put_manifest(&client, &base, "shop/app", tag, &index).await.status(), 201);
    }
    let page = client.get(format!("{base}/v2/shop/app/tags/list?n=2")).send().await.unwrap();
    assert_eq!(page.headers()["link"], "</v2/shop/app/tags/list?n=2&last=1.1>; rel=\"next\"");
    assert_eq!(page.json::<Value>().await.unwrap(), json!({"name": "shop/app", "tags": ["1.0", "1.1"]}));
    let next = client.get(format!("{base}/v2/shop/app/tags/list?n=2&last=1.1")).send().await.unwrap();
    assert_eq!(next.json::<Value>().await.unwrap()["tags"], json!(["2.0", "latest"]));
    let catalog: Value = client.get(format!("{base}/v2/_catalog")).send().await.unwrap().json().await.unwrap();
    assert_eq!(catalog["repositories"], json!(["shop/app"]));
    let unknown = client.get(format!("{base}/v2/shop/none/tags/list")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    // An artifact whose subject is the index is listed by the referrers API.
    let sbom = b"{\"sbom\": true}".to_vec();
    let sbom_digest = push_blob(&client, &base, "shop/app", &sbom).await;
    let empty = b"{}".to_vec();
    let empty_digest = push_blob(&client, &base, "shop/app", &empty).await;
    let artifact = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom_digest, "size": sbom.len()}],
        "subject": {"mediaType": OCI_INDEX, "digest": index_digest, "size": serde_json::to_vec(&index).unwrap().len()}
    });
    let artifact_digest = digest::of(&serde_json::to_vec(&artifact).unwrap()).to_string();
    let pushed = put_manifest(&client, &base, "shop/app", &artifact_digest, &artifact).await;
    assert_eq!(pushed.headers()["oci-subject"], index_digest.as_str());
    let referrers = |artifact_type: &str| {
        let url = format!("{base}/v2/shop/app/referrers/{index_digest}?artifactType={artifact_type}");
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let spdx = referrers("application/spdx%2Bjson").await;
    assert_eq!(spdx["manifests"][0]["digest"], json!(artifact_digest));
    assert_eq!(spdx["manifests"][0]["artifactType"], json!("application/spdx+json"));
    let filtered = referrers("text/plain").await;
    assert_eq!(filtered["manifests"], json!([]));

    // Deleting a tag leaves the manifest; deleting the manifest takes its tags with it.
    let deleted = client.delete(format!("{base}/v2/shop/app/manifests/latest")).send().await.unwrap();
    assert_eq!(deleted.status(), 202);
    assert_eq!(client.get(format!("{base}/v2/shop/app/manifests/latest")).send().await.unwrap().status(), 404);
    assert_eq!(client.head(format!("{base}/v2/shop/app/manifests/{index_digest}")).send().await.unwrap().status(), 200);
    // Served (and so held in the registry's cache) by digest, twice, before it is deleted.
    for _ in 0..2 {
        let served = client.get(format!("{base}/v2/shop/app/manifests/{index_digest}")).send().await.unwrap();
        assert_eq!(served.status(), 200);
        assert_eq!(served.json::<Value>().await.unwrap(), index);
    }
    let deleted = client.delete(format!("{base}/v2/shop/app/manifests/{index_digest}")).send().await.unwrap();
    assert_eq!(deleted.status(), 202);
    let by_digest = client.get(format!("{base}/v2/shop/app/manifests/{index_digest}")).send().await.unwrap();
    assert_eq!(by_digest.status(), 404, "a deleted manifest is not served from memory");
    let tags: Value = client.get(format!("{base}/v2/shop/app/tags/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(tags["tags"], json!([]));
    let gone = client.get(format!("{base}/v2/shop/app/manifests/1.0")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(error_code(gone).await, "MANIFEST_UNKNOWN");
}
