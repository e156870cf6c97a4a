//! The CLI's one error type: every failure becomes a [`CliError`] whose message says what went
//! wrong and what to do about it, and whose [`CliError::exit_code`] lets scripts tell the
//! failures apart.
//!
//! | code | meaning |
//! |------|---------|
//! | 1 | generic failure, documents that failed to apply or delete, a broken audit chain |
//! | 2 | usage: bad arguments, unknown kind or context, nothing to read |
//! | 3 | the server cannot be reached |
//! | 4 | authentication: not logged in, login expired or refused |
//! | 5 | forbidden |
//! | 6 | invalid request or conflict |
//! | 7 | not found |

use std::fmt::Write as _;

use flotilla_client::ClientError;
use serde_json::Value;

/// The exit codes, as printed in `flotilla --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failure (documents that failed to apply or delete, a broken audit chain, a server error)
  2  usage error (bad arguments, unknown kind or context)
  3  the server cannot be reached
  4  not logged in, login expired, or credentials refused
  5  forbidden
  6  invalid request or conflict
  7  not found";

/// One problem with one field of a rejected document or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Dotted path (`spec.tier`); empty for the document as a whole.
    pub path: String,
    pub message: String,
    /// Line of the applied file where the field is written, when the server located it.
    pub line: Option<u64>,
}

impl FieldProblem {
    /// The field problems in an `Invalid` error's `details` (a list of `{path, message}`).
    pub fn list_from(details: &Value) -> Vec<FieldProblem> {
        details
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let message = item.get("message").and_then(Value::as_str)?;
                        let path = item.get("path").and_then(Value::as_str).unwrap_or_default();
                        let line = item.get("line").and_then(Value::as_u64);
                        Some(FieldProblem { path: path.to_string(), message: message.to_string(), line })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `  - spec.tier: message` (the document itself when the path is empty).
    pub fn line(&self) -> String {
        let path = if self.path.is_empty() { "(document)" } else { &self.path };
        match self.line {
            Some(line) => format!("  - {path} (line {line}): {}", self.message),
            None => format!("  - {path}: {}", self.message),
        }
    }
}

/// The headline of a list of field problems: `invalid: 2 problems`.
pub fn invalid_headline(message: &str, problems: &[FieldProblem]) -> String {
    match problems.len() {
        0 => message.to_string(),
        1 => "invalid: 1 problem".to_string(),
        n => format!("invalid: {n} problems"),
    }
}

/// Everything a CLI command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or an impossible request, found before asking the server.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached at all.
    #[error(
        "cannot reach the Flotilla server at {url}: {reason}\nIs `flotilla server` running? (start it with ./scripts/up, or pass --server URL)"
    )]
    Unreachable { url: String, reason: String },
    /// No context or no token to authenticate with.
    #[error("not logged in{detail}: run `flotilla login [SERVER]`")]
    NotLoggedIn { detail: String },
    /// The saved token (or the one given) has expired.
    #[error("your login has expired: run `flotilla login` again")]
    Expired,
    /// The server refused the credentials.
    #[error("{}", with_login_hint(.0))]
    Unauthenticated(String),
    /// A login attempt was refused (wrong password, disabled user, locked out).
    #[error("login failed: {0}")]
    LoginFailed(String),
    /// Authenticated but not allowed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The server rejected the request as invalid; every field problem is listed.
    #[error("{}", invalid_text(.message, .problems))]
    Invalid { message: String, problems: Vec<FieldProblem> },
    /// Optimistic concurrency: the object changed since it was read.
    #[error("{0}\nsomeone else changed it; get it again and reapply")]
    Conflict(String),
    /// A create of an object that exists already.
    #[error("{0}\nuse `flotilla apply -f FILE` to update an existing object")]
    AlreadyExists(String),
    /// Refused because of the object's state, e.g. still referenced by others (`InUse`).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// A kind the server does not know.
    #[error("unknown kind {kind:?}; known kinds:\n{known}")]
    UnknownKind { kind: String, known: String },
    /// Some documents of `apply -f` / `delete -f` failed (each was reported already).
    #[error("{failed} of {total} documents failed")]
    DocumentsFailed { failed: usize, total: usize },
    /// Some deletions of `delete` failed (each was reported already).
    #[error("{failed} of {total} deletions failed")]
    DeletionsFailed { failed: usize, total: usize },
    /// `audit verify` found problems in the hash chain (each was printed already).
    #[error("audit chain broken: {problems} problem{}", plural(*problems))]
    ChainBroken { problems: usize },
    /// Any other error answer of the server.
    #[error("the server answered {status} {code}: {message}")]
    Server { status: u16, code: String, message: String },
    /// The server answered something this CLI does not understand.
    #[error("unexpected response from the server: {0}\n(is the server the same version as this CLI?)")]
    Protocol(String),
    /// The CLI config file could not be read or written.
    #[error("CLI config {path}: {message}")]
    Config { path: String, message: String },
    /// Reading or writing local files or standard streams.
    #[error("{0}")]
    Io(String),
    /// Opening the database directly (offline `audit verify`).
    #[error("{0}")]
    Store(String),
    /// `exec`: the command ran and exited with this (non-zero) code, which becomes ours.
    #[error("command terminated with exit code {0}")]
    CommandExited(i32),
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn with_login_hint(message: &str) -> String {
    if message.contains("flotilla login") {
        message.to_string()
    } else {
        format!("{message}\nlog in with `flotilla login [SERVER]`")
    }
}

