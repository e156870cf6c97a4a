//! The registry's governance, decided without I/O: which repositories of a project anyone may
//! pull, which tags are immutable, what retention keeps, how much a project may store, and
//! who robot accounts are.
//!
//! A repository's name is `<project>/<path>`; rules name repositories by patterns over the
//! path inside the project (`web`, `base/*`, `**`) and tags by patterns (`v*`, `release-*`).
//! `*` and `?` stay within one path component, `**` crosses them.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::quantity::parse_bytes;
use crate::validation::ValidationErrors;

/// A project's registry settings (`spec.registry` of a Project).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySettings {
    /// Most bytes the project's repositories may hold together, each blob counted once
    /// (`20Gi`). A push that would exceed it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_quota: Option<String>,
    /// Repositories anyone may pull from without signing in (patterns over the path inside
    /// the project: `base/*`). Everything else needs a token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_repositories: Vec<String>,
    /// Tags that, once pushed, can be neither overwritten nor deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub immutable_tags: Vec<TagRule>,
    /// Which tags retention keeps; tags no rule covers are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<RetentionRule>,
    /// Makes the project a cache of another registry: a pull of an image it does not hold
    /// (or whose tag is older than `tagTtlSeconds` and has moved upstream) fetches it from
    /// there first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_cache: Option<ProxyCache>,
}

/// The registry a proxy-cache project fetches from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyCache {
    /// The `ExternalRegistry` to fetch from.
    pub registry: String,
    /// Prepended to the path inside the project to name the upstream repository
    /// (`library` for Docker Hub's official images); none when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_namespace: Option<String>,
    /// How long a cached tag is served without asking upstream whether it moved.
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl_seconds: u32,
}

fn default_tag_ttl() -> u32 {
    300
}

impl ProxyCache {
    /// The upstream repository of the path inside the project.
    pub fn upstream(&self, path: &str) -> String {
        match self.remote_namespace.as_deref().map(|n| n.trim_matches('/')) {
            Some(namespace) if !namespace.is_empty() => format!("{namespace}/{path}"),
            _ => path.to_string(),
        }
    }
}

/// Tags (by pattern) of some repositories (by pattern).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagRule {
    /// Repository paths inside the project; every repository when left out.
    #[serde(default = "everything")]
    pub repositories: Vec<String>,
    pub tags: Vec<String>,
}

/// Keeps, of the tags it covers in each repository, the `keepLast` most recently pushed and
/// those pushed within `keepNewerThanDays`; retention deletes the others. A tag is kept when
/// any rule covering it keeps it, and immutable tags are always kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionRule {
    /// Repository paths inside the project; every repository when left out.
    #[serde(default = "everything")]
    pub repositories: Vec<String>,
    /// Tags the rule covers; every tag when left out.
    #[serde(default = "everything")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_newer_than_days: Option<u32>,
}

fn everything() -> Vec<String> {
    vec!["**".to_string()]
}

/// A compiled set of patterns.
#[derive(Debug, Clone)]
pub struct Patterns(GlobSet);

