//! The registry benchmark: Flotilla's built-in OCI registry (`flotilla server` at `/v2/`,
//! bearer tokens from `/v2/token`, repositories under a project) side by side with Debian's
//! `docker-registry` (distribution 2.8, filesystem storage, no authentication), both started
//! by this run on loopback and driven by the same client (reqwest on tokio, HTTP/1.1) and the
//! same `wrk`:
//!
//! 1. blob pushes (`POST …/blobs/uploads/`, then `PUT <location>&digest=` with the whole
//!    body): many 1 MiB blobs a few at a time, and one 256 MiB blob;
//! 2. blob pulls (`GET …/blobs/<digest>`, every byte read) of the same blobs (the large ones
//!    read by a plain loop, not reqwest, which would be the bottleneck);
//! 3. the latency of one 1 MiB push (both requests), sequential;
//! 4. manifest `GET`s by tag with `wrk` (Flotilla audits each one: a durable write), and
//!    `HEAD`s (not audited);
//! 5. floors of this machine in the same run: one core's SHA-256 (the `sha2` crate, over the
//!    256 MiB blobs a registry must hash), those blobs over loopback TCP into SHA-256 on
//!    another thread (a push without HTTP and disk) and into nothing (the fastest pull), and
//!    the disk's write + `fdatasync`.
//!
//! The two registries' processes and directories are removed at the end, or when the
//! benchmark fails half-way (`kill_on_drop`, temporary directories).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_client::Client;
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

use crate::probe::{Probe, Usage};
use crate::report::{Row, Section, Verdict, ms, ratio};
use crate::stats::{Samples, Summary, fmt_count, fmt_duration, fmt_rate};
use crate::{server, wrk};

/// Bytes [`Session::pull_plain`] and the loopback floor read at once.
const PLAIN_READ: usize = 256 * 1024;

/// Debian's distribution 2.8.
pub const DISTRIBUTION: &str = "/usr/bin/docker-registry";

const MIB: usize = 1024 * 1024;
/// The project (and workspace) the benchmark's repository lives in.
const PROJECT: &str = "regbench";
const WORKSPACE: &str = "registry-bench";
/// The repository both registries are pushed to.
const REPOSITORY: &str = "regbench/blobs";
const TAG: &str = "bench";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Targets (TARGETS.md).
const PEER_FACTOR: f64 = 1.5;
const PUSH_P50_LIMIT: Duration = Duration::from_millis(10);
const MANIFEST_GET_TARGET: f64 = 10_000.0;
const SHA_SHARE_TARGET: f64 = 0.8;

/// Sizes and counts of one run.
#[derive(Debug, Clone)]
pub struct RegistryPlan {
    small_count: usize,
    concurrency: usize,
    large_size: usize,
    large_runs: usize,
    latency_samples: usize,
    wrk: wrk::WrkOptions,
}

impl RegistryPlan {
    pub fn new(quick: bool) -> Self {
        Self {
            small_count: if quick { 50 } else { 200 },
            concurrency: 4,
            large_size: 256 * MIB,
            large_runs: if quick { 1 } else { 3 },
            latency_samples: if quick { 30 } else { 100 },
            wrk: wrk::WrkOptions {
                threads: 2,
                connections: 64,
                duration: Duration::from_secs(if quick { 3 } else { 10 }),
            },
        }
    }
}

fn progress(message: &str) {
    eprintln!("[flotilla-bench] registry: {message}");
}

/// A blob and its digest, made before anything is timed.
struct Blob {
    data: Vec<u8>,
    digest: String,
}

impl Blob {
    /// `size` pseudo-random bytes (xorshift64), different for every `seed`: no two blobs of a
    /// run share a digest, so that no push finds its blob already stored.
    fn random(seed: u64, size: usize) -> Self {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut data = Vec::with_capacity(size + 8);
        while data.len() < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data.truncate(size);
        Self::of(data)
    }

    fn of(data: Vec<u8>) -> Self {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        Self { data, digest }
    }

    fn len(&self) -> usize {
        self.data.len()
    }
}

/// One registry as the client sees it.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    base: String,
    /// `Authorization: Bearer` (Flotilla), none for distribution.
    bearer: Option<String>,
}

impl Session {
    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.bearer {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{REPOSITORY}/{path}", self.base)
    }

    /// `POST …/blobs/uploads/`, then `PUT <location>&digest=…` with the whole blob: `body`,
    /// a copy of the blob's bytes made by the caller before its timer started (reqwest takes
    /// its body by value).
    async fn push(&self, blob: &Blob, body: Vec<u8>) -> anyhow::Result<()> {
        let response = self.request(Method::POST, &self.url("blobs/uploads/")).send().await?;
        let status = response.status();
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = response.text().await.unwrap_or_default();
        if status != StatusCode::ACCEPTED {
            bail!("POST blobs/uploads/ answered {status}: {text}");
        }
        let location = location.context("POST blobs/uploads/ answered without a Location")?;
        let url = if location.starts_with("http") { location } else { format!("{}{location}", self.base) };
        let separator = if url.contains('?') { '&' } else { '?' };
        let response = self
            .request(Method::PUT, &format!("{url}{separator}digest={}", blob.digest))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status != StatusCode::CREATED {
            bail!("PUT of {} answered {status}: {text}", blob.digest);
        }
        Ok(())
    }

    /// `GET …/blobs/<digest>`, every byte read (and counted, not hashed).
    async fn pull(&self, blob: &Blob) -> anyhow::Result<()> {
        let mut response = self.request(Method::GET, &self.url(&format!("blobs/{}", blob.digest))).send().await?;
        let status = response.status();
        if status != StatusCode::OK {
            bail!("GET of {} answered {status}: {}", blob.digest, response.text().await.unwrap_or_default());
        }
        let mut read = 0;
        while let Some(chunk) = response.chunk().await? {
            read += chunk.len();
        }
        if read != blob.len() {
            bail!("GET of {} gave {read} bytes, not {}", blob.digest, blob.len());
        }
        Ok(())
    }

