//! Flotilla's one typed configuration.
//!
//! Layers, each overriding the one before: built-in defaults < the config file (TOML;
//! `--config FILE`, else `<data dir>/flotilla.toml` when it exists) < environment variables
//! `FLOTILLA_*` (nested keys joined by `__`, e.g. `FLOTILLA_LOGIN__MAX_FAILURES=3`) <
//! command-line flags (`--data-dir`, `--listen`). [`Config::validate`] runs at start-up; an
//! invalid configuration names the key, the layer it came from, and what is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The top-level keys of [`Config`]. Only `FLOTILLA_*` variables naming one of them (or a
/// key nested in one, `FLOTILLA_LOGIN__MAX_FAILURES`) are configuration: the prefix is shared
/// with the command-line client (`FLOTILLA_SERVER`, `FLOTILLA_TOKEN`, …) and scripts, so other
/// variables are left alone (and listed by [`unrecognised_environment`] for a warning).
/// A wrong nested key is still refused, as are unknown keys in the file.
const KEYS: &[&str] = &[
    "data_dir",
    "listen",
    "database_url",
    "trusted_proxies",
    "admin_password",
    "auth_cache_ttl_ms",
    "sessions",
    "tokens",
    "login",
    "log",
    "runtime",
    "registry",
    "clusters",
];

/// `HOST` or `HOST:PORT`, without scheme or path.
fn is_host_and_port(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    name_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// Whether the environment variable `FLOTILLA_<rest>` is configuration.
fn is_configuration(rest: &str) -> bool {
    let top = rest.split("__").next().unwrap_or_default().to_ascii_lowercase();
    KEYS.contains(&top.as_str())
}

/// `FLOTILLA_*` variables among `variables` that are not configuration, for a start-up
/// warning (a misspelt `FLOTILLA_LISTN` is ignored, not fatal, since the prefix is shared).
pub fn unrecognised_environment(variables: impl Iterator<Item = (String, String)>) -> Vec<String> {
    const CLIENT: &[&str] = &["SERVER", "TOKEN", "CONTEXT", "CONFIG", "PASSWORD"];
    variables
        .filter_map(|(name, _)| name.strip_prefix("FLOTILLA_").map(str::to_string))
        .filter(|rest| !is_configuration(rest) && !CLIENT.contains(&rest.as_str()))
        .map(|rest| format!("FLOTILLA_{rest}"))
        .collect()
}

/// Everything the server reads at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// All state lives under this directory (database, keys, logs).
    pub data_dir: PathBuf,
    /// Address the API and console listen on.
    pub listen: SocketAddr,
    /// `sqlite:///…` or `postgres://…`; default: SQLite at `<data dir>/flotilla.db`.
    pub database_url: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs). Others' headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Password of the first admin, used only on first start (else one is generated and
    /// printed once). Prefer the environment (`FLOTILLA_ADMIN_PASSWORD`) over a file.
    pub admin_password: Option<String>,
    /// How long a replica may keep tokens, sessions, users and grants it read (milliseconds).
    /// Its own writes invalidate at once; other replicas' writes are seen within this time.
    pub auth_cache_ttl_ms: u64,
    pub sessions: SessionConfig,
    pub tokens: TokenConfig,
    pub login: LoginConfig,
    pub log: LogConfig,
    pub runtime: RuntimeConfig,
    pub registry: RegistryConfig,
    pub clusters: ClustersConfig,
}

/// Registered clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClustersConfig {
    /// Seconds between two health probes of each cluster (reachability, version, nodes,
    /// capacity, storage classes). A registration is probed at once when it changes.
    pub probe_interval_secs: u64,
}

impl Default for ClustersConfig {
    fn default() -> Self {
        Self { probe_interval_secs: 30 }
    }
}

/// The built-in registry's upkeep: retention and garbage collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Seconds between two runs of retention and garbage collection; 0: only when asked
    /// (`POST /api/v1/registry/gc`).
    pub gc_interval_secs: u64,
    /// Blobs linked, and uploads touched, more recently than this many seconds are never
    /// collected: their manifest may still be on its way.
    pub gc_grace_secs: u64,
    /// Names clients reach the registry by (`HOST` or `HOST:PORT`) besides the listen
    /// address and `localhost`/`127.0.0.1` at its port: an application naming its image by
    /// one of them is counted as running a version of this registry.
    pub hosts: Vec<String>,
    /// Large uploads are written, and large blobs read, past the page cache (`O_DIRECT`)
    /// where the file system allows it; false sends everything through the page cache (for a
    /// file system where direct I/O is allowed but slow, such as NFS, where each direct
    /// write waits for the server).
    pub direct_io: bool,
    /// MiB of memory for large blobs just pushed, kept in the buffers their push filled so
    /// that the pulls following a push are sent from memory rather than read from the disk;
    /// 0 keeps none.
    pub recent_blobs_mib: u64,
}

