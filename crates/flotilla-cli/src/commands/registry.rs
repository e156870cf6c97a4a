//! `registry repos|versions|robot-secret|gc`: the built-in registry seen from the delivery
//! center (pushing and pulling images is for OCI clients: skopeo, podman, docker).

use serde_json::Value;

use crate::error::CliError;
use crate::output::{ReportFormat, Table, emit, note, short_time, structured};
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// List a project's repositories
    Repos {
        #[arg(short, long)]
        project: String,
        /// Only names containing this
        #[arg(long)]
        search: Option<String>,
        /// Output format
        #[arg(short, long, value_enum, default_value_t)]
        output: ReportFormat,
    },
    /// List a repository's versions: tags, size, who pushed them and which applications run them
    Versions {
        /// The repository's path inside the project (`web`, `base/os`)
        repository: String,
        #[arg(short, long)]
        project: String,
        /// Output format
        #[arg(short, long, value_enum, default_value_t)]
        output: ReportFormat,
    },
    /// Issue a new secret for a robot account (printed once; earlier secrets stop working)
    RobotSecret {
        /// The Robot's name
        name: String,
        #[arg(short, long)]
        project: String,
    },
    /// Apply retention rules and collect garbage now (platform admins)
    Gc {
        /// Skip the projects' retention rules
        #[arg(long)]
        no_retention: bool,
        /// Keep blobs linked within this many seconds [default: the server's]
        #[arg(long, value_name = "SECONDS")]
        grace: Option<u64>,
    },
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn text(value: &Value, name: &str) -> String {
    value.get(name).and_then(Value::as_str).unwrap_or_default().to_string()
}

pub async fn run(session: &Session, command: RegistryCommand) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    match command {
        RegistryCommand::Repos { project, search, output } => {
            let mut params = Vec::new();
            if let Some(search) = search {
                params.push(("q", search));
            }
            let mut items = Vec::new();
            loop {
                let page = client.repositories(&project, &params).await?;
                items.extend(page.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
                let Some(next) = page.get("continue").and_then(Value::as_str) else { break };
                params.retain(|(name, _)| *name != "continue");
                params.push(("continue", next.to_string()));
            }
            if let Some(text) = structured(output, &items)? {
                return emit(&text);
            }
            let mut table = Table::new(["NAME", "VERSIONS", "TAGS", "UPDATED"]);
            for item in &items {
                let count = |name: &str| item.get(name).and_then(Value::as_u64).unwrap_or(0).to_string();
                table.row([
                    text(item, "name"),
                    count("manifests"),
                    count("tags"),
                    short_time(&text(item, "updatedAt")),
                ]);
            }
            emit(&table.render())
        }
        RegistryCommand::Versions { repository, project, output } => {
            let versions = client.repository_versions(&project, &repository, &[]).await?;
            if let Some(text) = structured(output, &versions)? {
                return emit(&text);
            }
            let mut table = Table::new(["DIGEST", "TAGS", "SIZE", "PUSHED", "BY", "APPLICATIONS"]);
            for item in versions.get("items").and_then(Value::as_array).into_iter().flatten() {
                let list = |name: &str, field: Option<&str>| -> String {
                    let entries = item.get(name).and_then(Value::as_array).cloned().unwrap_or_default();
                    let names: Vec<String> = entries
                        .iter()
                        .filter_map(|e| match field {
                            Some(field) => e.get(field).and_then(Value::as_str).map(str::to_string),
                            None => e.as_str().map(str::to_string),
                        })
                        .collect();
                    names.join(",")
                };
                let digest = text(item, "digest");
                table.row([
                    digest.chars().take(19).collect::<String>(),
                    list("tags", None),
                    size(item.get("size").and_then(Value::as_u64).unwrap_or(0)),
                    short_time(&text(item, "pushedAt")),
                    text(item, "pushedBy"),
                    list("applications", Some("name")),
                ]);
            }
            emit(&table.render())
        }
        RegistryCommand::RobotSecret { name, project } => {
            let issued = client.issue_robot_secret(&project, &name).await?;
            note(&format!(
                "Robot account {} (expires {}). warning: the secret is shown only this once, below: store it now.",
                text(&issued, "account"),
                short_time(&text(&issued, "expiresAt"))
            ));
            emit(&format!("{}\n", text(&issued, "secret")))
        }
        RegistryCommand::Gc { no_retention, grace } => {
            let report = client.registry_gc(!no_retention, grace).await?;
            emit(&crate::output::to_yaml(&report)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(700 * 1024 * 1024), "700.0 MiB");
    }
}
