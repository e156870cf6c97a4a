//! The CLI's commands, one module per command group, and [`Command`], the clap subcommands
//! the `flotilla` binary embeds.

pub mod app;
pub mod apply;
pub mod artifact;
pub mod audit;
pub mod context;
pub mod delete;
pub mod describe;
pub mod get;
pub mod image;
pub mod login;
pub mod passwd;
pub mod registry;
pub mod template;
pub mod token;
pub mod verify;

use flotilla_client::{Client, KindDescription};

use crate::error::{CliError, EXIT_CODES_HELP};
use crate::session::Session;

// The CLI's subcommands, boxed so that the binary's own subcommand enum stays small. (A `///`
// doc comment here would become the `about` of the binary that flattens this enum.)
#[derive(Debug, clap::Subcommand)]
#[command(after_help = EXIT_CODES_HELP)]
pub enum Command {
    /// Log in to a server and save its API token as a context (which becomes current)
    #[command(after_help = EXIT_CODES_HELP)]
    Login(Box<login::LoginArgs>),
    /// Revoke the context's API token and forget it
    #[command(after_help = EXIT_CODES_HELP)]
    Logout(Box<login::LogoutArgs>),
    /// Show who you are logged in as, and your role grants
    #[command(after_help = EXIT_CODES_HELP)]
    Whoami(Box<login::WhoamiArgs>),
    /// List contexts or switch the current one
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Context(Box<context::ContextCommand>),
    /// List objects of a kind, or show one
    #[command(after_help = EXIT_CODES_HELP)]
    Get(Box<get::GetArgs>),
    /// Show one object in full, with its recent audit history
    #[command(after_help = EXIT_CODES_HELP)]
    Describe(Box<describe::DescribeArgs>),
    /// Create or update the objects of YAML/JSON files
    #[command(after_help = EXIT_CODES_HELP)]
    Apply(Box<apply::ApplyArgs>),
    /// Delete objects by kind and name, or those of YAML/JSON files
    #[command(after_help = EXIT_CODES_HELP)]
    Delete(Box<delete::DeleteArgs>),
    /// Query, export, summarize and verify the audit log
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Audit(Box<audit::AuditCommand>),
    /// Create, list and revoke your API tokens
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Token(Box<token::TokenCommand>),
    /// Change your password, or (as admin) another user's
    #[command(after_help = EXIT_CODES_HELP)]
    Passwd(Box<passwd::PasswdArgs>),
    /// Print an application's logs (-f to follow)
    #[command(after_help = EXIT_CODES_HELP)]
    Logs(Box<app::LogsArgs>),
    /// Run a command in a running instance of an application: exec APP -p P -c COMPONENT -- CMD
    #[command(after_help = EXIT_CODES_HELP)]
    Exec(Box<app::ExecArgs>),
    /// Set the number of instances of an application's component
    #[command(after_help = EXIT_CODES_HELP)]
    Scale(Box<app::ScaleArgs>),
    /// Print the Kubernetes manifests an application becomes on a Kubernetes cluster
    #[command(after_help = EXIT_CODES_HELP)]
    Render(Box<app::RenderArgs>),
    /// Show the CPU, memory, network and disk use of an application's instances
    #[command(after_help = EXIT_CODES_HELP)]
    Top(Box<app::TopArgs>),
    /// Load image archives into a cluster
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Image(Box<image::ImageCommand>),
    /// Watch, list and undo an application's rollouts
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Rollout(Box<app::RolloutCommand>),
    /// Store and fetch generic files (jars, tarballs, SQL bundles) as versioned artifacts
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Artifact(Box<artifact::ArtifactCommand>),
    /// Make applications from templates
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Template(Box<template::TemplateCommand>),
    /// The built-in registry: repositories, versions, robot secrets, garbage collection
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Registry(Box<registry::RegistryCommand>),
}

/// Runs one command.
pub async fn dispatch(session: &Session, command: Command) -> Result<(), CliError> {
    match command {
        Command::Login(args) => login::login(session, *args).await,
        Command::Logout(args) => login::logout(session, *args).await,
        Command::Whoami(args) => login::whoami(session, *args).await,
        Command::Context(command) => context::run(session, *command),
        Command::Get(args) => get::run(session, *args).await,
        Command::Describe(args) => describe::run(session, *args).await,
        Command::Apply(args) => apply::run(session, *args).await,
        Command::Delete(args) => delete::run(session, *args).await,
        Command::Audit(command) => audit::run(session, *command).await,
        Command::Token(command) => token::run(session, *command).await,
        Command::Passwd(args) => passwd::run(session, *args).await,
        Command::Logs(args) => app::logs(session, *args).await,
        Command::Exec(args) => app::exec(session, *args).await,
        Command::Scale(args) => app::scale(session, *args).await,
        Command::Top(args) => app::top(session, *args).await,
        Command::Render(args) => app::render(session, *args).await,
        Command::Rollout(command) => app::rollout(session, *command).await,
        Command::Image(command) => image::run(session, *command).await,
        Command::Template(command) => template::run(session, *command).await,
        Command::Artifact(command) => artifact::run(session, *command).await,
        Command::Registry(command) => registry::run(session, *command).await,
    }
}