    /// `GET …/blobs/<digest>` on a connection of its own, every byte read by a plain loop
    /// into one reused buffer of [`PLAIN_READ`] bytes, as the loopback floor reads. Used for
    /// the large pulls: reqwest's body stream hands every read over in a `Bytes` of its own,
    /// and on this project's machine capped one pull at 1.5-2.0 GB/s whichever server sent it
    /// (Flotilla's or distribution's, from memory), where this loop read 1.9-3.0 GB/s.
    async fn pull_plain(&self, blob: &Blob) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self.base.strip_prefix("http://").context("the registry's address is not http://")?;
        let mut socket = tokio::net::TcpStream::connect(authority).await?;
        let authorization = self.bearer.as_ref().map(|token| format!("Authorization: Bearer {token}\r\n"));
        let request = format!(
            "GET /v2/{REPOSITORY}/blobs/{} HTTP/1.1\r\nHost: {authority}\r\n{}Connection: close\r\n\r\n",
            blob.digest,
            authorization.unwrap_or_default()
        );
        socket.write_all(request.as_bytes()).await?;
        let mut buffer = vec![0u8; PLAIN_READ];
        let mut filled = 0;
        let (status, length, head) = loop {
            let read = socket.read(&mut buffer[filled..]).await?;
            if read == 0 {
                bail!("GET of {} ended before the response's head did", blob.digest);
            }
            filled += read;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&buffer[..filled])? {
                let length = response
                    .headers
                    .iter()
                    .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|header| std::str::from_utf8(header.value).ok()?.trim().parse::<usize>().ok());
                break (response.code.unwrap_or_default(), length, head);
            }
            if filled == buffer.len() {
                bail!("GET of {}: the response's head is longer than {PLAIN_READ} bytes", blob.digest);
            }
        };
        if status != 200 {
            bail!("GET of {} answered {status}: {}", blob.digest, String::from_utf8_lossy(&buffer[head..filled]));
        }
        let length = length.with_context(|| format!("GET of {} answered without a Content-Length", blob.digest))?;
        let mut read = filled - head;
        while read < length {
            match socket.read(&mut buffer).await? {
                0 => break,
                n => read += n,
            }
        }
        if read != blob.len() {
            bail!("GET of {} gave {read} bytes, not {}", blob.digest, blob.len());
        }
        Ok(())
    }

    /// Every blob pushed (or pulled), `concurrency` at a time; the time it took.
    async fn all(&self, blobs: &[Blob], concurrency: usize, pull: bool) -> anyhow::Result<Duration> {
        let bodies: Vec<Vec<u8>> = if pull { Vec::new() } else { blobs.iter().map(|b| b.data.clone()).collect() };
        let mut bodies = bodies.into_iter();
        let started = Instant::now();
        let mut pending = futures::stream::iter(blobs.iter().map(|blob| {
            let body = bodies.next();
            async move {
                match body {
                    Some(body) => self.push(blob, body).await,
                    None => self.pull(blob).await,
                }
            }
        }))
        .buffer_unordered(concurrency);
        while let Some(result) = pending.next().await {
            result?;
        }
        Ok(started.elapsed())
    }

    /// `HEAD url` (a manifest) in a closed loop on `connections` connections for `duration`:
    /// the rate and the answers that were not 2xx. wrk cannot do this: on a `HEAD` it waits for
    /// the body that the answer's `Content-Length` announces.
    async fn heads(&self, url: &str, connections: usize, duration: Duration) -> anyhow::Result<(f64, u64)> {
        let started = Instant::now();
        let deadline = started + duration;
        let loops = (0..connections).map(|_| async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let response = self.request(Method::HEAD, url).header("Accept", OCI_MANIFEST).send().await?;
                if response.status().is_success() { ok += 1 } else { failed += 1 }
            }
            anyhow::Ok((ok, failed))
        });
        let mut total = (0u64, 0u64);
        for result in futures::future::join_all(loops).await {
            let (ok, failed) = result?;
            total = (total.0 + ok, total.1 + failed);
        }
        Ok(((total.0 + total.1) as f64 / started.elapsed().as_secs_f64().max(1e-9), total.1))
    }

    /// A config blob and an image manifest naming it and `layer`, pushed under [`TAG`].
    async fn push_manifest(&self, layer: &Blob) -> anyhow::Result<()> {
        let config = Blob::of(
            serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer.digest]}})
                .to_string()
                .into_bytes(),
        );
        self.push(&config, config.data.clone()).await.context("the manifest's config blob")?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest, "size": layer.len()}],
        });
        let response = self
            .request(Method::PUT, &self.url(&format!("manifests/{TAG}")))
            .header(CONTENT_TYPE, OCI_MANIFEST)
            .body(manifest.to_string())
            .send()
            .await?;
        let status = response.status();
        if status != StatusCode::CREATED {
            bail!("PUT manifests/{TAG} answered {status}: {}", response.text().await.unwrap_or_default());
        }
        Ok(())
    }
}

/// The `flotilla server` under test, its admin's password, and a client of its API.
struct Flotilla {
    server: server::Server,
    password: String,
    api: Client,
    /// Removed when dropped (after the server).
    _data: tempfile::TempDir,
    data_dir: PathBuf,
}

impl Flotilla {
    async fn start(binary: &Path, password: &str) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("flotilla-bench-registry-")
            .tempdir()
            .context("cannot create a data dir")?;
        let data_dir = data.path().to_path_buf();
        let server = server::Server::start(binary, &data_dir, password).await?;
        let anonymous = Client::new(&server.base, None)?.with_user_agent("flotilla-bench");
        let login =
            anonymous.login_token(server::ADMIN_USER, password, "bench", None).await.context("login (registry)")?;
        let api = anonymous.with_token(Some(login.token));
        let documents = format!(
            "apiVersion: flotilla.io/v1\nkind: Workspace\nmetadata: {{name: {WORKSPACE}}}\n\
             spec: {{displayName: Registry benchmark}}\n---\n\
             apiVersion: flotilla.io/v1\nkind: Project\nmetadata: {{name: {PROJECT}}}\nspec: {{workspace: {WORKSPACE}}}\n"
        );
        let answer = api.apply(documents).await.context("creating the registry's project")?;
        if answer["failed"].as_u64() != Some(0) {
            bail!("creating the registry's project failed: {answer}");
        }
        Ok(Self { server, password: password.to_string(), api, _data: data, data_dir })
    }

    /// A fresh token (they last 5 minutes) for pull and push on [`REPOSITORY`].
    async fn session(&self, http: &reqwest::Client) -> anyhow::Result<Session> {
        let url = format!("{}/v2/token?service=flotilla&scope=repository:{REPOSITORY}:pull,push", self.server.base);
        let response = http.get(&url).basic_auth(server::ADMIN_USER, Some(&self.password)).send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("the token's answer")?;
        let token = body["token"].as_str().filter(|_| status.is_success());
        let token = token.with_context(|| format!("/v2/token answered {status}: {body}"))?;
        Ok(Session { http: http.clone(), base: self.server.base.clone(), bearer: Some(token.to_string()) })
    }
}

