//! The registry's index in SQL (see [`crate::registry`]): reads, and the changes the writer
//! applies inside its transaction, with the project's rules checked against the Project as
//! it is in that transaction.

use flotilla_core::ObjectKey;
use flotilla_core::audit::AuditRecord;
use flotilla_core::kinds::ProjectSpec;
use flotilla_core::registry::{RegistrySettings, split_repository};
use serde_json::json;

use super::exec::{Bind, Executor, SqlRow};
use super::objects;
use crate::StoreError;
use crate::registry::{
    BlobRecord, ManifestRecord, NewManifest, RegistryChange, RegistryRefusal, RepositoryQuery, RepositoryRecord,
    TagRecord,
};

const MANIFEST_COLUMNS: &str =
    "repository, digest, media_type, size, total_size, subject, artifact_type, pushed_by, pushed_micros";

fn manifest_from_row(row: &dyn SqlRow) -> Result<ManifestRecord, StoreError> {
    Ok(ManifestRecord {
        repository: row.text(0)?,
        digest: row.text(1)?,
        media_type: row.text(2)?,
        size: row.int(3)? as u64,
        total_size: row.int(4)? as u64,
        subject: row.opt_text(5)?,
        artifact_type: row.opt_text(6)?,
        pushed_by: row.text(7)?,
        pushed_micros: row.int(8)?,
    })
}

fn tag_from_row(row: &dyn SqlRow) -> Result<TagRecord, StoreError> {
    Ok(TagRecord { tag: row.text(0)?, digest: row.text(1)?, pushed_by: row.text(2)?, pushed_micros: row.int(3)? })
}

const REPOSITORY_COLUMNS: &str = "r.name, r.project, \
     (SELECT COUNT(*) FROM registry_manifests m WHERE m.repository = r.name), \
     (SELECT COUNT(*) FROM registry_tags t WHERE t.repository = r.name), r.created_micros, r.updated_micros";

fn repository_from_row(row: &dyn SqlRow) -> Result<RepositoryRecord, StoreError> {
    Ok(RepositoryRecord {
        name: row.text(0)?,
        project: row.text(1)?,
        manifests: row.int(2)? as u64,
        tags: row.int(3)? as u64,
        created_micros: row.int(4)?,
        updated_micros: row.int(5)?,
    })
}

fn text(value: &str) -> Bind {
    Bind::Text(value.to_string())
}

pub(crate) async fn linked_blob<E: Executor>(
    exec: &mut E,
    repository: &str,
    digest: &str,
) -> Result<Option<u64>, StoreError> {
    exec.fetch_optional(
        "SELECT b.size FROM registry_links l JOIN registry_blobs b ON b.digest = l.digest \
         WHERE l.repository = $1 AND l.digest = $2",
        &[text(repository), text(digest)],
        |row| Ok(row.int(0)? as u64),
    )
    .await
}

pub(crate) async fn blob<E: Executor>(exec: &mut E, digest: &str) -> Result<Option<BlobRecord>, StoreError> {
    exec.fetch_optional(
        "SELECT digest, size, linked_micros FROM registry_blobs WHERE digest = $1",
        &[text(digest)],
        |row| Ok(BlobRecord { digest: row.text(0)?, size: row.int(1)? as u64, linked_micros: row.int(2)? }),
    )
    .await
}

pub(crate) async fn manifest<E: Executor>(
    exec: &mut E,
    repository: &str,
    digest: &str,
) -> Result<Option<ManifestRecord>, StoreError> {
    let sql = format!("SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = $1 AND digest = $2");
    exec.fetch_optional(&sql, &[text(repository), text(digest)], manifest_from_row).await
}

pub(crate) async fn tag<E: Executor>(
    exec: &mut E,
    repository: &str,
    tag: &str,
) -> Result<Option<TagRecord>, StoreError> {
    exec.fetch_optional(
        "SELECT tag, digest, pushed_by, pushed_micros FROM registry_tags WHERE repository = $1 AND tag = $2",
        &[text(repository), text(tag)],
        tag_from_row,
    )
    .await
}

pub(crate) async fn tagged_manifest<E: Executor>(
    exec: &mut E,
    repository: &str,
    tag: &str,
) -> Result<Option<ManifestRecord>, StoreError> {
    // MANIFEST_COLUMNS, of `m`.
    const SQL: &str = "SELECT m.repository, m.digest, m.media_type, m.size, m.total_size, m.subject, \
         m.artifact_type, m.pushed_by, m.pushed_micros FROM registry_tags t JOIN registry_manifests m \
         ON m.repository = t.repository AND m.digest = t.digest WHERE t.repository = $1 AND t.tag = $2";
    exec.fetch_optional(SQL, &[text(repository), text(tag)], manifest_from_row).await
}

