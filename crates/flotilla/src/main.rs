//! The `flotilla` binary: `flotilla server` runs the control plane, `flotilla runtime` acts on
//! this machine's embedded runtime; every other subcommand is the command-line client. Thin
//! by design: it parses arguments and hands over to the library crates.

mod runtime;
mod server;

use clap::{Parser, Subcommand};

/// Flotilla: one control plane for applications on containerd and Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: flotilla_cli::GlobalArgs,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the control plane (API, console, controllers).
    Server(server::ServerArgs),
    /// Act on this machine's embedded runtime (needs root; the server stopped).
    #[command(subcommand)]
    Runtime(runtime::RuntimeCommand),
    #[command(flatten)]
    Client(flotilla_cli::Command),
}

fn main() {
    // containerd runs this binary as the `flotilla-net` CNI plugin (see flotilla_local::cni_plugin).
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    if invoked_as.as_deref().and_then(|p| p.file_name()).is_some_and(|n| n == flotilla_local::cni_plugin::PLUGIN_NAME) {
        std::process::exit(flotilla_local::cni_plugin::main());
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Top::Server(args) => server::run(args).await,
            Top::Runtime(command) => runtime::run(command).await,
            Top::Client(command) => match flotilla_cli::run(cli.global, command).await {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("error: {error}");
                    error.exit_code()
                }
            },
        }
    });
    std::process::exit(code);
}
