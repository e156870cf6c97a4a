//! The `kubernetes` cluster driver.
//!
//! - [`connect`]: a client for a registered cluster (a kubeconfig context, or an API server
//!   URL, its CA and a bearer token), with timeouts.
//! - [`probe`]: what the cluster is (version, nodes, allocatable and requested resources,
//!   storage classes), errors sorted into unreachable and unauthorized.
//! - [`cache`]: watch-fed caches of the objects a status is made from.
//! - [`render`]: an application revision as Kubernetes objects (pure).
//! - [`driver`]: the [`flotilla_driver::ClusterDriver`] of a Kubernetes cluster: server-side
//!   apply and pruning, status from its objects ([`status`], pure), drift ([`drift`], pure)
//!   reported or corrected, delete, logs.
//! - [`namespaces`]: when an environment's namespace is deleted with its last application.
//! - `fake` (feature `testsuite`): an in-process fake API server for tests.

pub mod cache;
pub mod connect;
pub mod drift;
pub mod driver;
#[cfg(feature = "testsuite")]
pub mod fake;
pub mod namespaces;
pub mod probe;
pub mod render;
pub mod status;

pub use connect::KubeConnector;
