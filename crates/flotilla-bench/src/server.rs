//! The `flotilla server` under test: a child process on `127.0.0.1:0` with a private data
//! directory. It is found through the `flotilla listening on http://ADDR` line on its stdout,
//! whose remaining output is drained so the server never blocks on a full pipe. Dropping a
//! [`Server`] kills the process (the benchmark failed half-way); [`Server::stop`] asks it
//! to shut down cleanly first.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin user the server bootstraps.
pub const ADMIN_USER: &str = "admin";

/// A running server.
pub struct Server {
    /// `kill_on_drop`: the guard that stops the server whatever happens to the benchmark.
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// Starts `binary server` on a free loopback port with `data_dir`, the admin password
    /// set, logging at `warn` (the benchmark should not measure log formatting) and the
    /// embedded runtime disabled (the API benchmark measures the control plane).
    pub async fn start(binary: &Path, data_dir: &Path, admin_password: &str) -> anyhow::Result<Self> {
        Self::start_with_env(binary, data_dir, admin_password, &[("FLOTILLA_RUNTIME__ENABLED", "false")]).await
    }

    /// [`Server::start`] with these `FLOTILLA_*` settings instead of the disabled runtime.
    pub async fn start_with_env(
        binary: &Path,
        data_dir: &Path,
        admin_password: &str,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        // The server refuses unknown FLOTILLA_* variables, and nothing from the caller's
        // environment may point it elsewhere: its configuration is this function's alone.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FLOTILLA_") {
                command.env_remove(name);
            }
        }
        command.envs(settings.iter().copied());
        let mut child = command
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .env("FLOTILLA_ADMIN_PASSWORD", admin_password)
            .env("FLOTILLA_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("the server's stdout is not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let wait_for_address = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(base) = line.trim().strip_prefix("flotilla listening on ") {
                    return Ok(base.to_string());
                }
            }
            bail!("the server exited before it listened (see its messages above)")
        };
        let base = tokio::time::timeout(Duration::from_secs(120), wait_for_address)
            .await
            .context("the server did not say where it listens within 120 s")??;
        // Keep reading: a server writing to a full pipe would stall.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, base })
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM (a clean drain and store shutdown), then SIGKILL after 30 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // `kill` the command: this crate forbids the unsafe code a direct syscall needs.
            let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await?;
            if status.success()
                && let Ok(waited) = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await
            {
                waited?;
                return Ok(());
            }
        }
        self.child.kill().await.context("cannot kill the server")?;
        Ok(())
    }
}