/// The most memory [`RegistryConfig::recent_blobs_mib`] may ask for (64 GiB): a value beyond it
/// is a mistake, such as bytes given for MiB.
pub const MAX_RECENT_BLOBS_MIB: u64 = 64 * 1024;

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { gc_interval_secs: 3600, gc_grace_secs: 3600, hosts: Vec::new(), direct_io: true, recent_blobs_mib: 512 }
    }
}

impl Config {
    /// Every name of the built-in registry (see [`RegistryConfig::hosts`]).
    pub fn registry_hosts(&self) -> Vec<String> {
        let port = self.listen.port();
        let mut hosts = vec![self.listen.to_string(), format!("localhost:{port}"), format!("127.0.0.1:{port}")];
        hosts.extend(self.registry.hosts.iter().cloned());
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// The embedded runtime (the `local` cluster): containerd, runc and CNI on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Run applications on this machine. Off: the control plane only drives other clusters.
    pub enabled: bool,
    /// A containerd to use instead of starting our own (its CRI plugin must be enabled).
    pub containerd_socket: Option<PathBuf>,
    /// Where the standard CNI plugins are.
    pub cni_bin_dir: PathBuf,
    /// A static busybox, from which the pod sandbox image is built.
    pub busybox: PathBuf,
    /// Environment networks are `10.<network_octet>.N.0/24`.
    pub network_octet: u8,
    /// Service addresses (one per component with ports) come from this range.
    pub service_range: ipnet::Ipv4Net,
    /// Registries (`HOST` or `HOST:PORT`) pulled from over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            containerd_socket: None,
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            busybox: PathBuf::from("/bin/busybox"),
            network_octet: 89,
            service_range: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 90, 0, 0), 16).unwrap_or_default(),
            insecure_registries: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Lifetime of a console session, in seconds.
    pub ttl_secs: u64,
    /// Mark the session cookie `Secure` (set when served over HTTPS).
    pub secure_cookie: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Lifetime of an API token when none is asked for, in days.
    pub default_ttl_days: u32,
    /// Longest lifetime a token may have, in days.
    pub max_ttl_days: u32,
}

/// Brute-force protection of the login endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Failures (per user name and per source address) before locking.
    pub max_failures: u32,
    /// Failures older than this many seconds are forgotten.
    pub window_secs: u64,
    /// First lockout, in seconds; doubles with each further failure.
    pub lockout_secs: u64,
    /// Longest lockout, in seconds.
    pub max_lockout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".flotilla"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            trusted_proxies: Vec::new(),
            admin_password: None,
            auth_cache_ttl_ms: 2000,
            sessions: SessionConfig { ttl_secs: 8 * 3600, secure_cookie: false },
            tokens: TokenConfig { default_ttl_days: 30, max_ttl_days: 365 },
            login: LoginConfig { max_failures: 5, window_secs: 900, lockout_secs: 30, max_lockout_secs: 3600 },
            log: LogConfig { level: "info".into(), format: "text".into() },
            runtime: RuntimeConfig::default(),
            registry: RegistryConfig::default(),
            clusters: ClustersConfig::default(),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value could not be read (wrong type, unknown key, unreadable file).
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A value was read but is not acceptable.
    #[error("invalid configuration: {key}: {problem}")]
    Invalid { key: String, problem: String },
}

/// Values given on the command line, the top layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub config_file: Option<PathBuf>,
}

