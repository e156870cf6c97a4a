//! Flotilla's pure core: everything the control plane decides without touching I/O.
//!
//! - [`object`]: the declarative object envelope (`apiVersion`, `kind`, `metadata`, `spec`,
//!   `status`) shared by every kind.
//! - [`kinds`]: the registry of kinds, their typed specs, JSON schemas and validation.
//! - [`selector`]: label selectors (parse, match).
//! - [`operation`]: a mutation as data, and how it is planned against the current object.
//! - [`rbac`]: roles, grants and the authorization decision.
//! - [`registry`]: the registry's governance (public repositories, immutable tags,
//!   retention, quotas) and robot account names.
//! - [`schedule`]: cron schedules (five fields, UTC).
//! - [`audit`]: audit records, redaction of secrets, diffs and the hash chain.
//!
//! Nothing here reads a clock, a file, a socket or the environment: time and randomness are
//! passed in by the caller, which keeps every decision testable.

pub mod audit;
pub mod diff;
pub mod kinds;
pub mod object;
pub mod operation;
pub mod rbac;
pub mod registry;
pub mod schedule;
pub mod selector;
pub mod validation;

pub use object::{API_VERSION, Object, ObjectKey, ObjectMeta};
pub use validation::{FieldError, ValidationErrors};
