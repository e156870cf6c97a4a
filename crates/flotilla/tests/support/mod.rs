//! The server as the end-to-end tests run it: the real binary with the embedded runtime in a
//! data directory of the test's own, prepared with a workspace, a project, its `test`
//! environment and a busybox image, and everything it left on the host removed afterwards
//! (also when the test failed).

// Each test crate includes this module and uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_local::containerd::Containerd;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// The file in a test's data directory naming its [`flotilla_local::testing::Slot`].
const SLOT_FILE: &str = "test-slot";

pub const PASSWORD: &str = "runtime test admin password";

/// The second octet of the environment networks of the test holding `slot`: its networks are
/// in 10.<octet>.0.0/16, no other test's.
fn network_octet(slot: u8) -> u8 {
    150 + slot
}

/// Starts the server; returns the process and its base URL.
pub fn start_at(data_dir: &Path) -> (Child, String) {
    // Networks and service addresses of this test's own (tests run side by side): from the
    // slot `with_server_dir` holds for it.
    let slot: u8 = std::fs::read_to_string(data_dir.join(SLOT_FILE)).unwrap().trim().parse().unwrap();
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("FLOTILLA_ADMIN_PASSWORD", PASSWORD)
        .env("FLOTILLA_RUNTIME__NETWORK_OCTET", network_octet(slot).to_string())
        .env("FLOTILLA_RUNTIME__SERVICE_RANGE", format!("10.211.{slot}.0/24"))
        .env("FLOTILLA_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("flotilla server starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the server printed its address before exiting").unwrap();
        if let Some(base) = line.strip_prefix("flotilla listening on ") {
            break base.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

pub fn start(data_dir: &Path) -> Child {
    start_at(data_dir).0
}

pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap()
}

pub const IMAGE: &str = "flotilla.local/e2e/shop:1";

/// Starts a server with the runtime, imports the test image, and creates a workspace, a
/// project (returned) and its `test` environment on the local cluster.
pub async fn prepare(dir: &Path, socket: &Path, short: &str) -> (Child, flotilla_client::Client, String) {
    use serde_json::json;
    let (server, base) = start_at(dir);
    let mut spec =
        flotilla_local::oci_archive::busybox_image(Path::new("/bin/busybox"), vec!["/bin/sh".into()]).unwrap();
    spec.files.push(flotilla_local::oci_archive::LayerFile {
        path: "www/index.html".into(),
        mode: 0o644,
        content: b"shop\n".to_vec(),
    });
    let archive = dir.join("shop.tar");
    spec.write_archive(IMAGE, &archive).unwrap();
    flotilla_local::images::import(socket, &archive).await.unwrap();
    let anonymous = flotilla_client::Client::new(&base, None).unwrap();
    let login = anonymous.login_token("admin", PASSWORD, "e2e", None).await.unwrap();
    let admin = anonymous.with_token(Some(login.token));
    let project = format!("p{short}");
    let documents = [
        (
            "workspaces",
            None,
            json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": "retail"}, "spec": {}}),
        ),
        (
            "projects",
            None,
            json!({"apiVersion": "flotilla.io/v1", "kind": "Project", "metadata": {"name": project}, "spec": {"workspace": "retail"}}),
        ),
        (
            "environments",
            Some(project.as_str()),
            json!({"apiVersion": "flotilla.io/v1", "kind": "Environment",
            "metadata": {"name": "test", "project": project}, "spec": {"tier": "test", "clusters": ["local"]}}),
        ),
    ];
    for (plural, project, document) in &documents {
        admin.create(plural, *project, document).await.unwrap_or_else(|e| panic!("create {plural}: {e}"));
    }
    (server, admin, project)
}

/// Stops whatever containerd still serves `socket` (after a failure or the kill -9 case).
pub async fn stop_containerd(dir: &Path, socket: &Path) {
    if Containerd::existing(socket).await.is_ok() {
        let config = dir.join("runtime/containerd/config.toml");
        let _ = Command::new("pkill").arg("-f").arg(config.display().to_string()).status();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `test` with a fresh data directory (short: the containerd socket path must fit in
/// 108 bytes), its runtime's socket path and a unique short id; then removes whatever the
/// server and its runtime left behind, also when the test failed.
pub async fn with_server_dir<F, Fut>(test: F)
where
    F: FnOnce(PathBuf, PathBuf, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    assert!(nix::unistd::Uid::effective().is_root(), "the embedded runtime needs root (scripts/test runs as root)");
    let short = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let dir = PathBuf::from(format!("/var/tmp/flt-e2e-{short}"));
    std::fs::create_dir_all(&dir).unwrap();
    let slot = flotilla_local::testing::Slot::take();
    std::fs::write(dir.join(SLOT_FILE), slot.number().to_string()).unwrap();
    let socket = dir.join("runtime/containerd/containerd.sock");
    let octet = network_octet(slot.number());
    let masquerading_before = masquerading(octet);
    let outcome = tokio::spawn(test(dir.clone(), socket.clone(), short)).await;
    clean_up_runtime(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let left: Vec<String> = masquerading(octet).difference(&masquerading_before).cloned().collect();
    drop(slot);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
    assert!(left.is_empty(), "rules of networks the server released are left on the host: {left:#?}");
}

/// The host's masquerading rules for sources in 10.<octet>.0.0/16.
fn masquerading(octet: u8) -> std::collections::BTreeSet<String> {
    let output = Command::new("iptables").args(["-w", "5", "-t", "nat", "-S", "POSTROUTING"]).output().unwrap();
    let prefix = format!("-s 10.{octet}.");
    String::from_utf8_lossy(&output.stdout).lines().filter(|line| line.contains(&prefix)).map(str::to_string).collect()
}

/// Removes what the server's runtime left on the host (instances, containerd, environment
/// bridges and their rules, service rules): kills a server a failed test left behind, then
/// resets the runtime as `flotilla runtime reset` does.
pub async fn clean_up_runtime(dir: &Path) {
    let _ = Command::new("pkill").args(["-9", "-f", "--"]).arg(format!("--data-dir {}", dir.display())).status();
    let options =
        flotilla_local::reset::ResetOptions { dir: dir.join("runtime"), containerd_socket: None, remove_dir: false };
    let started = std::time::Instant::now();
    loop {
        match flotilla_local::reset::reset(&options).await {
            // The killed server's lock is released once the process is gone.
            Err(flotilla_local::LocalError::Busy(_)) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                eprintln!("cleaning up {}: {error}", dir.display());
                break;
            }
            Ok(_) => break,
        }
    }
}
