//! A containerd of our own for one test, with a bridge network and the pause image, torn
//! down afterwards (also when the test fails): see [`with_runtime`].

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use flotilla_local::cni::BridgeNetwork;
use flotilla_local::containerd::{Containerd, OwnContainerd};
use flotilla_local::cri::Cri;
use flotilla_local::{images, oci_archive};

pub const BUSYBOX: &str = "/bin/busybox";
const PAUSE: &str = "flotilla.local/pause:test";

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

/// Runs `test` against a fresh containerd of our own, then removes every pod it labelled
/// with [`Runtime::selector`] (or with `cleanup_labels`), the network and containerd.
pub async fn with_runtime<F, Fut>(cleanup_labels: Vec<HashMap<String, String>>, test: F)
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
    let own = OwnContainerd::new(dir.join("containerd"), PAUSE);
    let mut containerd = Containerd::own(&own).await.expect("our containerd starts");
    let bridge = format!("flt{short}");
    let octet = u8::from_str_radix(&id[6..8], 16).expect("hex");
    let network =
        BridgeNetwork { name: format!("test-{short}"), bridge: bridge.clone(), subnet: format!("10.213.{octet}.0/24") };
    network.install(&own.cni_conf_dir()).expect("network config");
    let pause = dir.join("pause.tar");
    oci_archive::pause_image(Path::new(BUSYBOX)).expect("pause image").write_archive(PAUSE, &pause).expect("archive");
    images::import(&own.socket(), &pause).await.expect("import the pause image");

    let runtime =
        Runtime { id, short, dir: dir.clone(), socket: own.socket(), subnet_prefix: format!("10.213.{octet}.") };
    let mut selectors = cleanup_labels;
    selectors.push(runtime.selector());
    let outcome = tokio::spawn(test(runtime)).await;

    if let Ok(mut cri) = Cri::connect(&own.socket()).await {
        for selector in selectors {
            for sandbox in cri.list_pod_sandboxes(selector).await.unwrap_or_default() {
                let _ = cri.stop_pod_sandbox(&sandbox.id).await;
                let _ = cri.remove_pod_sandbox(&sandbox.id).await;
            }
        }
    }
    containerd.stop().await;
    let _ = tokio::process::Command::new("ip").args(["link", "delete", &bridge]).status().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
