//! Health probes of the embedded runtime: HTTP and TCP from the host to the instance's
//! address (as the kubelet probes from the node), exec through the CRI.

use std::time::Duration;

use flotilla_driver::workload::ProbeAction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cri::Cri;

/// Runs one probe; `Err` says why it failed.
pub async fn run(
    cri: &mut Cri,
    action: &ProbeAction,
    ip: Option<&str>,
    container: &str,
    timeout: Duration,
) -> Result<(), String> {
    match action {
        ProbeAction::Http { port, path } => {
            let ip = ip.ok_or("the instance has no address")?;
            tokio::time::timeout(timeout, http(ip, *port, path))
                .await
                .map_err(|_| format!("timed out after {timeout:?}"))?
        }
        ProbeAction::Tcp { port } => {
            let ip = ip.ok_or("the instance has no address")?;
            let connect = TcpStream::connect((ip, *port));
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(format!("connect to {ip}:{port}: {error}")),
                Err(_) => Err(format!("connect to {ip}:{port} timed out after {timeout:?}")),
            }
        }
        ProbeAction::Exec { command } => {
            let seconds = timeout.as_secs().max(1) as i64;
            let output = cri.exec_sync(container, command.clone(), seconds).await.map_err(|e| e.to_string())?;
            if output.exit_code == 0 {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr);
                Err(format!("{command:?} exited with {}: {}", output.exit_code, stderr.trim()))
            }
        }
    }
}

/// GET `path`: a status from 200 to 399 is healthy.
async fn http(ip: &str, port: u16, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect((ip, port)).await.map_err(|e| format!("connect to {ip}:{port}: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: flotilla-probe\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..read]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.lines().next().unwrap_or_default()))?;
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("HTTP {status} from {path}")) }
}
