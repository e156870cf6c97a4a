//! Pulling from a registry marked insecure, for real: Debian's `docker-registry` on loopback
//! (plain HTTP), an image pushed to it with `skopeo`, an application running it; a tag the
//! registry does not have shows the registry's answer as the image-pull error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_driver::ClusterDriver;
use flotilla_local::containerd::OwnContainerd;
use flotilla_local::oci_archive;
use serde_json::json;
use support::drivers::*;

/// `docker-registry` serving plain HTTP on a free loopback port; killed when dropped.
struct Registry {
    child: Child,
    host: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    let storage = dir.join("registry");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            storage.display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry runs (scripts/install-deps test installs it)");
    let registry = Registry { child, host };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&registry.host).is_ok() {
            return registry;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not listen on {}", registry.host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_from_an_insecure_registry() {
    with_driver_runtime(|runtime, key| async move {
        let registry = start_registry(&runtime.dir);
        let reference = format!("{}/shop/web:1", registry.host);
        let archive = runtime.dir.join("web.tar");
        oci_archive::busybox_image(Path::new(support::BUSYBOX), vec!["/bin/sh".into()])
            .unwrap()
            .write_archive(&reference, &archive)
            .unwrap();
        let pushed = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(pushed.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&pushed.stderr));

        // The runtime's containerd is told the registry speaks plain HTTP.
        OwnContainerd::new(runtime.dir.join("containerd"), "unused").trust_insecure_registry(&registry.host).unwrap();
        let driver = start_driver(&runtime).await;
        let web = json!({"name": "web", "image": reference, "command": ["/bin/sleep", "3600"]});
        driver.apply(&workload(&key, 1, json!({"environment": "test", "components": [web]}))).await.unwrap();
        wait_for(&driver, &key, 60, "the pulled image runs", |s| complete(s, 1)).await;

        // A tag the registry does not have: the registry's answer is the component's message.
        let missing = format!("{}/shop/web:404", registry.host);
        let web = json!({"name": "web", "image": missing, "command": ["/bin/sleep", "3600"]});
        driver.apply(&workload(&key, 2, json!({"environment": "test", "components": [web]}))).await.unwrap();
        let status = wait_for(&driver, &key, 60, "a pull error", |s| component(s, "web").message.is_some()).await;
        let message = component(&status, "web").message.clone().unwrap();
        assert!(message.contains(&missing) && message.contains("not found"), "{message}");
        assert_eq!(component(&status, "web").ready, 1, "the running revision keeps serving: {status:?}");
        driver.delete(&key, false).await.unwrap();
    })
    .await;
}
