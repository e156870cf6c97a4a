-- The registry's index. Blob and manifest content is in the registry's blob storage.

-- Every blob the index knows, with its size and when it was last linked (garbage
-- collection leaves recently linked blobs alone: their manifest may be on its way).
CREATE TABLE registry_blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    linked_micros BIGINT NOT NULL
);
CREATE INDEX registry_blobs_by_linked ON registry_blobs (linked_micros);

-- The blobs each repository may serve.
CREATE TABLE registry_links (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    project TEXT NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX registry_links_by_digest ON registry_links (digest);
CREATE INDEX registry_links_by_project ON registry_links (project, digest);

CREATE TABLE registry_repositories (
    name TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    updated_micros BIGINT NOT NULL
);
CREATE INDEX registry_repositories_by_project ON registry_repositories (project, name);

CREATE TABLE registry_manifests (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    total_size BIGINT NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    pushed_by TEXT NOT NULL,
    pushed_micros BIGINT NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX registry_manifests_by_digest ON registry_manifests (digest);
CREATE INDEX registry_manifests_by_subject ON registry_manifests (repository, subject);
CREATE INDEX registry_manifests_by_pushed ON registry_manifests (repository, pushed_micros, digest);

-- What each manifest refers to: config and layers, or an index's manifests.
CREATE TABLE registry_manifest_refs (
    repository TEXT NOT NULL,
    manifest TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repository, manifest, digest)
);
CREATE INDEX registry_manifest_refs_by_digest ON registry_manifest_refs (digest);

CREATE TABLE registry_tags (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    pushed_by TEXT NOT NULL,
    pushed_micros BIGINT NOT NULL,
    PRIMARY KEY (repository, tag)
);
CREATE INDEX registry_tags_by_digest ON registry_tags (repository, digest);