/// Debian's `docker-registry` on a free loopback port, storage in a temporary directory.
struct Distribution {
    /// `kill_on_drop`: stopped whatever happens to the benchmark.
    child: Child,
    base: String,
    /// Config, storage and log; removed when dropped (after the process).
    dir: tempfile::TempDir,
}

impl Distribution {
    async fn start(http: &reqwest::Client) -> anyhow::Result<Self> {
        let mut last_error = None;
        // The port is picked by binding and releasing it: another process may take it in
        // between, so try a few times.
        for _ in 0..3 {
            match Self::try_start(http).await {
                Ok(distribution) => return Ok(distribution),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("distribution did not start")))
    }

    async fn try_start(http: &reqwest::Client) -> anyhow::Result<Self> {
        if !Path::new(DISTRIBUTION).exists() {
            bail!("{DISTRIBUTION} is missing (apt-get install docker-registry)");
        }
        let dir = tempfile::Builder::new().prefix("flotilla-bench-distribution-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let secret = hex::encode(Sha256::digest(format!("{:?}{}", Instant::now(), std::process::id()).as_bytes()));
        let config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  cache:\n    blobdescriptor: inmemory\n  \
             delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n",
            storage = dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let mut command = Command::new(DISTRIBUTION);
        // distribution reads REGISTRY_* variables over its configuration file.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {DISTRIBUTION}"))?;
        let mut distribution = Self { child, base: format!("http://127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http.get(format!("{}/v2/", distribution.base)).send().await
                && response.status() == StatusCode::OK
            {
                return Ok(distribution);
            }
            if let Some(status) = distribution.child.try_wait()? {
                bail!("{DISTRIBUTION} exited ({status}): {}", distribution.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "{DISTRIBUTION} did not answer on {} within 30 s: {}",
                    distribution.base,
                    distribution.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }

    fn session(&self, http: &reqwest::Client) -> Session {
        Session { http: http.clone(), base: self.base.clone(), bearer: None }
    }

    /// Kills the process, then removes its directory.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot kill distribution")?;
        self.dir.close().context("cannot remove distribution's directory")?;
        Ok(())
    }
}

/// What one registry did.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// MiB/s
    small_push: f64,
    small_pull: f64,
    /// Median of the runs, MiB/s.
    large_push: f64,
    large_pull: f64,
    /// Each run's, in order, MiB/s.
    large_pushes: Vec<f64>,
    large_pulls: Vec<f64>,
    latency: Summary,
    get: wrk::WrkResult,
    /// HEADs/s, from the benchmark's client (wrk cannot time HEAD), and the non-2xx answers.
    head: (f64, u64),
}

fn mib_per_second(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn fmt_mib(rate: f64) -> String {
    format!("{rate:.0} MiB/s")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The blobs of a run, each set pushed to both registries (they have separate storage).
struct Blobs {
    small: Vec<Blob>,
    latency: Vec<Blob>,
    large: Vec<Blob>,
    /// The time `sha2` took to hash each large blob on one core.
    large_hashed_in: Vec<Duration>,
}

async fn make_blobs(plan: &RegistryPlan) -> anyhow::Result<Blobs> {
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Blobs> {
        let small = (0..plan.small_count).map(|i| Blob::random(1_000_000 + i as u64, MIB)).collect();
        let latency = (0..plan.latency_samples).map(|i| Blob::random(2_000_000 + i as u64, MIB)).collect();
        let mut large = Vec::new();
        let mut large_hashed_in = Vec::new();
        for i in 0..plan.large_runs {
            let blob = Blob::random(3_000_000 + i as u64, plan.large_size);
            // The floor: SHA-256 of the same bytes, on this thread (one core), timed alone.
            let started = Instant::now();
            let digest = Sha256::digest(&blob.data);
            large_hashed_in.push(started.elapsed());
            anyhow::ensure!(format!("sha256:{}", hex::encode(digest)) == blob.digest, "SHA-256 is not deterministic");
            large.push(blob);
        }
        Ok(Blobs { small, latency, large, large_hashed_in })
    })
    .await?
}

/// Where [`loopback_floor`] sends a blob from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// From memory, by a tokio task (`write`).
    Memory,
    /// From this file, which holds the blob and is in the page cache, with `sendfile`: the
    /// kernel sends the cached pages without copying them into the sender first, the cheapest
    /// way a server can send a file (distribution 2.8 does not: it reads the file and writes
    /// what it read, 32 KiB at a time).
    PageCache(&'a Path),
}

/// MiB/s of `blob` sent over loopback TCP from `source` to a receiver reading it 256 KiB at
/// a time. With `hash`, the receiver hands each read to a thread hashing it, as a registry
/// must: a push without HTTP and without the disk. Without, it drops what it read: a pull as
/// fast as the machine can carry one, whatever serves it. Sender, kernel copies and receiver
/// share this machine's cores, as client and server do in the push and pull phases.
async fn loopback_floor(blob: &Blob, source: Source<'_>, hash: bool) -> anyhow::Result<f64> {
    /// What the receiver made of the bytes.
    enum Received {
        Hashed(String),
        Dropped(usize),
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CHUNK: usize = PLAIN_READ;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        if !hash {
            let (mut buffer, mut received) = (vec![0u8; CHUNK], 0);
            loop {
                match socket.read(&mut buffer).await? {
                    0 => return anyhow::Ok(Received::Dropped(received)),
                    n => received += n,
                }
            }
        }
        let (chunks, mut for_hasher) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let hashing = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            while let Some(chunk) = for_hasher.blocking_recv() {
                hasher.update(&chunk);
            }
            format!("sha256:{}", hex::encode(hasher.finalize()))
        });
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            if socket.read_buf(&mut chunk).await? == 0 {
                break;
            }
            chunks.send(chunk).await.context("the hashing thread stopped")?;
        }
        drop(chunks);
        Ok(Received::Hashed(hashing.join().map_err(|_| anyhow::anyhow!("the hashing thread panicked"))?))
    });
    let started = Instant::now();
    match source {
        Source::Memory => {
            let mut sender = tokio::net::TcpStream::connect(address).await?;
            sender.write_all(&blob.data).await?;
            sender.shutdown().await?;
        }
        Source::PageCache(path) => {
            let (file, size) = (std::fs::File::open(path)?, blob.len());
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let sender = std::net::TcpStream::connect(address)?;
                let mut offset: libc::off64_t = 0;
                while (offset as usize) < size {
                    let rest = size - offset as usize;
                    let sent = nix::sys::sendfile::sendfile64(&sender, &file, Some(&mut offset), rest)?;
                    anyhow::ensure!(sent > 0, "sendfile sent nothing at {offset} of {size} bytes");
                }
                sender.shutdown(std::net::Shutdown::Write)?;
                Ok(())
            })
            .await??;
        }
    }
    let received = receiver.await??;
    let elapsed = started.elapsed();
    match received {
        Received::Hashed(digest) => {
            anyhow::ensure!(digest == blob.digest, "the loopback floor hashed {digest}, not {}", blob.digest)
        }
        Received::Dropped(bytes) => {
            anyhow::ensure!(bytes == blob.len(), "the loopback floor received {bytes} of {} bytes", blob.len())
        }
    }
    Ok(mib_per_second(blob.len(), elapsed))
}