pub(crate) async fn tags<E: Executor>(
    exec: &mut E,
    repository: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<TagRecord>, StoreError> {
    exec.fetch_all(
        "SELECT tag, digest, pushed_by, pushed_micros FROM registry_tags WHERE repository = $1 AND tag > $2 \
         ORDER BY tag LIMIT $3",
        &[text(repository), text(after.unwrap_or_default()), Bind::Int(i64::from(limit))],
        tag_from_row,
    )
    .await
}

pub(crate) async fn tags_of<E: Executor>(
    exec: &mut E,
    repository: &str,
    digest: &str,
) -> Result<Vec<TagRecord>, StoreError> {
    exec.fetch_all(
        "SELECT tag, digest, pushed_by, pushed_micros FROM registry_tags WHERE repository = $1 AND digest = $2 \
         ORDER BY tag",
        &[text(repository), text(digest)],
        tag_from_row,
    )
    .await
}

pub(crate) async fn manifests<E: Executor>(
    exec: &mut E,
    repository: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<ManifestRecord>, StoreError> {
    let limit = Bind::Int(i64::from(limit));
    let cursor = match after {
        Some(digest) => manifest(exec, repository, digest).await?,
        None => None,
    };
    match cursor {
        Some(cursor) => {
            let sql = format!(
                "SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = $1 \
                 AND (pushed_micros < $2 OR (pushed_micros = $2 AND digest > $3)) \
                 ORDER BY pushed_micros DESC, digest LIMIT $4"
            );
            let binds = [text(repository), Bind::Int(cursor.pushed_micros), text(&cursor.digest), limit];
            exec.fetch_all(&sql, &binds, manifest_from_row).await
        }
        None => {
            let sql = format!(
                "SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = $1 \
                 ORDER BY pushed_micros DESC, digest LIMIT $2"
            );
            exec.fetch_all(&sql, &[text(repository), limit], manifest_from_row).await
        }
    }
}

pub(crate) async fn repository<E: Executor>(exec: &mut E, name: &str) -> Result<Option<RepositoryRecord>, StoreError> {
    let sql = format!("SELECT {REPOSITORY_COLUMNS} FROM registry_repositories r WHERE r.name = $1");
    exec.fetch_optional(&sql, &[text(name)], repository_from_row).await
}

pub(crate) async fn repositories<E: Executor>(
    exec: &mut E,
    query: &RepositoryQuery,
) -> Result<Vec<RepositoryRecord>, StoreError> {
    let mut sql = super::exec::SqlBuilder::new(&format!(
        "SELECT {REPOSITORY_COLUMNS} FROM registry_repositories r WHERE r.name > "
    ));
    sql.text(query.after.clone().unwrap_or_default());
    if let Some(project) = &query.project {
        sql.push(" AND r.project = ").text(project.clone());
    }
    if let Some(part) = &query.name_contains {
        let escaped = part.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        sql.push(" AND r.name LIKE ").text(format!("%{escaped}%")).push(" ESCAPE '\\'");
    }
    sql.push(" ORDER BY r.name LIMIT ").int(i64::from(query.limit));
    exec.fetch_all(&sql.sql, &sql.binds, repository_from_row).await
}

pub(crate) async fn referrers<E: Executor>(
    exec: &mut E,
    repository: &str,
    subject: &str,
) -> Result<Vec<ManifestRecord>, StoreError> {
    let sql = format!(
        "SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = $1 AND subject = $2 ORDER BY digest"
    );
    exec.fetch_all(&sql, &[text(repository), text(subject)], manifest_from_row).await
}

pub(crate) async fn referenced_by_index<E: Executor>(
    exec: &mut E,
    repository: &str,
    digest: &str,
) -> Result<bool, StoreError> {
    let found = exec
        .fetch_optional(
            "SELECT 1 FROM registry_manifest_refs WHERE repository = $1 AND digest = $2 LIMIT 1",
            &[text(repository), text(digest)],
            |row| row.int(0),
        )
        .await?;
    Ok(found.is_some())
}

/// Bytes `project` stores: kept in `registry_project_usage` by [`link`] and [`unlinked`].
pub(crate) async fn usage<E: Executor>(exec: &mut E, project: &str) -> Result<u64, StoreError> {
    let used = exec
        .fetch_optional("SELECT bytes FROM registry_project_usage WHERE project = $1", &[text(project)], |row| {
            row.int(0)
        })
        .await?;
    Ok(used.unwrap_or(0).max(0) as u64)
}

/// Adds `bytes` (negative: takes them) to what `project` stores.
async fn add_usage<E: Executor>(exec: &mut E, project: &str, bytes: i64) -> Result<(), StoreError> {
    exec.execute(
        "INSERT INTO registry_project_usage (project, bytes) VALUES ($1, $2) \
         ON CONFLICT (project) DO UPDATE SET bytes = registry_project_usage.bytes + excluded.bytes",
        &[text(project), Bind::Int(bytes)],
    )
    .await?;
    Ok(())
}

/// Whether a repository of `project` links `digest`.
async fn project_holds<E: Executor>(exec: &mut E, project: &str, digest: &str) -> Result<bool, StoreError> {
    let found = exec
        .fetch_optional(
            "SELECT 1 FROM registry_links WHERE project = $1 AND digest = $2 LIMIT 1",
            &[text(project), text(digest)],
            |row| row.int(0),
        )
        .await?;
    Ok(found.is_some())
}

/// After links of `digest` in `projects` were removed: each project no longer linking it
/// stores its size less.
async fn unlinked<E: Executor>(exec: &mut E, projects: &[String], digest: &str) -> Result<(), StoreError> {
    let size = exec
        .fetch_optional("SELECT size FROM registry_blobs WHERE digest = $1", &[text(digest)], |row| row.int(0))
        .await?
        .unwrap_or(0);
    for project in projects {
        if !project_holds(exec, project, digest).await? {
            add_usage(exec, project, -size).await?;
        }
    }
    Ok(())
}

pub(crate) async fn unreferenced_blobs<E: Executor>(
    exec: &mut E,
    linked_before_micros: i64,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    exec.fetch_all(
        "SELECT b.digest FROM registry_blobs b WHERE b.linked_micros < $1 \
         AND NOT EXISTS (SELECT 1 FROM registry_manifest_refs r WHERE r.digest = b.digest) \
         AND NOT EXISTS (SELECT 1 FROM registry_manifests m WHERE m.digest = b.digest) \
         ORDER BY b.digest LIMIT $2",
        &[Bind::Int(linked_before_micros), Bind::Int(i64::from(limit))],
        |row| row.text(0),
    )
    .await
}

/// The audit target of a change: the project and `repository`, `repository:tag` or
/// `repository@digest`.
pub(crate) fn describe(change: &RegistryChange) -> (&'static str, Option<ObjectKey>) {
    let key = |repository: &str, name: String| {
        let (project, _) = split_repository(repository);
        Some(ObjectKey::new("Repository", Some(project.to_string()), name))
    };
    match change {
        RegistryChange::LinkBlob { repository, digest, .. } => {
            ("registry.link", key(repository, at(repository, digest)))
        }
        RegistryChange::PutManifest { repository, manifest, tag, .. } => (
            "registry.push",
            key(
                repository,
                tag.as_ref().map_or_else(|| at(repository, &manifest.digest), |t| format!("{repository}:{t}")),
            ),
        ),
        RegistryChange::DeleteManifest { repository, digest } | RegistryChange::UnlinkBlob { repository, digest } => {
            ("registry.delete", key(repository, at(repository, digest)))
        }
        RegistryChange::DeleteTag { repository, tag } => {
            ("registry.delete", key(repository, format!("{repository}:{tag}")))
        }
        RegistryChange::ForgetBlobs { .. } => ("registry.gc", None),
    }
}

fn at(repository: &str, digest: &str) -> String {
    format!("{repository}@{digest}")
}

/// Applies `change` in the writer's transaction, filling in `record`. Returns whether the
/// change is audited (a blob link alone is not).
pub(crate) async fn apply<E: Executor>(
    exec: &mut E,
    change: &RegistryChange,
    user: &str,
    now_micros: i64,
    record: &mut AuditRecord,
) -> Result<bool, StoreError> {
    match change {
        RegistryChange::LinkBlob { repository, digest, size } => {
            let settings = settings(exec, repository).await?;
            link(exec, repository, digest, *size, &settings, now_micros).await?;
            Ok(false)
        }
        RegistryChange::PutManifest { repository, manifest: new, references, tag } => {
            let settings = settings(exec, repository).await?;
            let (_, path) = split_repository(repository);
            let previous = match tag {
                Some(tag) => self::tag(exec, repository, tag).await?,
                None => None,
            };
            if let (Some(tag), Some(previous)) = (tag, &previous)
                && previous.digest != new.digest
                && settings.is_immutable(path, tag)
            {
                return Err(RegistryRefusal::ImmutableTag { repository: repository.clone(), tag: tag.clone() }.into());
            }
            let mut total = new.size;
            for reference in references {
                total += match linked_blob(exec, repository, reference).await? {
                    Some(size) => size,
                    None => match manifest(exec, repository, reference).await? {
                        Some(child) => child.total_size,
                        None => {
                            return Err(RegistryRefusal::UnknownReference {
                                repository: repository.clone(),
                                digest: reference.clone(),
                            }
                            .into());
                        }
                    },
                };
            }
            link(exec, repository, &new.digest, new.size, &settings, now_micros).await?;
            insert_manifest(exec, repository, new, total, user, now_micros).await?;
            for reference in references {
                exec.execute(
                    "INSERT INTO registry_manifest_refs (repository, manifest, digest) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                    &[text(repository), text(&new.digest), text(reference)],
                )
                .await?;
            }
            if let Some(tag) = tag {
                exec.execute(
                    "INSERT INTO registry_tags (repository, tag, digest, pushed_by, pushed_micros) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repository, tag) DO UPDATE SET \
                     digest = excluded.digest, pushed_by = excluded.pushed_by, pushed_micros = excluded.pushed_micros",
                    &[text(repository), text(tag), text(&new.digest), text(user), Bind::Int(now_micros)],
                )
                .await?;
            }
            record.before = previous.map(|p| json!({"digest": p.digest}).to_string());
            record.after =
                Some(json!({"digest": new.digest, "mediaType": new.media_type, "size": total, "tag": tag}).to_string());
            Ok(true)
        }
        RegistryChange::DeleteManifest { repository, digest } => {
            let Some(found) = manifest(exec, repository, digest).await? else {
                return Err(unknown(repository, digest));
            };
            let settings = settings(exec, repository).await?;
            let (_, path) = split_repository(repository);
            let tags = tags_of(exec, repository, digest).await?;
            if let Some(fixed) = tags.iter().find(|t| settings.is_immutable(path, &t.tag)) {
                return Err(
                    RegistryRefusal::ImmutableTag { repository: repository.clone(), tag: fixed.tag.clone() }.into()
                );
            }
            let binds = [text(repository), text(digest)];
            exec.execute("DELETE FROM registry_tags WHERE repository = $1 AND digest = $2", &binds).await?;
            exec.execute("DELETE FROM registry_manifest_refs WHERE repository = $1 AND manifest = $2", &binds).await?;
            exec.execute("DELETE FROM registry_manifests WHERE repository = $1 AND digest = $2", &binds).await?;
            let tag_names: Vec<&str> = tags.iter().map(|t| t.tag.as_str()).collect();
            record.before =
                Some(json!({"digest": found.digest, "mediaType": found.media_type, "tags": tag_names}).to_string());
            Ok(true)
        }
        RegistryChange::DeleteTag { repository, tag } => {
            let Some(found) = self::tag(exec, repository, tag).await? else { return Err(unknown(repository, tag)) };
            let settings = settings(exec, repository).await?;
            if settings.is_immutable(split_repository(repository).1, tag) {
                return Err(RegistryRefusal::ImmutableTag { repository: repository.clone(), tag: tag.clone() }.into());
            }
            exec.execute(
                "DELETE FROM registry_tags WHERE repository = $1 AND tag = $2",
                &[text(repository), text(tag)],
            )
            .await?;
            record.before = Some(json!({"digest": found.digest, "tag": tag}).to_string());
            Ok(true)
        }
        RegistryChange::UnlinkBlob { repository, digest } => {
            let removed = exec
                .execute(
                    "DELETE FROM registry_links WHERE repository = $1 AND digest = $2",
                    &[text(repository), text(digest)],
                )
                .await?;
            if removed == 0 {
                return Err(unknown(repository, digest));
            }
            let (project, _) = split_repository(repository);
            unlinked(exec, &[project.to_string()], digest).await?;
            Ok(true)
        }
        RegistryChange::ForgetBlobs { digests, linked_before_micros } => {
            let mut forgotten = Vec::new();
            for digest in digests {
                let still_garbage = exec
                    .fetch_optional(
                        "SELECT 1 FROM registry_blobs b WHERE b.digest = $1 AND b.linked_micros < $2 \
                         AND NOT EXISTS (SELECT 1 FROM registry_manifest_refs r WHERE r.digest = b.digest) \
                         AND NOT EXISTS (SELECT 1 FROM registry_manifests m WHERE m.digest = b.digest)",
                        &[text(digest), Bind::Int(*linked_before_micros)],
                        |row| row.int(0),
                    )
                    .await?
                    .is_some();
                if still_garbage {
                    let projects = exec
                        .fetch_all(
                            "SELECT DISTINCT project FROM registry_links WHERE digest = $1",
                            &[text(digest)],
                            |row| row.text(0),
                        )
                        .await?;
                    exec.execute("DELETE FROM registry_links WHERE digest = $1", &[text(digest)]).await?;
                    unlinked(exec, &projects, digest).await?;
                    exec.execute("DELETE FROM registry_blobs WHERE digest = $1", &[text(digest)]).await?;
                    forgotten.push(digest.as_str());
                }
            }
            record.message = Some(format!("{} unreferenced blobs removed", forgotten.len()));
            record.after = Some(json!({"blobs": forgotten}).to_string());
            Ok(true)
        }
    }
}

fn unknown(repository: &str, reference: &str) -> StoreError {
    RegistryRefusal::UnknownReference { repository: repository.to_string(), digest: reference.to_string() }.into()
}

/// The registry settings of the repository's project, which must exist.
async fn settings<E: Executor>(exec: &mut E, repository: &str) -> Result<RegistrySettings, StoreError> {
    let (project, _) = split_repository(repository);
    let Some(object) = objects::get(exec, &ObjectKey::new("Project", None, project)).await? else {
        return Err(RegistryRefusal::UnknownProject(project.to_string()).into());
    };
    let spec: ProjectSpec = serde_json::from_value(object.spec)
        .map_err(|e| StoreError::Backend(format!("project {project:?} no longer parses: {e}")))?;
    Ok(spec.registry.unwrap_or_default())
}

/// Links a blob into `repository`, within the project's storage quota.
async fn link<E: Executor>(
    exec: &mut E,
    repository: &str,
    digest: &str,
    size: u64,
    settings: &RegistrySettings,
    now_micros: i64,
) -> Result<(), StoreError> {
    let (project, _) = split_repository(repository);
    let new_to_project = !project_holds(exec, project, digest).await?;
    if let Some(quota) = settings.quota_bytes()
        && new_to_project
    {
        let used = usage(exec, project).await?;
        if used + size > quota {
            return Err(
                RegistryRefusal::QuotaExceeded { project: project.to_string(), quota, used, adding: size }.into()
            );
        }
    }
    exec.execute(
        "INSERT INTO registry_blobs (digest, size, linked_micros) VALUES ($1, $2, $3) \
         ON CONFLICT (digest) DO UPDATE SET linked_micros = excluded.linked_micros",
        &[text(digest), Bind::Int(size as i64), Bind::Int(now_micros)],
    )
    .await?;
    exec.execute(
        "INSERT INTO registry_links (repository, digest, project) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[text(repository), text(digest), text(project)],
    )
    .await?;
    if new_to_project {
        add_usage(exec, project, size as i64).await?;
    }
    exec.execute(
        "INSERT INTO registry_repositories (name, project, created_micros, updated_micros) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (name) DO UPDATE SET updated_micros = excluded.updated_micros",
        &[text(repository), text(project), Bind::Int(now_micros)],
    )
    .await?;
    Ok(())
}

async fn insert_manifest<E: Executor>(
    exec: &mut E,
    repository: &str,
    manifest: &NewManifest,
    total_size: u64,
    user: &str,
    now_micros: i64,
) -> Result<(), StoreError> {
    exec.execute(
        "INSERT INTO registry_manifests (repository, digest, media_type, size, total_size, subject, artifact_type, \
         pushed_by, pushed_micros) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        &[
            text(repository),
            text(&manifest.digest),
            text(&manifest.media_type),
            Bind::Int(manifest.size as i64),
            Bind::Int(total_size as i64),
            Bind::OptText(manifest.subject.clone()),
            Bind::OptText(manifest.artifact_type.clone()),
            text(user),
            Bind::Int(now_micros),
        ],
    )
    .await?;
    Ok(())
}
