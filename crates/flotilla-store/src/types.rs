//! Values that cross the [`crate::Store`] boundary.

use flotilla_core::Object;
use flotilla_core::audit::{Actor, AuditRecord, Outcome};
use flotilla_core::operation::Operation;
use flotilla_core::selector::Selector;
use serde::{Deserialize, Serialize};

/// A change and who asked for it.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub actor: Actor,
    pub change: Change,
}

/// What a mutation changes. Each variant is written with its audit record.
// A mutation is built once and moved once into the writer's queue; boxing the large
// `Object` variant would buy nothing but noise at every call site.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Change {
    /// Create, update, apply or delete a declarative object.
    Object(Operation),
    /// Set a user's password hash (argon2id, PHC string).
    SetPassword {
        user: String,
        password_hash: String,
    },
    /// A login: a successful one creates a session or a token; a failed one only updates
    /// throttling. Throttle updates apply in both cases (`None` clears a key).
    Login {
        user: String,
        outcome: Outcome,
        message: Option<String>,
        grant: Option<LoginGrant>,
        throttle: Vec<(String, Option<ThrottleState>)>,
    },
    /// End a session (logout).
    EndSession {
        id_hash: String,
        user: String,
    },
    CreateToken(ApiToken),
    RevokeToken {
        id: String,
        user: String,
    },
    /// Only an audit record: a request refused before it reached the store.
    Record(AuditNote),
    /// A change to the registry's index (pushes, deletions, garbage collection).
    Registry(crate::registry::RegistryChange),
}

/// What a successful login hands out.
#[derive(Debug, Clone)]
pub enum LoginGrant {
    Session(Session),
    Token(ApiToken),
}

/// An audit-only record's content.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub action: String,
    pub kind: Option<String>,
    pub project: Option<String>,
    pub name: Option<String>,
    pub outcome: Option<Outcome>,
    pub message: Option<String>,
}

/// The result of a committed mutation.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Sequence number of the audit record (also the resource version of a written object).
    pub seq: u64,
    pub outcome: Outcome,
    /// The object after the change (absent after a delete).
    pub object: Option<Object>,
}

/// A console session. Only the SHA-256 of its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id_hash: String,
    pub user: String,
    pub created_micros: i64,
    pub expires_micros: i64,
}

/// An API token. Only the SHA-256 of its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// Public identifier (shown in lists, used to revoke).
    pub id: String,
    pub user: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_micros: i64,
    pub expires_micros: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_micros: Option<i64>,
}

/// Failed-login bookkeeping for one key (`user:<name>` or `ip:<addr>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleState {
    pub failures: u32,
    pub first_failure_micros: i64,
    pub locked_until_micros: i64,
}

/// How a list is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SortBy {
    #[default]
    Name,
    CreationTimestamp,
    UpdateTimestamp,
}

/// A server-side filtered, sorted, paged list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub kind: String,
    /// Only objects of this project (project-scoped kinds); `None` lists across projects.
    pub project: Option<String>,
    pub selector: Selector,
    /// Substring of the name.
    pub name_contains: Option<String>,
    pub sort: SortBy,
    pub descending: bool,
    /// Page size; capped at [`MAX_PAGE`].
    pub limit: u32,
    /// Opaque token from the previous page.
    pub continue_token: Option<String>,
}

/// Largest page a list returns.
pub const MAX_PAGE: u32 = 5000;
/// Largest page of audit records.
pub const MAX_AUDIT_PAGE: u32 = 10_000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 100;

/// One page of objects.
#[derive(Debug, Clone, Default)]
pub struct ObjectPage {
    pub items: Vec<Object>,
    /// Present when more items follow.
    pub continue_token: Option<String>,
}

/// Filters for the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user: Option<String>,
    pub action: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub project: Option<String>,
    pub outcome: Option<String>,
    pub since_micros: Option<i64>,
    pub until_micros: Option<i64>,
    /// Newest first when true (the default for queries), oldest first for export.
    pub newest_first: bool,
    pub limit: u32,
    /// Records strictly before (newest first) or after (oldest first) this sequence number.
    pub cursor: Option<u64>,
}

/// One page of audit records.
#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_cursor: Option<u64>,
}

/// Grouping of the audit summary report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryBy {
    User,
    Action,
    Day,
}

/// One row of the summary report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub key: String,
    pub count: u64,
    pub denied: u64,
    pub failed: u64,
}
