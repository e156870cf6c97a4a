//! A pod on a containerd of our own, for real: our containerd starts under a temporary
//! directory, images built here (from the static busybox) are imported, a pod gets an address
//! on a bridge network of its own, and a web server in it answers from the host. Everything
//! (pod, network, containerd) is removed afterwards, also when the test fails.
//!
//! Needs root, containerd, runc, the CNI plugins and busybox-static (`scripts/install-deps`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_local::cni::BridgeNetwork;
use flotilla_local::containerd::{Containerd, OwnContainerd};
use flotilla_local::cri::{Cri, api};
use flotilla_local::{images, oci_archive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUSYBOX: &str = "/bin/busybox";
const PAUSE: &str = "flotilla.local/pause:test";
const WEB: &str = "flotilla.local/test/web:1";

/// Asks `ip:port` for `/` over HTTP/1.0 and returns the whole answer.
async fn http_get(address: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(address)).await??;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut answer)).await??;
    Ok(answer)
}

fn sandbox_config(name: &str, uid: &str, logs: &Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: "flotilla-test".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: logs.display().to_string(),
        labels: HashMap::from([("flotilla.io/test".to_string(), uid.to_string())]),
        linux: Some(api::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// What the test created, removed in [`Fixture::clean_up`].
struct Fixture {
    dir: PathBuf,
    containerd: Containerd,
    bridge: String,
    sandboxes: Vec<String>,
}

impl Fixture {
    async fn clean_up(mut self) {
        if let Ok(mut cri) = Cri::connect(self.containerd.socket()).await {
            for id in &self.sandboxes {
                let _ = cri.stop_pod_sandbox(id).await;
                let _ = cri.remove_pod_sandbox(id).await;
            }
        }
        self.containerd.stop().await;
        let _ = tokio::process::Command::new("ip").args(["link", "delete", &self.bridge]).status().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_our_own_containerd_serves_http_on_its_own_address() {
    assert!(is_root(), "this test runs containers: run it as root (scripts/test does)");
    assert!(Path::new(BUSYBOX).exists(), "{BUSYBOX} is missing: scripts/install-deps test installs busybox-static");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let short = id[..6].to_string();
    // Short: the socket path must fit in 108 bytes.
    let dir = PathBuf::from(format!("/var/tmp/flt-{short}"));
    std::fs::create_dir_all(&dir).unwrap();

    let own = OwnContainerd::new(dir.join("containerd"), PAUSE);
    let containerd = Containerd::own(&own).await.expect("our containerd starts");
    assert!(containerd.is_own_child());
    let bridge = format!("flt{short}");
    let subnet_octet = u8::from_str_radix(&id[6..8], 16).unwrap();
    let network = BridgeNetwork {
        name: format!("test-{short}"),
        bridge: bridge.clone(),
        subnet: format!("10.213.{subnet_octet}.0/24"),
    };
    network.install(&own.cni_conf_dir()).unwrap();
    let mut fixture = Fixture { dir: dir.clone(), containerd, bridge, sandboxes: Vec::new() };

    let socket = own.socket();
    let (dir, id_in_task, short_in_task) = (dir.clone(), id.clone(), short.clone());
    let outcome = async move {
        let (id, short) = (id_in_task, short_in_task);
        let pause = dir.join("pause.tar");
        oci_archive::pause_image(Path::new(BUSYBOX)).unwrap().write_archive(PAUSE, &pause).unwrap();
        images::import(&socket, &pause).await.expect("import the pause image");
        let mut web = oci_archive::busybox_image(
            Path::new(BUSYBOX),
            vec!["/bin/httpd".into(), "-f".into(), "-p".into(), "8080".into(), "-h".into(), "/www".into()],
        )
        .unwrap();
        web.files.push(oci_archive::LayerFile {
            path: "www/index.html".into(),
            mode: 0o644,
            content: b"hello from a flotilla pod\n".to_vec(),
        });
        let archive = dir.join("web.tar");
        web.write_archive(WEB, &archive).unwrap();
        images::import(&socket, &archive).await.expect("import the web image");

        let mut cri = Cri::connect(&socket).await.unwrap();
        assert!(cri.version().await.unwrap().starts_with("containerd"));
        assert!(cri.image_id(WEB).await.unwrap().is_some(), "the imported image is visible to the CRI");

        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let sandbox = sandbox_config(&format!("web-{short}"), &id, &logs);
        let sandbox_id = cri.run_pod_sandbox(sandbox.clone()).await.expect("the sandbox runs");
        let container = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: "web".into(), attempt: 0 }),
            image: Some(api::ImageSpec { image: WEB.into(), ..Default::default() }),
            log_path: "web.log".into(),
            linux: Some(api::LinuxContainerConfig::default()),
            ..Default::default()
        };
        let container_id = cri.create_container(&sandbox_id, container, sandbox).await.expect("create");
        cri.start_container(&container_id).await.expect("start");
        let ip = cri.pod_ip(&sandbox_id).await.unwrap().expect("the pod has an address");
        assert!(ip.starts_with(&format!("10.213.{subnet_octet}.")), "{ip} is on the test's bridge network");

        let address = format!("{ip}:8080");
        let started = Instant::now();
        let answer = loop {
            match http_get(&address).await {
                Ok(answer) => break answer,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no answer from {address}: {error}"),
            }
        };
        assert!(answer.starts_with("HTTP/1.") && answer.contains("hello from a flotilla pod"), "{answer}");

        let status = cri.container_status(&container_id).await.unwrap();
        assert_eq!(status.state, api::ContainerState::ContainerRunning as i32);
        let exec = cri.exec_sync(&container_id, vec!["/bin/hostname".into()], 5).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), format!("web-{short}"));
        sandbox_id
    };
    let outcome = tokio::spawn(outcome).await;
    if let Ok(sandbox_id) = &outcome {
        fixture.sandboxes.push(sandbox_id.clone());
    } else {
        // The sandbox may exist without its id having come back: find it by label.
        if let Ok(mut cri) = Cri::connect(&own.socket()).await
            && let Ok(found) =
                cri.list_pod_sandboxes(HashMap::from([("flotilla.io/test".to_string(), id.clone())])).await
        {
            fixture.sandboxes.extend(found.into_iter().map(|s| s.id));
        }
    }
    fixture.clean_up().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
