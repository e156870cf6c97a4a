//! Which server and which token a command uses: `--server`/`--token`/`--context` (or their
//! `FLOTILLA_*` variables), then the CLI config's contexts, then the default server.
//!
//! A context's token is only ever sent to that context's server: `--server URL` picks the
//! context logged in to URL (the current one first), never another server's token.

use std::path::PathBuf;

use flotilla_client::Client;

use crate::GlobalArgs;
use crate::config::{self, CliConfig, Context};
use crate::error::CliError;

/// The server used when nothing else names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// `127.0.0.1:8080` → `http://127.0.0.1:8080`; trailing slashes dropped.
pub fn normalize_server(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.contains("://") { server.to_string() } else { format!("http://{server}") }
}

/// `host:port` of a server URL (the scheme's default port when none is given).
pub fn host_port(server: &str) -> String {
    let (scheme, rest) = server.split_once("://").unwrap_or(("http", server));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map(|(_, host)| host).unwrap_or(authority);
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_string()
    } else {
        let port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
        format!("{authority}:{port}")
    }
}

/// The server, token and context a command talks with.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
    /// The context in effect, if any (its token is `token` unless `--token` was given).
    pub context: Option<Context>,
    /// Whether `token` came from `--token`/`FLOTILLA_TOKEN`.
    pub explicit_token: bool,
}

/// Works out the [`Target`] from the global options and the config.
pub fn resolve_target(global: &GlobalArgs, config: &CliConfig) -> Result<Target, CliError> {
    let server = global.server.as_deref().map(normalize_server);
    let context = match (&global.context, &server) {
        (Some(name), _) => {
            let context = config.find(name).ok_or_else(|| config.unknown_context(name))?;
            if let Some(server) = &server
                && normalize_server(&context.server) != *server
            {
                return Err(CliError::usage(format!(
                    "context {name:?} is for {}, not {server}: drop --server or --context",
                    context.server
                )));
            }
            Some(context.clone())
        }
        (None, Some(server)) => config
            .current()
            .filter(|c| normalize_server(&c.server) == *server)
            .or_else(|| config.contexts.iter().find(|c| normalize_server(&c.server) == *server))
            .cloned(),
        (None, None) => config.current().cloned(),
    };
    let server = server
        .or_else(|| context.as_ref().map(|c| normalize_server(&c.server)))
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let explicit_token = global.token.as_deref().is_some_and(|t| !t.is_empty());
    let token = if explicit_token { global.token.clone() } else { context.as_ref().and_then(|c| c.token.clone()) };
    Ok(Target { server, token, context, explicit_token })
}

/// What every command gets: the global options and where the config file is.
#[derive(Debug, Clone)]
pub struct Session {
    pub global: GlobalArgs,
    pub config_path: PathBuf,
}

impl Session {
    pub fn new(global: GlobalArgs, config_path: PathBuf) -> Self {
        Self { global, config_path }
    }

    pub fn load_config(&self) -> Result<CliConfig, CliError> {
        config::load(&self.config_path)
    }

    pub fn save_config(&self, config: &CliConfig) -> Result<(), CliError> {
        config::save(&self.config_path, config)
    }

    pub fn target(&self) -> Result<Target, CliError> {
        resolve_target(&self.global, &self.load_config()?)
    }

    /// A client without credentials (for `login`).
    pub fn anonymous_client(server: &str) -> Result<Client, CliError> {
        Ok(Client::new(server, None)?)
    }

    /// An authenticated client and its target; fails early when there is no token or the
    /// saved one has expired.
    pub fn client(&self) -> Result<(Client, Target), CliError> {
        let target = self.target()?;
        let Some(token) = target.token.clone() else {
            let detail = match &target.context {
                Some(context) => format!(" (context {:?} has no token; it was logged out)", context.name),
                None => format!(" to {}", target.server),
            };
            return Err(CliError::not_logged_in(detail));
        };
        if !target.explicit_token && target.context.as_ref().is_some_and(|c| c.is_expired(jiff::Timestamp::now())) {
            return Err(CliError::Expired);
        }
        Ok((Client::new(&target.server, Some(token))?, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(name: &str, server: &str, token: Option<&str>) -> Context {
        Context {
            name: name.into(),
            server: server.into(),
            user: "u".into(),
            token: token.map(Into::into),
            ..Context::default()
        }
    }

    fn config() -> CliConfig {
        CliConfig {
            current_context: Some("local".into()),
            contexts: vec![
                context("local", "http://127.0.0.1:8080", Some("flt_local")),
                context("prod", "https://flotilla.example.com", Some("flt_prod")),
                context("gone", "http://10.0.0.9:8080", None),
            ],
        }
    }

    fn global(server: Option<&str>, context: Option<&str>, token: Option<&str>) -> GlobalArgs {
        GlobalArgs { server: server.map(Into::into), context: context.map(Into::into), token: token.map(Into::into) }
    }

    #[test]
    fn servers_and_host_ports() {
        assert_eq!(normalize_server("127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(normalize_server("https://x.example.com/"), "https://x.example.com");
        assert_eq!(host_port("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(host_port("https://x.example.com/base"), "x.example.com:443");
        assert_eq!(host_port("http://[::1]:9000"), "[::1]:9000");
        assert_eq!(host_port("http://[::1]"), "[::1]:80");
    }

    #[test]
    fn the_current_context_is_the_default() {
        let target = resolve_target(&global(None, None, None), &config()).unwrap();
        assert_eq!(target.server, "http://127.0.0.1:8080");
        assert_eq!(target.token.as_deref(), Some("flt_local"));
        let empty = resolve_target(&global(None, None, None), &CliConfig::default()).unwrap();
        assert_eq!(empty.server, DEFAULT_SERVER);
        assert!(empty.token.is_none() && empty.context.is_none());
    }

    #[test]
    fn tokens_only_go_to_their_own_server() {
        let target = resolve_target(&global(Some("https://flotilla.example.com/"), None, None), &config()).unwrap();
        assert_eq!(target.token.as_deref(), Some("flt_prod"));
        let other = resolve_target(&global(Some("http://192.0.2.1:8080"), None, None), &config()).unwrap();
        assert_eq!(other.server, "http://192.0.2.1:8080");
        assert!(other.token.is_none(), "no other server's token is sent");
        let explicit =
            resolve_target(&global(Some("http://192.0.2.1:8080"), None, Some("flt_given")), &config()).unwrap();
        assert_eq!(explicit.token.as_deref(), Some("flt_given"));
        assert!(explicit.explicit_token);
        let mismatch =
            resolve_target(&global(Some("http://192.0.2.1:8080"), Some("prod"), None), &config()).unwrap_err();
        assert_eq!(mismatch.exit_code(), 2);
    }

    #[test]
    fn contexts_by_name() {
        let target = resolve_target(&global(None, Some("prod"), None), &config()).unwrap();
        assert_eq!(target.server, "https://flotilla.example.com");
        let unknown = resolve_target(&global(None, Some("nope"), None), &config()).unwrap_err();
        assert!(unknown.to_string().contains("local, prod, gone"), "{unknown}");
        let session = Session::new(global(None, Some("gone"), None), PathBuf::from("/nonexistent/config.yaml"));
        // The config file does not exist, so the context is unknown there; check the message
        // of a logged-out context through resolve_target instead.
        assert!(session.client().is_err());
        let logged_out = resolve_target(&global(None, Some("gone"), None), &config()).unwrap();
        assert!(logged_out.token.is_none());
    }
}
