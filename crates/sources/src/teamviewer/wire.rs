//! TeamViewer wire types and the record → session mapping (vendor-apis/teamviewer.md §1.2–1.3, §3.4).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::common::{parse_date, text, type_name};
use crate::session::NewSession;
use crate::Rejected;

pub const VENDOR: &str = "teamviewer";

/// `GET /reports/connections` envelope. Records stay the vendor's text, so one bad record
/// cannot fail the page, and a session keeps its record exactly as it was sent.
#[derive(Debug, Deserialize)]
pub struct ConnectionsPage {
    #[serde(default)]
    pub records: Vec<Box<RawValue>>,
    #[serde(default)]
    pub records_remaining: Option<u64>,
    #[serde(default)]
    pub next_offset: Option<String>,
    /// What decoding the body repaired (set by the client, not on the wire).
    #[serde(skip)]
    pub repairs: crate::screen::Repairs,
}

impl ConnectionsPage {
    /// Each record as a session, or quarantined with the field that is wrong. The records are
    /// taken from the page: each session keeps its record's text as `raw_json`, and only one
    /// record at a time is held as a JSON tree.
    pub fn take_sessions(&mut self, now: DateTime<Utc>) -> Vec<Result<NewSession, Rejected>> {
        crate::screen::take_records(std::mem::take(&mut self.records), self.repairs, now, parse_record_text)
    }
}

/// `{"error","error_description","error_code","error_signature"}`; numbers may come as strings.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_code: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct CreatedSession {
    pub code: String,
    #[serde(default)]
    pub end_customer_link: Option<String>,
    #[serde(default)]
    pub supporter_link: Option<String>,
    #[serde(default)]
    pub webclient_supporter_link: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
}

/// Dates outside this range are vendor or clock errors, not sessions.
fn plausible(t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    t.timestamp() >= 946_684_800 && t <= now + chrono::Duration::days(2)
}

/// Map one connection record to a session, or say precisely why not (`raw_json`: the
/// record serialized again; a page keeps the vendor's text, see [`ConnectionsPage::take_sessions`]).
pub fn parse_record(rec: &Value, now: DateTime<Utc>) -> Result<NewSession, Rejected> {
    parse_record_text(rec, rec.to_string(), now)
}

