//! `artifact push FILE` and `artifact pull`: generic files (jars, tarballs, SQL bundles,
//! charts) as versioned OCI artifacts in the built-in registry. A pull checks the SHA-256
//! the server announces against what arrived before keeping the file.

use std::path::PathBuf;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::CliError;
use crate::output::{ReportFormat, emit, structured};
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum ArtifactCommand {
    /// Store a file as a version of a repository
    Push {
        file: PathBuf,
        #[arg(short, long)]
        project: String,
        /// The repository's path inside the project (`releases/app`)
        #[arg(long)]
        repository: String,
        /// The version (a tag: `1.4.2`)
        #[arg(long = "as", value_name = "VERSION")]
        artifact_version: String,
        /// The artifact type, a media type [default: application/vnd.flotilla.file.v1]
        #[arg(long = "type", value_name = "MEDIA_TYPE")]
        artifact_type: Option<String>,
        /// Output format
        #[arg(short, long, value_enum, default_value_t)]
        output: ReportFormat,
    },
    /// Download a version's file (its SHA-256 checked)
    Pull {
        #[arg(short, long)]
        project: String,
        #[arg(long)]
        repository: String,
        #[arg(long = "as", value_name = "VERSION")]
        artifact_version: String,
        /// Where to write it [default: its own name, in the current directory]
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
}

/// The file name of a `Content-Disposition: attachment; filename="…"` header.
fn disposition_name(value: &str) -> Option<String> {
    let name = value.split("filename=").nth(1)?.trim().trim_matches('"');
    let valid = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
    valid.then(|| name.to_string())
}

pub async fn run(session: &Session, command: ArtifactCommand) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    match command {
        ArtifactCommand::Push { file, project, repository, artifact_version: version, artifact_type, output } => {
            if !file.is_file() {
                return Err(CliError::usage(format!("{} is not a file", file.display())));
            }
            let stored =
                client.upload_artifact(&project, &repository, &version, &file, artifact_type.as_deref()).await?;
            if let Some(text) = structured(output, &stored)? {
                return emit(&text);
            }
            let field = |name: &str| stored.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
            emit(&format!(
                "stored {} as {project}/{repository}:{version} ({} bytes, sha256 {})\n",
                file.display(),
                field("size").unwrap_or_default(),
                field("sha256").unwrap_or_default()
            ))
        }
        ArtifactCommand::Pull { project, repository, artifact_version: version, file } => {
            let response = client.download_artifact(&project, &repository, &version).await?;
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let expected = header("x-checksum-sha256")
                .ok_or_else(|| CliError::Protocol("the server did not say the file's SHA-256".into()))?;
            let target = match file {
                Some(file) => file,
                None => PathBuf::from(
                    header("content-disposition")
                        .and_then(|v| disposition_name(&v))
                        .unwrap_or_else(|| "artifact".into()),
                ),
            };
            let partial = target.with_extension("partial");
            let io = |e: std::io::Error| CliError::Io(format!("{}: {e}", partial.display()));
            let mut out = tokio::fs::File::create(&partial).await.map_err(io)?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| CliError::Protocol(format!("the download broke off: {e}")))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk).await.map_err(io)?;
            }
            out.sync_all().await.map_err(io)?;
            let actual = hex::encode(hasher.finalize());
            if actual != expected {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(CliError::Protocol(format!(
                    "the file arrived with SHA-256 {actual}, not {expected}: not kept"
                )));
            }
            tokio::fs::rename(&partial, &target).await.map_err(io)?;
            emit(&format!("{} ({size} bytes, sha256 {actual} verified)\n", target.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_file_name_is_taken_from_the_server() {
        assert_eq!(disposition_name("attachment; filename=\"app.jar\""), Some("app.jar".into()));
        assert_eq!(disposition_name("attachment; filename=\"../etc/passwd\""), None);
        assert_eq!(disposition_name("attachment"), None);
    }
}
