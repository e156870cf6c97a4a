//! Bringing the embedded runtime up under a data directory: containerd (ours, or one given
//! by socket), the pod sandbox image, the `flotilla-net` network plugin, and the driver.
//!
//! Layout under `dir`: `containerd/` (config, root, state, socket, log, CNI configuration),
//! `cni-bin/` (the plugin directory containerd uses), `networks/` (one file per environment),
//! `ipam/` (address leases), `instances/` and `volumes/`, and `runtime.lock`, held while the
//! runtime runs so that no second server (nor a reset) uses the same directory at once.

use std::path::{Path, PathBuf};

use crate::LocalError;
use crate::cni_plugin::{self, PluginConfig};
use crate::containerd::{Containerd, OwnContainerd};
use crate::cri::Cri;
use crate::driver::{LocalDriver, LocalOptions};
use crate::networks::NetworkAllocator;
use crate::reset::RuntimeLock;
use crate::{images, oci_archive};

/// The pod sandbox image the runtime builds and imports itself (no registry needed).
pub const PAUSE_IMAGE: &str = "flotilla.local/pause:1";

/// What the embedded runtime needs to start.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub dir: PathBuf,
    /// Use this containerd instead of starting our own.
    pub containerd_socket: Option<PathBuf>,
    pub cni_bin_dir: PathBuf,
    /// A static busybox for the pause image.
    pub busybox: PathBuf,
    /// The executable that acts as `flotilla-net` (the `flotilla` binary itself).
    pub network_plugin: PathBuf,
    pub network_octet: u8,
    /// Service addresses come from here.
    pub service_range: ipnet::Ipv4Net,
    /// Registries pulled from over plain HTTP (`HOST:PORT`).
    pub insecure_registries: Vec<String>,
}

/// The running embedded runtime.
pub struct EmbeddedRuntime {
    pub containerd: Containerd,
    pub driver: std::sync::Arc<LocalDriver>,
    _lock: RuntimeLock,
}

impl EmbeddedRuntime {
    pub async fn start(options: &EmbeddedOptions) -> Result<Self, LocalError> {
        let dir = &options.dir;
        let lock = RuntimeLock::take(dir)?;
        let bin_dir = dir.join("cni-bin");
        cni_plugin::prepare_bin_dir(&bin_dir, &options.network_plugin, &options.cni_bin_dir)
            .map_err(LocalError::io(format!("cannot prepare {}", bin_dir.display())))?;
        let plugin = PluginConfig {
            networks_dir: dir.join("networks"),
            delegate_dir: options.cni_bin_dir.clone(),
            ipam_dir: dir.join("ipam"),
        };
        let containerd = match &options.containerd_socket {
            Some(socket) => {
                if !options.insecure_registries.is_empty() {
                    tracing::warn!(
                        "runtime.insecure_registries applies to our own containerd only: configure them in the \
                         given containerd's registry config_path"
                    );
                }
                Containerd::existing(socket).await?
            }
            None => {
                let mut own = OwnContainerd::new(dir.join("containerd"), PAUSE_IMAGE);
                own.cni_bin_dir = bin_dir.clone();
                write_conflist(&own.cni_conf_dir(), &plugin)?;
                for host in &options.insecure_registries {
                    own.trust_insecure_registry(host)?;
                }
                Containerd::own(&own).await?
            }
        };
        let mut cri = Cri::connect(containerd.socket()).await?;
        if cri.image_id(PAUSE_IMAGE).await?.is_none() {
            let archive = dir.join("pause.tar");
            oci_archive::pause_image(&options.busybox)?.write_archive(PAUSE_IMAGE, &archive)?;
            images::import(containerd.socket(), &archive).await?;
            let _ = std::fs::remove_file(&archive);
        }
        let networks = NetworkAllocator::new(plugin.networks_dir.clone(), options.network_octet);
        let mut driver_options = LocalOptions::new(dir.clone());
        driver_options.service_range = options.service_range;
        let driver = LocalDriver::start(cri, networks, driver_options).await?;
        Ok(Self { containerd, driver: std::sync::Arc::new(driver), _lock: lock })
    }

    /// Stops our containerd (containers keep running under their shims).
    pub async fn stop(mut self) {
        drop(self.driver);
        self.containerd.stop().await;
        drop(self._lock);
    }
}

fn write_conflist(conf_dir: &Path, plugin: &PluginConfig) -> Result<(), LocalError> {
    std::fs::create_dir_all(conf_dir).map_err(LocalError::io(format!("cannot create {}", conf_dir.display())))?;
    let path = conf_dir.join("10-flotilla.conflist");
    let text = serde_json::to_vec_pretty(&cni_plugin::conflist(plugin)).unwrap_or_default();
    std::fs::write(&path, text).map_err(LocalError::io(format!("cannot write {}", path.display())))
}
