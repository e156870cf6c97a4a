//! `ExternalRegistry`: another Distribution-compatible registry (Harbor, Docker Hub, a cloud
//! registry, distribution) the delivery center talks to; registered by platform admins, its
//! password never returned by the API nor written to audit records in clear.
//!
//! `ReplicationRule`: copies a project's images to an external registry (`push`) or from one
//! into the project (`pull`), for the repositories and tags its patterns select, by hand, on
//! a schedule, or (push rules) whenever an image is pushed.
//!
//! Names: a local repository `<project>/<path>` is `<remoteNamespace>/<path>` on the other
//! side (`remoteNamespace` defaults to the project's name; empty: `<path>` alone).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, Reference, Scope};
use crate::object::ObjectMeta;
use crate::registry::{check_patterns, matches_any};
use crate::validation::ValidationErrors;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalRegistrySpec {
    /// `https://registry.example.com` or `http://127.0.0.1:5000` (no path).
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Accept a TLS certificate that does not verify (test registries only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Leave out for anonymous access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RegistryCredentials>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryCredentials {
    pub username: String,
    /// A password or access token. A secret: never shown, never audited in clear.
    pub password: String,
}

impl ExternalRegistrySpec {
    /// `host[:port]` of the URL, and whether it is plain HTTP.
    pub fn host(&self) -> Option<(String, bool)> {
        let (plain, rest) = if let Some(rest) = self.url.strip_prefix("http://") {
            (true, rest)
        } else {
            (false, self.url.strip_prefix("https://")?)
        };
        let host = rest.trim_end_matches('/');
        let valid = !host.is_empty()
            && !host.contains('/')
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        valid.then(|| (host.to_string(), plain))
    }
}

impl KindSpec for ExternalRegistrySpec {
    const KIND: &'static str = "ExternalRegistry";
    const PLURAL: &'static str = "externalregistries";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::Infrastructure;
    const SECRET_PATHS: &'static [&'static str] = &["credentials.password"];

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if self.host().is_none() {
            errors.push("spec.url", format!("{:?} is not http(s)://HOST[:PORT] without a path", self.url));
        }
        if let Some(credentials) = &self.credentials
            && credentials.username.is_empty()
        {
            errors.push("spec.credentials.username", "must not be empty");
        }
    }
}

/// Which way a rule copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the project to the external registry.
    Push,
    /// From the external registry into the project.
    Pull,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicationRuleSpec {
    /// The `ExternalRegistry` on the other side.
    pub registry: String,
    pub direction: Direction,
    /// Repository paths inside the project (`web`, `base/*`). A pull rule lists the remote
    /// catalog for patterns; names without `*`, `?` or `[` are fetched directly (registries
    /// such as Docker Hub have no catalog).
    pub repositories: Vec<String>,
    /// Tags to copy (`v*`); every tag when left out.
    #[serde(default = "every_tag")]
    pub tags: Vec<String>,
    /// The namespace of the repositories on the other side; the project's name when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_namespace: Option<String>,
    /// A cron schedule (five fields, UTC: `*/30 * * * *`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Push rules: copy each pushed image that matches, right after its push.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_push: bool,
    /// A disabled rule runs only when asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

fn every_tag() -> Vec<String> {
    vec!["**".to_string()]
}

impl ReplicationRuleSpec {
    /// The name on the other side of the local repository at `path` in `project`.
    pub fn remote_name(&self, project: &str, path: &str) -> String {
        match self.remote_namespace.as_deref().unwrap_or(project) {
            "" => path.to_string(),
            namespace => format!("{}/{path}", namespace.trim_end_matches('/')),
        }
    }

    /// The path inside the project of a remote repository name, when it is in the rule's
    /// namespace.
    pub fn local_path<'n>(&self, project: &str, remote: &'n str) -> Option<&'n str> {
        match self.remote_namespace.as_deref().unwrap_or(project) {
            "" => Some(remote),
            namespace => remote.strip_prefix(namespace.trim_end_matches('/'))?.strip_prefix('/'),
        }
    }

    pub fn selects_repository(&self, path: &str) -> bool {
        matches_any(&self.repositories, path)
    }

    pub fn selects_tag(&self, tag: &str) -> bool {
        matches_any(&self.tags, tag)
    }

    /// The repository patterns that name one repository each (no glob characters).
    pub fn literal_repositories(&self) -> Option<Vec<&str>> {
        self.repositories
            .iter()
            .map(|pattern| (!pattern.contains(['*', '?', '[', '{'])).then_some(pattern.as_str()))
            .collect()
    }
}

impl KindSpec for ReplicationRuleSpec {
    const KIND: &'static str = "ReplicationRule";
    const PLURAL: &'static str = "replicationrules";
    const SCOPE: Scope = Scope::Project;
    const CATEGORY: Category = Category::ProjectConfig;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if self.repositories.is_empty() {
            errors.push("spec.repositories", "name at least one repository (a pattern: `**` for all)");
        }
        check_patterns(&self.repositories, "spec.repositories", errors);
        check_patterns(&self.tags, "spec.tags", errors);
        if let Some(schedule) = &self.schedule
            && let Err(problem) = crate::schedule::parse(schedule)
        {
            errors.push("spec.schedule", problem);
        }
        if self.on_push && self.direction == Direction::Pull {
            errors.push("spec.onPush", "only push rules run on push: a pull rule runs on its schedule or by hand");
        }
    }

    fn references(&self, meta: &ObjectMeta) -> Vec<Reference> {
        let mut references = vec![Reference::new("spec.registry", "ExternalRegistry", None, &self.registry)];
        if let Some(project) = &meta.project {
            references.push(Reference::new("metadata.project", "Project", None, project));
        }
        references
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_map_between_the_project_and_the_other_side() {
        let rule: ReplicationRuleSpec =
            serde_json::from_value(json!({"registry": "hub", "direction": "push", "repositories": ["web", "base/*"]}))
                .unwrap();
        assert_eq!(rule.remote_name("shop", "base/os"), "shop/base/os");
        assert_eq!(rule.local_path("shop", "shop/base/os"), Some("base/os"));
        assert_eq!(rule.local_path("shop", "other/web"), None);
        assert!(rule.selects_repository("base/os") && !rule.selects_repository("api"));
        assert!(rule.selects_tag("anything"));
        assert_eq!(rule.literal_repositories(), None, "base/* is a pattern");
        let flat = ReplicationRuleSpec { remote_namespace: Some(String::new()), ..rule };
        assert_eq!(flat.remote_name("shop", "web"), "web");
        assert_eq!(flat.local_path("shop", "web"), Some("web"));
    }

    #[test]
    fn bad_rules_and_registries_are_refused_at_their_fields() {
        let rule: ReplicationRuleSpec = serde_json::from_value(json!({"registry": "hub", "direction": "pull",
            "repositories": [], "tags": ["["], "schedule": "every day", "onPush": true}))
        .unwrap();
        let mut errors = ValidationErrors::default();
        rule.validate(&ObjectMeta::default(), &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.repositories", "spec.tags[0]", "spec.schedule", "spec.onPush"]);
        let registry: ExternalRegistrySpec =
            serde_json::from_value(json!({"url": "ftp://x/y", "credentials": {"username": "", "password": "p"}}))
                .unwrap();
        let mut errors = ValidationErrors::default();
        registry.validate(&ObjectMeta::default(), &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.url", "spec.credentials.username"]);
        let ok: ExternalRegistrySpec = serde_json::from_value(json!({"url": "http://127.0.0.1:5000/"})).unwrap();
        assert_eq!(ok.host(), Some(("127.0.0.1:5000".into(), true)));
    }
}
