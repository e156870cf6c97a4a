-- Declarative objects of every kind. spec/status/labels/annotations are JSON text.
CREATE TABLE objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    project TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    resource_version BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    updated_micros BIGINT NOT NULL,
    UNIQUE (kind, project, name)
);
CREATE INDEX objects_by_name ON objects (kind, name, id);
CREATE INDEX objects_by_created ON objects (kind, created_micros, id);
CREATE INDEX objects_by_updated ON objects (kind, updated_micros, id);
CREATE INDEX objects_rolebinding_user ON objects (json_extract(spec, '$.user')) WHERE kind = 'RoleBinding';

-- Labels, one row each, for server-side label selectors.
CREATE TABLE object_labels (
    object_id BIGINT NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (object_id, key)
);
CREATE INDEX object_labels_by_key_value ON object_labels (key, value, object_id);

-- The audit log: one hash chain in commit order.
CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL,
    time_micros BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    auth TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    request_id TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT,
    project TEXT,
    name TEXT,
    outcome TEXT NOT NULL,
    message TEXT,
    operation_id TEXT,
    before_json TEXT,
    after_json TEXT,
    changes_json TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit_records (time_micros);
CREATE INDEX audit_by_user ON audit_records (user_name, seq);
CREATE INDEX audit_by_action ON audit_records (action, seq);
CREATE INDEX audit_by_object ON audit_records (kind, name, seq);
CREATE INDEX audit_by_project ON audit_records (project, seq);

-- The chain head, updated in the same transaction as each batch of records: a record
-- deleted from the end of the chain is detected against it.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE credentials (
    user_name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_micros BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    expires_micros BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_name);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_micros BIGINT NOT NULL,
    expires_micros BIGINT NOT NULL,
    revoked_micros BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);

CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    first_failure_micros BIGINT NOT NULL,
    locked_until_micros BIGINT NOT NULL
);