/// Writes `blob` to a new file at `path` through the page cache and makes it durable, so that
/// it is in the page cache and no writeback of it runs while it is sent.
async fn write_cached(path: &Path, blob: &Blob) -> anyhow::Result<()> {
    let (path, data) = (path.to_path_buf(), blob.data.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create_new(&path).with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(&data)?;
        file.sync_data()?;
        Ok(())
    })
    .await?
}

/// The disk's floors, measured in the server's data directory.
struct DiskFloors {
    /// A new 1 MiB file written and `fdatasync`ed.
    small: Summary,
    /// MiB/s of one large file written through the page cache and `fdatasync`ed.
    large_cached: f64,
    /// MiB/s of one large file written past the page cache (`O_DIRECT`, 4 MiB writes) and
    /// `fdatasync`ed: what Flotilla does with all but the first 4 MiB of a large upload.
    large_direct: f64,
    /// MiB/s of reading that file back past the page cache (`O_DIRECT`, 4 MiB reads, 4 at
    /// once): how Flotilla reads a large blob the first time, so its first pull's floor.
    large_direct_read: f64,
    /// MiB/s of reading that file back once, through the page cache it is not in.
    large_cold_read: f64,
}

/// MiB/s of reading the file at `path`, `size` bytes, past the page cache: `O_DIRECT` reads
/// of [`DIRECT_READ`] bytes, [`DIRECT_READS_AT_ONCE`] at once (one thread each, each reading
/// every fourth block), as Flotilla's registry reads a large blob the first time.
fn direct_read_floor(path: &Path, size: usize) -> anyhow::Result<f64> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const DIRECT_READ: usize = 4 * MIB;
    const DIRECT_READS_AT_ONCE: usize = 4;
    let file = std::fs::File::options().read(true).custom_flags(libc::O_DIRECT).open(path)?;
    let started = Instant::now();
    let read = std::thread::scope(|scope| -> anyhow::Result<usize> {
        let readers: Vec<_> = (0..DIRECT_READS_AT_ONCE)
            .map(|first| {
                let file = &file;
                scope.spawn(move || -> std::io::Result<usize> {
                    let mut buffer = vec![0u8; DIRECT_READ + ALIGN];
                    let start = buffer.as_ptr().align_offset(ALIGN);
                    let buffer = &mut buffer[start..start + DIRECT_READ];
                    let mut read = 0;
                    for block in (first..size.div_ceil(DIRECT_READ)).step_by(DIRECT_READS_AT_ONCE) {
                        read += file.read_at(buffer, (block * DIRECT_READ) as u64)?;
                    }
                    Ok(read)
                })
            })
            .collect();
        let mut read = 0;
        for reader in readers {
            read += reader.join().map_err(|_| anyhow::anyhow!("a direct reader panicked"))??;
        }
        Ok(read)
    })?;
    anyhow::ensure!(read == size, "the direct-read floor read {read} bytes of {size}");
    Ok(mib_per_second(size, started.elapsed()))
}

/// Alignment of `O_DIRECT` buffers.
const ALIGN: usize = 4096;

async fn disk_floors(dir: &Path, samples: usize, large: usize) -> anyhow::Result<DiskFloors> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<DiskFloors> {
        use std::io::{Read, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let block = vec![0x5au8; MIB];
        let mut latencies = Samples::with_capacity(samples);
        for i in 0..samples {
            let path = dir.join(format!("disk-floor-{i}.tmp"));
            let started = Instant::now();
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&block)?;
            file.sync_data()?;
            latencies.push(started.elapsed());
            drop(file);
            std::fs::remove_file(&path)?;
        }
        let path = dir.join("disk-floor-large.tmp");
        let started = Instant::now();
        let mut file = std::fs::File::create(&path)?;
        for _ in 0..large / MIB {
            file.write_all(&block)?;
        }
        file.sync_data()?;
        let large_cached = mib_per_second(large, started.elapsed());
        drop(file);
        std::fs::remove_file(&path)?;

        const DIRECT_WRITE: usize = 4 * MIB;
        let aligned = vec![0x5au8; DIRECT_WRITE + ALIGN];
        let start = aligned.as_ptr().align_offset(ALIGN);
        let aligned = &aligned[start..start + DIRECT_WRITE];
        // A new file written past the page cache, as Flotilla writes a large blob; MiB/s.
        let write_direct = |path: &Path| -> anyhow::Result<f64> {
            let started = Instant::now();
            let mut file =
                std::fs::File::options().write(true).create_new(true).custom_flags(libc::O_DIRECT).open(path)?;
            for _ in 0..large / DIRECT_WRITE {
                file.write_all(aligned)?;
            }
            file.sync_data()?;
            Ok(mib_per_second(large, started.elapsed()))
        };
        // Each read gets a file of its own, just written: a virtual disk may keep what was
        // read last in the host's memory, which would flatter the second read of one file.
        let path = dir.join("disk-floor-direct.tmp");
        let large_direct = write_direct(&path)?;
        let large_direct_read = direct_read_floor(&path, large);
        std::fs::remove_file(&path)?;
        let large_direct_read = large_direct_read?;
        write_direct(&path)?;
        let started = Instant::now();
        let mut file = std::fs::File::open(&path)?;
        let mut buffer = vec![0u8; MIB];
        let mut read = 0;
        loop {
            match file.read(&mut buffer)? {
                0 => break,
                n => read += n,
            }
        }
        anyhow::ensure!(read == large, "the cold-read floor read {read} bytes of {large}");
        let large_cold_read = mib_per_second(large, started.elapsed());
        drop(file);
        std::fs::remove_file(&path)?;
        Ok(DiskFloors { small: latencies.summary(), large_cached, large_direct, large_direct_read, large_cold_read })
    })
    .await?
}

