//! Importing image archives (OCI or Docker) into containerd's CRI namespace (`k8s.io`).
//!
//! containerd 1.6 has no Transfer service and the CRI has no import call, so the archive is
//! handed to `ctr` (shipped with containerd), which unpacks it for the runtime's snapshotter.

use std::path::Path;

use tokio::process::Command;

use crate::LocalError;

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// Imports the archive at `archive` into the containerd on `socket`; returns what `ctr`
/// reported (the imported image names).
pub async fn import(socket: &Path, archive: &Path) -> Result<String, LocalError> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE, "images", "import", "--all-platforms", "--no-unpack=false"])
        .arg(archive)
        .output()
        .await
        .map_err(|e| LocalError::Image(format!("cannot run ctr: {e}")))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(LocalError::Image(format!("importing {} failed: {}", archive.display(), text.trim())));
    }
    Ok(text.trim().to_string())
}
