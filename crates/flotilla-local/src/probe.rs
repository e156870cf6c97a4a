//! Health probes of the embedded runtime: HTTP and TCP from the host to the instance's
//! address (as the kubelet probes from the node), exec through the CRI; and the bookkeeping
//! of each instance's probes ([`ProbeTracker`]): when the next one is due, whether one is
//! running, and the consecutive results that thresholds are checked against.

use std::time::{Duration, Instant};

use flotilla_driver::workload::{ProbeAction, ResolvedProbe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cri::Cri;

/// Which probe of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

/// One probe of one instance. Probes run in the background: the tracker knows when one was
/// started, whether it is still running, and holds its result until the reconciler takes it.
#[derive(Debug, Default, Clone)]
pub struct ProbeTracker {
    pub successes: u32,
    pub failures: u32,
    last_run: Option<Instant>,
    running: bool,
    outcome: Option<Result<(), String>>,
}

impl ProbeTracker {
    /// Whether to start `probe` now: past its initial delay, a period after the last start,
    /// and neither running nor with a result not yet taken.
    pub fn due(&self, probe: &ResolvedProbe, started: Instant) -> bool {
        let now = Instant::now();
        if self.running || self.outcome.is_some() {
            return false;
        }
        if now < started + Duration::from_secs(u64::from(probe.initial_delay_seconds)) {
            return false;
        }
        self.last_run.is_none_or(|last| now >= last + Duration::from_secs(u64::from(probe.period_seconds)))
    }

    /// A probe was started: the period counts from now (as the kubelet's).
    pub fn started(&mut self) {
        self.last_run = Some(Instant::now());
        self.running = true;
    }

    /// The probe came back with `result`.
    pub fn finished(&mut self, result: Result<(), String>) {
        self.running = false;
        self.outcome = Some(result);
    }

    /// The result that came back since the last call, counted into the consecutive
    /// successes or failures.
    pub fn take(&mut self) -> Option<Result<(), String>> {
        let result = self.outcome.take()?;
        if result.is_ok() {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        Some(result)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(period_seconds: u32, initial_delay_seconds: u32) -> ResolvedProbe {
        ResolvedProbe {
            action: ProbeAction::Tcp { port: 80 },
            initial_delay_seconds,
            period_seconds,
            timeout_seconds: 1,
            success_threshold: 1,
            failure_threshold: 3,
        }
    }

    #[test]
    fn a_probe_is_not_due_while_it_runs_or_its_result_waits() {
        let probe = probe(1, 0);
        let started = Instant::now() - Duration::from_secs(5);
        let mut tracker = ProbeTracker::default();
        assert!(tracker.due(&probe, started));
        tracker.started();
        assert!(!tracker.due(&probe, started), "running");
        tracker.finished(Err("refused".into()));
        assert!(!tracker.due(&probe, started), "result not taken");
        assert_eq!(tracker.take(), Some(Err("refused".into())));
        assert_eq!((tracker.successes, tracker.failures), (0, 1));
        assert_eq!(tracker.take(), None, "a result is taken once");
        assert!(!tracker.due(&probe, started), "within the period of the last start");
    }

    #[test]
    fn results_count_consecutively() {
        let mut tracker = ProbeTracker::default();
        for result in [Err(String::new()), Err(String::new()), Ok(()), Ok(())] {
            tracker.started();
            tracker.finished(result);
            tracker.take();
        }
        assert_eq!((tracker.successes, tracker.failures), (2, 0));
    }

    #[test]
    fn the_initial_delay_holds_the_first_probe() {
        let tracker = ProbeTracker::default();
        assert!(!tracker.due(&probe(1, 30), Instant::now()));
        assert!(tracker.due(&probe(1, 0), Instant::now()));
    }
}
