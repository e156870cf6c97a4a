//! `login`, `logout` and `whoami`: getting an API token into a context, giving it back, and
//! asking the server who it belongs to.

use serde_json::Value;

use crate::config::Context;
use crate::error::CliError;
use crate::kinds::scope_text;
use crate::output::{ReportFormat, Table, emit, format_age, note, structured};
use crate::prompt;
use crate::session::{DEFAULT_SERVER, Session, host_port, normalize_server};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Server URL [default: --server, else the current context's, else http://127.0.0.1:8080]
    pub server: Option<String>,
    /// User name [default: asked on a terminal, else the current context's user]
    #[arg(short, long, value_name = "NAME")]
    pub username: Option<String>,
    /// Read the password from the first line of standard input
    /// (else FLOTILLA_PASSWORD, else a prompt without echo)
    #[arg(long)]
    pub password_stdin: bool,
    /// Name of the saved context [default: USER@HOST:PORT]
    #[arg(long, value_name = "NAME")]
    pub context_name: Option<String>,
    /// Lifetime of the API token in days [default: the server's]
    #[arg(long, value_name = "DAYS")]
    pub ttl_days: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Forget the token even if the server cannot be reached to revoke it
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

fn hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().trim().to_string();
    if name.is_empty() { "unknown-host".into() } else { name }
}

/// `(token expires 2026-12-24T10:00:00Z, in 30d)`.
fn expiry_text(expires_at: &str) -> String {
    match expires_at.parse::<jiff::Timestamp>() {
        Ok(expires) => {
            let seconds = expires.as_second() - jiff::Timestamp::now().as_second();
            format!(
                "token expires {}, in {}",
                jiff::Timestamp::from_second(expires.as_second()).unwrap_or(expires),
                format_age(seconds)
            )
        }
        Err(_) => format!("token expires {expires_at}"),
    }
}

pub async fn login(session: &Session, args: LoginArgs) -> Result<(), CliError> {
    let mut config = session.load_config()?;
    let current = match &session.global.context {
        Some(name) => Some(config.find(name).ok_or_else(|| config.unknown_context(name))?.clone()),
        None => config.current().cloned(),
    };
    let server = normalize_server(
        args.server
            .as_deref()
            .or(session.global.server.as_deref())
            .or(current.as_ref().map(|c| c.server.as_str()))
            .unwrap_or(DEFAULT_SERVER),
    );
    // The remembered user only counts for the same server.
    let remembered = current.as_ref().filter(|c| normalize_server(&c.server) == server).map(|c| c.user.clone());
    let username = match args.username {
        Some(name) => name,
        None => match prompt::line("Username", remembered.as_deref())? {
            Some(name) => name,
            None => remembered.ok_or_else(|| CliError::usage("no user name: pass -u/--username NAME"))?,
        },
    };
    if username.trim().is_empty() {
        return Err(CliError::usage("the user name is empty: pass -u/--username NAME"));
    }
    let password = if args.password_stdin {
        prompt::stdin_lines(1, "the password")?.remove(0)
    } else if let Some(password) = std::env::var("FLOTILLA_PASSWORD").ok().filter(|p| !p.is_empty()) {
        password
    } else {
        prompt::password(&format!("Password for {username} at {server}: "))?
    };
    let client = Session::anonymous_client(&server)?;
    let token_name = format!("cli@{}", hostname());
    let login = match client.login_token(&username, &password, &token_name, args.ttl_days).await {
        Ok(login) => login,
        Err(error) => {
            return Err(match CliError::from(error) {
                CliError::Unauthenticated(message) => CliError::LoginFailed(message),
                other => other,
            });
        }
    };
    let name = args.context_name.unwrap_or_else(|| format!("{}@{}", login.user, host_port(&server)));
    let expiry = expiry_text(&login.expires_at);
    config.upsert_current(Context {
        name: name.clone(),
        server: server.clone(),
        user: login.user.clone(),
        token: Some(login.token),
        token_id: Some(login.token_id),
        expires_at: Some(login.expires_at),
    });
    session.save_config(&config)?;
    emit(&format!("Logged in to {server} as {} ({expiry}); context {name}\n", login.user))
}

