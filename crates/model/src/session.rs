//! The normalized session every source produces, whatever the vendor.

use chrono::{DateTime, SecondsFormat, Utc};

/// A session as a source normalized it, with the vendor's raw JSON kept beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub vendor: String,
    pub external_id: String,
    pub session_code: Option<String>,
    pub technician: Option<String>,
    pub technician_id: Option<String>,
    pub device: Option<String>,
    pub device_id: Option<String>,
    pub group_name: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub description: Option<String>,
    pub custom_api: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub raw_json: String,
}

impl NewSession {
    pub fn duration_s(&self) -> Option<i64> {
        self.ended_at.map(|e| (e - self.started_at).num_seconds().max(0))
    }
}

/// Session codes are compared without case, dashes or spaces (`S119 457-589` = `s119457589`).
pub fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_lowercase).collect()
}

/// The one timestamp format of the store: RFC 3339, UTC, milliseconds, `Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_normalize_case_dashes_spaces() {
        assert_eq!(normalize_code("s119-457-589"), "s119457589");
        assert_eq!(normalize_code("S31 328 542"), "s31328542");
        assert_eq!(normalize_code(" s31-328 542 "), "s31328542");
    }

    #[test]
    fn timestamps_are_fixed_width_utc() {
        let t = parse_ts("2024-04-16T22:45:02+02:00").unwrap();
        assert_eq!(ts(t), "2024-04-16T20:45:02.000Z");
    }
}
