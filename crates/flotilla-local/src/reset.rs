//! Taking the embedded runtime of a data directory off this host, as `kubeadm reset` does for
//! a node (`flotilla runtime reset`). By design the runtime's instances, its containerd, the
//! environments' bridges and its service rules outlive the control plane (workloads keep
//! running while it restarts); deleting the data directory by hand would orphan them all.
//!
//! A reset, in this order:
//! 1. takes the [`RuntimeLock`], so it never runs beside a server using the runtime;
//! 2. brings up the runtime's own containerd (started again, or adopted when a killed server
//!    left it running) and stops and removes every instance's pod: the CNI plugin returns each
//!    pod's address and link; with a containerd given by socket, only the pods of this
//!    runtime's instances (those with a directory under it) are touched;
//! 3. stops that containerd, also one a killed server left behind;
//! 4. deletes every environment network (its bridge, its isolation and masquerading rules)
//!    and forgets its allocation, then the runtime's service chains and their jumps.
//!
//! Images, volumes, instance logs and service addresses stay in the runtime's directory, so a
//! server started again recreates the declared applications as they were; removing the
//! directory too is the caller's choice ([`ResetOptions::remove_dir`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::LocalError;
use crate::containerd::{Containerd, OwnContainerd};
use crate::cri::Cri;
use crate::embedded::PAUSE_IMAGE;
use crate::instance::{INSTANCE_LABEL, instance_dir, remove_pod_cgroup};
use crate::networks::NetworkAllocator;
use crate::services::{self, Chains};

/// The file under a runtime's directory that its user holds locked.
const LOCK_FILE: &str = "runtime.lock";

/// Exclusive use of a runtime's directory by one process (a server, or a reset): an advisory
/// lock on `<dir>/runtime.lock`, released when dropped or when the process dies. The file
/// names the holder's process id, for the message of whoever is refused.
#[derive(Debug)]
pub struct RuntimeLock {
    _file: File,
}