/// The registry section: starts both registries, measures, stops them.
pub async fn run(
    plan: &RegistryPlan,
    flotilla: &Path,
    password: &str,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<Section> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(plan.concurrency * 2)
        .timeout(Duration::from_secs(300))
        .build()?;
    progress("making the blobs (and timing SHA-256 over the large ones)");
    let blobs = make_blobs(plan).await?;
    progress("starting flotilla and distribution");
    let flotilla = Flotilla::start(flotilla, password).await?;
    let distribution = Distribution::start(&http).await?;
    let result = measure(plan, &http, &flotilla, &distribution, &blobs, usage).await;
    let stopped_distribution = distribution.stop().await;
    let stopped_flotilla = flotilla.server.stop().await;
    let section = result?;
    stopped_distribution?;
    stopped_flotilla?;
    Ok(section)
}

/// Every phase on Flotilla, then on distribution, one phase after the other.
async fn measure(
    plan: &RegistryPlan,
    http: &reqwest::Client,
    flotilla: &Flotilla,
    distribution: &Distribution,
    blobs: &Blobs,
    usage: &mut Vec<Usage>,
) -> anyhow::Result<Section> {
    let probes = [
        ("flotilla", Probe::new(Some(flotilla.api.clone()), flotilla.server.pid())),
        ("distribution", Probe::new(None, distribution.child.id())),
    ];
    let mut figures = [Figures::default(), Figures::default()];
    let small_bytes = plan.small_count * MIB;
    let small = format!("{} × 1 MiB, {} in flight", plan.small_count, plan.concurrency);
    let large = format!("{} MiB", plan.large_size / MIB);

    // A fresh session (Flotilla: a fresh token) for every phase.
    let session = async |which: usize| -> anyhow::Result<Session> {
        if which == 0 { flotilla.session(http).await } else { Ok(distribution.session(http)) }
    };

    for (which, (name, probe)) in probes.iter().enumerate() {
        progress(&format!("{name}: push {small}"));
        let s = session(which).await?;
        let before = probe.snapshot().await;
        let elapsed = s.all(&blobs.small, plan.concurrency, false).await.with_context(|| format!("{name}: push"))?;
        usage.push(probe.usage(&format!("registry: push {small} ({name})"), &before, &probe.snapshot().await));
        figures[which].small_push = mib_per_second(small_bytes, elapsed);
    }
    for (which, (name, probe)) in probes.iter().enumerate() {
        progress(&format!("{name}: pull {small}"));
        let s = session(which).await?;
        let before = probe.snapshot().await;
        let elapsed = s.all(&blobs.small, plan.concurrency, true).await.with_context(|| format!("{name}: pull"))?;
        usage.push(probe.usage(&format!("registry: pull {small} ({name})"), &before, &probe.snapshot().await));
        figures[which].small_pull = mib_per_second(small_bytes, elapsed);
    }
    for (which, (name, probe)) in probes.iter().enumerate() {
        progress(&format!("{name}: push and pull {} × {large}", plan.large_runs));
        let (mut pushes, mut pulls) = (Vec::new(), Vec::new());
        let before = probe.snapshot().await;
        for blob in &blobs.large {
            let s = session(which).await?;
            let body = blob.data.clone();
            let started = Instant::now();
            s.push(blob, body).await.with_context(|| format!("{name}: push of {large}"))?;
            pushes.push(mib_per_second(blob.len(), started.elapsed()));
        }
        let middle = probe.snapshot().await;
        for blob in &blobs.large {
            let s = session(which).await?;
            let started = Instant::now();
            s.pull_plain(blob).await.with_context(|| format!("{name}: pull of {large}"))?;
            pulls.push(mib_per_second(blob.len(), started.elapsed()));
        }
        let after = probe.snapshot().await;
        usage.push(probe.usage(&format!("registry: push {} × {large} ({name})", plan.large_runs), &before, &middle));
        usage.push(probe.usage(&format!("registry: pull {} × {large} ({name})", plan.large_runs), &middle, &after));
        figures[which].large_push = median(pushes.clone());
        figures[which].large_pull = median(pulls.clone());
        figures[which].large_pushes = pushes;
        figures[which].large_pulls = pulls;
    }
    for (which, (name, probe)) in probes.iter().enumerate() {
        progress(&format!("{name}: {} sequential 1 MiB pushes", plan.latency_samples));
        let s = session(which).await?;
        let mut latencies = Samples::with_capacity(blobs.latency.len());
        let before = probe.snapshot().await;
        for blob in &blobs.latency {
            let body = blob.data.clone();
            let started = Instant::now();
            s.push(blob, body).await.with_context(|| format!("{name}: sequential push"))?;
            latencies.push(started.elapsed());
        }
        usage.push(probe.usage(
            &format!("registry: {} sequential 1 MiB pushes ({name})", plan.latency_samples),
            &before,
            &probe.snapshot().await,
        ));
        figures[which].latency = latencies.summary();
    }
    for (which, (name, probe)) in probes.iter().enumerate() {
        let s = session(which).await?;
        s.push_manifest(&blobs.small[0]).await.with_context(|| format!("{name}: manifest push"))?;
        let mut headers = vec![format!("Accept: {OCI_MANIFEST}")];
        headers.extend(s.bearer.as_ref().map(|token| format!("Authorization: Bearer {token}")));
        let url = s.url(&format!("manifests/{TAG}"));
        progress(&format!("{name}: manifest GETs with wrk"));
        let before = probe.snapshot().await;
        figures[which].get = wrk::run_with_headers(&plan.wrk, &url, &headers, None).await?;
        let middle = probe.snapshot().await;
        progress(&format!("{name}: manifest HEADs"));
        figures[which].head = s.heads(&url, plan.wrk.connections as usize, plan.wrk.duration).await?;
        let after = probe.snapshot().await;
        usage.push(probe.usage(&format!("registry: manifest GET by tag, wrk ({name})"), &before, &middle));
        usage.push(probe.usage(&format!("registry: manifest HEAD by tag, reqwest ({name})"), &middle, &after));
    }
    progress("disk floors (writes + fdatasync, a cold read)");
    let disk = disk_floors(&flotilla.data_dir, 50, plan.large_size).await?;
    let sha = median(blobs.large_hashed_in.iter().map(|d| mib_per_second(plan.large_size, *d)).collect());
    progress("loopback floors (TCP into SHA-256 on another thread; TCP alone, from memory and from the page cache)");
    let (mut hashed, mut carried, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    let cached = flotilla.data_dir.join("loopback-floor-sendfile.tmp");
    for blob in &blobs.large {
        hashed.push(loopback_floor(blob, Source::Memory, true).await.context("the loopback floor, hashed")?);
        carried.push(loopback_floor(blob, Source::Memory, false).await.context("the loopback floor")?);
        write_cached(&cached, blob).await?;
        let from_cache = loopback_floor(blob, Source::PageCache(&cached), false).await;
        std::fs::remove_file(&cached)?;
        sent.push(from_cache.context("the loopback floor from the page cache")?);
    }
    let floors = Floors {
        sha,
        loopback_hashed: median(hashed.clone()),
        loopback: median(carried.clone()),
        loopback_sendfile: median(sent.clone()),
        loopback_runs: [hashed, carried, sent],
        disk,
    };
    Ok(section(plan, &figures, &floors, usage))
}

pub fn method(plan: &RegistryPlan) -> String {
    format!(
        "Flotilla's registry (`flotilla server`, `/v2/`, a bearer token from `/v2/token` for \
         `repository:{REPOSITORY}:pull,push`, asked with the admin's password before each phase; the repository \
         lives in project `{PROJECT}`) and, as the peer, Debian's `docker-registry` (distribution 2.8, filesystem \
         storage in a temporary directory, in-memory blob descriptor cache, no authentication, log level `error`, \
         no access log), both started by this run on `127.0.0.1` and driven, one after the other, by the same \
         client (reqwest on tokio, HTTP/1.1, connections kept alive) and the same `wrk`. A push is `POST \
         …/blobs/uploads/` then `PUT <Location>&digest=sha256:…` with the whole blob as the body (distribution \
         has no single-request upload); both registries hash the content, check the digest and make the blob \
         durable before they answer (Flotilla also links it in its index: a durable SQLite commit). Every blob \
         is pseudo-random and pushed once, so no push finds its content already stored. Throughput: {n} blobs \
         of 1 MiB pushed {c} at a time, then pulled {c} at a time (`GET …/blobs/<digest>`, every byte read, not \
         hashed; from the page cache, as they were just written); one blob of {large} MiB pushed then pulled \
         alone, {runs} times (the median; each pull on a connection of its own, its body read by a plain loop \
         into one reused 256 KiB buffer, as the loopback floor below reads, because reqwest's body stream capped \
         one pull at 1.5-2.0 GB/s whichever registry sent it; each pull is the blob's first read after its push: distribution \
         wrote it through the page cache and reads it from there; Flotilla wrote all but its first 4 MiB past it and \
         keeps the large blobs just pushed in memory, in the buffers their push filled, within \
         `registry.recent_blobs_mib` (512 MiB by default, as run here: the last two of the three blobs), so its first \
         pull reads from the disk (past the page cache) and the next two are sent from memory). Latency: {lat} fresh 1 MiB blobs pushed one after the other, timed \
         from the `POST` to the answer of the `PUT`. Manifests: an OCI image manifest (a config blob and one \
         1 MiB layer) pushed under tag `{TAG}`, then `wrk {flags}` on `GET …/manifests/{TAG}` with `Accept: \
         {OCI_MANIFEST}` (and the bearer token for Flotilla). Flotilla audits every manifest pull (a durable \
         audit record per `GET`), as a pull is audited in production: the target row is that `GET`. `HEAD`s of the same \
         manifest (what clients send to resolve a tag; not audited) are shown beside it, sent for as long on as \
         many connections by this benchmark's client in a closed loop (wrk cannot time a `HEAD`: it waits for \
         the body the answer's `Content-Length` announces), so they cost the client more than wrk's `GET`s. Floors of the \
         same run: SHA-256 of the {large} MiB blobs with the `sha2` crate on one core (the median; a registry \
         must hash every byte it is pushed); each {large} MiB blob sent over loopback TCP by a tokio task to a \
         task that reads it 256 KiB at a time and hands each read to a thread hashing it (the median; a push as \
         the machine allows one without HTTP and without the disk, client and server on the same cores), and \
         to one that reads and drops it (the median; the fastest pull this machine can carry from memory), and \
         the same blob written to a file (through the page cache, `fdatasync`ed) and sent from the page cache with \
         `sendfile` to a task that reads and drops it (the median; the kernel sends the cached pages without \
         copying them into the sender first, the cheapest way to send a file: distribution reads the file and \
         writes what it read); and the disk, in the server's data directory: a new 1 MiB file \
         written and `fdatasync`ed (p50 of 50), one {large} MiB file written and `fdatasync`ed, one written past \
         the page cache (`O_DIRECT`, 4 MiB writes) and `fdatasync`ed, that file read past the page cache \
         (`O_DIRECT`, 4 MiB reads, 4 at once, as Flotilla reads a large blob the first time: its first pull's \
         floor), and another such file read once through the page cache (1 MiB reads).",
        n = plan.small_count,
        c = plan.concurrency,
        large = plan.large_size / MIB,
        runs = plan.large_runs,
        lat = plan.latency_samples,
        flags = plan.wrk.flags(),
    )
}

pub fn title() -> String {
    "Registry: Flotilla vs distribution 2.8".into()
}

/// A throughput that must reach 1.5x the peer's.
fn against_peer(measured: f64, peer: f64) -> Verdict {
    Verdict::at_least(measured, PEER_FACTOR * peer)
}

fn wrk_verdict(result: &wrk::WrkResult, target: f64) -> Verdict {
    if result.non_2xx > 0 {
        Verdict::Miss(format!("{} responses were not 2xx: the figure is not valid", result.non_2xx))
    } else {
        Verdict::at_least(result.requests_per_sec, target)
    }
}

/// What this machine does without a registry, measured in the same run.
struct Floors {
    /// MiB/s of SHA-256 on one core (the median over the large blobs).
    sha: f64,
    /// MiB/s of [`loopback_floor`] from memory with and without hashing, and from the page
    /// cache without (medians over the large blobs).
    loopback_hashed: f64,
    loopback: f64,
    loopback_sendfile: f64,
    /// Each run of the three, in order.
    loopback_runs: [Vec<f64>; 3],
    disk: DiskFloors,
}

/// Rates of successive runs: `1050 / 1125 / 1190 MiB/s`.
fn fmt_runs(rates: &[f64]) -> String {
    let rates: Vec<String> = rates.iter().map(|rate| format!("{rate:.0}")).collect();
    format!("{} MiB/s", rates.join(" / "))
}

fn section(plan: &RegistryPlan, figures: &[Figures; 2], floors: &Floors, usage: &[Usage]) -> Section {
    let [ours, peer] = figures;
    let (sha, disk) = (floors.sha, &floors.disk);
    let mut section = Section::new(title(), method(plan));
    let peer_target = format!("≥ {PEER_FACTOR}x distribution");
    let mib = |rate: f64| format!("{} (distribution)", fmt_mib(rate));
    let small = format!("{} × 1 MiB, {} in flight", plan.small_count, plan.concurrency);
    let large = format!("1 × {} MiB, median of {}", plan.large_size / MIB, plan.large_runs);
    section.rows.push(
        Row::new(format!("blob push ({small})"), fmt_mib(ours.small_push))
            .target(&peer_target, against_peer(ours.small_push, peer.small_push))
            .floor(mib(peer.small_push), ratio(ours.small_push, peer.small_push)),
    );
    section.rows.push(
        Row::new(format!("blob push ({large})"), fmt_mib(ours.large_push))
            .target(&peer_target, against_peer(ours.large_push, peer.large_push))
            .floor(mib(peer.large_push), ratio(ours.large_push, peer.large_push)),
    );
    section.rows.push(
        Row::new(format!("blob push ({large}) against one core's SHA-256"), fmt_mib(ours.large_push))
            .target(
                format!("≥ {:.0} % of SHA-256 ({})", SHA_SHARE_TARGET * 100.0, fmt_mib(SHA_SHARE_TARGET * sha)),
                Verdict::at_least(ours.large_push, SHA_SHARE_TARGET * sha),
            )
            .floor(format!("SHA-256 {} (sha2, one core)", fmt_mib(sha)), ratio(ours.large_push, sha)),
    );
    section.rows.push(
        Row::new(format!("blob pull ({small})"), fmt_mib(ours.small_pull))
            .target(&peer_target, against_peer(ours.small_pull, peer.small_pull))
            .floor(mib(peer.small_pull), ratio(ours.small_pull, peer.small_pull)),
    );
    section.rows.push(
        Row::new(format!("blob pull ({large})"), fmt_mib(ours.large_pull))
            .target(&peer_target, against_peer(ours.large_pull, peer.large_pull))
            .floor(mib(peer.large_pull), ratio(ours.large_pull, peer.large_pull)),
    );
    section.rows.push(
        Row::new(
            format!(
                "blob push, then pull (1 × {} MiB), each of the {} runs in order",
                plan.large_size / MIB,
                plan.large_runs
            ),
            format!("{}, then {}", fmt_runs(&ours.large_pushes), fmt_runs(&ours.large_pulls)),
        )
        .floor(format!("{}, then {} (distribution)", fmt_runs(&peer.large_pushes), fmt_runs(&peer.large_pulls)), ""),
    );
    section.rows.push(
        Row::new(
            format!("1 MiB push latency p50 ({} sequential, POST + PUT)", ours.latency.count),
            ms(ours.latency.p50),
        )
        .target(format!("≤ {}", ms(PUSH_P50_LIMIT)), Verdict::at_most(ours.latency.p50, PUSH_P50_LIMIT))
        .floor(
            format!("{} (distribution)", ms(peer.latency.p50)),
            ratio(ours.latency.p50.as_secs_f64(), peer.latency.p50.as_secs_f64()),
        ),
    );
    section.rows.push(
        Row::new(
            "1 MiB push latency p90 / p99 / max",
            format!("{} / {} / {}", ms(ours.latency.p90), ms(ours.latency.p99), ms(ours.latency.max)),
        )
        .floor(
            format!("{} / {} / {} (distribution)", ms(peer.latency.p90), ms(peer.latency.p99), ms(peer.latency.max)),
            ratio(ours.latency.p99.as_secs_f64(), peer.latency.p99.as_secs_f64()),
        ),
    );
    section.rows.push(
        Row::new("manifest GET/s by tag (audited in Flotilla)", fmt_rate(ours.get.requests_per_sec))
            .target(format!("≥ {}", fmt_rate(MANIFEST_GET_TARGET)), wrk_verdict(&ours.get, MANIFEST_GET_TARGET))
            .floor(
                format!("{} (distribution)", fmt_rate(peer.get.requests_per_sec)),
                ratio(ours.get.requests_per_sec, peer.get.requests_per_sec),
            ),
    );
    section.rows.push(
        Row::new("manifest GET p50 / p99", format!("{} / {}", ms(ours.get.p50), ms(ours.get.p99))).floor(
            format!("{} / {} (distribution)", ms(peer.get.p50), ms(peer.get.p99)),
            ratio(ours.get.p99.as_secs_f64(), peer.get.p99.as_secs_f64()),
        ),
    );
    section.rows.push(
        Row::new(
            format!(
                "manifest HEAD/s by tag (not audited; this benchmark's client, {} connections)",
                plan.wrk.connections
            ),
            format!("{}{}", fmt_rate(ours.head.0), non_2xx(ours.head.1)),
        )
        .floor(
            format!("{}{} (distribution)", fmt_rate(peer.head.0), non_2xx(peer.head.1)),
            ratio(ours.head.0, peer.head.0),
        ),
    );
    section.rows.push(
        Row::new(
            format!(
                "floor: {} MiB over loopback TCP, hashed (SHA-256) on another thread as received; no HTTP, \
                 no disk; median of {}",
                plan.large_size / MIB,
                plan.large_runs
            ),
            format!("{} ({:.0} % of SHA-256)", fmt_mib(floors.loopback_hashed), 100.0 * floors.loopback_hashed / sha),
        )
        .floor(format!("Flotilla's push {}", fmt_mib(ours.large_push)), ratio(ours.large_push, floors.loopback_hashed)),
    );
    section.rows.push(
        Row::new(
            format!(
                "floor: {} MiB over loopback TCP, read and dropped (no HTTP, no disk, no hash); median of {}",
                plan.large_size / MIB,
                plan.large_runs
            ),
            format!("{} ({:.2}x distribution's pull)", fmt_mib(floors.loopback), floors.loopback / peer.large_pull),
        )
        .floor(format!("Flotilla's pull {}", fmt_mib(ours.large_pull)), ratio(ours.large_pull, floors.loopback)),
    );
    section.rows.push(
        Row::new(
            format!(
                "floor: {} MiB sent from the page cache with sendfile (no copy into the sender), over loopback \
                 TCP, read and dropped; median of {}",
                plan.large_size / MIB,
                plan.large_runs
            ),
            format!(
                "{} ({:.2}x distribution's pull)",
                fmt_mib(floors.loopback_sendfile),
                floors.loopback_sendfile / peer.large_pull
            ),
        )
        .floor(
            format!("Flotilla's pull {}", fmt_mib(ours.large_pull)),
            ratio(ours.large_pull, floors.loopback_sendfile),
        ),
    );
    let [hashed, dropped, sent] = &floors.loopback_runs;
    section.rows.push(Row::new(
        format!(
            "floors over loopback TCP, hashed, dropped, from the page cache: each of the {} runs in order",
            plan.large_runs
        ),
        format!("{}, then {}, then {}", fmt_runs(hashed), fmt_runs(dropped), fmt_runs(sent)),
    ));
    section.rows.push(Row::new(
        "floor: disk, new 1 MiB file written + fdatasync, p50 / p99 of 50",
        format!("{} / {}", ms(disk.small.p50), ms(disk.small.p99)),
    ));
    let large = plan.large_size / MIB;
    section.rows.push(Row::new(format!("floor: disk, {large} MiB written + fdatasync"), fmt_mib(disk.large_cached)));
    // A push is acknowledged once every byte is on this disk: its write speed bounds the push
    // as SHA-256 does.
    section.rows.push(
        Row::new(
            format!("floor: disk, {large} MiB written past the page cache (O_DIRECT) + fdatasync"),
            fmt_mib(disk.large_direct),
        )
        .floor(format!("Flotilla's push {}", fmt_mib(ours.large_push)), ratio(ours.large_push, disk.large_direct)),
    );
    if disk.large_direct < SHA_SHARE_TARGET * sha {
        section.notes.push(format!(
            "In this run the disk wrote {} past the page cache, less than the push target of {:.0} % of SHA-256 \
             ({}): a push is acknowledged only once its bytes are on that disk, so the target sat above what the \
             disk was measured to write.",
            fmt_mib(disk.large_direct),
            SHA_SHARE_TARGET * 100.0,
            fmt_mib(SHA_SHARE_TARGET * sha)
        ));
    }
    // The pull that read from the disk: the first, whose blob no longer is kept in memory.
    let slowest_pull = ours.large_pulls.iter().copied().fold(f64::INFINITY, f64::min);
    section.rows.push(
        Row::new(
            "floor: disk, that file read past the page cache (O_DIRECT, 4 MiB reads, 4 at once; as Flotilla reads \
             a large blob the first time)",
            fmt_mib(disk.large_direct_read),
        )
        .floor(
            format!("Flotilla's slowest pull {}", fmt_mib(slowest_pull)),
            ratio(slowest_pull, disk.large_direct_read),
        ),
    );
    section.rows.push(Row::new(
        "floor: disk, another such file read once through the page cache (it is not in it)",
        fmt_mib(disk.large_cold_read),
    ));
    for (which, result) in [("Flotilla GET", &ours.get), ("distribution GET", &peer.get)] {
        if let Some(errors) = &result.socket_errors {
            section.notes.push(format!("wrk ({which}): {errors}"));
        }
    }
    section.notes.push(where_time_goes(plan, usage));
    section
}

fn non_2xx(count: u64) -> String {
    if count > 0 { format!(" ({} not 2xx)", fmt_count(count)) } else { String::new() }
}

/// What Flotilla's server did in the phases, from its CPU and its own histograms.
fn where_time_goes(plan: &RegistryPlan, usage: &[Usage]) -> String {
    let find = |phase: &str| usage.iter().find(|u| u.phase == phase);
    let mut parts = Vec::new();
    let cores = |u: &Usage| u.server_cores.map_or("-".to_string(), |c| format!("{c:.2}"));
    let sequential = format!("registry: {} sequential 1 MiB pushes", plan.latency_samples);
    if let (Some(ours), Some(peer)) =
        (find(&format!("{sequential} (flotilla)")), find(&format!("{sequential} (distribution)")))
    {
        let series = |prefix: &str| {
            ours.series.iter().find(|(name, _, _)| name.starts_with(prefix)).map(|(_, _, mean)| fmt_duration(*mean))
        };
        parts.push(format!(
            "In the sequential 1 MiB pushes Flotilla's server took {} per `POST` and {} per `PUT` on average (its \
             own histograms; the `PUT` includes {} per store commit, the blob's link in the index), using {} \
             cores against distribution's {}.",
            series("http POST /v2").unwrap_or_else(|| "-".into()),
            series("http PUT /v2").unwrap_or_else(|| "-".into()),
            ours.mean_of("store commit").map_or("-".to_string(), fmt_duration),
            cores(ours),
            cores(peer),
        ));
    }
    let large = format!("registry: push {} × {} MiB", plan.large_runs, plan.large_size / MIB);
    if let (Some(ours), Some(peer)) = (find(&format!("{large} (flotilla)")), find(&format!("{large} (distribution)"))) {
        parts.push(format!(
            "During the large pushes Flotilla's server took {} per `PUT` and used {} cores, distribution {} (the \
             client {:.2} and {:.2}): a server hashing at one core's SHA-256 speed would use at least 1.0; below \
             that it waited (for the client's bytes, the file writes, the final sync of the file) rather than \
             hashed.",
            ours.series
                .iter()
                .find(|(name, _, _)| name.starts_with("http PUT /v2"))
                .map_or("-".to_string(), |(_, _, mean)| fmt_duration(*mean)),
            cores(ours),
            cores(peer),
            ours.client_cores,
            peer.client_cores,
        ));
    }
    let get = "registry: manifest GET by tag, wrk";
    if let (Some(ours), Some(peer)) = (find(&format!("{get} (flotilla)")), find(&format!("{get} (distribution)"))) {
        parts.push(format!(
            "During the manifest GETs the machine used {:.2} cores with Flotilla (server {}), {:.2} with \
             distribution (server {}); a Flotilla GET spent {} on average in `Store::commit` (its audit record).",
            ours.machine_cores,
            cores(ours),
            peer.machine_cores,
            cores(peer),
            ours.mean_of("store commit").map_or("-".to_string(), fmt_duration),
        ));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_differ_and_carry_their_digest() {
        let (a, b) = (Blob::random(1, MIB + 3), Blob::random(2, MIB + 3));
        assert_eq!(a.len(), MIB + 3);
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.digest, format!("sha256:{}", hex::encode(Sha256::digest(&a.data))));
        assert_eq!(Blob::random(1, 64).data, Blob::random(1, 64).data);
    }

    #[test]
    fn rates_and_medians() {
        assert!((mib_per_second(2 * MIB, Duration::from_millis(500)) - 4.0).abs() < 1e-9);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(Vec::new()), 0.0);
        assert_eq!(against_peer(150.0, 100.0), Verdict::Pass);
        assert!(matches!(against_peer(149.0, 100.0), Verdict::Miss(_)));
    }
}
