//! Every Splashtop wire detail in one place (vendor-apis/splashtop-zoom-visio.md part A):
//! hosts, paths, query names, the `result` envelope and its codes, the support-session
//! object, the session-log record and its mapping to a session.
//!
//! [V] = confirmed by a public client; [R] = reconstruction (the session-log endpoint, its
//! paging and field names, the OAuth token endpoint). Correct them here and in the tests below.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::common::{parse_date, text};
use crate::session::NewSession;
use crate::Rejected;

pub const VENDOR: &str = "splashtop";

/// [V] Open API base per region.
pub fn default_base_url(eu: bool) -> &'static str {
    if eu {
        "https://webapi.splashtop.eu"
    } else {
        "https://webapi.splashtop.com"
    }
}
/// [V] Web console (authorize page, end-user SOS links) per region.
pub fn default_console_url(eu: bool) -> &'static str {
    if eu {
        "https://my.splashtop.eu"
    } else {
        "https://my.splashtop.com"
    }
}
/// [V from the vendor page / brief] authorize path on the console host.
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
/// [R] token endpoint: not documented anywhere we could read.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// [V] every Open API path starts here.
pub const API_PREFIX: &str = "/api/open/v1";
/// [V] success.
pub const RESULT_OK: i64 = 20200;

pub fn basic_info_path() -> String {
    format!("{API_PREFIX}/users/basic_info")
}
/// [V] `?mode=psa`.
pub fn channel_list_path(team: i64) -> String {
    format!("{API_PREFIX}/teams/{team}/psa/channel_list")
}
pub const CHANNEL_LIST_QUERY: (&str, &str) = ("mode", "psa");
pub fn support_sessions_path(team: i64) -> String {
    format!("{API_PREFIX}/teams/{team}/psa/support_sessions")
}
/// [R] session logs; query names below are [R] too.
pub fn session_logs_path(team: i64) -> String {
    format!("{API_PREFIX}/teams/{team}/logs/sessions")
}
pub const Q_FROM: &str = "from";
pub const Q_TO: &str = "to";
pub const Q_PAGE: &str = "page";
pub const Q_PER_PAGE: &str = "per_page";
/// [V] `customer_name` longer than this gives 40422.
pub const CUSTOMER_NAME_MAX: usize = 64;
/// [V, client-side cap in the Akab client] `customer_issue`.
pub const CUSTOMER_ISSUE_MAX: usize = 500;

/// Query timestamps: `YYYY-MM-DDTHH:MM:SSZ` [R].
pub fn query_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What a `result` code means, per the public clients [V], as the vendor client's error
/// kinds: 40100, 40101, 40300 `BadToken`; 40403 `NotAllowed` (missing scope, plan, channel,
/// region, or role); 40404 `SessionGone` (session closed/expired, or wrong team id); 40422
/// `BadParams` (e.g. customer_name > 64 characters); 41406 `MalformedToken` (quoted, BOM);
/// anything else `Unknown`, retried with the shared policy.
pub use crate::http::ErrorKind as ResultKind;

/// The kind of a `result` code.
pub fn result_kind(code: i64) -> ResultKind {
    match code {
        40100 | 40101 | 40300 => ResultKind::BadToken,
        40403 => ResultKind::NotAllowed,
        40404 => ResultKind::SessionGone,
        40422 => ResultKind::BadParams,
        41406 => ResultKind::MalformedToken,
        _ => ResultKind::Unknown,
    }
}

/// 40100/40101, or any HTTP 401 but a malformed token (41406, which a refresh cannot
/// fix): refresh the OAuth access token and try once more.
pub fn is_expired_token(code: Option<i64>, status: u16) -> bool {
    matches!(code, Some(40100 | 40101)) || (status == 401 && code != Some(41406))
}

/// The envelope: `{"result": 20200, "data": …}`; error text may sit in `message`,
/// `messages[]` (strings or `{message}`), `error` or `data.message` [V: all read by Akab].
/// `data` stays text, so a page keeps each record as the vendor wrote it.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub result: Option<i64>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default)]
    pub messages: Option<Vec<Value>>,
    #[serde(default)]
    pub error: Option<Value>,
}

