//! containerd for the embedded runtime: an existing one reachable on a socket, or one of our
//! own with its config, root and state under a directory of the data dir.
//!
//! Our containerd runs in its own process group with its own socket. When `flotilla server`
//! is killed, containerd and the containers (whose shims are separate processes anyway) keep
//! running, and the next start adopts the containerd it finds on the socket. A clean shutdown
//! stops containerd (SIGTERM, then SIGKILL after a grace period); containers keep running
//! under their shims and are picked up again when containerd comes back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::LocalError;
use crate::cri::Cri;

/// How to run our own containerd.
#[derive(Debug, Clone)]
pub struct OwnContainerd {
    /// Everything of it lives here: config, root, state, socket, CNI configuration, log.
    pub dir: PathBuf,
    /// The pod sandbox image, already imported (see [`crate::images`]).
    pub pause_image: String,
    /// The `containerd` binary.
    pub binary: PathBuf,
    /// Where the CNI plugins are (Debian: `/usr/lib/cni`).
    pub cni_bin_dir: PathBuf,
}

impl OwnContainerd {
    pub fn new(dir: impl Into<PathBuf>, pause_image: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            pause_image: pause_image.into(),
            binary: PathBuf::from("containerd"),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// Registry host configuration (`certs.d/HOST:PORT/hosts.toml`).
    pub fn registry_config_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// Lets containerd pull from `host` (`HOST[:PORT]`) over plain HTTP, or over HTTPS
    /// without verifying its certificate: a registry marked insecure. containerd reads the
    /// file at each pull, so this applies at once.
    pub fn trust_insecure_registry(&self, host: &str) -> Result<(), LocalError> {
        let valid = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !valid {
            return Err(LocalError::Image(format!("{host:?} is not a registry host (HOST or HOST:PORT)")));
        }
        let dir = self.registry_config_dir().join(host);
        std::fs::create_dir_all(&dir).map_err(LocalError::io(format!("cannot create {}", dir.display())))?;
        let text = format!(
            "# Written by Flotilla: {host} is an insecure registry (runtime.insecure_registries).\n\
             server = \"http://{host}\"\n\n\
             [host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"
        );
        let path = dir.join("hosts.toml");
        std::fs::write(&path, text).map_err(LocalError::io(format!("cannot write {}", path.display())))
    }

    /// The configuration file's text. `restrict_oom_score_adj`: these hosts do not grant
    /// CAP_SYS_RESOURCE, without which every sandbox fails to start.
    pub fn config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause}"
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    max_container_log_line_size = 16384
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{d}/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{bin}"
      conf_dir = "{d}/cni"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{d}/certs.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
"#,
            pause = self.pause_image,
            bin = self.cni_bin_dir.display(),
        )
    }
}

/// Whether this process's root is not the root of its mount namespace: it runs in a chroot.
/// Compares our `/` with the one a process that joins our mount namespace gets (the top of
/// the namespace's `/`, see [`ROOTED_AT_CHROOT`]); PID 1 cannot tell, since its `/proc`
/// entries may be out of reach.
pub async fn in_chroot() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(ours) = std::fs::metadata("/") else { return false };
    let namespace_root =
        Command::new("nsenter").args(["--mount=/proc/self/ns/mnt", "--", "stat", "-c", "%d:%i", "/"]).output().await;
    match namespace_root {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim() != format!("{}:{}", ours.dev(), ours.ino())
        }
        _ => false,
    }
}

/// Runs its arguments (containerd and its options) in a new mount namespace whose root is
/// the chroot this process is in, with util-linux's `unshare`, `nsenter` and `mount`; run as
/// `unshare --mount --propagation unchanged -- /bin/sh -c ROOTED_AT_CHROOT flotilla CMD...`.
///
/// Why: an exec into a container (`runc exec`) joins the container's mount namespace with
/// setns(2), and the kernel then sets the process's root to the top of that namespace's `/`.
/// runc's pivot_root puts the container's root file system there only when runc itself ran
/// at the top of `/`; in a chroot it lands on the chroot's directory instead, and an exec
/// runs in the host's root file system with the container's mounts out of sight.
///
/// How: keep the chroot's root open as fd 3, join our own (new) namespace again, which puts
/// the shell at the top of its `/` (the host's root, private in this namespace so nothing
/// propagates back), bind the chroot's tree onto `/`, and join the namespace once more, which
/// now puts containerd at the top of `/` in the chroot's tree. Mounts under the chroot stay
/// peers of the originals (see [`share_chroot_mounts`]), so what containerd mounts (network
/// namespaces, root file systems) is seen outside and by a containerd started later.
pub const ROOTED_AT_CHROOT: &str = r#"exec 3</ && exec nsenter --mount=/proc/self/ns/mnt -- /bin/sh -c 'mount --make-private / && mount --rbind /proc/self/fd/3 / && exec nsenter --mount=/proc/self/ns/mnt -- "$@" 3<&-' flotilla "$@""#;

