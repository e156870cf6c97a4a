//! Reading objects from request bodies: JSON or YAML, one document or many.
//!
//! Multi-document YAML (`---` separated, as `flotilla apply -f` sends) is split here so that
//! every problem can say which document and which line of the file it is on.

use serde::Deserialize;
use serde_json::Value;

/// One document of a (possibly multi-document) body, with where it starts.
#[derive(Debug, Clone)]
pub struct Document {
    /// 0-based index in the body.
    pub index: usize,
    /// 1-based line of the body where the document starts.
    pub line: usize,
    /// The document's own text, to locate fields in it.
    pub text: String,
    pub value: Result<Value, String>,
}

impl Document {
    /// The 1-based line (of the whole body) where the field at `path` (`spec.clusters[1]`)
    /// is written, found by following its keys through the text; `None` when a key is not
    /// written as `key:` (e.g. it is missing, which is often the error being reported).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let lines: Vec<&str> = self.text.lines().collect();
        let mut at = 0;
        let mut found = None;
        for segment in path.split('.').filter(|s| !s.is_empty()) {
            let key = segment.split(['[', '"']).next().unwrap_or(segment);
            if key.is_empty() {
                continue;
            }
            let offset = lines[at..].iter().position(|line| writes_key(line, key))?;
            at += offset;
            found = Some(self.line + at);
        }
        found
    }
}

/// Whether `line` writes `key:` as a mapping key (block or flow style, quoted or not).
fn writes_key(line: &str, key: &str) -> bool {
    let code = line.split(" #").next().unwrap_or(line);
    [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")].iter().any(|pattern| {
        code.match_indices(pattern.as_str())
            .any(|(index, _)| index == 0 || code[..index].ends_with([' ', '{', ',', '-', '\t']))
    })
}

/// Whether a body with this content type is JSON (else YAML, which also reads JSON).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.split(';').next().is_some_and(|media| media.trim().ends_with("json")))
}

/// Parses a single-document body.
pub fn parse_one(body: &[u8], content_type: Option<&str>) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    if is_json(content_type) {
        return serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"));
    }
    let mut documents = parse_many(text);
    match documents.len() {
        0 => Err("the body holds no document".into()),
        1 => documents.remove(0).value,
        n => Err(format!("expected one document, got {n}: use POST /api/v1/apply for several")),
    }
}

/// Splits a YAML stream into documents and parses each; empty documents are skipped.
pub fn parse_many(text: &str) -> Vec<Document> {
    let mut chunks: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut start_line = 1;
    for (index, line) in text.lines().enumerate() {
        let is_separator = line.starts_with("---") && line[3..].trim_start().is_empty_or_comment();
        if is_separator {
            chunks.push((start_line, std::mem::take(&mut current)));
            start_line = index + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push((start_line, current));
    let mut documents = Vec::new();
    for (line, chunk) in chunks {
        let text = chunk.clone();
        let meaningful = chunk.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        });
        if !meaningful {
            continue;
        }
        let value = Value::deserialize(serde_norway::Deserializer::from_str(&chunk)).map_err(|e| match e.location() {
            Some(location) => {
                format!("invalid YAML at line {}, column {}: {e}", line + location.line() - 1, location.column())
            }
            None => format!("invalid YAML: {e}"),
        });
        // A JSON list of objects, or a `kind: List`, expands into its items.
        match value {
            Ok(Value::Array(items)) => {
                for item in items {
                    documents.push(Document { index: documents.len(), line, text: text.clone(), value: Ok(item) });
                }
            }
            Ok(Value::Object(map)) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = map.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                for item in items {
                    documents.push(Document { index: documents.len(), line, text: text.clone(), value: Ok(item) });
                }
            }
            value => documents.push(Document { index: documents.len(), line, text, value }),
        }
    }
    documents
}

trait EmptyOrComment {
    fn is_empty_or_comment(&self) -> bool;
}

impl EmptyOrComment for str {
    fn is_empty_or_comment(&self) -> bool {
        self.is_empty() || self.starts_with('#')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_tracks_lines() {
        let text = "# leading comment\n---\nkind: Workspace\nmetadata:\n  name: a\n---\n\n---\nkind: Project\nmetadata: {name: b}\n";
        let documents = parse_many(text);
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].line, 3);
        assert_eq!(documents[1].line, 9);
        assert_eq!(documents[1].value.as_ref().unwrap()["metadata"]["name"], "b");
    }

    #[test]
    fn syntax_errors_name_the_line_of_the_file() {
        let text = "kind: Workspace\n---\nkind: Project\nmetadata:\n  name: [unclosed\n";
        let documents = parse_many(text);
        let error = documents[1].value.as_ref().unwrap_err();
        assert!(error.contains("line 5") || error.contains("line 6"), "{error}");
    }

    #[test]
    fn fields_are_located_by_their_keys() {
        let text = "kind: Workspace\n---\napiVersion: flotilla.io/v1\nkind: Environment\nmetadata:\n  name: qa\nspec:\n  clusters: [local]\n  tier: fast\n";
        let document = &parse_many(text)[1];
        assert_eq!(document.line_of("spec.tier"), Some(9));
        assert_eq!(document.line_of("metadata.name"), Some(6));
        assert_eq!(document.line_of("spec.clusters[0]"), Some(8));
        assert_eq!(document.line_of("spec.missing"), None);
        let flow = &parse_many("kind: Project\nmetadata: {name: a}\nspec: {workspace: x, quota: {cpu: lots}}\n")[0];
        assert_eq!(flow.line_of("spec.quota.cpu"), Some(3));
    }

    #[test]
    fn json_bodies_and_lists() {
        assert!(parse_one(br#"{"kind":"Workspace"}"#, Some("application/json")).is_ok());
        let error = parse_one(b"{\"kind\": }", Some("application/json")).unwrap_err();
        assert!(error.contains("line 1"), "{error}");
        let documents = parse_many(r#"[{"kind":"Workspace"},{"kind":"Project"}]"#);
        assert_eq!(documents.len(), 2);
    }
}