/// [`parse_record`] with the record's text as the vendor sent it.
pub fn parse_record_text(rec: &Value, raw: String, now: DateTime<Utc>) -> Result<NewSession, Rejected> {
    let id = rec.get("id").and_then(Value::as_str).map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty());
    let reject = |reason: String| Rejected { external_id: id.clone(), reason, raw: raw.clone() };
    if !rec.is_object() {
        return Err(reject(format!("record: expected an object, got {}", type_name(rec))));
    }
    let Some(external_id) = id.clone() else {
        return Err(reject("id: missing or not a string".into()));
    };
    if external_id.len() > 128 {
        return Err(reject("id: longer than 128 characters".into()));
    }
    let started_at = parse_date(rec.get("start_date").unwrap_or(&Value::Null), "start_date")
        .map_err(&reject)?
        .ok_or_else(|| reject("start_date: missing".into()))?;
    let ended_at = parse_date(rec.get("end_date").unwrap_or(&Value::Null), "end_date").map_err(&reject)?;
    if !plausible(started_at, now) {
        return Err(reject(format!("start_date: implausible date {}", started_at.to_rfc3339())));
    }
    if let Some(end) = ended_at {
        if end < started_at {
            return Err(reject("end_date: before start_date".into()));
        }
        if !plausible(end, now) {
            return Err(reject(format!("end_date: implausible date {}", end.to_rfc3339())));
        }
    }
    let customer = rec.get("end_customer");
    Ok(NewSession {
        vendor: VENDOR.into(),
        external_id,
        session_code: text(rec, "session_code"),
        technician: text(rec, "username"),
        technician_id: text(rec, "userid"),
        device: text(rec, "devicename"),
        device_id: text(rec, "deviceid"),
        group_name: text(rec, "groupname"),
        started_at,
        ended_at,
        notes: text(rec, "notes"),
        // v1.0.1 of the API called the service-case description `description`.
        description: text(rec, "session_note").or_else(|| text(rec, "description")),
        custom_api: text(rec, "custom_api"),
        customer_name: customer.and_then(|c| text(c, "name")),
        customer_email: customer.and_then(|c| text(c, "email")),
        raw_json: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2024-05-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn full_record_maps_to_session() {
        let rec = json!({
            "id": "0755A8DD-DF19-4EA7-AF47-CABB6B2A97E4", "userid": "u11293276", "username": "Jon Snow",
            "deviceid": "1234567890", "devicename": "ACME-LT-042", "groupid": "g1", "groupname": "Helpdesk",
            "start_date": "2024-04-16T20:45:02Z", "end_date": "2024-04-16T21:03:47Z", "notes": "Printer driver reinstalled",
            "session_code": "s119-457-589", "session_note": "INC-10423: printer offline",
            "custom_api": "{\"ticket_id\":\"10423\"}", "end_customer": {"name": "Peter Niedhelp", "email": "helpme@example.com"}
        });
        let s = parse_record(&rec, now()).unwrap();
        assert_eq!(s.external_id, "0755a8dd-df19-4ea7-af47-cabb6b2a97e4");
        assert_eq!(s.duration_s(), Some(1125));
        assert_eq!(s.description.as_deref(), Some("INC-10423: printer offline"));
        assert_eq!(s.customer_name.as_deref(), Some("Peter Niedhelp"));
        assert_eq!(s.device_id.as_deref(), Some("1234567890"));
    }

    #[test]
    fn numeric_device_id_and_running_session() {
        let rec = json!({"id": "a", "deviceid": 987654321, "start_date": "2024-04-16T22:10:00Z"});
        let s = parse_record(&rec, now()).unwrap();
        assert_eq!(s.device_id.as_deref(), Some("987654321"));
        assert_eq!(s.ended_at, None);
        assert_eq!(s.duration_s(), None);
    }

    #[test]
    fn a_page_keeps_each_records_text_and_quarantines_what_a_tree_refuses() {
        let body = br#"{"records":[ {"id":"a", "start_date":"2024-04-16T22:10:00Z","x":1e400},
            {"id" : "B","start_date":"2024-04-16T22:10:00Z","username":"Jos\u00e9"} ],"records_remaining":0}"#;
        let d = crate::screen::json_body::<ConnectionsPage>(body).unwrap();
        let mut page = ConnectionsPage { repairs: d.repairs, ..d.value };
        let out = page.take_sessions(now());
        assert!(page.records.is_empty(), "taken");
        let bad = out[0].as_ref().unwrap_err();
        assert!(bad.reason.starts_with("record: unreadable JSON"), "{}", bad.reason);
        assert_eq!(bad.raw, r#"{"id":"a", "start_date":"2024-04-16T22:10:00Z","x":1e400}"#);
        let s = out[1].as_ref().unwrap();
        assert_eq!((s.external_id.as_str(), s.technician.as_deref()), ("b", Some("José")));
        assert_eq!(s.raw_json, r#"{"id" : "B","start_date":"2024-04-16T22:10:00Z","username":"Jos\u00e9"}"#);
    }

    #[test]
    fn bad_records_name_the_field() {
        let cases = [
            (json!({"start_date": "2024-04-16T22:10:00Z"}), "id:"),
            (json!({"id": "a"}), "start_date: missing"),
            (json!({"id": "a", "start_date": "20130116T194014Z"}), "start_date: not an ISO 8601"),
            (
                json!({"id": "a", "start_date": "2024-04-16T22:10:00Z", "end_date": "2024-04-16T22:00:00Z"}),
                "end_date: before",
            ),
            (json!({"id": "a", "start_date": "1970-01-01T00:00:00Z"}), "start_date: implausible"),
            (json!({"id": "a", "start_date": "2999-01-01T00:00:00Z"}), "start_date: implausible"),
            (json!({"id": "a", "start_date": 5}), "start_date: expected a date string"),
            (json!("x"), "record: expected an object"),
        ];
        for (rec, want) in cases {
            let err = parse_record(&rec, now()).unwrap_err();
            assert!(err.reason.starts_with(want), "{} → {}", rec, err.reason);
            assert_eq!(err.raw, rec.to_string());
        }
    }
}
