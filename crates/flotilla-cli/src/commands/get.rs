//! `get KIND [NAME]`: lists (filtered, sorted, paged on the server) or one object, as a
//! table, JSON, YAML or `kind/name` lines.

use flotilla_client::{Client, KindDescription};
use serde_json::{Value, json};

use super::{project_for, resolve_kind};
use crate::error::CliError;
use crate::kinds::{is_project_scoped, object_table};
use crate::output::{OutputFormat, emit, note, to_json, to_yaml};
use crate::session::Session;

/// Sort order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    #[value(name = "name")]
    Name,
    #[value(name = "creationTimestamp")]
    CreationTimestamp,
    #[value(name = "updateTimestamp")]
    UpdateTimestamp,
}

impl SortBy {
    fn as_param(self) -> &'static str {
        match self {
            SortBy::Name => "name",
            SortBy::CreationTimestamp => "creationTimestamp",
            SortBy::UpdateTimestamp => "updateTimestamp",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Kind: `workspace`, `workspaces`, `Workspace`, or an alias (ws, env, rb, proj)
    pub kind: String,
    /// Name of one object [default: list them all]
    pub name: Option<String>,
    /// Project (project-scoped kinds; without it a list spans every project you may see)
    #[arg(short, long)]
    pub project: Option<String>,
    /// Label selector, e.g. `tier=prod,region in (eu,us),!legacy`
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only names containing this text
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Sort by this field [default: name]
    #[arg(long, value_enum, value_name = "FIELD")]
    pub sort_by: Option<SortBy>,
    /// Sort in descending order
    #[arg(long)]
    pub desc: bool,
    /// Page size (the server's default is 100, its maximum 1000)
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Fetch every page, following continue tokens
    #[arg(long)]
    pub all: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

impl GetArgs {
    /// The list query parameters, without `continue`.
    pub fn list_params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        if let Some(selector) = &self.selector {
            params.push(("labelSelector", selector.clone()));
        }
        if let Some(search) = &self.search {
            params.push(("q", search.clone()));
        }
        if let Some(sort) = self.sort_by {
            params.push(("sort", sort.as_param().to_string()));
        }
        if self.desc {
            params.push(("order", "desc".to_string()));
        }
        if let Some(limit) = self.limit {
            params.push(("limit", limit.to_string()));
        }
        params
    }
}

/// `kind/name` lines of `-o name`.
pub fn name_lines(kind: &str, objects: &[Value]) -> String {
    objects
        .iter()
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
        .map(|name| format!("{}/{name}\n", kind.to_ascii_lowercase()))
        .collect()
}

/// Prints objects in the chosen format; `whole` is what JSON/YAML show (the object or the list).
fn print(kind: &KindDescription, format: OutputFormat, objects: &[Value], whole: &Value) -> Result<(), CliError> {
    match format {
        OutputFormat::Json => emit(&to_json(whole)?),
        OutputFormat::Yaml => emit(&to_yaml(whole)?),
        OutputFormat::Name => emit(&name_lines(&kind.kind, objects)),
        OutputFormat::Table => emit(&object_table(kind, objects, jiff::Timestamp::now()).render()),
    }
}

async fn list(client: &Client, kind: &KindDescription, args: &GetArgs) -> Result<(Value, Vec<Value>, bool), CliError> {
    if args.project.is_some() && !is_project_scoped(kind) {
        return Err(CliError::usage(format!("{} objects are not in a project: drop -p/--project", kind.kind)));
    }
    let base = args.list_params();
    let mut items: Vec<Value> = Vec::new();
    let mut continue_token: Option<String> = None;
    loop {
        let mut params = base.clone();
        if let Some(token) = &continue_token {
            params.push(("continue", token.clone()));
        }
        let mut page = client.list(&kind.plural, args.project.as_deref(), &params).await?;
        let page_items = page.get_mut("items").map(Value::take).and_then(|v| match v {
            Value::Array(items) => Some(items),
            _ => None,
        });
        let Some(page_items) = page_items else {
            return Err(CliError::Protocol(format!("the {} list has no items", kind.kind)));
        };
        items.extend(page_items);
        continue_token =
            page.pointer("/metadata/continue").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
        if !args.all || continue_token.is_none() {
            let more = continue_token.is_some();
            let mut whole = page;
            whole["items"] = Value::Array(items.clone());
            if args.all {
                whole["metadata"] = json!({});
            }
            return Ok((whole, items, more));
        }
    }
}

pub async fn run(session: &Session, args: GetArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let kind = resolve_kind(&client, &args.kind).await?;
    if let Some(name) = &args.name {
        let project = project_for(&kind, args.project.as_deref(), name)?;
        let object = client.get(&kind.plural, project, name).await?;
        // JSON/YAML of the typed object keep its field order (name first, not alphabetical).
        return match args.output {
            OutputFormat::Json => emit(&to_json(&object)?),
            OutputFormat::Yaml => emit(&to_yaml(&object)?),
            format => {
                let value = serde_json::to_value(&object).map_err(|e| CliError::Protocol(e.to_string()))?;
                print(&kind, format, std::slice::from_ref(&value), &value)
            }
        };
    }
    let (whole, items, more) = list(&client, &kind, &args).await?;
    if items.is_empty() && args.output == OutputFormat::Table {
        let place = args.project.as_deref().map(|p| format!(" in project {p}")).unwrap_or_default();
        note(&format!("No {} objects found{place}.", kind.kind));
        return Ok(());
    }
    print(&kind, args.output, &items, &whole)?;
    if more {
        note("(more objects on further pages: add --all to fetch them all, or --limit N for larger pages)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: GetArgs,
    }

    #[test]
    fn list_params_map_to_the_api() {
        let wrapper = Wrapper::try_parse_from([
            "get",
            "env",
            "-l",
            "tier=prod",
            "--search",
            "pr",
            "--sort-by",
            "updateTimestamp",
            "--desc",
            "--limit",
            "5",
        ])
        .unwrap();
        assert_eq!(
            wrapper.args.list_params(),
            vec![
                ("labelSelector", "tier=prod".to_string()),
                ("q", "pr".to_string()),
                ("sort", "updateTimestamp".to_string()),
                ("order", "desc".to_string()),
                ("limit", "5".to_string()),
            ]
        );
        assert!(Wrapper::try_parse_from(["get", "env", "--sort-by", "age"]).is_err());
    }

    #[test]
    fn names_are_kind_slash_name() {
        let objects =
            vec![json!({"metadata": {"name": "prod", "project": "shop"}}), json!({"metadata": {"name": "test"}})];
        assert_eq!(name_lines("Environment", &objects), "environment/prod\nenvironment/test\n");
    }
}
