//! The CLI config file: named contexts (server, user, API token) and the current one.
//!
//! Where it lives: `$FLOTILLA_CONFIG` (a file path) when set, else
//! `$XDG_CONFIG_HOME/flotilla/config.yaml`, else `~/.config/flotilla/config.yaml`. It holds
//! API tokens, so it is written with mode 0600 (its directory, when created, 0700) and
//! atomically: a temp file in the same directory, synced, then renamed over the old file, so
//! a crash never leaves half a file. Every function takes the path, so tests never touch the
//! process environment.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliConfig {
    /// Name of the context used when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// One server and who is logged in to it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub user: String,
    /// The API token; absent after `flotilla logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// RFC 3339 expiry of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Context {
    /// Whether the token's expiry is known and past.
    pub fn is_expired(&self, now: jiff::Timestamp) -> bool {
        self.expires_at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()).is_some_and(|expires| expires <= now)
    }
}

impl CliConfig {
    pub fn find(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    pub fn find_mut(&mut self, name: &str) -> Option<&mut Context> {
        self.contexts.iter_mut().find(|c| c.name == name)
    }

    /// The current context, if it is set and exists.
    pub fn current(&self) -> Option<&Context> {
        self.current_context.as_deref().and_then(|name| self.find(name))
    }

    /// Adds or replaces the context of the same name and makes it current.
    pub fn upsert_current(&mut self, context: Context) {
        self.current_context = Some(context.name.clone());
        match self.find_mut(&context.name) {
            Some(existing) => *existing = context,
            None => self.contexts.push(context),
        }
    }

    /// Makes `name` the current context.
    pub fn use_context(&mut self, name: &str) -> Result<(), CliError> {
        if self.find(name).is_none() {
            return Err(self.unknown_context(name));
        }
        self.current_context = Some(name.to_string());
        Ok(())
    }

    /// The error for a context name that is not in the file, listing those that are.
    pub fn unknown_context(&self, name: &str) -> CliError {
        if self.contexts.is_empty() {
            CliError::usage(format!(
                "no context named {name:?}: there are no contexts yet; run `flotilla login [SERVER]`"
            ))
        } else {
            let known: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
            CliError::usage(format!("no context named {name:?}; known contexts: {}", known.join(", ")))
        }
    }
}

/// Where the config file is, from the values of `FLOTILLA_CONFIG`, `XDG_CONFIG_HOME` and the
/// home directory (empty values count as unset; a relative `XDG_CONFIG_HOME` is ignored, as
/// the XDG spec says).
pub fn resolve_path(
    flotilla_config: Option<OsString>,
    xdg_config_home: Option<OsString>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(file) = flotilla_config.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(file));
    }
    if let Some(dir) = xdg_config_home.map(PathBuf::from).filter(|d| d.is_absolute()) {
        return Some(dir.join("flotilla").join("config.yaml"));
    }
    home.filter(|h| !h.as_os_str().is_empty()).map(|h| h.join(".config").join("flotilla").join("config.yaml"))
}

/// The config file path of this process, from its environment.
pub fn default_path() -> Result<PathBuf, CliError> {
    resolve_path(std::env::var_os("FLOTILLA_CONFIG"), std::env::var_os("XDG_CONFIG_HOME"), std::env::home_dir())
        .ok_or_else(|| {
            CliError::usage("cannot find a place for the CLI config: set FLOTILLA_CONFIG to a file path (or HOME)")
        })
}

fn config_error(path: &Path, message: impl std::fmt::Display) -> CliError {
    CliError::Config { path: path.display().to_string(), message: message.to_string() }
}

/// Reads the config file; a missing file is an empty config.
pub fn load(path: &Path) -> Result<CliConfig, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(CliConfig::default()),
        Err(error) => return Err(config_error(path, format!("cannot read it: {error}"))),
    };
    if text.trim().is_empty() {
        return Ok(CliConfig::default());
    }
    serde_norway::from_str(&text)
        .map_err(|e| config_error(path, format!("cannot parse it: {e} (fix or delete the file)")))
}

