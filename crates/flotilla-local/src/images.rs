//! Importing image archives (OCI or Docker) into containerd's CRI namespace (`k8s.io`).
//!
//! containerd 1.6 has no Transfer service and the CRI has no import call, so the archive is
//! handed to `ctr` (shipped with containerd), which unpacks it for the runtime's snapshotter.

use std::path::Path;

use tokio::process::Command;

use crate::LocalError;

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The image names in what `ctr images import` reports (`unpacking NAME (sha256:…)…done`).
pub fn imported_names(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|line| line.trim().strip_prefix("unpacking "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Imports the archive at `archive` into the containerd on `socket`; returns what `ctr`
/// reported (see [`imported_names`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_imported_names_are_read_from_the_report() {
        let report = "unpacking flotilla.local/shop:1 (sha256:0123abcd)...done\nunpacking docker.io/library/x:2 (sha256:ff)...done\n";
        assert_eq!(imported_names(report), vec!["flotilla.local/shop:1", "docker.io/library/x:2"]);
        assert!(imported_names("ctr: failed").is_empty());
    }
}
