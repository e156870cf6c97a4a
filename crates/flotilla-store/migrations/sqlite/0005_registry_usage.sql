-- Bytes each project stores in the registry, each blob counted once however many of its
-- repositories link it: kept up to date by every link, unlink and garbage collection, so
-- that checking a push against the project's quota reads one row rather than summing all
-- of the project's blobs.
CREATE TABLE registry_project_usage (
    project TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL
);
INSERT INTO registry_project_usage (project, bytes)
SELECT held.project, CAST(SUM(b.size) AS BIGINT)
FROM (SELECT DISTINCT project, digest FROM registry_links) held
JOIN registry_blobs b ON b.digest = held.digest
GROUP BY held.project;