/// Makes the mounts of this process's chroot shared, so that the copies in containerd's
/// namespace (see [`ROOTED_AT_CHROOT`]) are their peers. Without it a restarted containerd
/// would not see the network namespaces of the pods that kept running. A chroot whose root
/// is not a mount point cannot be shared: containerd then still runs, with that caveat.
async fn share_chroot_mounts() {
    match Command::new("mount").args(["--make-rshared", "/"]).output().await {
        Ok(output) if output.status.success() => {}
        Ok(output) => tracing::warn!(
            error = %String::from_utf8_lossy(&output.stderr).trim(),
            "cannot share the chroot's mounts with containerd's namespace; a restarted containerd will not see \
             the network namespaces of running pods"
        ),
        Err(error) => tracing::warn!(%error, "cannot run mount --make-rshared /"),
    }
}

/// A containerd the runtime talks to.
#[derive(Debug)]
pub struct Containerd {
    socket: PathBuf,
    /// Set when we started it in this process.
    child: Option<Child>,
}

/// Whether a CRI call succeeds on `socket` within a short time.
async fn answers(socket: &Path) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), Cri::connect(socket)).await {
        Ok(Ok(mut cri)) => cri.version().await.is_ok(),
        _ => false,
    }
}

impl Containerd {
    /// An existing containerd on `socket` (its CRI plugin must be enabled).
    pub async fn existing(socket: impl Into<PathBuf>) -> Result<Self, LocalError> {
        let socket = socket.into();
        if !answers(&socket).await {
            return Err(LocalError::Containerd(format!(
                "no containerd with the CRI plugin answers on {}",
                socket.display()
            )));
        }
        Ok(Self { socket, child: None })
    }

    /// Adopts our own containerd if it is still running (we were restarted), else starts it.
    pub async fn own(options: &OwnContainerd) -> Result<Self, LocalError> {
        let socket = options.socket();
        if answers(&socket).await {
            tracing::info!(socket = %socket.display(), "adopting the running containerd");
            return Ok(Self { socket, child: None });
        }
        for dir in [options.dir.clone(), options.cni_conf_dir(), options.registry_config_dir()] {
            std::fs::create_dir_all(&dir).map_err(LocalError::io(format!("cannot create {}", dir.display())))?;
        }
        let config = options.dir.join("config.toml");
        std::fs::write(&config, options.config())
            .map_err(LocalError::io(format!("cannot write {}", config.display())))?;
        // A stale socket of a containerd that died would make it fail to listen.
        let _ = std::fs::remove_file(&socket);
        let log_path = options.dir.join("containerd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(LocalError::io(format!("cannot open {}", log_path.display())))?;
        let log_err = log.try_clone().map_err(LocalError::io("cannot duplicate the containerd log"))?;
        let mut command = if in_chroot().await {
            share_chroot_mounts().await;
            tracing::info!("this process runs in a chroot: containerd gets a mount namespace rooted at it");
            let mut command = Command::new("unshare");
            command.args(["--mount", "--propagation", "unchanged", "--", "/bin/sh", "-c", ROOTED_AT_CHROOT]);
            command.arg("flotilla").arg(&options.binary);
            command
        } else {
            Command::new(&options.binary)
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| LocalError::Containerd(format!("cannot run {}: {e}", options.binary.display())))?;
        let mut containerd = Self { socket: socket.clone(), child: Some(child) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if answers(&socket).await {
                tracing::info!(socket = %socket.display(), elapsed = ?started.elapsed(), "containerd started");
                return Ok(containerd);
            }
            if let Some(child) = containerd.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                return Err(LocalError::Containerd(format!(
                    "containerd exited ({status}) while starting; last lines of {}:\n{}",
                    log_path.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        containerd.stop().await;
        Err(LocalError::Containerd(format!("containerd did not answer on {} within 30 s", socket.display())))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether this process started it (and so stops it).
    pub fn is_own_child(&self) -> bool {
        self.child.is_some()
    }

    /// Stops a containerd we started: SIGTERM, then SIGKILL after 10 s. Containers keep
    /// running under their shims. Does nothing to one we adopted or found.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("containerd did not stop within 10 s of SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
