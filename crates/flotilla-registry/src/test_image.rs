//! Small real images for tests of the registry and its clients: layer tars, and an OCI
//! image layout (`oci:` for skopeo) with a three-layer image.

use std::path::Path;

use serde_json::{Value, json};

use crate::digest;
use crate::http::OCI_MANIFEST;

/// A layer: a tar of `files` (path, content).
#[allow(clippy::unwrap_used)] // test support: a failure is a failed test
pub fn layer(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        header.set_mtime(0);
        builder.append_data(&mut header, path, content.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Writes an OCI image layout with a three-layer image tagged `tag`; returns the manifest.
pub fn image_layout(dir: &Path, tag: &str) -> Vec<u8> {
    image_layout_variant(dir, tag, 0)
}

/// [`image_layout`] of another image: the same two lower layers, a top layer of its own
/// for each `variant`.
#[allow(clippy::unwrap_used)] // test support: a failure is a failed test
pub fn image_layout_variant(dir: &Path, tag: &str, variant: u32) -> Vec<u8> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = digest::of(bytes);
        std::fs::write(blobs.join(digest.digest()), bytes).unwrap();
        json!({"digest": digest.to_string(), "size": bytes.len()})
    };
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let data = (0..100_000u32 * (i + 1)).map(|b| ((b + if i == 2 { variant } else { 0 }) % 241) as u8);
            layer(&[(&format!("layer{i}/data"), data.collect())])
        })
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| digest::of(l).to_string()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let mut config_descriptor = put(&config);
    config_descriptor["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let layer_descriptors: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut descriptor = put(l);
            descriptor["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
            descriptor
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor, "layers": layer_descriptors
    }))
    .unwrap();
    let mut manifest_descriptor = put(&manifest);
    manifest_descriptor["mediaType"] = json!(OCI_MANIFEST);
    manifest_descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [manifest_descriptor]})).unwrap(),
    )
    .unwrap();
    manifest
}
