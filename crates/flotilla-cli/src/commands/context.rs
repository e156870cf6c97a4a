//! `context list` and `context use`: the contexts of the CLI config file.

use crate::config::CliConfig;
use crate::error::CliError;
use crate::output::{ReportFormat, Table, emit, short_time};
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// List the contexts; the current one is marked with *
    List {
        /// Output format (json/yaml never show tokens)
        #[arg(short, long, value_enum, default_value_t)]
        output: ReportFormat,
    },
    /// Make a context the current one
    Use {
        /// Name of the context
        name: String,
    },
}

/// The table of `context list`.
pub fn context_table(config: &CliConfig, now: jiff::Timestamp) -> Table {
    let mut table = Table::new(["CURRENT", "NAME", "SERVER", "USER", "TOKEN"]);
    for context in &config.contexts {
        let current = if config.current_context.as_deref() == Some(&context.name) { "*" } else { "" };
        let token = match (&context.token, &context.expires_at) {
            (None, _) => "logged out".to_string(),
            _ if context.is_expired(now) => "expired".to_string(),
            (Some(_), Some(expires)) => format!("valid until {}", short_time(expires)),
            (Some(_), None) => "valid".to_string(),
        };
        table.row([current, &context.name, &context.server, &context.user, &token]);
    }
    table
}

pub fn run(session: &Session, command: ContextCommand) -> Result<(), CliError> {
    let mut config = session.load_config()?;
    match command {
        ContextCommand::List { output } => {
            let mut shown = config.clone();
            for context in &mut shown.contexts {
                context.token = context.token.as_ref().map(|_| "(hidden)".to_string());
            }
            if let Some(text) = crate::output::structured(output, &shown)? {
                return emit(&text);
            }
            if config.contexts.is_empty() {
                crate::output::note("No contexts yet: run `flotilla login [SERVER]`.");
                return Ok(());
            }
            emit(&context_table(&config, jiff::Timestamp::now()).render())
        }
        ContextCommand::Use { name } => {
            config.use_context(&name)?;
            session.save_config(&config)?;
            emit(&format!("Switched to context {name}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Context;

    #[test]
    fn the_current_context_is_starred() {
        let context = |name: &str, token: Option<&str>, expires: Option<&str>| Context {
            name: name.into(),
            server: "http://127.0.0.1:8080".into(),
            user: "alice".into(),
            token: token.map(Into::into),
            token_id: None,
            expires_at: expires.map(Into::into),
        };
        let config = CliConfig {
            current_context: Some("b".into()),
            contexts: vec![
                context("a", None, None),
                context("b", Some("t"), Some("2099-01-01T00:00:00.25Z")),
                context("c", Some("t"), Some("2001-01-01T00:00:00Z")),
            ],
        };
        assert_eq!(
            context_table(&config, jiff::Timestamp::now()).render(),
            "CURRENT   NAME   SERVER                  USER    TOKEN\n\
             \x20         a      http://127.0.0.1:8080   alice   logged out\n\
             *         b      http://127.0.0.1:8080   alice   valid until 2099-01-01T00:00:00Z\n\
             \x20         c      http://127.0.0.1:8080   alice   expired\n"
        );
    }
}
