//! What the polling sources share on the wire and in their cursors: one date parser for
//! vendor records, and one cursor shape (a high watermark and the walk in progress), each
//! vendor adding only where its walk stands.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Rejected;
use crate::session::{ts, NewSession};

/// A record's date: `null` or blank is none; real payloads use `YYYY-MM-DDTHH:MM:SSZ`, parsed
/// as RFC 3339 ourselves, as UTC. The error names the field, for the quarantine reason.
pub fn parse_date(v: &Value, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| format!("{field}: not an ISO 8601 date: {:?}", crate::http::short_body(s))),
        other => Err(format!("{field}: expected a date string, got {}", type_name(other))),
    }
}

/// A record's field as text: a non-blank string, or a number written out.
pub fn text(rec: &Value, key: &str) -> Option<String> {
    match rec.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON value's type, as a quarantine reason names it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where a poll stands. A walk in progress is resumed after a restart from its position
/// `P`; a finished walk leaves only the high watermark. Stored as JSON in `source_cursors`:
/// the position's fields sit beside `id` and `from`, as they always have.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(bound(serialize = "P: Serialize", deserialize = "P: Deserialize<'de>"))]
pub struct Cursor<P> {
    /// Latest start time seen.
    pub high_watermark: Option<String>,
    pub walk: Option<Walk<P>>,
}

// By hand: a derived `Default` would ask `P: Default`, which no position needs.
impl<P> Default for Cursor<P> {
    fn default() -> Self {
        Cursor { high_watermark: None, walk: None }
    }
}

impl<P: serde::de::DeserializeOwned + Clone + std::fmt::Debug> Cursor<P> {
    /// The saved cursor (`None` on the first poll); an unreadable one starts afresh.
    pub fn from_saved(saved: Option<&str>) -> Self {
        saved.and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default()
    }

    /// The interrupted walk to resume, if there is one.
    pub fn resume(&self, source: &str) -> Option<Walk<P>> {
        let w = self.walk.clone()?;
        tracing::info!(source, walk = %w.id, at = ?w.at, "resuming interrupted walk");
        Some(w)
    }

    /// Raise the high watermark to the latest start among a page's sessions.
    pub fn observe(&mut self, records: &[Result<NewSession, Rejected>]) {
        for s in records.iter().flatten() {
            let st = ts(s.started_at);
            if self.high_watermark.as_deref().is_none_or(|h| st.as_str() > h) {
                self.high_watermark = Some(st);
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Walk<P> {
    pub id: String,
    /// Where the walk's window starts.
    pub from: String,
    /// The vendor's own part: how far the walk got.
    #[serde(flatten)]
    pub at: P,
}

impl<P> Walk<P> {
    /// A new walk, with a fresh id, over the window starting at `from`.
    pub fn start(from: String, at: P) -> Walk<P> {
        Walk { id: uuid::Uuid::new_v4().simple().to_string(), from, at }
    }
}

/// `walk.offset_id`, `walk.page`: the position's fields read as the walk's own.
impl<P> std::ops::Deref for Walk<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.at
    }
}

impl<P> std::ops::DerefMut for Walk<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct Paged {
        to: String,
        page: u64,
    }

    #[test]
    fn cursor_json_keeps_the_stored_shape() {
        let text = r#"{"high_watermark":"2025-01-01T00:00:00Z","walk":{"id":"w","from":"a","to":"b","page":3}}"#;
        let c: Cursor<Paged> = serde_json::from_str(text).unwrap();
        assert_eq!(c.walk.as_ref().map(|w| w.page), Some(3));
        assert_eq!(serde_json::to_string(&c).unwrap(), text);
        let empty: Cursor<Paged> = serde_json::from_str(r#"{"high_watermark":null,"walk":null}"#).unwrap();
        assert_eq!(empty, Cursor::default());
    }

    #[test]
    fn dates_name_the_field() {
        assert_eq!(parse_date(&json!(null), "d"), Ok(None));
        assert_eq!(parse_date(&json!(" "), "d"), Ok(None));
        assert!(parse_date(&json!("2025-01-01T00:00:00Z"), "d").unwrap().is_some());
        assert!(parse_date(&json!("yesterday"), "d").unwrap_err().starts_with("d: not an ISO 8601 date"));
        assert_eq!(parse_date(&json!(5), "d").unwrap_err(), "d: expected a date string, got a number");
    }
}