fn invalid_text(message: &str, problems: &[FieldProblem]) -> String {
    let mut text = invalid_headline(message, problems);
    for problem in problems {
        let _ = write!(text, "\n{}", problem.line());
    }
    text
}

impl CliError {
    /// The process exit code for this error (see [`EXIT_CODES_HELP`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::DocumentsFailed { .. }
            | CliError::DeletionsFailed { .. }
            | CliError::ChainBroken { .. }
            | CliError::Server { .. }
            | CliError::Protocol(_)
            | CliError::Config { .. }
            | CliError::Io(_)
            | CliError::Store(_) => 1,
            CliError::Usage(_) | CliError::UnknownKind { .. } => 2,
            CliError::Unreachable { .. } => 3,
            CliError::NotLoggedIn { .. }
            | CliError::Expired
            | CliError::Unauthenticated(_)
            | CliError::LoginFailed(_) => 4,
            CliError::Forbidden(_) => 5,
            CliError::Invalid { .. } | CliError::Conflict(_) | CliError::AlreadyExists(_) | CliError::Refused(_) => 6,
            CliError::NotFound(_) => 7,
            CliError::CommandExited(code) => (*code).clamp(1, 255),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// Not logged in, with what is missing (e.g. ` (context "x" has no token)`).
    pub fn not_logged_in(detail: impl Into<String>) -> Self {
        CliError::NotLoggedIn { detail: detail.into() }
    }

    /// Whether the server said 403.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, CliError::Forbidden(_))
    }

    /// Whether the server said 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CliError::NotFound(_))
    }

    /// Whether this error concerns the whole session (unreachable server, credentials) rather
    /// than one document: such errors stop `apply`/`delete -f` at once.
    pub fn is_fatal_for_batch(&self) -> bool {
        matches!(self.exit_code(), 3 | 4) || matches!(self, CliError::Protocol(_))
    }
}