impl Config {
    /// Loads the layers (reading `FLOTILLA_*` from the process environment) and validates.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let env = || {
            Env::prefixed("FLOTILLA_")
                .filter(|key| is_configuration(key.as_str()))
                .split("__")
                .map(|key| key.as_str().to_ascii_lowercase().into())
        };
        // The data dir decides where the default config file is, so it is resolved first.
        let base = Figment::from(Serialized::defaults(Config::default()));
        let mut data_dir: PathBuf =
            base.clone().merge(env()).extract_inner("data_dir").unwrap_or_else(|_| PathBuf::from(".flotilla"));
        if let Some(dir) = &overrides.data_dir {
            data_dir = dir.clone();
        }
        let file = match &overrides.config_file {
            Some(file) => {
                if !file.exists() {
                    return Err(ConfigError::Invalid {
                        key: "--config".into(),
                        problem: format!("{} does not exist", file.display()),
                    });
                }
                Some(file.clone())
            }
            None => Some(data_dir.join("flotilla.toml")).filter(|f| f.exists()),
        };
        let mut figment = base;
        if let Some(file) = &file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(env());
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        let config: Config = figment.extract().map_err(|e| ConfigError::Load(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| sqlite_url(&self.data_dir.join("flotilla.db")))
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| Err(ConfigError::Invalid { key: key.into(), problem });
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return invalid("database_url", "must start with sqlite:, postgres:// or postgresql://".into());
        }
        if self.auth_cache_ttl_ms > 60_000 {
            return invalid(
                "auth_cache_ttl_ms",
                format!("{} is too long: revocations must apply within a minute", self.auth_cache_ttl_ms),
            );
        }
        if self.sessions.ttl_secs < 60 {
            return invalid("sessions.ttl_secs", format!("{} is too short (at least 60)", self.sessions.ttl_secs));
        }
        if self.tokens.default_ttl_days == 0 || self.tokens.default_ttl_days > self.tokens.max_ttl_days {
            return invalid(
                "tokens.default_ttl_days",
                format!(
                    "{} must be between 1 and tokens.max_ttl_days ({})",
                    self.tokens.default_ttl_days, self.tokens.max_ttl_days
                ),
            );
        }
        if self.registry.gc_interval_secs != 0 && self.registry.gc_interval_secs < 60 {
            return invalid(
                "registry.gc_interval_secs",
                format!("{} is too often (0 to run only when asked, else at least 60)", self.registry.gc_interval_secs),
            );
        }
        if self.registry.recent_blobs_mib > MAX_RECENT_BLOBS_MIB {
            return invalid(
                "registry.recent_blobs_mib",
                format!(
                    "{} is too much memory (at most {MAX_RECENT_BLOBS_MIB}; 0 keeps none)",
                    self.registry.recent_blobs_mib
                ),
            );
        }
        if !(1..=3600).contains(&self.clusters.probe_interval_secs) {
            return invalid(
                "clusters.probe_interval_secs",
                format!("{} is out of range (1 to 3600)", self.clusters.probe_interval_secs),
            );
        }
        if self.login.max_failures == 0 {
            return invalid("login.max_failures", "must be at least 1".into());
        }
        let networks =
            ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, self.runtime.network_octet, 0, 0), 16).unwrap_or_default();
        let services = self.runtime.service_range;
        if services.contains(&networks.network()) || networks.contains(&services.network()) {
            return invalid(
                "runtime.service_range",
                format!("{services} overlaps the environment networks {networks} (runtime.network_octet)"),
            );
        }
        let host_lists = [
            ("runtime.insecure_registries", &self.runtime.insecure_registries),
            ("registry.hosts", &self.registry.hosts),
        ];
        for (key, hosts) in host_lists {
            for (index, host) in hosts.iter().enumerate() {
                if !is_host_and_port(host) {
                    return invalid(
                        &format!("{key}[{index}]"),
                        format!("{host:?} is not HOST or HOST:PORT (no scheme, no path)"),
                    );
                }
            }
        }
        if services.prefix_len() > 30 {
            return invalid("runtime.service_range", format!("{services} is too small (at most /30)"));
        }
        if self.login.lockout_secs == 0 || self.login.lockout_secs > self.login.max_lockout_secs {
            return invalid("login.lockout_secs", "must be between 1 and login.max_lockout_secs".into());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", format!("{:?} is not one of \"text\", \"json\"", self.log.format));
        }
        if let Some(password) = &self.admin_password
            && password.chars().count() < 12
        {
            return invalid("admin_password", "must be at least 12 characters".into());
        }
        Ok(())
    }
}