pub async fn logout(session: &Session, args: LogoutArgs) -> Result<(), CliError> {
    let target = session.target()?;
    let Some(token) = target.token.clone() else {
        return Err(CliError::not_logged_in(match &target.context {
            Some(context) => format!(" (context {:?} is logged out already)", context.name),
            None => format!(" to {}", target.server),
        }));
    };
    let client = flotilla_client::Client::new(&target.server, Some(token))?;
    let revoked = match client.logout().await.map_err(CliError::from) {
        Ok(()) => "token revoked".to_string(),
        // The token is no good any more: forgetting it is all there is to do.
        Err(CliError::Expired | CliError::Unauthenticated(_)) => "the token was no longer valid".to_string(),
        Err(error @ CliError::Unreachable { .. }) if args.force => {
            note(&format!(
                "warning: {error}\nwarning: the token was NOT revoked on the server; it stays valid until it expires"
            ));
            "token forgotten, not revoked".to_string()
        }
        Err(error) => return Err(error),
    };
    if target.explicit_token {
        return emit(&format!("Logged out of {} ({revoked})\n", target.server));
    }
    let Some(context) = &target.context else {
        return emit(&format!("Logged out of {} ({revoked})\n", target.server));
    };
    let mut config = session.load_config()?;
    if let Some(saved) = config.find_mut(&context.name) {
        saved.token = None;
        saved.token_id = None;
        saved.expires_at = None;
    }
    session.save_config(&config)?;
    emit(&format!(
        "Logged out of {} ({revoked}); context {} kept for the next `flotilla login`\n",
        target.server, context.name
    ))
}

/// The text of `whoami`: user, how, where, and a table of grants.
pub fn whoami_text(me: &Value, server: &str, context: Option<&str>) -> String {
    let user = me.get("user").and_then(Value::as_str).unwrap_or("?");
    let auth = me.get("auth").and_then(Value::as_str).unwrap_or("?");
    let mut text = format!("User:    {user}\nServer:  {server}\nAuth:    {auth}\n");
    if let Some(context) = context {
        text.push_str(&format!("Context: {context}\n"));
    }
    let grants = me.get("grants").and_then(Value::as_array).cloned().unwrap_or_default();
    if grants.is_empty() {
        text.push_str("Grants:  none (ask an admin for a RoleBinding)\n");
    } else {
        text.push_str("Grants:\n");
        let mut table = Table::new(["ROLE", "SCOPE"]);
        for grant in &grants {
            table.row([grant.get("role").and_then(Value::as_str).unwrap_or("?").to_string(), scope_text(grant)]);
        }
        for line in table.render().lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

pub async fn whoami(session: &Session, args: WhoamiArgs) -> Result<(), CliError> {
    let (client, target) = session.client()?;
    let mut me = client.whoami().await?;
    if let Some(map) = me.as_object_mut() {
        map.remove("csrfToken");
    }
    if let Some(text) = structured(args.output, &me)? {
        return emit(&text);
    }
    let context = if target.explicit_token { None } else { target.context.as_ref().map(|c| c.name.as_str()) };
    emit(&whoami_text(&me, &target.server, context))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn whoami_lists_grants_with_their_scope() {
        let me = json!({"user": "alice", "auth": "token", "grants": [
            {"role": "admin", "workspace": null, "project": null, "environments": null},
            {"role": "developer", "workspace": null, "project": "shop", "environments": ["test"]},
        ]});
        assert_eq!(
            whoami_text(&me, "http://127.0.0.1:8080", Some("alice@127.0.0.1:8080")),
            "User:    alice\nServer:  http://127.0.0.1:8080\nAuth:    token\nContext: alice@127.0.0.1:8080\nGrants:\n  ROLE        SCOPE\n  admin       platform\n  developer   project/shop (test)\n"
        );
        let nobody = whoami_text(&json!({"user": "bob", "auth": "token", "grants": []}), "http://x", None);
        assert!(nobody.ends_with("Grants:  none (ask an admin for a RoleBinding)\n"), "{nobody}");
    }

    #[test]
    fn expiry_reads_as_a_time_and_a_duration() {
        let text = expiry_text("2099-01-01T00:00:00.5Z");
        assert!(text.starts_with("token expires 2099-01-01T00:00:00Z, in "), "{text}");
        assert_eq!(expiry_text("soon"), "token expires soon");
    }
}
