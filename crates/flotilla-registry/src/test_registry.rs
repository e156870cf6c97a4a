//! For tests and benchmarks: Debian's `docker-registry` (distribution 2.8), the reference
//! registry, on a free loopback port, storing in a temporary directory, stopped when dropped.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `docker-registry`.
pub struct Distribution {
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// Where it stores (removed when dropped).
    pub dir: PathBuf,
    child: Child,
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `GET /v2/` answers 200.
fn answers(host: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(host) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let mut answer = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok() && stream.read_exact(&mut answer).is_ok() && answer.ends_with(b" 200")
}

/// Starts `docker-registry` (`/usr/bin/docker-registry`, Debian package `docker-registry`).
pub fn start_distribution() -> std::io::Result<Distribution> {
    let dir = std::env::temp_dir().join(format!("flotilla-distribution-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )?;
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let host = format!("127.0.0.1:{port}");
    let running = Distribution { host: host.clone(), dir, child };
    for _ in 0..200 {
        if answers(&host) {
            return Ok(running);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(std::io::Error::other(format!("docker-registry did not answer on {host}")))
}
