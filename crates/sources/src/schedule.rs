//! Cron schedules: the one crontab dialect of the config file. It sits below the config
//! (which validates `schedule` keys with it) and the daemon and health listener (which run
//! and report by it), so none of them has to import another for it.

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Standard 5-field crontab syntax, no seconds, no year.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    if expr.split_whitespace().count() != 5 && !expr.trim_start().starts_with('@') {
        return Err(format!(
            "invalid cron expression {expr:?}: expected 5 fields (minute hour day-of-month month day-of-week)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_cron_with_time_zone() {
        let c = parse_cron("30 2 * * 1-5").unwrap();
        let tz: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let start = chrono::TimeZone::with_ymd_and_hms(&tz, 2026, 11, 23, 12, 0, 0).unwrap();
        let next = c.find_next_occurrence(&start, false).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-24T02:30:00+01:00");
        assert!(parse_cron("0 */5 * * * *").is_err(), "6 fields (seconds) are not crontab");
        assert!(parse_cron("61 * * * *").is_err());
    }
}
