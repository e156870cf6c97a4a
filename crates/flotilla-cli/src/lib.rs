//! Flotilla's command-line client, embedded in the `flotilla` binary next to `flotilla server`.
//!
//! The binary flattens [`Command`] into its subcommands and [`GlobalArgs`] into its global
//! options, calls [`run`], prints `error: {err}` for a [`CliError`] and exits with
//! [`CliError::exit_code`].
//!
//! Layout: [`config`] (contexts in the CLI config file), [`session`] (which server and
//! token), [`output`] (formats and tables), [`kinds`] (kind aliases and columns),
//! [`documents`] (inputs of `apply`/`delete -f`), [`prompt`] (passwords), and one module per
//! command group under [`commands`].

pub mod commands;
pub mod config;
pub mod documents;
pub mod error;
pub mod kinds;
pub mod output;
pub mod prompt;
pub mod session;

pub use commands::Command;
pub use error::CliError;

/// Options every CLI command takes (also from the environment).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// URL of the Flotilla server [default: the context's server, else http://127.0.0.1:8080]
    #[arg(long, global = true, help_heading = "Global options", env = "FLOTILLA_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Context of the CLI config to use instead of the current one
    #[arg(long, global = true, help_heading = "Global options", env = "FLOTILLA_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// API token to use instead of the context's (prefer FLOTILLA_TOKEN to the command line)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "FLOTILLA_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// Runs one CLI command. The CLI config file is `$FLOTILLA_CONFIG`, else
/// `$XDG_CONFIG_HOME/flotilla/config.yaml`, else `~/.config/flotilla/config.yaml`.
pub async fn run(global: GlobalArgs, command: Command) -> Result<(), CliError> {
    let session = session::Session::new(global, config::default_path()?);
    commands::dispatch(&session, command).await
}
