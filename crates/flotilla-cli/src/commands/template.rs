//! `template instantiate`: creates an application from a template (a project's, or with
//! `--platform` a shared one) with parameter values from `--set` and `--values FILE`.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::CliError;
use crate::output::{ReportFormat, emit, structured};
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Create an application from a template with parameter values
    Instantiate(Box<InstantiateArgs>),
    /// Save an application as a new version of a template, chosen fields as parameters
    Save(Box<SaveArgs>),
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// The application to save
    application: String,
    #[arg(short, long)]
    project: String,
    /// The template to create, or add a version to
    #[arg(long = "template", value_name = "TEMPLATE")]
    template: String,
    /// The new version's name
    #[arg(long = "as", value_name = "VERSION")]
    template_version: String,
    /// A field that becomes a parameter, `NAME=PATH` (`image=components[0].image`); its
    /// current value is the default. Repeatable
    #[arg(long = "param", value_name = "NAME=PATH")]
    params: Vec<String>,
    /// Save as a platform template, shared by every project (platform admins)
    #[arg(long)]
    platform: bool,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(disable_version_flag = true)]
pub struct InstantiateArgs {
    /// The template's name
    template: String,
    /// The project to create the application in (a project's template is in it too)
    #[arg(short, long)]
    project: String,
    /// The new application's name
    #[arg(long)]
    name: String,
    /// The template is a platform template (shared by every project)
    #[arg(long)]
    platform: bool,
    /// The template version [default: the newest]
    #[arg(long)]
    version: Option<String>,
    /// A parameter value, `NAME=VALUE` (dotted names for nested ones); VALUE is text for a
    /// parameter the template declares a string, else read as JSON when it parses (`3`,
    /// `true`, `["a"]`). Repeatable
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// A YAML or JSON file of parameter values; `--set` overrides it
    #[arg(long, value_name = "FILE")]
    values: Option<PathBuf>,
    /// Print the application that would be created, and create nothing
    #[arg(long)]
    dry_run: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    output: ReportFormat,
}

/// Whether the parameter schema `parameters` declares `name` (dotted) a string.
fn declared_string(parameters: &Value, name: &str) -> bool {
    let schema = name.split('.').try_fold(parameters, |schema, segment| schema.get("properties")?.get(segment));
    schema.and_then(|s| s.get("type")).and_then(Value::as_str) == Some("string")
}

/// `a.b=3` into `values` as `{"a": {"b": 3}}`; text when `parameters` declares it a string.
fn set_value(values: &mut Map<String, Value>, parameters: &Value, assignment: &str) -> Result<(), CliError> {
    let (name, text) =
        assignment.split_once('=').ok_or_else(|| CliError::usage(format!("--set {assignment:?} is not NAME=VALUE")))?;
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(CliError::usage(format!("--set {assignment:?}: {name:?} is not a parameter name")));
    }
    let value = if declared_string(parameters, name) {
        Value::String(text.to_string())
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    };
    let mut segments: Vec<&str> = name.split('.').collect();
    let last = segments.pop().unwrap_or_default();
    let mut target = values;
    for segment in segments {
        let entry = target.entry(segment.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        target = entry.as_object_mut().ok_or_else(|| CliError::usage(format!("--set {assignment:?}")))?;
    }
    target.insert(last.to_string(), value);
    Ok(())
}

pub async fn run(session: &Session, command: TemplateCommand) -> Result<(), CliError> {
    let args = match command {
        TemplateCommand::Instantiate(args) => args,
        TemplateCommand::Save(args) => return save(session, *args).await,
    };
    let mut values = match &args.values {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
            match serde_norway::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                Ok(Value::Null) => Map::new(),
                Ok(_) => return Err(CliError::usage(format!("{} must hold a mapping of values", path.display()))),
                Err(error) => return Err(CliError::usage(format!("{}: {error}", path.display()))),
            }
        }
        None => Map::new(),
    };
    let (client, _) = session.client()?;
    let (plural, template_project) =
        if args.platform { ("platformtemplates", None) } else { ("templates", Some(args.project.as_str())) };
    let template = client.get(plural, template_project, &args.template).await?;
    let versions = template.spec.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
    let chosen = match &args.version {
        Some(wanted) => versions.iter().find(|v| v.get("version").and_then(Value::as_str) == Some(wanted.as_str())),
        None => versions.last(),
    };
    let parameters = chosen.and_then(|v| v.get("parameters")).cloned().unwrap_or(Value::Null);
    for assignment in &args.set {
        set_value(&mut values, &parameters, assignment)?;
    }
    let body = serde_json::json!({
        "name": args.name,
        "project": args.project,
        "version": args.version,
        "values": Value::Object(values),
    });
    let made = client.instantiate_template(template_project, &args.template, &body, args.dry_run).await?;
    if let Some(text) = structured(args.output, &made)? {
        return emit(&text);
    }
    if args.dry_run {
        return emit(&crate::output::to_yaml(&made)?);
    }
    let version = made.pointer("/metadata/annotations/flotilla.io~1template").and_then(Value::as_str).unwrap_or("?");
    emit(&format!("application/{} created in project {} from {version}\n", args.name, args.project))
}

async fn save(session: &Session, args: SaveArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let body = serde_json::json!({
        "template": args.template,
        "version": args.template_version,
        "parameters": args.params,
        "platform": args.platform,
        "description": args.description,
    });
    let saved = client.save_as_template(&args.project, &args.application, &body).await?;
    let kind = saved.get("kind").and_then(Value::as_str).unwrap_or("Template");
    emit(&format!(
        "{} {} version {} saved from application/{}\n",
        kind.to_ascii_lowercase(),
        args.template,
        args.template_version,
        args.application
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reads_json_or_text_into_dotted_paths() {
        let parameters = serde_json::json!({"type": "object", "properties": {
            "tag": {"type": "string"}, "replicas": {"type": "integer"},
            "db": {"type": "object", "properties": {"host": {"type": "string"}}}}});
        let mut values = Map::new();
        for assignment in ["replicas=3", "tag=1.4", "db.host=db.internal", "db.port=5432", "flags=[\"a\"]"] {
            set_value(&mut values, &parameters, assignment).unwrap();
        }
        assert_eq!(
            Value::Object(values),
            serde_json::json!({"replicas": 3, "tag": "1.4", "db": {"host": "db.internal", "port": 5432}, "flags": ["a"]})
        );
        let mut undeclared = Map::new();
        set_value(&mut undeclared, &Value::Null, "tag=1.4").unwrap();
        assert_eq!(undeclared["tag"], 1.4, "undeclared: read as JSON");
        assert!(set_value(&mut Map::new(), &parameters, "novalue").is_err());
        assert!(set_value(&mut Map::new(), &parameters, "a..b=1").is_err());
    }
}
