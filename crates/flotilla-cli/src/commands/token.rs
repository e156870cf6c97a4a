//! `token create`, `token list`, `token revoke`: the caller's API tokens (for automation;
//! `flotilla login` makes the CLI's own).

use serde_json::Value;

use crate::error::CliError;
use crate::output::{ReportFormat, Table, emit, note, short_time, structured};
use crate::session::Session;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token; it is printed once, on stdout alone
    Create {
        /// A name to recognise the token by (1 to 64 characters)
        name: String,
        /// Lifetime in days [default: the server's]
        #[arg(long, value_name = "DAYS")]
        ttl_days: Option<u32>,
        /// Output format (json/yaml include the token and its record)
        #[arg(short, long, value_enum, default_value_t)]
        output: ReportFormat,
    },
    /// List your API tokens (never their secrets)
    List {
        /// Output format
        #[arg(short, long, value_enum, default_value_t)]
        output: ReportFormat,
    },
    /// Revoke one of your API tokens by id
    Revoke {
        /// The token's id (see `flotilla token list`)
        id: String,
    },
}

/// The table of `token list`; `in_use` is the id of the token this CLI context uses.
pub fn tokens_table(tokens: &Value, in_use: Option<&str>, now: jiff::Timestamp) -> Table {
    let mut table = Table::new(["ID", "NAME", "CREATED", "EXPIRES", "STATUS"]);
    for token in tokens.get("items").and_then(Value::as_array).into_iter().flatten() {
        let field = |name: &str| token.get(name).and_then(Value::as_str).unwrap_or_default();
        let expired = field("expiresAt").parse::<jiff::Timestamp>().is_ok_and(|t| t <= now);
        let mut status = if token.get("revokedAt").and_then(Value::as_str).is_some() {
            "revoked".to_string()
        } else if expired {
            "expired".to_string()
        } else {
            "active".to_string()
        };
        if in_use == Some(field("id")) {
            status.push_str(" (this CLI)");
        }
        table.row([
            field("id").to_string(),
            field("name").to_string(),
            short_time(field("createdAt")),
            short_time(field("expiresAt")),
            status,
        ]);
    }
    table
}

pub async fn run(session: &Session, command: TokenCommand) -> Result<(), CliError> {
    let (client, target) = session.client()?;
    match command {
        TokenCommand::Create { name, ttl_days, output } => {
            let created = client.create_token(&name, ttl_days).await?;
            if let Some(text) = structured(output, &created)? {
                note("warning: the token is shown only this once: store it now");
                return emit(&text);
            }
            let token = created
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| CliError::Protocol("no token in the answer".into()))?;
            let field = |name: &str| created.get(name).and_then(Value::as_str).unwrap_or("?").to_string();
            note(&format!(
                "Created token {name:?} (id {}, expires {}).\nwarning: it is shown only this once, below: store it now (e.g. in FLOTILLA_TOKEN).",
                field("id"),
                short_time(&field("expiresAt"))
            ));
            emit(&format!("{token}\n"))
        }
        TokenCommand::List { output } => {
            let tokens = client.list_tokens().await?;
            if let Some(text) = structured(output, &tokens)? {
                return emit(&text);
            }
            let in_use =
                if target.explicit_token { None } else { target.context.as_ref().and_then(|c| c.token_id.as_deref()) };
            let table = tokens_table(&tokens, in_use, jiff::Timestamp::now());
            if table.is_empty() {
                note("No API tokens.");
                return Ok(());
            }
            emit(&table.render())
        }
        TokenCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            let own = !target.explicit_token
                && target.context.as_ref().and_then(|c| c.token_id.as_deref()) == Some(id.as_str());
            emit(&format!("Token {id} revoked\n"))?;
            if own {
                note("note: that was this CLI context's token: run `flotilla login` to log in again");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn token_statuses() {
        let tokens = json!({"items": [
            {"id": "t1", "name": "cli@host", "createdAt": "2026-01-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z"},
            {"id": "t2", "name": "ci", "createdAt": "2026-01-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "revokedAt": "2026-01-02T00:00:00Z"},
            {"id": "t3", "name": "old", "createdAt": "2020-01-01T00:00:00Z", "expiresAt": "2020-02-01T00:00:00Z"},
        ]});
        let text = tokens_table(&tokens, Some("t1"), jiff::Timestamp::now()).render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID   NAME       CREATED"), "{text}");
        assert!(lines[1].ends_with("active (this CLI)"), "{text}");
        assert!(lines[2].ends_with("revoked"), "{text}");
        assert!(lines[3].ends_with("expired"), "{text}");
    }
}
