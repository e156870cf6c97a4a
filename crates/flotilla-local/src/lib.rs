//! The embedded single-node runtime (cluster driver `local`): applications run as pods on
//! this machine through containerd's CRI plugin, with runc and the CNI plugins, the way a
//! kubelet runs them.
//!
//! - [`containerd`]: finds a reachable containerd, or starts one of our own with its config,
//!   root and state under the data dir (as k3s does) and stops it cleanly.
//! - [`cri`]: the Kubernetes CRI API (RuntimeService, ImageService) over containerd's socket.
//! - [`oci_archive`]: builds OCI image archives (tests, the pause image).
//! - [`images`]: imports image archives into containerd.
//! - [`cni`]: a plain bridge network, as a CNI configuration.
//! - [`cni_plugin`]: `flotilla-net`, the CNI plugin giving each environment an isolated network.
//! - [`instance`]: one instance of a component as a CRI pod sandbox and container.
//! - [`logs`]: reading, following and rotating instance log files.
//! - [`networks`]: the network of each environment, allocated on first use.
//! - [`probe`]: HTTP, TCP and exec health probes.
//! - [`services`]: a stable address per component, spread over its ready instances by NAT rules.
//! - [`dns`]: the name server instances use: service names, and the host's servers for the rest.
//! - [`iptables`]: running iptables and iptables-restore.
//! - [`driver`]: [`driver::LocalDriver`], the embedded runtime as a cluster driver.
//! - [`embedded`]: bringing it all up under the data dir.
//! - [`reset`]: taking it all off the host again (`flotilla runtime reset`).
//! - `testing` (feature `testsuite`): a containerd of a test's own, torn down after it.

pub mod cni;
pub mod cni_plugin;
pub mod containerd;
pub mod cri;
pub mod dns;
pub mod driver;
pub mod embedded;
pub mod images;
pub mod instance;
pub mod iptables;
pub mod logs;
pub mod networks;
pub mod oci_archive;
pub mod probe;
pub mod reset;
pub mod services;
#[cfg(feature = "testsuite")]
pub mod testing;

/// Errors of the embedded runtime.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// containerd could not be reached or started.
    #[error("containerd: {0}")]
    Containerd(String),
    /// A CRI call failed; `call` names it.
    #[error("{call}: {status}")]
    Cri { call: &'static str, status: String },
    /// An image could not be built, imported or pulled.
    #[error("image: {0}")]
    Image(String),
    /// No environment network can be allocated, or one cannot be removed.
    #[error("network: {0}")]
    Network(String),
    /// Another process uses the runtime's directory (see [`reset::RuntimeLock`]).
    #[error("{0}")]
    Busy(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl LocalError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
        let context = context.into();
        move |source| LocalError::Io { context, source }
    }
}
