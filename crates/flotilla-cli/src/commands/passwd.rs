//! `passwd [USER]`: change one's own password (proving the current one), or, as a platform
//! admin, set another user's.

use serde_json::Value;

use crate::error::CliError;
use crate::output::emit;
use crate::prompt;
use crate::session::Session;

#[derive(Debug, clap::Args)]
pub struct PasswdArgs {
    /// The user whose password to set [default: yourself]; another user's needs admin
    pub user: Option<String>,
    /// Read the passwords from standard input: the current and the new one on two lines for
    /// your own password, only the new one for another user's
    #[arg(long)]
    pub password_stdin: bool,
}

pub async fn run(session: &Session, args: PasswdArgs) -> Result<(), CliError> {
    let (client, _) = session.client()?;
    let me = client.whoami().await?;
    let me = me.get("user").and_then(Value::as_str).unwrap_or_default().to_string();
    let user = args.user.unwrap_or_else(|| me.clone());
    let own = user == me;
    let (current, new) = match (own, args.password_stdin) {
        (true, true) => {
            let mut lines = prompt::stdin_lines(2, "the current and the new password")?;
            let new = lines.pop().unwrap_or_default();
            (lines.pop(), new)
        }
        (true, false) => {
            let current = prompt::password(&format!("Current password of {user}: "))?;
            (Some(current), prompt::new_password("New password: ")?)
        }
        (false, true) => (None, prompt::stdin_lines(1, "the new password")?.remove(0)),
        (false, false) => (None, prompt::new_password(&format!("New password for {user}: "))?),
    };
    if new.is_empty() {
        return Err(CliError::usage("the new password is empty; nothing was changed"));
    }
    client.set_password(&user, current.as_deref(), &new).await?;
    emit(&format!("Password of {user} changed\n"))
}