/// A SQLite URL for a file path.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Figment's message names the key and where its value came from; keep it, drop nothing.
fn describe(error: figment::Error) -> String {
    error.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
// figment's Jail returns figment::Error, which is large; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::{Jail, Provider};

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file("flotilla.toml", "listen = \"127.0.0.1:9000\"\n[login]\nmax_failures = 7\nwindow_secs = 60\nlockout_secs = 5\nmax_lockout_secs = 60\n")?;
            jail.set_env("FLOTILLA_LOGIN__MAX_FAILURES", "3");
            jail.set_env("FLOTILLA_REGISTRY__DIRECT_IO", "false");
            jail.set_env("FLOTILLA_REGISTRY__RECENT_BLOBS_MIB", "64");
            let overrides = Overrides { data_dir: Some(jail.directory().to_path_buf()), ..Overrides::default() };
            let config = Config::load(&overrides).expect("loads");
            assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap(), "file beats defaults");
            assert_eq!(config.login.max_failures, 3, "environment beats file");
            assert_eq!(config.login.window_secs, 60);
            assert!(!config.registry.direct_io, "a boolean from the environment");
            assert!(Config::default().registry.direct_io, "direct I/O by default");
            assert_eq!(config.registry.recent_blobs_mib, 64);
            assert_eq!(config.sessions.ttl_secs, 8 * 3600, "defaults fill the rest");
            let flagged = Overrides { listen: Some("127.0.0.1:9100".parse().unwrap()), ..overrides };
            assert_eq!(Config::load(&flagged).expect("loads").listen.port(), 9100, "flags beat everything");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("FLOTILLA_LISTEN", "not-an-address");
            let overrides = Overrides { data_dir: Some(jail.directory().to_path_buf()), ..Overrides::default() };
            let error = Config::load(&overrides).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("listen") && error.contains("FLOTILLA_"), "{error}");
            jail.set_env("FLOTILLA_LISTEN", "127.0.0.1:8081");
            jail.set_env("FLOTILLA_LOG__FORMAT", "xml");
            let error = Config::load(&overrides).unwrap_err().to_string();
            assert!(error.contains("log.format") && error.contains("xml"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn other_flotilla_variables_do_not_disturb_the_server() {
        Jail::expect_with(|jail| {
            jail.set_env("FLOTILLA_SERVER", "http://127.0.0.1:8080");
            jail.set_env("FLOTILLA_ROOT", "/src/project");
            jail.set_env("FLOTILLA_LISTEN", "127.0.0.1:9200");
            let overrides = Overrides { data_dir: Some(jail.directory().to_path_buf()), ..Overrides::default() };
            assert_eq!(Config::load(&overrides).expect("loads").listen.port(), 9200);
            jail.set_env("FLOTILLA_LOGIN__MAX_FAILUR", "3");
            let error = Config::load(&overrides).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("max_failur"), "a wrong nested key is refused: {error}");
            Ok(())
        });
        let variables =
            [("FLOTILLA_LISTN", "x"), ("FLOTILLA_SERVER", "x"), ("FLOTILLA_LOG__LEVEL", "x"), ("PATH", "x")];
        let unrecognised = unrecognised_environment(variables.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(unrecognised, vec!["FLOTILLA_LISTN".to_string()]);
    }

    #[test]
    fn the_key_list_matches_the_config() {
        let figment = Figment::from(Serialized::defaults(Config::default()));
        let data = figment.data().expect("defaults serialize");
        let mut keys: Vec<String> = data.values().flat_map(|dict| dict.keys().cloned()).collect();
        keys.sort();
        let mut listed: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
        listed.sort();
        assert_eq!(keys, listed);
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("flotilla.toml", "lisen = \"127.0.0.1:9000\"\n")?;
            let overrides = Overrides { data_dir: Some(jail.directory().to_path_buf()), ..Overrides::default() };
            let error = Config::load(&overrides).unwrap_err().to_string();
            assert!(error.contains("lisen"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_service_range_inside_the_environment_networks_is_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("FLOTILLA_RUNTIME__SERVICE_RANGE", "10.89.200.0/24");
            let overrides = Overrides { data_dir: Some(jail.directory().to_path_buf()), ..Overrides::default() };
            let error = Config::load(&overrides).unwrap_err().to_string();
            assert!(error.contains("runtime.service_range") && error.contains("10.89.0.0/16"), "{error}");
            jail.set_env("FLOTILLA_RUNTIME__SERVICE_RANGE", "10.91.0.0/16");
            assert_eq!(Config::load(&overrides).expect("loads").runtime.service_range.to_string(), "10.91.0.0/16");
            Ok(())
        });
    }

    #[test]
    fn default_database_is_sqlite_under_the_data_dir() {
        let config = Config { data_dir: PathBuf::from("/var/lib/flotilla"), ..Config::default() };
        assert_eq!(config.database_url(), "sqlite:///var/lib/flotilla/flotilla.db?mode=rwc");
    }
}
