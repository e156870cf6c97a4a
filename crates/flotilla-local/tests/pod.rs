//! A pod on a containerd of our own, for real: images built here (from the static busybox)
//! are imported, a pod gets an address on a bridge network of its own, and a web server in
//! it answers from the host. Everything is removed afterwards, also when the test fails.
//!
//! Needs root, containerd, runc, the CNI plugins and busybox-static (`scripts/install-deps`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flotilla_local::cri::{Cri, api};
use flotilla_local::oci_archive::LayerFile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "flotilla.local/test/web:1";

/// Asks `ip:port` for `/` over HTTP/1.0 and returns the whole answer.
async fn http_get(address: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(address)).await??;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut answer)).await??;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_our_own_containerd_serves_http_on_its_own_address() {
    support::with_runtime(vec![], |runtime| async move {
        let index =
            LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"hello from a flotilla pod\n".to_vec() };
        runtime.import_busybox(WEB, &["/bin/httpd", "-f", "-p", "8080", "-h", "/www"], vec![index]).await;
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        assert!(cri.version().await.unwrap().starts_with("containerd"));
        assert!(cri.image_id(WEB).await.unwrap().is_some(), "the imported image is visible to the CRI");

        let logs = runtime.dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let name = format!("web-{}", runtime.short);
        let sandbox = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.clone(),
                uid: runtime.id.clone(),
                namespace: "flotilla-test".into(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: logs.display().to_string(),
            labels: runtime.selector(),
            linux: Some(api::LinuxPodSandboxConfig::default()),
            ..Default::default()
        };
        let sandbox_id = cri.run_pod_sandbox(sandbox.clone()).await.expect("the sandbox runs");
        let container = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: "web".into(), attempt: 0 }),
            image: Some(api::ImageSpec { image: WEB.into(), ..Default::default() }),
            log_path: "web.log".into(),
            labels: HashMap::new(),
            linux: Some(api::LinuxContainerConfig::default()),
            ..Default::default()
        };
        let container_id = cri.create_container(&sandbox_id, container, sandbox).await.expect("create");
        cri.start_container(&container_id).await.expect("start");
        let ip = cri.pod_ip(&sandbox_id).await.unwrap().expect("the pod has an address");
        assert!(ip.starts_with(&runtime.subnet_prefix), "{ip} is on the test's bridge network");

        let address = format!("{ip}:8080");
        let started = Instant::now();
        let answer = loop {
            match http_get(&address).await {
                Ok(answer) => break answer,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("no answer from {address}: {error}"),
            }
        };
        assert!(answer.starts_with("HTTP/1.") && answer.contains("hello from a flotilla pod"), "{answer}");
        let status = cri.container_status(&container_id).await.unwrap();
        assert_eq!(status.state, api::ContainerState::ContainerRunning as i32);
        let exec = cri.exec_sync(&container_id, vec!["/bin/hostname".into()], 5).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), name);
    })
    .await;
}
