-- References between objects (a Project's workspace, an Environment's clusters, ...), kept in
-- the same transaction as the objects, so that deleting a referenced object is refused.
CREATE TABLE object_refs (
    from_id BIGINT NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    to_kind TEXT NOT NULL,
    to_project TEXT NOT NULL,
    to_name TEXT NOT NULL,
    PRIMARY KEY (from_id, path)
);
CREATE INDEX object_refs_by_target ON object_refs (to_kind, to_project, to_name);
