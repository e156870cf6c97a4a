//! `delete KIND NAME...` and `delete -f FILE...`: the latter deletes every document's object,
//! last document first (so that what was created last, and may depend on the rest, goes
//! first).

use std::path::PathBuf;

use flotilla_client::{Client, KindDescription};

use super::{project_for, server_kinds};
use crate::documents::{DocumentKey, read_sources, split};
use crate::error::CliError;
use crate::kinds::{object_ref, resolve};
use crate::output::{emit, note};
use crate::session::Session;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["kind", "files"])))]
pub struct DeleteArgs {
    /// Kind: `workspace`, `workspaces`, `Workspace`, or an alias (ws, env, rb, proj)
    #[arg(requires = "names", conflicts_with = "files")]
    pub kind: Option<String>,
    /// Names of the objects
    pub names: Vec<String>,
    /// Project (project-scoped kinds; with -f, for documents that do not name one)
    #[arg(short, long)]
    pub project: Option<String>,
    /// Delete the objects of a YAML/JSON file, a directory, or - (stdin)
    #[arg(short = 'f', long = "filename", visible_alias = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Report objects that do not exist without failing
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// What happened to one object.
#[derive(Debug)]
enum Outcome {
    Deleted,
    Missing,
    Failed(CliError),
}

async fn delete_one(
    client: &Client,
    kind: &KindDescription,
    project: Option<&str>,
    name: &str,
) -> Result<Outcome, CliError> {
    let project = match project_for(kind, project, name) {
        Ok(project) => project,
        Err(error) => return Ok(Outcome::Failed(error)),
    };
    match client.delete(&kind.plural, project, name, None).await.map_err(CliError::from) {
        Ok(()) => Ok(Outcome::Deleted),
        Err(error) if error.is_not_found() => Ok(Outcome::Missing),
        Err(error) if error.is_fatal_for_batch() => Err(error),
        Err(error) => Ok(Outcome::Failed(error)),
    }
}

/// Prints the outcome; returns whether it counts as a failure.
fn report(reference: &str, outcome: Outcome, ignore_not_found: bool) -> Result<Option<CliError>, CliError> {
    match outcome {
        Outcome::Deleted => emit(&format!("{reference} deleted\n")).map(|()| None),
        Outcome::Missing if ignore_not_found => emit(&format!("{reference} not found (ignored)\n")).map(|()| None),
        Outcome::Missing => {
            Ok(Some(CliError::NotFound(format!("{reference} not found (add --ignore-not-found to accept that)"))))
        }
        Outcome::Failed(error) => Ok(Some(error)),
    }
}

async fn by_names(client: &Client, args: &DeleteArgs, kind_input: &str) -> Result<(), CliError> {
    let kinds = server_kinds(client).await?;
    let kind = resolve(&kinds, kind_input)?;
    let mut errors = Vec::new();
    for name in &args.names {
        let outcome = delete_one(client, kind, args.project.as_deref(), name).await?;
        let reference =
            object_ref(&kind.kind, args.project.as_deref().filter(|_| crate::kinds::is_project_scoped(kind)), name);
        if let Some(error) = report(&reference, outcome, args.ignore_not_found)? {
            errors.push(error);
        }
    }
    match errors.len() {
        0 => Ok(()),
        // One name: its own error and exit code.
        1 if args.names.len() == 1 => Err(errors.remove(0)),
        failed => {
            for error in &errors {
                note(&super::apply::error_lines("error", error));
            }
            Err(CliError::DeletionsFailed { failed, total: args.names.len() })
        }
    }
}

async fn by_files(client: &Client, args: &DeleteArgs) -> Result<(), CliError> {
    let sources = read_sources(&args.files)?;
    let mut documents: Vec<(String, DocumentKey)> = Vec::new();
    for source in &sources {
        documents.extend(split(&source.text).into_iter().map(|key| (source.label.clone(), key)));
    }
    if documents.is_empty() {
        return Err(CliError::usage("no documents to delete in the given files"));
    }
    let kinds = server_kinds(client).await?;
    let total = documents.len();
    let mut failed = 0;
    for (label, document) in documents.into_iter().rev() {
        let headline = format!("error: {label} line {} (document {})", document.line, document.index + 1);
        let (kind, name) = match (&document.error, &document.kind, &document.name) {
            (Some(problem), _, _) => {
                note(&format!("{headline}: {problem}"));
                failed += 1;
                continue;
            }
            (None, Some(kind), Some(name)) => (kind, name),
            _ => {
                note(&format!("{headline}: the document has no kind or no metadata.name"));
                failed += 1;
                continue;
            }
        };
        let project = document.project.as_deref().or(args.project.as_deref());
        let reference = object_ref(kind, project, name);
        let outcome = match resolve(&kinds, kind) {
            Ok(kind) => delete_one(client, kind, project, name).await?,
            Err(error) => Outcome::Failed(error),
        };
        if let Some(error) = report(&reference, outcome, args.ignore_not_found)? {
            note(&super::apply::error_lines(&headline, &error));
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(CliError::DeletionsFailed { failed, total });
    }
    Ok(())
}

pub async fn run(session: &Session, args: DeleteArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    match &args.kind {
        Some(kind) => by_names(&client, &args, kind).await,
        None => by_files(&client, &args).await,
    }
}
