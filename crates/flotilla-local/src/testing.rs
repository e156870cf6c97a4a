//! A containerd of our own for one test, with a bridge network and the pause image, torn
//! down afterwards (also when the test fails): see [`with_runtime`]. Used by this crate's
//! tests and by the kubernetes driver's (its fake kubelet runs pods here); feature `testsuite`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness: a panic is a failed test

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use crate::cni::BridgeNetwork;
use crate::cni_plugin::{self, EnvironmentNetwork, PluginConfig};
use crate::containerd::{Containerd, OwnContainerd};
use crate::cri::Cri;
use crate::{images, oci_archive};

pub const BUSYBOX: &str = "/bin/busybox";
const PAUSE: &str = "flotilla.local/pause:test";

/// How many tests on one host can hold a [`Slot`] at once.
pub const SLOTS: u8 = 32;

/// A number in `0..SLOTS` that no other test on this host holds while this one runs.
///
/// Tests run side by side in separate processes, each with its own networks; the address
/// ranges of a test are derived from its slot, so two tests never put a bridge on the same
/// subnet (a second route to a subnet sends a test's probes to the other test's pods). The
/// slot is an exclusive lock on a file in the system's temp directory, released when the
/// `Slot` is dropped or its process dies.
#[derive(Debug)]
pub struct Slot {
    number: u8,
    _lock: std::fs::File,
}

impl Slot {
    /// Takes the first free slot, waiting while all are held.
    pub fn take() -> Slot {
        let dir = std::env::temp_dir().join("flotilla-test-slots");
        std::fs::create_dir_all(&dir).expect("slot directory");
        loop {
            for number in 0..SLOTS {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(dir.join(format!("{number}.lock")))
                    .expect("slot lock file");
                match file.try_lock() {
                    Ok(()) => return Slot { number, _lock: file },
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(error)) => panic!("cannot lock slot {number}: {error}"),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn number(&self) -> u8 {
        self.number
    }
}

/// What a test body gets.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Unique per test run (32 hex digits); labels the test's pods.
    pub id: String,
    /// The first 6 digits, for short names.
    pub short: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// `10.213.N.` : the prefix of the test network's addresses.
    pub subnet_prefix: String,
    /// Where `flotilla-net` reads environment networks (per-environment mode only).
    pub networks_dir: Option<PathBuf>,
    /// A second octet for environment subnets (`10.<octet>.N.0/24`) unique to this run.
    pub network_octet: u8,
    /// Service addresses for this run (`10.212.N.0/24`).
    pub service_range: ipnet::Ipv4Net,
}

impl Runtime {
    /// Builds a busybox image running `cmd` with `files` added, and imports it as `reference`.
    pub async fn import_busybox(&self, reference: &str, cmd: &[&str], files: Vec<oci_archive::LayerFile>) {
        let mut image = oci_archive::busybox_image(Path::new(BUSYBOX), cmd.iter().map(|s| s.to_string()).collect())
            .expect("busybox image");
        image.files.extend(files);
        let archive = self.dir.join(format!("{}.tar", reference.replace(['/', ':'], "_")));
        image.write_archive(reference, &archive).expect("write the image archive");
        images::import(&self.socket, &archive).await.expect("import the image");
    }

    /// The test's label selector (every pod the test creates carries it).
    pub fn selector(&self) -> HashMap<String, String> {
        HashMap::from([("flotilla.io/test".to_string(), self.id.clone())])
    }
}

/// How the test's containerd networks its pods.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Pods labelled so are removed afterwards (besides those with [`Runtime::selector`]).
    pub cleanup_labels: Vec<HashMap<String, String>>,
    /// When set, pods get the network of their namespace through `flotilla-net`:
    /// (namespace, bridge, subnet). Otherwise all share one plain bridge.
    pub environments: Vec<(String, String, String)>,
    /// Use `flotilla-net` even with no environments declared here (a driver allocates them
    /// in [`Runtime::networks_dir`]).
    pub per_environment_networks: bool,
    /// The `flotilla-net` executable (required for per-environment networks).
    pub network_plugin: Option<PathBuf>,
}

/// Runs `test` against a fresh containerd of our own, then removes every pod it labelled
/// with [`Runtime::selector`] (or with `cleanup_labels`), the network and containerd.
pub async fn with_runtime<F, Fut>(cleanup_labels: Vec<HashMap<String, String>>, test: F)
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_runtime_options(Options { cleanup_labels, ..Options::default() }, test).await
}

/// Where the `host-local` IPAM plugin keeps a network's addresses when not told otherwise.
const HOST_LOCAL_DIR: &str = "/var/lib/cni/networks";

