//! `flotilla server` brings the embedded runtime up under its data dir (its own containerd,
//! the pause image built and imported, the network plugin) and stops its containerd on a
//! clean shutdown; a kill -9 of the server leaves containerd running and the next start
//! adopts it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_local::containerd::Containerd;
use flotilla_local::cri::Cri;
use flotilla_local::embedded::PAUSE_IMAGE;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

fn start(data_dir: &Path) -> Child {
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("FLOTILLA_ADMIN_PASSWORD", "runtime test admin password")
        .env("FLOTILLA_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("flotilla server starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the server printed its address before exiting").unwrap();
        if line.starts_with("flotilla listening on ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap()
}

/// Stops whatever containerd still serves `socket` (after a failure or the kill -9 case).
async fn stop_containerd(dir: &Path, socket: &Path) {
    if Containerd::existing(socket).await.is_ok() {
        let config = dir.join("runtime/containerd/config.toml");
        let _ = Command::new("pkill").arg("-f").arg(config.display().to_string()).status();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_its_own_containerd_and_adopts_it_after_a_kill() {
    assert!(nix::unistd::Uid::effective().is_root(), "the embedded runtime needs root (scripts/test runs as root)");
    let short = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let dir = PathBuf::from(format!("/var/tmp/flt-e2e-{short}"));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("runtime/containerd/containerd.sock");
    let outcome = tokio::spawn({
        let (dir, socket) = (dir.clone(), socket.clone());
        async move {
            let mut server = start(&dir);
            let containerd = Containerd::existing(&socket).await.expect("the server's containerd answers");
            drop(containerd);
            let mut cri = Cri::connect(&socket).await.unwrap();
            assert!(cri.image_id(PAUSE_IMAGE).await.unwrap().is_some(), "the pause image was built and imported");
            assert!(dir.join("runtime/cni-bin/flotilla-net").exists(), "the network plugin is installed");

            // kill -9: containerd keeps running; the next start adopts it.
            server.kill().unwrap();
            server.wait().unwrap();
            assert!(Containerd::existing(&socket).await.is_ok(), "containerd outlives a killed server");
            let mut server = start(&dir);
            assert!(Containerd::existing(&socket).await.is_ok());

            // A clean shutdown stops the containerd this server started... which it did not:
            // it adopted it, so it leaves it running.
            assert!(terminate(&mut server).success());
            assert!(Containerd::existing(&socket).await.is_ok(), "an adopted containerd is left running");
            stop_containerd(&dir, &socket).await;
            assert!(Containerd::existing(&socket).await.is_err());

            // A server that started its own containerd stops it on SIGTERM.
            let mut server = start(&dir);
            assert!(Containerd::existing(&socket).await.is_ok());
            assert!(terminate(&mut server).success());
            assert!(Containerd::existing(&socket).await.is_err(), "containerd stopped with the server");
        }
    })
    .await;
    stop_containerd(&dir, &socket).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