/// What the transport layer appends to a connection failure; the CLI says it its own way.
const CLIENT_HINT: &str = " (is `flotilla server` running there?)";

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Unreachable { url, reason } => {
                let reason = reason.strip_suffix(CLIENT_HINT).unwrap_or(&reason);
                // reqwest's "error sending request for url (…): " repeats the URL.
                let reason =
                    match reason.strip_prefix("error sending request for url (").and_then(|r| r.split_once("): ")) {
                        Some((_, cause)) => cause.to_string(),
                        None => reason.to_string(),
                    };
                CliError::Unreachable { url, reason }
            }
            ClientError::Api { status, code, message, details } => match code.as_str() {
                "CredentialsExpired" => CliError::Expired,
                "Unauthenticated" => CliError::Unauthenticated(message),
                "LoginLocked" => CliError::LoginFailed(message),
                "Forbidden" | "CsrfTokenInvalid" => CliError::Forbidden(message),
                "Invalid" => CliError::Invalid { problems: FieldProblem::list_from(&details), message },
                "BadRequest" => CliError::Invalid { message, problems: Vec::new() },
                "Conflict" => CliError::Conflict(message),
                "AlreadyExists" => CliError::AlreadyExists(message),
                "NotFound" => CliError::NotFound(message),
                "InUse" => CliError::Refused(message),
                _ => match status {
                    400 | 422 => CliError::Invalid { message, problems: Vec::new() },
                    401 => CliError::Unauthenticated(message),
                    403 => CliError::Forbidden(message),
                    404 => CliError::NotFound(message),
                    409 => CliError::Refused(message),
                    _ => CliError::Server { status, code, message },
                },
            },
            ClientError::Decode(message) => CliError::Protocol(message),
            ClientError::Config(message) => CliError::Usage(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn api(status: u16, code: &str, message: &str, details: Value) -> CliError {
        CliError::from(ClientError::Api { status, code: code.into(), message: message.into(), details })
    }

    #[test]
    fn exit_codes_follow_the_table() {
        let unreachable = CliError::from(ClientError::Unreachable {
            url: "http://127.0.0.1:8080".into(),
            reason: "connection refused (is `flotilla server` running there?)".into(),
        });
        assert_eq!(unreachable.exit_code(), 3);
        let text = unreachable.to_string();
        assert!(
            text.starts_with("cannot reach the Flotilla server at http://127.0.0.1:8080: connection refused\n"),
            "{text}"
        );
        assert!(text.contains("./scripts/up"), "{text}");
        assert!(!text.contains("running there"), "the client's hint is replaced: {text}");
        let verbose = CliError::from(ClientError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            reason: "error sending request for url (http://127.0.0.1:1/api/v1/kinds): client error (Connect): tcp connect error: Connection refused (os error 111)".into(),
        });
        assert!(verbose.to_string().starts_with("cannot reach the Flotilla server at http://127.0.0.1:1: client error (Connect): tcp connect error: Connection refused"), "{verbose}");

        assert_eq!(api(401, "CredentialsExpired", "token expired", Value::Null).exit_code(), 4);
        assert_eq!(
            api(401, "CredentialsExpired", "x", Value::Null).to_string(),
            "your login has expired: run `flotilla login` again"
        );
        let unauthenticated = api(401, "Unauthenticated", "authentication required", Value::Null);
        assert_eq!(unauthenticated.exit_code(), 4);
        assert!(unauthenticated.to_string().contains("log in with `flotilla login"));
        let already_hinted =
            api(401, "Unauthenticated", "unknown API token: log in again (flotilla login)", Value::Null);
        assert_eq!(already_hinted.to_string(), "unknown API token: log in again (flotilla login)");
        assert_eq!(api(429, "LoginLocked", "too many failed logins", Value::Null).exit_code(), 4);
        assert_eq!(CliError::not_logged_in("").to_string(), "not logged in: run `flotilla login [SERVER]`");
        assert_eq!(CliError::not_logged_in("").exit_code(), 4);

        let forbidden = api(403, "Forbidden", "user \"bob\" may not delete Cluster objects", Value::Null);
        assert_eq!(forbidden.exit_code(), 5);
        assert_eq!(forbidden.to_string(), "forbidden: user \"bob\" may not delete Cluster objects");
        assert_eq!(api(403, "CsrfTokenInvalid", "csrf", Value::Null).exit_code(), 5);

        let conflict = api(
            409,
            "Conflict",
            "Workspace/a is at version 4, not 3; get it again and reapply your change",
            Value::Null,
        );
        assert_eq!(conflict.exit_code(), 6);
        assert!(conflict.to_string().ends_with("\nsomeone else changed it; get it again and reapply"));
        assert_eq!(api(409, "AlreadyExists", "Workspace/a already exists", Value::Null).exit_code(), 6);
        assert_eq!(api(400, "BadRequest", "the body holds no document", Value::Null).exit_code(), 6);

        let not_found = api(404, "NotFound", "Workspace/nope not found", Value::Null);
        assert_eq!(not_found.exit_code(), 7);
        assert_eq!(not_found.to_string(), "Workspace/nope not found");

        let internal = api(500, "Internal", "internal error", Value::Null);
        assert_eq!(internal.exit_code(), 1);
        assert_eq!(internal.to_string(), "the server answered 500 Internal: internal error");
        assert_eq!(CliError::from(ClientError::Decode("bad json".into())).exit_code(), 1);
        assert_eq!(CliError::from(ClientError::Config("server URL must start with http://".into())).exit_code(), 2);
        assert_eq!(CliError::DocumentsFailed { failed: 2, total: 5 }.to_string(), "2 of 5 documents failed");
        assert_eq!(CliError::DocumentsFailed { failed: 2, total: 5 }.exit_code(), 1);
        assert_eq!(CliError::ChainBroken { problems: 1 }.to_string(), "audit chain broken: 1 problem");
        assert_eq!(CliError::ChainBroken { problems: 3 }.to_string(), "audit chain broken: 3 problems");
        assert_eq!(CliError::UnknownKind { kind: "x".into(), known: String::new() }.exit_code(), 2);
    }

    #[test]
    fn invalid_lists_every_field_problem() {
        let details = json!([
            {"path": "spec.tier", "message": "unknown variant `qa`, expected one of `dev`, `test`, `prod`"},
            {"path": "metadata.name", "message": "must not be empty"},
            {"path": "", "message": "document problem"},
        ]);
        let error = api(422, "Invalid", "invalid: 3 problems: …", details);
        assert_eq!(error.exit_code(), 6);
        assert_eq!(
            error.to_string(),
            "invalid: 3 problems\n  - spec.tier: unknown variant `qa`, expected one of `dev`, `test`, `prod`\n  - metadata.name: must not be empty\n  - (document): document problem"
        );
        let single = api(422, "Invalid", "invalid: sort: bad", json!([{"path": "sort", "message": "bad"}]));
        assert_eq!(single.to_string(), "invalid: 1 problem\n  - sort: bad");
        let without_details = api(422, "Invalid", "invalid: something", Value::Null);
        assert_eq!(without_details.to_string(), "invalid: something");
        let located = api(422, "Invalid", "invalid", json!([{"path": "spec.tier", "message": "bad", "line": 10}]));
        assert_eq!(located.to_string(), "invalid: 1 problem\n  - spec.tier (line 10): bad");
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        assert_eq!(api(401, "Weird", "m", Value::Null).exit_code(), 4);
        assert_eq!(api(403, "Weird", "m", Value::Null).exit_code(), 5);
        assert_eq!(api(404, "Weird", "m", Value::Null).exit_code(), 7);
        assert_eq!(api(409, "Weird", "m", Value::Null).exit_code(), 6);
        assert_eq!(api(422, "Weird", "m", Value::Null).exit_code(), 6);
        assert_eq!(api(503, "Unavailable", "shutting down", Value::Null).exit_code(), 1);
        let in_use = api(409, "InUse", "Project/shop is still referenced by Environment/shop/prod", Value::Null);
        assert_eq!(
            (in_use.exit_code(), in_use.to_string().as_str()),
            (6, "Project/shop is still referenced by Environment/shop/prod")
        );
    }
}