impl Envelope {
    pub fn ok(&self) -> bool {
        // [V] the Akab client also accepts 0.
        matches!(self.result, Some(RESULT_OK) | Some(0))
    }

    pub fn error_message(&self) -> String {
        let s = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        self.message
            .as_ref()
            .and_then(s)
            .or_else(|| self.messages.as_ref().and_then(|m| m.iter().find_map(s)))
            .or_else(|| self.error.as_ref().and_then(s))
            .or_else(|| {
                let data = serde_json::from_str::<Value>(self.data.as_deref()?.get()).ok()?;
                data.get("message").and_then(s)
            })
            .unwrap_or_default()
    }

    /// `data` as sent (`null` when absent).
    pub fn take_data(&mut self) -> Box<RawValue> {
        self.data.take().unwrap_or_else(|| RawValue::NULL.to_owned())
    }
}

/// [V] `data.scopes.psa.team_id`, older shapes `team_id` / `stb_team_id`.
pub fn team_id(data: &Value) -> Option<i64> {
    let num = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    data.pointer("/scopes/psa/team_id")
        .and_then(num)
        .or_else(|| data.get("team_id").and_then(num))
        .or_else(|| data.get("stb_team_id").and_then(num))
}

pub fn account_email(data: &Value) -> Option<String> {
    data.get("email").and_then(Value::as_str).map(str::to_string)
}

/// [V] `data.channels[]` with `default`; the private channel (id 0) is the fallback.
pub fn default_channel(data: &Value) -> Option<i64> {
    let channels = data.get("channels").and_then(Value::as_array);
    channels
        .and_then(|c| c.iter().find(|c| c["default"].as_bool() == Some(true)).or_else(|| c.first()))
        .and_then(|c| c["id"].as_i64())
        .or_else(|| data.pointer("/private/id").and_then(Value::as_i64))
}

/// `POST …/psa/support_sessions` body [V].
pub fn create_body(channel_id: i64, customer_name: &str, customer_issue: &str) -> Value {
    serde_json::json!({"channel_id": channel_id, "customer_name": customer_name, "customer_issue": customer_issue})
}

/// The support-session object [V field names; R for the `data.support_session` nesting].
#[derive(Debug, Clone, Deserialize)]
pub struct SupportSession {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(deserialize_with = "string_or_number")]
    pub code: String,
    #[serde(default)]
    pub support_portal_link: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

pub fn support_session(data: &Value) -> Result<SupportSession, String> {
    let obj = data.get("support_session").unwrap_or(data);
    serde_json::from_value(obj.clone()).map_err(|e| format!("support session: {e}"))
}

/// End-user link: absolute as given, path-only joined to the console, or built [V format].
pub fn end_user_link(s: &SupportSession, console: &str) -> String {
    let console = console.trim_end_matches('/');
    match s.support_portal_link.as_deref().filter(|l| !l.trim().is_empty()) {
        Some(l) if l.starts_with("http://") || l.starts_with("https://") => l.to_string(),
        Some(l) => format!("{console}/{}", l.trim_start_matches('/')),
        None => format!("{console}/service_desk/psa/{}", s.code),
    }
}

/// [V] technician deep link (`category=40` for API-created sessions).
pub fn technician_link(code: &str, account: Option<&str>) -> String {
    let mut u = format!("st-business://com.splashtop.business/?sos={code}&category=40");
    if let Some(a) = account {
        u.push_str("&account=");
        u.push_str(&url::form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>());
    }
    u
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("expected a string or number, got {other}"))),
    }
}

/// [R] `data` of a session-log page: `{total, page, per_page, logs: [...]}`. Records stay
/// text, as the vendor wrote them, so one bad record cannot fail the page.
#[derive(Debug, Deserialize)]
pub struct LogsPage {
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub logs: Vec<Box<RawValue>>,
    /// What decoding the body repaired (set by the client, not on the wire).
    #[serde(skip)]
    pub repairs: crate::screen::Repairs,
}