/// Writes the config file atomically with mode 0600, creating its directory (mode 0700).
pub fn save(path: &Path, config: &CliConfig) -> Result<(), CliError> {
    let text = serde_norway::to_string(config).map_err(|e| config_error(path, e))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        create_private_dir(&dir).map_err(|e| config_error(path, format!("cannot create {}: {e}", dir.display())))?;
    }
    // NamedTempFile is created with mode 0600 on Unix and removed if anything below fails.
    let mut file = tempfile::Builder::new()
        .prefix(".config.yaml.")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| config_error(path, format!("cannot create a temp file in {}: {e}", dir.display())))?;
    set_private(file.path(), 0o600).map_err(|e| config_error(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| config_error(path, format!("cannot write: {e}")))?;
    file.as_file().sync_all().map_err(|e| config_error(path, format!("cannot sync: {e}")))?;
    file.persist(path).map_err(|e| config_error(path, format!("cannot replace it: {}", e.error)))?;
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn set_private(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_private(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(name: &str, server: &str) -> Context {
        Context {
            name: name.into(),
            server: server.into(),
            user: "alice".into(),
            token: Some(format!("flt_{name}")),
            token_id: Some(format!("id-{name}")),
            expires_at: Some("2099-01-01T00:00:00Z".into()),
        }
    }

    #[test]
    fn paths_follow_the_precedence() {
        let home = Some(PathBuf::from("/home/a"));
        assert_eq!(
            resolve_path(Some("/tmp/c.yaml".into()), Some("/x".into()), home.clone()),
            Some(PathBuf::from("/tmp/c.yaml"))
        );
        assert_eq!(
            resolve_path(Some("".into()), Some("/x".into()), home.clone()),
            Some(PathBuf::from("/x/flotilla/config.yaml"))
        );
        assert_eq!(
            resolve_path(None, Some("relative".into()), home.clone()),
            Some(PathBuf::from("/home/a/.config/flotilla/config.yaml"))
        );
        assert_eq!(resolve_path(None, None, home), Some(PathBuf::from("/home/a/.config/flotilla/config.yaml")));
        assert_eq!(resolve_path(None, None, None), None);
    }

    #[test]
    fn missing_or_empty_file_is_an_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("nope.yaml")).unwrap(), CliConfig::default());
        std::fs::write(dir.path().join("empty.yaml"), "\n").unwrap();
        assert_eq!(load(&dir.path().join("empty.yaml")).unwrap(), CliConfig::default());
        std::fs::write(dir.path().join("bad.yaml"), "contexts: 3\n").unwrap();
        let error = load(&dir.path().join("bad.yaml")).unwrap_err();
        assert!(error.to_string().contains("bad.yaml"), "{error}");
    }

    #[test]
    fn round_trip_is_private_atomic_and_switches_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("flotilla").join("config.yaml");
        let mut config = CliConfig::default();
        config.upsert_current(context("one", "http://127.0.0.1:8080"));
        config.upsert_current(context("two", "http://10.0.0.1:8080"));
        assert_eq!(config.current().unwrap().name, "two");
        save(&path, &config).unwrap();

        let loaded = load(&path).unwrap();
        assert_eq!(loaded, config);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("currentContext: two"), "{text}");
        assert!(text.contains("tokenId: id-one"), "{text}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700);
        }

        // Switching the current context and replacing one keeps the rest.
        let mut config = loaded;
        config.use_context("one").unwrap();
        let error = config.use_context("three").unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("one, two"), "{error}");
        let mut replaced = context("two", "http://10.0.0.1:8080");
        replaced.token = None;
        config.upsert_current(replaced);
        save(&path, &config).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.contexts.len(), 2);
        assert_eq!(loaded.current().unwrap().name, "two");
        assert_eq!(loaded.find("two").unwrap().token, None);
        assert_eq!(loaded.find("one").unwrap().token.as_deref(), Some("flt_one"));

        // Atomic: no temp files are left behind, and a file that was 0644 becomes 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            save(&path, &loaded).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![OsString::from("config.yaml")]);
    }

    #[test]
    fn expiry_and_debug_hide_nothing_they_should_not() {
        let mut ctx = context("one", "http://x");
        let now = jiff::Timestamp::now();
        assert!(!ctx.is_expired(now));
        ctx.expires_at = Some("2000-01-01T00:00:00Z".into());
        assert!(ctx.is_expired(now));
        ctx.expires_at = None;
        assert!(!ctx.is_expired(now));
        assert!(!format!("{ctx:?}").contains("flt_one"));
    }
}