impl Patterns {
    /// Compiles `patterns`; the error names the pattern that does not compile.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            set.add(glob(pattern)?);
        }
        set.build().map(Patterns).map_err(|e| e.to_string())
    }

    pub fn matches(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

fn glob(pattern: &str) -> Result<Glob, String> {
    if pattern.is_empty() {
        return Err("a pattern cannot be empty".into());
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid pattern {pattern:?}: {}", e.kind()))
}

/// Whether any of `patterns` matches `text`. A pattern that does not compile matches
/// nothing: settings are validated when they are written.
pub fn matches_any(patterns: &[String], text: &str) -> bool {
    Patterns::new(patterns).is_ok_and(|set| set.matches(text))
}

/// Pushes an error, at `path[i]`, for every pattern that does not compile.
pub fn check_patterns(patterns: &[String], path: &str, errors: &mut ValidationErrors) {
    for (index, pattern) in patterns.iter().enumerate() {
        if let Err(problem) = glob(pattern) {
            errors.push(format!("{path}[{index}]"), problem);
        }
    }
}

/// `shop/web/api` -> (`shop`, `web/api`).
pub fn split_repository(repository: &str) -> (&str, &str) {
    repository.split_once('/').unwrap_or((repository, ""))
}

/// A tag of a repository, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagAge {
    pub tag: String,
    pub pushed_micros: i64,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl RegistrySettings {
    /// Checks patterns and the quota; paths start at `path` (`spec.registry`).
    pub fn validate(&self, path: &str, errors: &mut ValidationErrors) {
        if let Some(quota) = &self.storage_quota
            && let Err(problem) = parse_bytes(quota)
        {
            errors.push(format!("{path}.storageQuota"), problem);
        }
        check_patterns(&self.public_repositories, &format!("{path}.publicRepositories"), errors);
        for (index, rule) in self.immutable_tags.iter().enumerate() {
            let rule_path = format!("{path}.immutableTags[{index}]");
            check_patterns(&rule.repositories, &format!("{rule_path}.repositories"), errors);
            check_patterns(&rule.tags, &format!("{rule_path}.tags"), errors);
        }
        for (index, rule) in self.retention.iter().enumerate() {
            let rule_path = format!("{path}.retention[{index}]");
            check_patterns(&rule.repositories, &format!("{rule_path}.repositories"), errors);
            check_patterns(&rule.tags, &format!("{rule_path}.tags"), errors);
            if rule.keep_last.is_none() && rule.keep_newer_than_days.is_none() {
                errors.push(rule_path, "a retention rule keeps something: give keepLast, keepNewerThanDays or both");
            }
        }
    }

    /// The storage quota in bytes, when one is set (and valid).
    pub fn quota_bytes(&self) -> Option<u64> {
        self.storage_quota.as_deref().and_then(|q| parse_bytes(q).ok())
    }

    /// Whether anyone may pull from the repository at `path` inside the project.
    pub fn is_public(&self, path: &str) -> bool {
        matches_any(&self.public_repositories, path)
    }

    /// Whether `tag` of the repository at `path` is immutable.
    pub fn is_immutable(&self, path: &str, tag: &str) -> bool {
        self.immutable_tags.iter().any(|rule| matches_any(&rule.repositories, path) && matches_any(&rule.tags, tag))
    }

    /// The tags of the repository at `path` that retention deletes at `now_micros`.
    pub fn expired_tags(&self, path: &str, tags: &[TagAge], now_micros: i64) -> Vec<String> {
        let rules: Vec<&RetentionRule> =
            self.retention.iter().filter(|rule| matches_any(&rule.repositories, path)).collect();
        let mut newest_first: Vec<&TagAge> = tags.iter().collect();
        newest_first.sort_by(|a, b| b.pushed_micros.cmp(&a.pushed_micros).then_with(|| a.tag.cmp(&b.tag)));
        let mut covered = vec![false; newest_first.len()];
        let mut kept = vec![false; newest_first.len()];
        for rule in rules {
            let Ok(tag_patterns) = Patterns::new(&rule.tags) else { continue };
            let mut rank = 0u32;
            for (index, tag) in newest_first.iter().enumerate() {
                if !tag_patterns.matches(&tag.tag) {
                    continue;
                }
                covered[index] = true;
                let recent = rule
                    .keep_newer_than_days
                    .is_some_and(|days| now_micros - tag.pushed_micros < i64::from(days) * MICROS_PER_DAY);
                if recent || rule.keep_last.is_some_and(|last| rank < last) {
                    kept[index] = true;
                }
                rank += 1;
            }
        }
        newest_first
            .iter()
            .enumerate()
            .filter(|(index, tag)| covered[*index] && !kept[*index] && !self.is_immutable(path, &tag.tag))
            .map(|(_, tag)| tag.tag.clone())
            .collect()
    }
}

/// The registry user name of robot `name` of `project`: `robot$<project>+<name>`. `$` is
/// in no user name, so a robot can never be mistaken for (or log in as) a user.
pub fn robot_account(project: &str, name: &str) -> String {
    format!("{ROBOT_PREFIX}{project}+{name}")
}

const ROBOT_PREFIX: &str = "robot$";

/// The project and name of a robot account name; `None` for anything else.
pub fn parse_robot_account(account: &str) -> Option<(&str, &str)> {
    let (project, name) = account.strip_prefix(ROBOT_PREFIX)?.split_once('+')?;
    (!project.is_empty() && !name.is_empty()).then_some((project, name))
}

/// Whether an account name is a robot's.
pub fn is_robot_account(account: &str) -> bool {
    account.starts_with(ROBOT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_stay_within_a_component_unless_doubled() {
        assert!(matches_any(&strings(&["base/*"]), "base/alpine"));
        assert!(!matches_any(&strings(&["base/*"]), "base/os/alpine"));
        assert!(matches_any(&strings(&["base/**"]), "base/os/alpine"));
        assert!(matches_any(&strings(&["**"]), "web"));
        assert!(matches_any(&strings(&["v*"]), "v1.2.3"));
        assert!(!matches_any(&strings(&["v*"]), "latest"));
        assert!(!matches_any(&strings(&["["]), "["), "a broken pattern matches nothing");
    }

    #[test]
    fn settings_are_validated_with_paths() {
        let settings: RegistrySettings = serde_json::from_value(serde_json::json!({
            "storageQuota": "lots",
            "publicRepositories": ["ok", "[broken"],
            "immutableTags": [{"tags": ["v*", ""]}],
            "retention": [{"tags": ["*"]}]
        }))
        .unwrap();
        let mut errors = ValidationErrors::default();
        settings.validate("spec.registry", &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.registry.storageQuota",
                "spec.registry.publicRepositories[1]",
                "spec.registry.immutableTags[0].tags[1]",
                "spec.registry.retention[0]"
            ]
        );
        assert_eq!(settings.immutable_tags[0].repositories, ["**"], "rules cover every repository by default");
    }

    #[test]
    fn public_and_immutable_follow_their_patterns() {
        let settings = RegistrySettings {
            storage_quota: Some("1Gi".into()),
            public_repositories: strings(&["base/*"]),
            immutable_tags: vec![TagRule { repositories: strings(&["web"]), tags: strings(&["v*"]) }],
            ..RegistrySettings::default()
        };
        assert_eq!(settings.quota_bytes(), Some(1 << 30));
        assert!(settings.is_public("base/alpine"));
        assert!(!settings.is_public("web"));
        assert!(settings.is_immutable("web", "v1"));
        assert!(!settings.is_immutable("web", "latest"));
        assert!(!settings.is_immutable("api", "v1"));
    }

    #[test]
    fn retention_keeps_the_newest_the_recent_and_the_immutable() {
        let day = MICROS_PER_DAY;
        let now = 100 * day;
        let tags: Vec<TagAge> = (0..6)
            .map(|i| TagAge { tag: format!("build-{i}"), pushed_micros: now - (6 - i) * 10 * day })
            .chain([TagAge { tag: "v1".into(), pushed_micros: 0 }, TagAge { tag: "latest".into(), pushed_micros: 0 }])
            .collect();
        let settings = RegistrySettings {
            immutable_tags: vec![TagRule { repositories: everything(), tags: strings(&["v*"]) }],
            retention: vec![RetentionRule {
                repositories: strings(&["web"]),
                tags: strings(&["build-*", "v*"]),
                keep_last: Some(2),
                keep_newer_than_days: Some(35),
            }],
            ..RegistrySettings::default()
        };
        // Newest first: build-5 (10 days), build-4 (20), build-3 (30), build-2 (40), …
        let mut expired = settings.expired_tags("web", &tags, now);
        expired.sort();
        assert_eq!(expired, ["build-0", "build-1", "build-2"], "latest is covered by no rule, v1 is immutable");
        assert!(settings.expired_tags("api", &tags, now).is_empty(), "no rule covers repository api");
        let last_only = RegistrySettings {
            retention: vec![RetentionRule {
                repositories: everything(),
                tags: everything(),
                keep_last: Some(1),
                keep_newer_than_days: None,
            }],
            ..RegistrySettings::default()
        };
        assert_eq!(last_only.expired_tags("web", &tags, now).len(), tags.len() - 1);
    }

    #[test]
    fn robot_accounts_are_named_apart_from_users() {
        let account = robot_account("shop", "ci");
        assert_eq!(account, "robot$shop+ci");
        assert_eq!(parse_robot_account(&account), Some(("shop", "ci")));
        assert!(is_robot_account(&account));
        assert_eq!(parse_robot_account("alice"), None);
        assert_eq!(parse_robot_account("robot$shop"), None);
        assert_eq!(split_repository("shop/web/api"), ("shop", "web/api"));
    }
}