impl LogsPage {
    /// Each log as a session, or quarantined with the field that is wrong. The logs are taken
    /// from the page: each session keeps its record's text as `raw_json`, and only one record
    /// at a time is held as a JSON tree.
    pub fn take_sessions(&mut self, now: DateTime<Utc>) -> Vec<Result<NewSession, Rejected>> {
        crate::screen::take_records(std::mem::take(&mut self.logs), self.repairs, now, parse_log_text)
    }
}

/// [R] one file transfer inside a session log.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FileTransfer {
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

/// [R] one chat line.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ChatLine {
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

/// The extra content of a log record for the note. Unreadable parts are skipped: the raw
/// JSON stays in the store either way.
pub fn file_transfers(raw: &Value) -> Vec<FileTransfer> {
    raw.get("file_transfers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect())
        .unwrap_or_default()
}

/// Transcripts exist only when the team owner enabled them: `None` when absent.
pub fn chat_transcript(raw: &Value) -> Option<Vec<ChatLine>> {
    let a = raw.get("chat_transcript")?.as_array()?;
    let lines: Vec<ChatLine> = a.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
    (!lines.is_empty()).then_some(lines)
}

pub fn connection_details(raw: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let t = |k: &str| text(raw, k);
    if let Some(c) = t("connection_type") {
        out.push(("Connection type", c));
    }
    if let Some(s) = t("session_type") {
        out.push(("Session type", s));
    }
    match (t("src_name"), t("src_ip")) {
        (Some(n), Some(ip)) => out.push(("Technician device", format!("{n} ({ip})"))),
        (Some(n), None) => out.push(("Technician device", n)),
        (None, Some(ip)) => out.push(("Technician device", ip)),
        _ => {}
    }
    if let Some(ip) = t("dst_ip") {
        out.push(("Remote IP", ip));
    }
    out
}

/// Map one session-log record [R field names] to the normalized session (`raw_json`: the
/// record serialized again; a page keeps the vendor's text, see [`LogsPage::take_sessions`]).
pub fn parse_log(rec: &Value, now: DateTime<Utc>) -> Result<NewSession, Rejected> {
    parse_log_text(rec, rec.to_string(), now)
}

/// [`parse_log`] with the record's text as the vendor sent it.
pub fn parse_log_text(rec: &Value, raw: String, now: DateTime<Utc>) -> Result<NewSession, Rejected> {
    let id = text(rec, "session_id").map(|s| s.trim().to_string());
    let reject = |reason: String| Rejected { external_id: id.clone(), reason, raw: raw.clone() };
    if !rec.is_object() {
        return Err(reject("record: expected an object".into()));
    }
    let Some(external_id) = id.clone() else {
        return Err(reject("session_id: missing or not a string/number".into()));
    };
    if external_id.len() > 128 {
        return Err(reject("session_id: longer than 128 characters".into()));
    }
    let started_at = parse_date(rec.get("start_time").unwrap_or(&Value::Null), "start_time")
        .map_err(&reject)?
        .ok_or_else(|| reject("start_time: missing".into()))?;
    let ended_at = parse_date(rec.get("end_time").unwrap_or(&Value::Null), "end_time").map_err(&reject)?;
    let plausible = |t: DateTime<Utc>| t.timestamp() >= 946_684_800 && t <= now + chrono::Duration::days(2);
    if !plausible(started_at) {
        return Err(reject(format!("start_time: implausible date {}", started_at.to_rfc3339())));
    }
    if let Some(end) = ended_at {
        if end < started_at {
            return Err(reject("end_time: before start_time".into()));
        }
    }
    Ok(NewSession {
        vendor: VENDOR.into(),
        external_id,
        session_code: text(rec, "support_session_code"),
        technician: text(rec, "user_email"),
        technician_id: None,
        device: text(rec, "dst_name"),
        device_id: None,
        group_name: None,
        started_at,
        ended_at,
        notes: text(rec, "note"),
        description: None,
        custom_api: None,
        customer_name: None,
        customer_email: None,
        raw_json: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2025-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn sample_log_maps_to_session() {
        let rec = json!({ "session_id": "8f3c2a", "support_session_code": "123456789",
          "user_email": "tech@example.com", "src_name": "TECH-LAPTOP", "src_ip": "203.0.113.5",
          "dst_name": "DESKTOP-1", "dst_ip": "198.51.100.7",
          "start_time": "2025-05-01T09:00:00Z", "end_time": "2025-05-01T09:25:10Z", "duration": 1510,
          "session_type": "attended", "connection_type": "remote",
          "file_transfers": [ { "file_name": "log.zip", "size": 20480, "direction": "download", "time": "2025-05-01T09:10:00Z" } ],
          "chat_transcript": [ { "time": "2025-05-01T09:01:00Z", "from": "tech@example.com", "text": "Hi" } ],
          "note": "Reinstalled Outlook" });
        let s = parse_log(&rec, now()).unwrap();
        assert_eq!(s.external_id, "8f3c2a");
        assert_eq!(s.session_code.as_deref(), Some("123456789"));
        assert_eq!(s.duration_s(), Some(1510));
        assert_eq!(s.device.as_deref(), Some("DESKTOP-1"));
        assert_eq!(s.notes.as_deref(), Some("Reinstalled Outlook"));
        assert_eq!(file_transfers(&rec)[0].size, Some(20480));
        assert_eq!(chat_transcript(&rec).unwrap()[0].text.as_deref(), Some("Hi"));
        assert!(chat_transcript(&json!({})).is_none());
    }

    #[test]
    fn bad_logs_name_the_field() {
        for (rec, want) in [
            (json!({"start_time": "2025-05-01T09:00:00Z"}), "session_id:"),
            (json!({"session_id": 7}), "start_time: missing"),
            (json!({"session_id": 7, "start_time": "yesterday"}), "start_time: not an ISO 8601"),
            (
                json!({"session_id": 7, "start_time": "2025-05-01T09:00:00Z", "end_time": "2025-05-01T08:00:00Z"}),
                "end_time: before",
            ),
        ] {
            let e = parse_log(&rec, now()).unwrap_err();
            assert!(e.reason.starts_with(want), "{rec} → {}", e.reason);
        }
    }

    #[test]
    fn envelope_codes_and_messages() {
        let e: Envelope = serde_json::from_str(r#"{"result":40422,"message":"wrong_params","data":null}"#).unwrap();
        assert!(!e.ok());
        assert_eq!(result_kind(e.result.unwrap()), ResultKind::BadParams);
        assert_eq!(e.error_message(), "wrong_params");
        let e: Envelope = serde_json::from_str(r#"{"result":40403,"messages":[{"message":"no psa"}]}"#).unwrap();
        assert_eq!(e.error_message(), "no psa");
        assert_eq!(result_kind(40101), ResultKind::BadToken);
        assert_eq!(result_kind(41406), ResultKind::MalformedToken);
        assert_eq!(result_kind(40404), ResultKind::SessionGone);
        assert_eq!(result_kind(50000), ResultKind::Unknown);
        assert!(
            is_expired_token(Some(40101), 200) && is_expired_token(None, 401) && is_expired_token(Some(40300), 401)
        );
        assert!(!is_expired_token(Some(41406), 401) && !is_expired_token(Some(40403), 403));
    }

    #[test]
    fn team_channel_and_links() {
        assert_eq!(team_id(&json!({"scopes": {"psa": {"team_id": 123456}}})), Some(123456));
        assert_eq!(team_id(&json!({"stb_team_id": "77"})), Some(77));
        let ch =
            json!({"private": {"id": 0}, "channels": [{"id": 1, "default": false}, {"id": 4673, "default": true}]});
        assert_eq!(default_channel(&ch), Some(4673));
        assert_eq!(default_channel(&json!({"private": {"id": 0}, "channels": []})), Some(0));
        let s = support_session(&json!({"support_session": {"id": "8f3c2a", "code": 123456789}})).unwrap();
        assert_eq!(end_user_link(&s, "https://my.splashtop.eu/"), "https://my.splashtop.eu/service_desk/psa/123456789");
        let mut p = s.clone();
        p.support_portal_link = Some("/service_desk/psa/1".into());
        assert_eq!(end_user_link(&p, "https://my.splashtop.com"), "https://my.splashtop.com/service_desk/psa/1");
        assert_eq!(
            technician_link("123", Some("a@b.c")),
            "st-business://com.splashtop.business/?sos=123&category=40&account=a%40b.c"
        );
    }
}
