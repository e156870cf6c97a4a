//! Copying images between registries, for replication rules (and the proxy cache): a tag or
//! digest with everything it refers to (an index's manifests, an image's config and layers),
//! children before parents, so that the destination never holds a manifest whose content is
//! missing. Blobs the destination has are not sent again; a tag that already points at the
//! same digest is skipped.
//!
//! [`run_rule`] applies a [`ReplicationRuleSpec`]: which repositories and tags, which way,
//! under which names. A tag that fails is reported and the others go on.

use flotilla_core::kinds::{Direction, ReplicationRuleSpec};
use serde::Serialize;

use crate::remote::{Manifest, Remote, RemoteError};

/// What a run copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    /// Tags copied (or found already in place).
    pub tags: usize,
    /// Tags already pointing at the same digest on the other side.
    pub unchanged: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// `repository:tag: why`, for each tag that could not be copied.
    pub failures: Vec<String>,
}

/// Copies `reference` (a tag or a digest) of `from` on `source` to `to` on `destination`.
pub async fn copy(
    source: &Remote,
    from: &str,
    destination: &Remote,
    to: &str,
    reference: &str,
    report: &mut CopyReport,
) -> Result<(), RemoteError> {
    let manifest = source.manifest(from, reference).await?;
    if destination.manifest_digest(to, reference).await.as_deref() == Some(manifest.digest.as_str()) {
        report.unchanged += 1;
        report.tags += 1;
        return Ok(());
    }
    copy_content(source, from, destination, to, &manifest, report).await?;
    destination.push_manifest(to, reference, &manifest).await?;
    report.manifests += 1;
    report.tags += 1;
    Ok(())
}

/// Copies what `manifest` refers to (not the manifest itself).
async fn copy_content(
    source: &Remote,
    from: &str,
    destination: &Remote,
    to: &str,
    manifest: &Manifest,
    report: &mut CopyReport,
) -> Result<(), RemoteError> {
    for (digest, size) in manifest.children() {
        if manifest.is_index() {
            let child = source.manifest(from, &digest).await?;
            if child.is_index() {
                return Err(RemoteError::Invalid(format!("{from}@{digest}: an index inside an index is not copied")));
            }
            Box::pin(copy_content(source, from, destination, to, &child, report)).await?;
            destination.push_manifest(to, &digest, &child).await?;
            report.manifests += 1;
        } else if !destination.has_blob(to, &digest).await? {
            let content = source.blob(from, &digest).await?;
            destination.push_blob(to, &digest, size, content).await?;
            report.blobs += 1;
            report.bytes += size;
        }
    }
    Ok(())
}

/// One repository a rule copies, with its name on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// `<project>/<path>` here.
    pub local: String,
    /// Its name on the external registry.
    pub remote: String,
}

/// The repositories `rule` of `project` copies: of `local_paths` (the project's repositories,
/// paths inside it) for a push rule; of the external registry's catalog, or the rule's
/// literal names, for a pull rule.
pub async fn plan(
    rule: &ReplicationRuleSpec,
    project: &str,
    local_paths: &[String],
    external: &Remote,
) -> Result<Vec<Pair>, RemoteError> {
    let pair = |path: &str| Pair { local: format!("{project}/{path}"), remote: rule.remote_name(project, path) };
    match rule.direction {
        Direction::Push => Ok(local_paths.iter().filter(|p| rule.selects_repository(p)).map(|p| pair(p)).collect()),
        Direction::Pull => {
            let paths: Vec<String> = match rule.literal_repositories() {
                Some(literal) => literal.into_iter().map(str::to_string).collect(),
                None => external
                    .catalog()
                    .await?
                    .iter()
                    .filter_map(|remote| rule.local_path(project, remote))
                    .filter(|path| rule.selects_repository(path))
                    .map(str::to_string)
                    .collect(),
            };
            Ok(paths.iter().map(|p| pair(p)).collect())
        }
    }
}

/// Copies the selected tags of every pair, in the rule's direction between `local` (this
/// registry) and `external`; with `only_tag`, that tag alone (a push that just happened).
pub async fn run_rule(
    rule: &ReplicationRuleSpec,
    pairs: &[Pair],
    local: &Remote,
    external: &Remote,
    only_tag: Option<&str>,
) -> CopyReport {
    let mut report = CopyReport::default();
    for pair in pairs {
        let (source, from, destination, to) = match rule.direction {
            Direction::Push => (local, &pair.local, external, &pair.remote),
            Direction::Pull => (external, &pair.remote, local, &pair.local),
        };
        let tags = match only_tag {
            Some(tag) => vec![tag.to_string()],
            None => match source.tags(from).await {
                Ok(tags) => tags,
                Err(error) => {
                    report.failures.push(format!("{from}: {error}"));
                    continue;
                }
            },
        };
        for tag in tags.iter().filter(|tag| rule.selects_tag(tag)) {
            if let Err(error) = copy(source, from, destination, to, tag, &mut report).await {
                report.failures.push(format!("{from}:{tag}: {error}"));
            }
        }
    }
    report
}
