//! `flotilla server`: loads the configuration, opens the store, bootstraps the first admin
//! and the local cluster, and serves the API until SIGINT/SIGTERM, then drains.
//!
//! Exit codes: 0 after a clean shutdown, 78 for a bad configuration (EX_CONFIG), 1 for any
//! other start-up failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use flotilla_config::{Config, Overrides};
use flotilla_core::kinds::KindRegistry;
use flotilla_store::sql::{SqlStore, SqlStoreOptions, SystemClock, redact_url};

/// Options of `flotilla server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Directory that holds all state (default ./.flotilla, or FLOTILLA_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080, or FLOTILLA_LISTEN).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Configuration file (default <data dir>/flotilla.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
}

const EX_CONFIG: i32 = 78;

pub async fn run(args: ServerArgs) -> i32 {
    let overrides = Overrides { data_dir: args.data_dir, listen: args.listen, config_file: args.config };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return EX_CONFIG;
        }
    };
    init_tracing(&config);
    for variable in flotilla_config::unrecognised_environment(std::env::vars()) {
        tracing::warn!(%variable, "ignoring an environment variable that is not a configuration key");
    }
    match serve(config).await {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Creates the data directory, readable by its owner only.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// The key of the keyed hashes that stand for secrets in audit records. Created once, kept
/// under the data dir (replicas sharing a PostgreSQL database must share this file).
fn audit_key(dir: &Path) -> anyhow::Result<Vec<u8>> {
    key_file(dir, "audit.key").map(String::into_bytes)
}

/// The key secret fields are encrypted with at rest (`<data dir>/master.key`, created once;
/// replicas sharing a database must share it; losing it loses the secrets stored).
fn master_key(dir: &Path) -> anyhow::Result<Vec<u8>> {
    key_file(dir, "master.key").map(|text| flotilla_identity::key_bytes(&text).to_vec())
}

/// The text of the key file `name` under `dir`, made (random, owner-only, synced) when missing.
fn key_file(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_string());
    }
    let key = flotilla_identity::random_string(32);
    let temporary = dir.join(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary).with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(key.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    prepare_data_dir(&config.data_dir)?;
    let kinds = Arc::new(KindRegistry::builtin());
    let url = config.database_url();
    let options =
        SqlStoreOptions::new(url.clone(), audit_key(&config.data_dir)?).with_master_key(master_key(&config.data_dir)?);
    let clock = Arc::new(SystemClock);
    let store = Arc::new(SqlStore::connect(options, kinds.clone(), clock.clone()).await?);
    tracing::info!(database = %redact_url(&url), "store ready");
    let report = flotilla_api::bootstrap::bootstrap(store.as_ref(), &kinds, config.admin_password.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (set --listen or FLOTILLA_LISTEN)", config.listen))?;
    let address = listener.local_addr()?;
    // The address actually bound (`--listen 127.0.0.1:0` picks a port): the registry's own
    // host names are derived from it.
    let config = Config { listen: address, ..config };
    if let Some(password) = &report.generated_admin_password {
        // Printed once, on stdout only (never logged): the operator's one chance to read it.
        println!(
            "\nFlotilla's first start created the platform admin.\n  user:     {}\n  password: {password}\n\
             This password is shown only now. Log in with:\n  flotilla login http://{address} -u {}\n",
            flotilla_api::bootstrap::ADMIN_USER,
            flotilla_api::bootstrap::ADMIN_USER,
        );
    }
    let runtime = start_runtime(&config).await;
    let mut built_in: std::collections::HashMap<String, Arc<dyn flotilla_driver::ClusterDriver>> =
        std::collections::HashMap::new();
    if let Some(runtime) = &runtime {
        built_in.insert(flotilla_api::bootstrap::LOCAL_CLUSTER.to_string(), runtime.driver.clone());
    }
    // The monitor probes every registered cluster and keeps a driver for each Kubernetes one;
    // the application controller deploys through those drivers.
    let monitor = flotilla_controller::clusters::ClusterMonitor::new(
        store.clone(),
        Arc::new(flotilla_kube::KubeConnector),
        built_in,
        std::time::Duration::from_secs(config.clusters.probe_interval_secs),
    );
    let monitor_task = monitor.spawn();
    let controller = flotilla_controller::ApplicationController::new(
        store.clone(),
        monitor.clone() as Arc<dyn flotilla_controller::Drivers>,
        std::time::Duration::from_secs(2),
    );
    let controller_task = controller.spawn();
    let views: Vec<Arc<dyn flotilla_controller::StatusView>> = vec![monitor, controller];
    let observed = Some(Arc::new(flotilla_controller::StatusViews(views)) as Arc<dyn flotilla_controller::StatusView>);
    let registry_upkeep = (config.registry.gc_interval_secs > 0).then(|| {
        (
            std::time::Duration::from_secs(config.registry.gc_interval_secs),
            std::time::Duration::from_secs(config.registry.gc_grace_secs),
        )
    });
    let app = flotilla_api::build(store, kinds, Arc::new(config), clock.clone(), observed);
    let upkeep_task = match (app.registry.clone(), registry_upkeep) {
        (Some(registry), Some((interval, grace))) => Some(tokio::spawn(registry.maintain(clock, interval, grace))),
        _ => None,
    };
    let replication_task = tokio::spawn(flotilla_api::replication::schedule(app.state.clone()));
    let app = app.router;
    let shutdown = shutdown_signal()?;
    tracing::info!(%address, "flotilla listening on http://{address}");
    // Tests and scripts wait for this line on stdout.
    println!("flotilla listening on http://{address}");
    flotilla_api::serve(listener, app, shutdown).await?;
    for task in [Some(controller_task), upkeep_task, Some(replication_task), Some(monitor_task)].into_iter().flatten() {
        task.abort();
    }
    if let Some(runtime) = runtime {
        runtime.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the embedded runtime (the `local` cluster) unless disabled. A runtime that cannot
/// start (no containerd, not root, …) does not keep the control plane down: the error is
/// logged and the control plane serves without it.
///
/// The built-in registry, served over plain HTTP at `config.listen`, is one of the runtime's
/// insecure registries: applications pull from it by `127.0.0.1:<port>/<project>/<repo>`.
async fn start_runtime(config: &Config) -> Option<flotilla_local::embedded::EmbeddedRuntime> {
    if !config.runtime.enabled {
        tracing::info!("embedded runtime disabled (runtime.enabled = false)");
        return None;
    }
    let started = async {
        let data_dir = std::fs::canonicalize(&config.data_dir)
            .with_context(|| format!("cannot resolve {}", config.data_dir.display()))?;
        let options = flotilla_local::embedded::EmbeddedOptions {
            dir: data_dir.join("runtime"),
            containerd_socket: config.runtime.containerd_socket.clone(),
            cni_bin_dir: config.runtime.cni_bin_dir.clone(),
            busybox: config.runtime.busybox.clone(),
            network_plugin: std::env::current_exe().context("cannot find the flotilla executable")?,
            network_octet: config.runtime.network_octet,
            service_range: config.runtime.service_range,
            insecure_registries: {
                let own = config.registry_hosts();
                let mut hosts = config.runtime.insecure_registries.clone();
                // Another containerd keeps its own registry configuration.
                let own = if config.runtime.containerd_socket.is_none() { own } else { Vec::new() };
                hosts
                    .extend(own.into_iter().filter(|host| !host.starts_with("0.0.0.0:") && !host.starts_with("[::]:")));
                hosts.sort();
                hosts.dedup();
                hosts
            },
        };
        anyhow::Ok(flotilla_local::embedded::EmbeddedRuntime::start(&options).await?)
    };
    match started.await {
        Ok(runtime) => {
            tracing::info!(socket = %runtime.containerd.socket().display(), "embedded runtime ready");
            Some(runtime)
        }
        Err(error) => {
            tracing::error!(
                "the embedded runtime could not start, so applications cannot run on this machine: {error:#}"
            );
            None
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives right after the server announced itself
/// must end it cleanly, not by the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: draining in-flight requests");
    })
}
