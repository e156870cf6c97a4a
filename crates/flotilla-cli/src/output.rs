//! Output formats (`-o table|json|yaml|name`), plain-text tables, ages like kubectl's, and
//! writing to stdout without panicking on a closed pipe (`flotilla get ws | head -1`).

use std::io::Write as _;

use serde::Serialize;

use crate::error::CliError;

/// `-o` of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// The objects as the API returns them, as JSON.
    Json,
    /// The objects as the API returns them, as YAML.
    Yaml,
    /// `kind/name`, one per line.
    Name,
}

/// `-o` of the other commands that print records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// As the API returns it, as JSON.
    Json,
    /// As the API returns it, as YAML.
    Yaml,
}

/// A table of left-aligned, padded columns (three spaces apart, no trailing blanks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Self { headers: headers.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Adds a row; missing cells are blank, and line breaks in cells become spaces.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let cells = cells.into_iter().map(|c| c.into().replace(['\n', '\r', '\t'], " ")).collect();
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, ending with a newline.
    pub fn render(&self) -> String {
        let columns = self.headers.len().max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (index, cell) in line.iter().enumerate() {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = line.get(index).map(String::as_str).unwrap_or("");
                text.push_str(cell);
                if index + 1 < columns {
                    text.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 3));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// An age like kubectl's: `5s`, `3m`, `2h`, `4d`, `3y`.
pub fn format_age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 2 * 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

/// The age of an RFC 3339 time at `now`; `<unknown>` when absent or unreadable.
pub fn age_since(time: Option<&str>, now: jiff::Timestamp) -> String {
    match time.and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
        Some(then) => format_age(now.as_second() - then.as_second()),
        None => "<unknown>".to_string(),
    }
}

/// An RFC 3339 time shortened to whole seconds (`2026-11-24T10:00:00Z`); other text as is.
pub fn short_time(time: &str) -> String {
    match time.parse::<jiff::Timestamp>() {
        Ok(t) => {
            jiff::Timestamp::from_second(t.as_second()).map(|t| t.to_string()).unwrap_or_else(|_| time.to_string())
        }
        Err(_) => time.to_string(),
    }
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| CliError::Io(format!("cannot print JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// YAML that YAML 1.1 readers read the same way too: strings such as `2026-12-06`, `yes` or
/// `0755` are quoted, so they stay strings (a YAML 1.2 writer leaves them bare).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, CliError> {
    serde_saphyr::to_string(value).map_err(|e| CliError::Io(format!("cannot print YAML: {e}")))
}

/// JSON or YAML of a value; `None` for table-like formats.
pub fn structured<T: Serialize>(format: ReportFormat, value: &T) -> Result<Option<String>, CliError> {
    match format {
        ReportFormat::Table => Ok(None),
        ReportFormat::Json => to_json(value).map(Some),
        ReportFormat::Yaml => to_yaml(value).map(Some),
    }
}

/// Writes to stdout; a closed pipe ends the output quietly.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(CliError::Io(format!("cannot write to standard output: {error}"))),
    }
}

/// Writes one line to stderr (notes, hints, per-document errors).
pub fn note(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quotes_what_yaml_1_1_would_read_as_another_type() {
        let value = serde_json::json!({"date": "2026-12-06", "flag": "yes", "mode": "0755", "plain": "web", "n": 3});
        let yaml = to_yaml(&value).unwrap();
        for quoted in ["2026-12-06", "yes", "0755"] {
            assert!(
                yaml.contains(&format!("\"{quoted}\"")) || yaml.contains(&format!("'{quoted}'")),
                "{quoted} is quoted: {yaml}"
            );
        }
        assert!(yaml.contains("plain: web"), "what needs no quotes has none: {yaml}");
        let back: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, value, "it reads back the same");
    }

    #[test]
    fn tables_are_left_aligned_and_padded() {
        let mut table = Table::new(["NAME", "DISPLAY NAME", "AGE"]);
        table.row(["retail", "Retail banking", "5m"]);
        table.row(["hr", "", "12d"]);
        table.row(["a-much-longer-name", "multi\nline"]);
        assert_eq!(
            table.render(),
            "NAME                 DISPLAY NAME     AGE\n\
             retail               Retail banking   5m\n\
             hr                                    12d\n\
             a-much-longer-name   multi line\n"
        );
        assert!(!table.is_empty());
        assert_eq!(Table::new(["ONLY"]).render(), "ONLY\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(-3), "0s", "clock skew is not negative");
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(60), "1m");
        assert_eq!(format_age(3 * 60 + 59), "3m");
        assert_eq!(format_age(2 * 3600 + 10), "2h");
        assert_eq!(format_age(4 * 86_400 + 3600), "4d");
        assert_eq!(format_age(400 * 86_400), "400d");
        assert_eq!(format_age(3 * 365 * 86_400), "3y");
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        assert_eq!(age_since(Some("2026-01-01T22:00:01.123456Z"), now), "1h");
        assert_eq!(age_since(Some("garbage"), now), "<unknown>");
        assert_eq!(age_since(None, now), "<unknown>");
    }

    #[test]
    fn times_and_truncation() {
        assert_eq!(short_time("2026-11-24T10:00:00.123456Z"), "2026-11-24T10:00:00Z");
        assert_eq!(short_time("yesterday"), "yesterday");
        assert_eq!(truncate("abcdef", 10), "abcdef");
        assert_eq!(truncate("abcdefghijkl", 6), "abcde…");
    }
}
