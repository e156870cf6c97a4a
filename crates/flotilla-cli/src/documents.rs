//! The inputs of `apply -f` and `delete -f`: files, directories (their `*.yaml`, `*.yml`,
//! `*.json` files sorted by name) and `-` for stdin; and splitting a YAML stream into the
//! documents' keys, the way the server splits it (`---` lines, JSON lists, `kind: List`).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::CliError;

/// The text of one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as given (or found in a directory); `-` for stdin.
    pub label: String,
    pub text: String,
}

impl Source {
    /// Whether the text holds anything but blank lines, comments and separators.
    pub fn has_content(&self) -> bool {
        self.text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with("---")
        })
    }
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
}

/// Expands `-f` arguments into files in order: a directory becomes its manifest files sorted
/// by name (not recursive).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" || !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let entries =
            std::fs::read_dir(path).map_err(|e| CliError::Io(format!("cannot list {}: {e}", path.display())))?;
        let mut found: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CliError::Io(format!("cannot list {}: {e}", path.display())))?;
            let file = entry.path();
            if file.is_file() && is_manifest(&file) {
                found.push(file);
            }
        }
        if found.is_empty() {
            return Err(CliError::usage(format!("{} holds no *.yaml, *.yml or *.json files", path.display())));
        }
        found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files.extend(found);
    }
    Ok(files)
}

/// Reads every input (stdin at most once).
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, CliError> {
    if paths.is_empty() {
        return Err(CliError::usage("no input: give -f FILE (a file, a directory, or - for stdin)"));
    }
    let mut sources = Vec::new();
    let mut stdin_read = false;
    for file in expand(paths)? {
        if file.as_os_str() == "-" {
            if stdin_read {
                return Err(CliError::usage("-f - (stdin) can be given only once"));
            }
            stdin_read = true;
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Io(format!("cannot read standard input: {e}")))?;
            sources.push(Source { label: "-".into(), text });
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CliError::usage(format!("{}: no such file or directory", file.display())),
            _ => CliError::Io(format!("cannot read {}: {e}", file.display())),
        })?;
        sources.push(Source { label: file.display().to_string(), text });
    }
    Ok(sources)
}

/// Who one document is about, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentKey {
    /// 0-based index in the file.
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub kind: Option<String>,
    pub project: Option<String>,
    pub name: Option<String>,
    /// Why the document could not be read.
    pub error: Option<String>,
}

fn key_of(index: usize, line: usize, value: Result<Value, String>) -> DocumentKey {
    let field = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    match value {
        Ok(value) => DocumentKey {
            index,
            line,
            kind: field(&value, "/kind"),
            project: field(&value, "/metadata/project"),
            name: field(&value, "/metadata/name"),
            error: None,
        },
        Err(error) => DocumentKey { index, line, kind: None, project: None, name: None, error: Some(error) },
    }
}

/// Splits a YAML (or JSON) stream into its documents' keys; empty documents are skipped.
pub fn split(text: &str) -> Vec<DocumentKey> {
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    for (index, line) in text.lines().enumerate() {
        let rest = line.strip_prefix("---").map(str::trim_start);
        if rest.is_some_and(|r| r.is_empty() || r.starts_with('#')) {
            chunks.push((start_line, std::mem::take(&mut current)));
            start_line = index + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push((start_line, current));
    let mut keys = Vec::new();
    for (line, chunk) in chunks {
        if !chunk.lines().any(|l| !l.trim().is_empty() && !l.trim().starts_with('#')) {
            continue;
        }
        let value =
            Value::deserialize(serde_norway::Deserializer::from_str(&chunk)).map_err(|e| format!("invalid YAML: {e}"));
        match value {
            Ok(Value::Array(items)) => items.into_iter().for_each(|item| keys.push(key_of(keys.len(), line, Ok(item)))),
            Ok(Value::Object(map)) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = map.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                items.into_iter().for_each(|item| keys.push(key_of(keys.len(), line, Ok(item))));
            }
            value => keys.push(key_of(keys.len(), line, value)),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_server() {
        let text = "# comment\n---\napiVersion: flotilla.io/v1\nkind: Workspace\nmetadata:\n  name: retail\n---\n\n--- # empty\nkind: Environment\nmetadata: {name: prod, project: shop}\n---\nkind: [broken\n";
        let keys = split(text);
        assert_eq!(keys.len(), 3);
        assert_eq!(
            (keys[0].kind.as_deref(), keys[0].name.as_deref(), keys[0].line),
            (Some("Workspace"), Some("retail"), 3)
        );
        assert_eq!(keys[1].project.as_deref(), Some("shop"));
        assert_eq!(keys[1].line, 10);
        assert!(keys[2].error.is_some());
        let list = split(
            r#"[{"kind": "Workspace", "metadata": {"name": "a"}}, {"kind": "Workspace", "metadata": {"name": "b"}}]"#,
        );
        assert_eq!(list.iter().map(|k| k.name.clone().unwrap()).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(list[1].index, 1);
    }

    #[test]
    fn directories_expand_to_sorted_manifests() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.yaml", "a.yml", "c.json", "notes.txt"] {
            std::fs::write(dir.path().join(name), "kind: Workspace\n").unwrap();
        }
        let files = expand(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().to_string()).collect();
        assert_eq!(names, vec!["a.yml", "b.yaml", "c.json"]);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(expand(&[empty.path().to_path_buf()]).unwrap_err().exit_code(), 2);
        assert_eq!(read_sources(&[dir.path().join("missing.yaml")]).unwrap_err().exit_code(), 2);
        let sources = read_sources(&[dir.path().join("a.yml")]).unwrap();
        assert!(sources[0].has_content());
        assert!(!Source { label: "x".into(), text: "# only\n---\n\n".into() }.has_content());
    }
}
