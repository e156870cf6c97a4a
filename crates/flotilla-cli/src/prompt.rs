//! Reading secrets and answers: lines from standard input (`--password-stdin`), no-echo
//! password prompts on the terminal, and plain prompts.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::CliError;

/// Reads `count` lines from `input`, without their line endings (other whitespace is kept:
/// it may be part of a password).
pub fn read_lines(input: &mut impl BufRead, count: usize, what: &str) -> Result<Vec<String>, CliError> {
    let mut lines = Vec::with_capacity(count);
    for _ in 0..count {
        let mut line = String::new();
        let read = input.read_line(&mut line).map_err(|e| CliError::Io(format!("cannot read standard input: {e}")))?;
        if read == 0 {
            return Err(CliError::usage(format!(
                "expected {what} on standard input ({count} line(s)), got {} line(s)",
                lines.len()
            )));
        }
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        lines.push(trimmed.to_string());
    }
    Ok(lines)
}

/// Reads `count` lines from the process's standard input.
pub fn stdin_lines(count: usize, what: &str) -> Result<Vec<String>, CliError> {
    read_lines(&mut std::io::stdin().lock(), count, what)
}

/// Asks for a password on the terminal without echo.
pub fn password(prompt: &str) -> Result<String, CliError> {
    rpassword::prompt_password(prompt).map_err(|e| {
        CliError::usage(format!(
            "cannot prompt for a password ({e}): pass it with --password-stdin or FLOTILLA_PASSWORD"
        ))
    })
}

/// Asks for a new password twice on the terminal.
pub fn new_password(prompt: &str) -> Result<String, CliError> {
    let first = password(prompt)?;
    let second = password("Repeat the new password: ")?;
    if first != second {
        return Err(CliError::usage("the two new passwords differ; nothing was changed"));
    }
    Ok(first)
}

/// Asks for a line on the terminal (`Username [alice]: `); `None` when stdin is not a terminal.
pub fn line(prompt: &str, default: Option<&str>) -> Result<Option<String>, CliError> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let mut stderr = std::io::stderr();
    let shown = match default {
        Some(default) => format!("{prompt} [{default}]: "),
        None => format!("{prompt}: "),
    };
    let _ = stderr.write_all(shown.as_bytes());
    let _ = stderr.flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| CliError::Io(format!("cannot read the answer: {e}")))?;
    let answer = answer.trim();
    Ok(if answer.is_empty() { default.map(str::to_string) } else { Some(answer.to_string()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_spaces_and_drop_line_endings() {
        let mut input = std::io::Cursor::new("old pass \r\nnew-pass\nextra\n");
        assert_eq!(
            read_lines(&mut input, 2, "passwords").unwrap(),
            vec!["old pass ".to_string(), "new-pass".to_string()]
        );
        let mut short = std::io::Cursor::new("only-one");
        let error = read_lines(&mut short, 2, "the current and the new password").unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("got 1 line(s)"), "{error}");
    }
}