/// [`with_runtime`] with [`Options`].
pub async fn with_runtime_options<F, Fut>(options: Options, test: F)
where
    F: FnOnce(Runtime) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    assert!(nix::unistd::Uid::effective().is_root(), "this test runs containers: run it as root (scripts/test does)");
    assert!(Path::new(BUSYBOX).exists(), "{BUSYBOX} is missing: scripts/install-deps test installs busybox-static");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let short = id[..6].to_string();
    // Short: the socket path must fit in 108 bytes.
    let dir = PathBuf::from(format!("/var/tmp/flt-{short}"));
    std::fs::create_dir_all(&dir).expect("test directory");
    let mut own = OwnContainerd::new(dir.join("containerd"), PAUSE);
    let slot = Slot::take();
    let octet = slot.number();
    let mut bridges = Vec::new();
    let per_environment = options.per_environment_networks || !options.environments.is_empty();
    let networks_dir = dir.join("networks");
    // The bridge plugin's addresses, when it has a network (removed at the end).
    let mut host_local_dir = None;
    if !per_environment {
        let bridge = format!("tst{short}");
        let network = BridgeNetwork {
            name: format!("test-{short}"),
            bridge: bridge.clone(),
            subnet: format!("10.213.{octet}.0/24"),
        };
        network.install(&own.cni_conf_dir()).expect("network config");
        host_local_dir = Some(Path::new(HOST_LOCAL_DIR).join(&network.name));
        bridges.push(bridge);
    } else {
        let bin_dir = dir.join("cni-bin");
        let plugin = options.network_plugin.as_deref().expect("per-environment networks need Options::network_plugin");
        cni_plugin::prepare_bin_dir(&bin_dir, plugin, &own.cni_bin_dir).expect("CNI plugin directory");
        let config = PluginConfig {
            networks_dir: networks_dir.clone(),
            delegate_dir: own.cni_bin_dir.clone(),
            ipam_dir: dir.join("ipam"),
        };
        std::fs::create_dir_all(own.cni_conf_dir()).expect("CNI configuration directory");
        let conflist = serde_json::to_vec_pretty(&cni_plugin::conflist(&config)).expect("conflist");
        std::fs::write(own.cni_conf_dir().join("10-flotilla.conflist"), conflist).expect("conflist");
        for (namespace, bridge, subnet) in &options.environments {
            let network = EnvironmentNetwork { bridge: bridge.clone(), subnet: subnet.clone() };
            network.install(&config.networks_dir, namespace).expect("environment network");
            bridges.push(bridge.clone());
        }
        own.cni_bin_dir = bin_dir;
    }
    let mut containerd = Containerd::own(&own).await.expect("our containerd starts");
    let pause = dir.join("pause.tar");
    oci_archive::pause_image(Path::new(BUSYBOX)).expect("pause image").write_archive(PAUSE, &pause).expect("archive");
    images::import(&own.socket(), &pause).await.expect("import the pause image");

    let runtime = Runtime {
        id,
        short,
        dir: dir.clone(),
        socket: own.socket(),
        subnet_prefix: format!("10.213.{octet}."),
        networks_dir: per_environment.then(|| networks_dir.clone()),
        network_octet: 216 + octet,
        service_range: format!("10.212.{octet}.0/24").parse().expect("service range"),
    };
    let mut selectors = options.cleanup_labels;
    selectors.push(runtime.selector());
    let outcome = tokio::spawn(test(runtime)).await;

    if let Ok(mut cri) = Cri::connect(&own.socket()).await {
        for selector in selectors {
            for sandbox in cri.list_pod_sandboxes(selector).await.unwrap_or_default() {
                let _ = cri.stop_pod_sandbox(&sandbox.id).await;
                let _ = cri.remove_pod_sandbox(&sandbox.id).await;
                if let Some(instance) = sandbox.labels.get(crate::instance::INSTANCE_LABEL) {
                    crate::instance::remove_pod_cgroup(instance);
                }
            }
        }
    }
    containerd.stop().await;
    // Service rules of a driver rooted at `<dir>/runtime`, as the driver tests start them.
    crate::services::remove(&crate::services::Chains::of(&dir.join("runtime")));
    if per_environment {
        // Networks a driver allocated during the test.
        for entry in std::fs::read_dir(&networks_dir).into_iter().flatten().flatten() {
            if let Ok(network) =
                serde_json::from_slice::<EnvironmentNetwork>(&std::fs::read(entry.path()).unwrap_or_default())
                && !bridges.contains(&network.bridge)
            {
                bridges.push(network.bridge);
            }
        }
    }
    for bridge in &bridges {
        let _ = tokio::process::Command::new("ip").args(["link", "delete", bridge]).status().await;
    }
    if per_environment {
        cni_plugin::remove_isolation(&bridges);
    }
    if let Some(addresses) = host_local_dir {
        let _ = std::fs::remove_dir_all(addresses);
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(slot);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
