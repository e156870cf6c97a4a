//! OCI image archives (an OCI image layout in a tar file), built from a few files: the test
//! images and the pause image the runtime needs, without pulling anything from the internet.
//!
//! The layer is an uncompressed tar, so its digest is also its diff ID.

use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::LocalError;

/// A file of the image's single layer.
#[derive(Debug, Clone)]
pub struct LayerFile {
    /// Path inside the image, without a leading `/` (`bin/busybox`).
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

/// A single-layer image for linux/amd64.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub files: Vec<LayerFile>,
    /// Symbolic links: (path in the image, target).
    pub links: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn tar_error(error: std::io::Error) -> LocalError {
    LocalError::Image(format!("cannot build the image archive: {error}"))
}

/// Directories every file's path needs, parents first.
fn parents(paths: impl Iterator<Item = String>) -> Vec<String> {
    let mut directories = std::collections::BTreeSet::new();
    for path in paths {
        let mut prefix = String::new();
        let segments: Vec<&str> = path.split('/').collect();
        for segment in &segments[..segments.len().saturating_sub(1)] {
            prefix = if prefix.is_empty() { segment.to_string() } else { format!("{prefix}/{segment}") };
            directories.insert(prefix.clone());
        }
    }
    directories.into_iter().collect()
}

impl ImageSpec {
    /// The layer tar.
    fn layer(&self) -> Result<Vec<u8>, LocalError> {
        let mut builder = tar::Builder::new(Vec::new());
        let paths = self.files.iter().map(|f| f.path.clone()).chain(self.links.iter().map(|(p, _)| p.clone()));
        for directory in parents(paths) {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_mtime(0);
            builder.append_data(&mut header, format!("{directory}/"), std::io::empty()).map_err(tar_error)?;
        }
        for file in &self.files {
            let mut header = tar::Header::new_ustar();
            header.set_mode(file.mode);
            header.set_size(file.content.len() as u64);
            header.set_mtime(0);
            builder.append_data(&mut header, &file.path, file.content.as_slice()).map_err(tar_error)?;
        }
        for (path, target) in &self.links {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mtime(0);
            builder.append_link(&mut header, path, target).map_err(tar_error)?;
        }
        builder.into_inner().map_err(tar_error)
    }

    /// Writes the image as an OCI archive whose index names it `reference`
    /// (`flotilla.local/test/busybox:1`), ready for [`crate::images::import`].
    pub fn write_archive(&self, reference: &str, path: &Path) -> Result<(), LocalError> {
        let layer = self.layer()?;
        let layer_digest = digest(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "Env": self.env,
                "WorkingDir": self.working_dir.clone().unwrap_or_default(),
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "flotilla oci_archive"}],
        }))
        .map_err(|e| LocalError::Image(e.to_string()))?;
        let config_digest = digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        }))
        .map_err(|e| LocalError::Image(e.to_string()))?;
        let manifest_digest = digest(&manifest);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": reference},
            }],
        }))
        .map_err(|e| LocalError::Image(e.to_string()))?;
        let file = std::fs::File::create(path).map_err(LocalError::io(format!("cannot create {}", path.display())))?;
        let mut archive = tar::Builder::new(file);
        let mut add = |name: &str, bytes: &[u8]| -> Result<(), LocalError> {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(bytes.len() as u64);
            header.set_mtime(0);
            archive.append_data(&mut header, name, bytes).map_err(tar_error)
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index)?;
        for (blob_digest, bytes) in [(&layer_digest, &layer), (&config_digest, &config), (&manifest_digest, &manifest)]
        {
            add(&format!("blobs/sha256/{}", blob_digest.trim_start_matches("sha256:")), bytes)?;
        }
        archive.into_inner().map_err(tar_error)?;
        Ok(())
    }
}

/// An image of the static busybox at `busybox` (Debian's `busybox-static` installs
/// `/bin/busybox`), with the applets tests use linked, running `cmd`.
pub fn busybox_image(busybox: &Path, cmd: Vec<String>) -> Result<ImageSpec, LocalError> {
    let content = std::fs::read(busybox).map_err(LocalError::io(format!("cannot read {}", busybox.display())))?;
    let applets = [
        "sh", "sleep", "httpd", "wget", "nslookup", "cat", "echo", "ls", "hostname", "true", "false", "kill", "dd",
        "stat",
    ];
    Ok(ImageSpec {
        files: vec![LayerFile { path: "bin/busybox".into(), mode: 0o755, content }],
        links: applets.iter().map(|a| (format!("bin/{a}"), "busybox".to_string())).collect(),
        entrypoint: Vec::new(),
        cmd,
        env: vec!["PATH=/bin".into()],
        working_dir: Some("/".into()),
    })
}

/// The sandbox ("pause") image: holds a pod's namespaces, exits on SIGTERM.
pub fn pause_image(busybox: &Path) -> Result<ImageSpec, LocalError> {
    busybox_image(
        busybox,
        vec!["/bin/sh".into(), "-c".into(), "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_before_children() {
        assert_eq!(parents(["a/b/c".to_string(), "a/d".to_string()].into_iter()), vec!["a", "a/b"]);
    }

    #[test]
    fn an_archive_is_an_oci_layout_whose_digests_match() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ImageSpec {
            files: vec![LayerFile { path: "bin/hello".into(), mode: 0o755, content: b"#!/bin/sh\necho hi\n".to_vec() }],
            cmd: vec!["/bin/hello".into()],
            ..Default::default()
        };
        let path = dir.path().join("image.tar");
        spec.write_archive("flotilla.local/test/hello:1", &path).unwrap();
        let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
        let mut blobs = std::collections::HashMap::new();
        let mut index = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            if let Some(hash) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(digest(&bytes), format!("sha256:{hash}"), "blob {name} is stored under its digest");
                blobs.insert(format!("sha256:{hash}"), bytes);
            } else if name == "index.json" {
                index = Some(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
            }
        }
        let index = index.unwrap();
        assert_eq!(index["manifests"][0]["annotations"]["io.containerd.image.name"], "flotilla.local/test/hello:1");
        let manifest: serde_json::Value =
            serde_json::from_slice(&blobs[index["manifests"][0]["digest"].as_str().unwrap()]).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&blobs[manifest["config"]["digest"].as_str().unwrap()]).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], manifest["layers"][0]["digest"]);
        assert_eq!(config["config"]["Cmd"][0], "/bin/hello");
    }
}