/// The kinds the server knows.
pub(crate) async fn server_kinds(client: &Client) -> Result<Vec<KindDescription>, CliError> {
    Ok(client.kinds().await?)
}

/// Resolves a kind typed by the user against the server's kinds.
pub(crate) async fn resolve_kind(client: &Client, input: &str) -> Result<KindDescription, CliError> {
    let kinds = server_kinds(client).await?;
    crate::kinds::resolve(&kinds, input).cloned()
}

/// The project of an object of `kind`: required for project-scoped kinds, refused for others.
pub(crate) fn project_for<'p>(
    kind: &KindDescription,
    project: Option<&'p str>,
    name: &str,
) -> Result<Option<&'p str>, CliError> {
    match (crate::kinds::is_project_scoped(kind), project) {
        (true, Some(project)) => Ok(Some(project)),
        (true, None) => Err(CliError::usage(format!(
            "{} objects live in projects: name the project of {name:?} with -p/--project PROJECT",
            kind.kind
        ))),
        (false, Some(_)) => {
            Err(CliError::usage(format!("{} objects are not in a project: drop -p/--project", kind.kind)))
        }
        (false, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::GlobalArgs;

    /// The same shape as the `flotilla` binary.
    #[derive(Debug, Parser)]
    #[command(name = "flotilla", about, version, propagate_version = true)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        /// Run the server
        Server,
        #[command(flatten)]
        Client(Command),
    }

    #[test]
    fn embeds_in_the_binary_shape() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(!help.contains("boxed"), "the binary keeps its own about: {help}");
        assert!(help.contains("Global options:"), "{help}");
        assert!(help.contains("login") && help.contains("audit") && help.contains("server"), "{help}");
        let cli = Cli::try_parse_from(["flotilla", "get", "env", "-p", "shop", "--server", "http://x:1", "-o", "yaml"])
            .unwrap();
        assert_eq!(cli.global.server.as_deref(), Some("http://x:1"));
        let Top::Client(Command::Get(args)) = cli.command else { panic!("not get") };
        assert_eq!(args.project.as_deref(), Some("shop"));
        let cli = Cli::try_parse_from(["flotilla", "audit", "verify", "--data-dir", "/tmp/d"]).unwrap();
        assert!(matches!(cli.command, Top::Client(Command::Audit(_))));
        let cli = Cli::try_parse_from(["flotilla", "apply", "-f", "a.yaml", "-f", "-"]).unwrap();
        let Top::Client(Command::Apply(args)) = cli.command else { panic!("not apply") };
        assert_eq!(args.files.len(), 2);
        let cli = Cli::try_parse_from(["flotilla", "get", "ws", "--sort-by", "creationTimestamp", "--desc"]).unwrap();
        assert!(matches!(cli.command, Top::Client(Command::Get(_))));
        assert!(Cli::try_parse_from(["flotilla", "delete"]).is_err(), "delete needs KIND NAME or -f");
        assert!(Cli::try_parse_from(["flotilla", "delete", "ws", "a", "-f", "x.yaml"]).is_err());
        let login_help = Cli::command().find_subcommand_mut("login").unwrap().render_long_help().to_string();
        assert!(login_help.contains("Exit codes:"), "{login_help}");
    }

    #[test]
    fn the_token_value_is_not_shown_in_help() {
        // hide_env_values keeps FLOTILLA_TOKEN's value out of --help.
        let arg = Cli::command().get_arguments().find(|a| a.get_id() == "token").cloned().unwrap();
        assert!(arg.is_hide_env_values_set());
    }

    #[test]
    fn projects_are_required_exactly_for_project_kinds() {
        let env =
            KindDescription { kind: "Environment".into(), plural: "environments".into(), scope: "project".into() };
        let ws = KindDescription { kind: "Workspace".into(), plural: "workspaces".into(), scope: "global".into() };
        assert_eq!(project_for(&env, Some("shop"), "prod").unwrap(), Some("shop"));
        let missing = project_for(&env, None, "prod").unwrap_err();
        assert_eq!(missing.exit_code(), 2);
        assert!(missing.to_string().contains("-p/--project"), "{missing}");
        assert!(project_for(&ws, Some("shop"), "retail").is_err());
        assert_eq!(project_for(&ws, None, "retail").unwrap(), None);
    }
}
