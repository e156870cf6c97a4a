//! `image import FILE`: loads the images of an OCI or Docker archive into a cluster that has
//! no registry to pull them from (the embedded runtime on an offline machine).

use std::path::PathBuf;

use serde_json::Value;

use crate::error::CliError;
use crate::output::emit;
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Load the images of an OCI or Docker image archive into a cluster (platform admins)
    Import {
        /// The archive (`skopeo copy … oci-archive:FILE`, `docker save`, `podman save`)
        file: PathBuf,
        /// The cluster to load it into
        #[arg(long, default_value = "local")]
        cluster: String,
    },
}

pub async fn run(session: &Session, command: ImageCommand) -> Result<(), CliError> {
    let ImageCommand::Import { file, cluster } = command;
    if !file.is_file() {
        return Err(CliError::usage(format!("{} is not a file", file.display())));
    }
    let (client, _) = session.client()?;
    let result = client.import_images(&cluster, &file).await?;
    let images: Vec<&str> =
        result.get("images").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    emit(&images.iter().map(|image| format!("imported {image} into cluster {cluster}\n")).collect::<String>())
}
