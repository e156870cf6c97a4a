//! Runs `wrk` (the Debian package) against one URL and reads its summary: requests/s, the
//! latency distribution's 50 % and 99 %, and the responses that were not 2xx/3xx.

use std::time::Duration;

use anyhow::{Context, bail};

/// One wrk run's figures.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub requests: u64,
    pub p50: Duration,
    pub p99: Duration,
    /// Responses with a status outside 2xx/3xx (a 401 would make a run worthless).
    pub non_2xx: u64,
    /// wrk's `Socket errors:` line, when it printed one.
    pub socket_errors: Option<String>,
}

/// How a wrk run is shaped.
#[derive(Debug, Clone)]
pub struct WrkOptions {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

impl WrkOptions {
    /// The flags, as printed in the report.
    pub fn flags(&self) -> String {
        format!("-t{} -c{} -d{}s --latency", self.threads, self.connections, self.duration.as_secs())
    }
}

/// A wrk script whose every request creates a new workspace, `tput-<thread>-<n>` (a POST to
/// the URL wrk is given, with the headers of its command line).
pub const CREATE_SCRIPT: &str = r#"-- Written by flotilla-bench: each request creates a new workspace.
next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end
function init(args)
  count = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  count = count + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"apiVersion":"flotilla.io/v1","kind":"Workspace","metadata":{"name":"tput-%d-%d","labels":{"bench":"tput"}},'
    .. '"spec":{"description":"closed-loop create"}}', thread_id, count))
end
"#;

/// Runs wrk against `url`, with `Authorization: Bearer <token>` when a token is given and
/// the Lua `script` when one is.
pub async fn run(
    options: &WrkOptions,
    url: &str,
    token: Option<&str>,
    script: Option<&std::path::Path>,
) -> anyhow::Result<WrkResult> {
    let headers: Vec<String> = token.map(|token| format!("Authorization: Bearer {token}")).into_iter().collect();
    run_with_headers(options, url, &headers, script).await
}

/// Runs wrk against `url` with these headers (`Name: value`) and the Lua `script` when one
/// is given.
pub async fn run_with_headers(
    options: &WrkOptions,
    url: &str,
    headers: &[String],
    script: Option<&std::path::Path>,
) -> anyhow::Result<WrkResult> {
    let mut command = tokio::process::Command::new("wrk");
    command
        .arg(format!("-t{}", options.threads))
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{}s", options.duration.as_secs()))
        .arg("--latency");
    for header in headers {
        command.arg("-H").arg(header);
    }
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    command.arg(url).kill_on_drop(true);
    let output = command.output().await.context("cannot run wrk (install it: apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed ({}): {}{}", output.status, stdout, String::from_utf8_lossy(&output.stderr));
    }
    parse(&stdout).with_context(|| format!("cannot read wrk's output:\n{stdout}"))
}

/// Reads wrk's `--latency` report.
pub fn parse(text: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult::default();
    let mut seen_rate = false;
    let (mut seen_p50, mut seen_p99) = (false, false);
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            result.requests_per_sec = rest.trim().parse().context("Requests/sec")?;
            seen_rate = true;
        } else if let Some(rest) = line.strip_prefix("50%") {
            result.p50 = parse_duration(rest.trim())?;
            seen_p50 = true;
        } else if let Some(rest) = line.strip_prefix("99%") {
            result.p99 = parse_duration(rest.trim())?;
            seen_p99 = true;
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.non_2xx = rest.trim().parse().context("Non-2xx count")?;
        } else if line.starts_with("Socket errors:") {
            result.socket_errors = Some(line.to_string());
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            result.requests = count.trim().parse().context("request count")?;
        }
    }
    if !(seen_rate && seen_p50 && seen_p99) {
        bail!("no Requests/sec or latency distribution (was --latency given?)");
    }
    Ok(result)
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.50m`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().with_context(|| format!("duration {text:?}"))?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("unknown unit in duration {text:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:40123/healthz
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.03ms  448.23us  12.04ms   83.15%
    Req/Sec    31.71k     2.10k   36.61k    72.00%
  Latency Distribution
     50%  812.00us
     75%    1.21ms
     90%    1.48ms
     99%    2.50ms
  631183 requests in 10.00s, 74.04MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:  63114.34
Transfer/sec:      7.40MB
";

    #[test]
    fn reads_the_latency_report() {
        let result = parse(SAMPLE).unwrap();
        assert!((result.requests_per_sec - 63114.34).abs() < 1e-6);
        assert_eq!(result.requests, 631_183);
        assert_eq!(result.p50, Duration::from_micros(812));
        assert_eq!(result.p99, Duration::from_micros(2500));
        assert_eq!(result.non_2xx, 12);
        assert_eq!(result.socket_errors.as_deref(), Some("Socket errors: connect 0, read 0, write 0, timeout 3"));
    }

    #[test]
    fn refuses_a_report_without_latencies() {
        assert!(parse("Requests/sec: 5\n").is_err());
        assert!(parse_duration("3.00parsecs").is_err());
        assert_eq!(parse_duration("2.01s").unwrap(), Duration::from_millis(2010));
    }
}
