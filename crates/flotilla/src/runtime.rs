//! `flotilla runtime reset`: takes the embedded runtime of a data directory off this host
//! (its instances, containerd, networks and service rules; see [`flotilla_local::reset`]),
//! as `kubeadm reset` does for a node. Run on the machine, as root, with the server stopped.
//!
//! Exit codes: 0 when everything was removed, 2 when not confirmed, 75 (EX_TEMPFAIL) while a
//! server uses the runtime, 78 for a bad configuration, 1 when a step failed (run it again).

use std::path::PathBuf;

use flotilla_config::{Config, Overrides};
use flotilla_local::LocalError;
use flotilla_local::reset::{ResetOptions, reset};

/// `flotilla runtime …`.
#[derive(Debug, clap::Subcommand)]
pub enum RuntimeCommand {
    /// Stop and remove every instance of the embedded runtime, stop its containerd, and delete
    /// its networks and service rules from this host. Applications stay declared: a server
    /// started again runs them again. Needs root and the server stopped.
    Reset(ResetArgs),
}

/// Options of `flotilla runtime reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The server's data directory (default ./.flotilla, or FLOTILLA_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Configuration file (default <data dir>/flotilla.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also delete the runtime's directory: its images, volumes and instance logs.
    #[arg(long)]
    remove_data: bool,
    /// Confirm: every instance the runtime runs is stopped.
    #[arg(long, short = 'y')]
    yes: bool,
}

const NOT_CONFIRMED: i32 = 2;
const EX_TEMPFAIL: i32 = 75;
const EX_CONFIG: i32 = 78;

pub async fn run(command: RuntimeCommand) -> i32 {
    let RuntimeCommand::Reset(args) = command;
    let overrides = Overrides { data_dir: args.data_dir, listen: None, config_file: args.config };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return EX_CONFIG;
        }
    };
    let dir = match std::fs::canonicalize(&config.data_dir) {
        Ok(data_dir) => data_dir.join("runtime"),
        Err(error) => {
            eprintln!("error: cannot resolve the data directory {}: {error}", config.data_dir.display());
            return EX_CONFIG;
        }
    };
    if !args.yes {
        eprintln!(
            "This stops and removes every instance the embedded runtime in {} runs, stops its containerd and \
             deletes its networks and service rules{}. Run again with --yes to do it.",
            dir.display(),
            if args.remove_data { ", then deletes that directory (images, volumes, logs)" } else { "" }
        );
        return NOT_CONFIRMED;
    }
    if !dir.is_dir() {
        println!("No embedded runtime in {}: nothing to reset.", dir.display());
        return 0;
    }
    let options =
        ResetOptions { dir, containerd_socket: config.runtime.containerd_socket.clone(), remove_dir: args.remove_data };
    match reset(&options).await {
        Ok(report) => {
            println!(
                "Removed {} instance(s) of the embedded runtime in {}.",
                report.instances.len(),
                options.dir.display()
            );
            if report.containerd_stopped {
                println!("Stopped its containerd.");
            }
            if !report.bridges.is_empty() {
                println!("Deleted networks: {}.", report.bridges.join(", "));
            }
            println!("Deleted its service rules.");
            if report.dir_removed {
                println!("Deleted {}.", options.dir.display());
            }
            0
        }
        Err(error @ LocalError::Busy(_)) => {
            eprintln!("error: {error}");
            EX_TEMPFAIL
        }
        Err(error) => {
            eprintln!("error: {error} (what could be removed was; run the reset again)");
            1
        }
    }
}