impl RuntimeLock {
    /// Takes the lock of the runtime in `dir` (created if missing), or says who holds it.
    pub fn take(dir: &Path) -> Result<Self, LocalError> {
        use std::io::Write;
        std::fs::create_dir_all(dir).map_err(LocalError::io(format!("cannot create {}", dir.display())))?;
        let path = dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LocalError::io(format!("cannot open {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
                return Err(LocalError::Busy(format!(
                    "the embedded runtime in {} is in use by another process{holder}: a flotilla server on the same \
                     data directory? Stop it first",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(LocalError::io(format!("cannot lock {}", path.display()))(error));
            }
        }
        file.set_len(0)
            .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
            .map_err(LocalError::io(format!("cannot write {}", path.display())))?;
        Ok(Self { _file: file })
    }
}

/// What to reset.
#[derive(Debug, Clone)]
pub struct ResetOptions {
    /// The runtime's directory (`<data dir>/runtime`).
    pub dir: PathBuf,
    /// The containerd the runtime uses when not its own (`runtime.containerd_socket`).
    pub containerd_socket: Option<PathBuf>,
    /// Also delete the runtime's directory (images, volumes, logs) once all is removed.
    pub remove_dir: bool,
}

/// What a reset removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResetReport {
    /// Instances whose pods were stopped and removed.
    pub instances: Vec<String>,
    /// Whether the runtime's own containerd was running (or started to remove pods) and is
    /// now stopped.
    pub containerd_stopped: bool,
    /// Bridges of the environment networks deleted.
    pub bridges: Vec<String>,
    /// Whether the runtime's directory was deleted.
    pub dir_removed: bool,
}

/// Resets the runtime of `options.dir` (see the module's documentation). Every step runs even
/// when an earlier one failed; the first failure is returned after them, so a second reset
/// finishes what the first could not.
pub async fn reset(options: &ResetOptions) -> Result<ResetReport, LocalError> {
    let dir = &options.dir;
    let lock = RuntimeLock::take(dir)?;
    let mut report = ResetReport::default();
    let mut first_error = None;
    let mut failed = |error: LocalError| {
        tracing::warn!(%error, "reset step failed");
        first_error.get_or_insert(error);
    };

    let own = OwnContainerd::new(dir.join("containerd"), PAUSE_IMAGE);
    let external = options.containerd_socket.is_some();
    let containerd = match &options.containerd_socket {
        Some(socket) => Containerd::existing(socket).await.map(Some),
        // Never started: nothing ran here.
        None if !own.dir.join("config.toml").exists() => Ok(None),
        None => {
            let mut own = own.clone();
            own.cni_bin_dir = dir.join("cni-bin");
            Containerd::own(&own).await.map(Some)
        }
    };
    match containerd {
        Ok(Some(mut containerd)) => {
            match remove_pods(dir, containerd.socket(), external).await {
                Ok(instances) => report.instances = instances,
                Err(error) => failed(error),
            }
            if !external {
                containerd.stop().await;
                report.containerd_stopped = true;
            }
        }
        Ok(None) => {}
        Err(error) => failed(error),
    }
    if !external {
        // One a killed server left running (adopted above, so not stopped by `stop`).
        match stop_by_config(&own.dir.join("config.toml")).await {
            Ok(stopped) => report.containerd_stopped |= stopped,
            Err(error) => failed(error),
        }
    }

    // The allocator's second octet only matters for new allocations.
    let networks = NetworkAllocator::new(dir.join("networks"), 0);
    for (namespace, network) in networks.allocated() {
        tokio::task::spawn_blocking({
            let network = network.clone();
            move || crate::cni_plugin::remove_network(&network)
        })
        .await
        .map_err(|error| LocalError::Network(format!("removing {}: {error}", network.bridge)))
        .unwrap_or_else(&mut failed);
        networks.release(&namespace);
        report.bridges.push(network.bridge);
    }
    let chains = Chains::of(dir);
    tokio::task::spawn_blocking(move || services::remove(&chains))
        .await
        .map_err(|error| LocalError::Network(format!("removing the service rules: {error}")))
        .unwrap_or_else(&mut failed);

    if let Some(error) = first_error {
        return Err(error);
    }
    drop(lock);
    if options.remove_dir {
        std::fs::remove_dir_all(dir).map_err(LocalError::io(format!("cannot remove {}", dir.display())))?;
        report.dir_removed = true;
    }
    Ok(report)
}

/// How long pods get to go away before the reset gives up on them.
const POD_REMOVAL: Duration = Duration::from_secs(60);

/// Stops and removes the runtime's pods in the containerd on `socket`: all of them in its own
/// containerd, or with `only_ours` those of instances that have a directory under `dir`.
/// Returns the instances removed.
async fn remove_pods(dir: &Path, socket: &Path, only_ours: bool) -> Result<Vec<String>, LocalError> {
    let mut cri = Cri::connect(socket).await?;
    let started = Instant::now();
    let mut removed = Vec::new();
    loop {
        let sandboxes = cri.list_pod_sandboxes(Default::default()).await?;
        let ours: Vec<_> = sandboxes
            .into_iter()
            .filter(|sandbox| {
                let instance = sandbox.labels.get(INSTANCE_LABEL);
                !only_ours || instance.is_some_and(|name| instance_dir(dir, name).is_dir())
            })
            .collect();
        if ours.is_empty() {
            return Ok(removed);
        }
        let mut last_error = None;
        for sandbox in ours {
            let gone = match cri.stop_pod_sandbox(&sandbox.id).await {
                Ok(()) => cri.remove_pod_sandbox(&sandbox.id).await,
                Err(error) => Err(error),
            };
            match gone {
                Ok(()) => {
                    let name = sandbox.labels.get(INSTANCE_LABEL).cloned().unwrap_or(sandbox.id);
                    remove_pod_cgroup(&name);
                    removed.push(name);
                }
                Err(error) => last_error = Some(error),
            }
        }
        if let Some(error) = last_error
            && started.elapsed() > POD_REMOVAL
        {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops every process running containerd with the configuration file `config` (SIGTERM, then
/// SIGKILL after 10 s); whether there was one.
async fn stop_by_config(config: &Path) -> Result<bool, LocalError> {
    use nix::sys::signal::{Signal, kill};
    let pids = processes_with_args(&["--config".as_ref(), config.as_os_str()]);
    for pid in &pids {
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let started = Instant::now();
    while pids.iter().any(|pid| kill(*pid, None).is_ok()) {
        if started.elapsed() > Duration::from_secs(10) {
            for pid in &pids {
                let _ = kill(*pid, Signal::SIGKILL);
            }
            if started.elapsed() > Duration::from_secs(15) {
                return Err(LocalError::Containerd(format!(
                    "containerd with {} did not stop within 15 s",
                    config.display()
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(!pids.is_empty())
}

/// The processes whose command line has `args` one after the other.
fn processes_with_args(args: &[&std::ffi::OsStr]) -> Vec<nix::unistd::Pid> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let words: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
            let wanted: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
            words
                .windows(wanted.len())
                .any(|window| window == wanted.as_slice())
                .then(|| nix::unistd::Pid::from_raw(pid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_held_by_one_process_at_a_time_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = RuntimeLock::take(dir.path()).unwrap();
        // A second open file description is refused as another process would be.
        let error = RuntimeLock::take(dir.path()).unwrap_err().to_string();
        assert!(error.contains(&format!("process {}", std::process::id())), "{error}");
        assert!(error.contains("Stop it first"), "{error}");
        drop(held);
        RuntimeLock::take(dir.path()).expect("free again once dropped");
    }

    /// A child process killed when dropped, also when the test fails.
    struct Killed(std::process::Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn processes_are_found_by_consecutive_arguments() {
        // GNU sleep sleeps for the sum of its arguments.
        let child = Killed(std::process::Command::new("sleep").args(["1000", "7"]).spawn().unwrap());
        let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
        // Until the child has executed `sleep`, its command line is still this test's.
        let started = Instant::now();
        while !processes_with_args(&["1000".as_ref(), "7".as_ref()]).contains(&pid) {
            assert!(started.elapsed() < Duration::from_secs(5), "`sleep 1000 7` is not found");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(processes_with_args(&["sleep".as_ref(), "1000".as_ref()]).contains(&pid));
        assert!(!processes_with_args(&["sleep".as_ref(), "7".as_ref()]).contains(&pid), "not consecutive");
        assert!(!processes_with_args(&["1000".as_ref(), "8".as_ref()]).contains(&pid));
    }
}
