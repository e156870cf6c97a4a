//! Cron schedules: five fields (minute, hour, day of month, month, day of week), in UTC, as
//! crontab writes them (`*/15 * * * *`, `0 3 * * 1-5`), and `@daily`-style nicknames.

use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Parses a schedule; the error says what is wrong with it.
pub fn parse(expression: &str) -> Result<Cron, String> {
    if expression.split_whitespace().count() != 5 && !expression.trim_start().starts_with('@') {
        return Err(format!("{expression:?} is not a schedule of five fields (minute hour day month weekday)"));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| format!("{expression:?} is not a valid schedule: {e}"))
}

/// The first time after `after` that `expression` names.
pub fn next_after(expression: &str, after: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    let cron = parse(expression)?;
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp(after.as_second(), after.subsec_nanosecond() as u32)
        .ok_or_else(|| format!("{after} is out of range"))?;
    let next = cron.find_next_occurrence(&start, false).map_err(|e| format!("{expression:?}: {e}"))?;
    jiff::Timestamp::new(next.timestamp(), 0).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_have_five_fields_and_name_their_next_time() {
        let at = "2026-12-06T10:07:30Z".parse::<jiff::Timestamp>().unwrap();
        assert_eq!(next_after("*/15 * * * *", at).unwrap().to_string(), "2026-12-06T10:15:00Z");
        assert_eq!(next_after("0 3 * * *", at).unwrap().to_string(), "2026-12-07T03:00:00Z");
        assert_eq!(next_after("@hourly", at).unwrap().to_string(), "2026-12-06T11:00:00Z");
        assert!(parse("* * * * * *").is_err(), "no seconds field");
        assert!(parse("every day").is_err());
        assert!(parse("61 * * * *").is_err());
    }
}
