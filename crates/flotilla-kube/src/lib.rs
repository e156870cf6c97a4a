//! The `kubernetes` cluster driver.
//!
//! - [`connect`]: a client for a registered cluster (a kubeconfig context, or an API server
//!   URL, its CA and a bearer token), with timeouts.
//! - [`probe`]: what the cluster is (version, nodes, allocatable and requested resources,
//!   storage classes), errors sorted into unreachable and unauthorized.
//! - [`render`]: an application revision as Kubernetes objects (pure).
//! - `fake` (feature `testsuite`): an in-process fake API server for tests.

pub mod connect;
#[cfg(feature = "testsuite")]
pub mod fake;
pub mod probe;
pub mod render;

pub use connect::KubeConnector;
