//! visioconference.me rooms (`POST /api/v1/entreprise/visio`, vendor-apis part C). There is
//! no report API: nothing is polled, and the room creation (the ticket link and its audit
//! event) is the record.

pub mod config;
mod section;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

pub use config::VisioConfig;

pub const VENDOR: &str = "visioconference";

/// visioconference.me's part of a note: its name (a room has no report to add).
pub struct Notes;

impl super::VendorNotes for Notes {
    fn vendor(&self) -> &'static str {
        VENDOR
    }
    fn display_name(&self) -> &'static str {
        "visioconference.me"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VisioError {
    #[error("visioconference.me: {0}")]
    Config(String),
    #[error("visioconference.me: POST /entreprise/visio: {0}")]
    Http(String),
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    url: String,
    #[serde(default)]
    uniqid: Option<String>,
    #[serde(default)]
    moderator_token: Option<String>,
    /// The older response shape (2021-03-08) nested the token here.
    #[serde(default)]
    room: Option<Room>,
}

#[derive(Debug, Deserialize)]
struct Room {
    #[serde(default)]
    moderator_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CreatedRoom {
    pub url: String,
    pub uniqid: String,
    pub moderator_token: Option<SecretString>,
    pub raw: Value,
}

impl CreatedRoom {
    /// `…/meet/ID?m=TOKEN&name=AGENT`: joins with moderator rights. Agents only.
    pub fn moderator_link(&self, agent: &str) -> Option<String> {
        let t = self.moderator_token.as_ref()?;
        let mut u = url::Url::parse(&self.url).ok()?;
        u.query_pairs_mut().append_pair("m", t.expose_secret()).append_pair("name", agent);
        Some(u.to_string())
    }
}

pub async fn create_room(cfg: &VisioConfig, ticket: &str) -> Result<CreatedRoom, VisioError> {
    let token = cfg.token_secret().map_err(|e| VisioError::Config(e.to_string()))?.ok_or_else(|| {
        VisioError::Config(
            "rooms.visioconference.token: missing (token_file or credential visioconference_token)".into(),
        )
    })?;
    let http = cfg
        .outbound()
        .client(Duration::from_secs(cfg.request_timeout_secs.max(1)))
        .map_err(|e| VisioError::Config(e.to_string()))?;
    let name: String = cfg.name_template.replace("{ticket}", ticket).chars().take(100).collect();
    let body = json!({
        "name": name,
        "meeting_at": chrono::Utc::now().timestamp(),
        "duration": cfg.duration_minutes.max(1),
    });
    let auth = crate::http::Auth::Header { name: reqwest::header::HeaderName::from_static("x-token"), value: token };
    let req = auth.apply_static(http.post(format!("{}/entreprise/visio", cfg.api_url.trim_end_matches('/'))));
    // The vendor client's one send: a Retry-After this API sent holds the next call too.
    let answer = crate::http::send(req.json(&body), cfg.outbound().limit(), None).await.map_err(|e| {
        VisioError::Http(match e {
            crate::http::SendError::Held { origin, .. } => format!("not sent: {origin} asked us to wait (rate limit)"),
            crate::http::SendError::Transport(e) => crate::http::describe_transport_error(&e),
            crate::http::SendError::Body { error, .. } => error.to_string(),
        })
    })?;
    let (status, text) = (answer.status, answer.text());
    parse_created_room(status, &text)
}

/// The answer to `POST /entreprise/visio`: the room, or why not. Pure, so fuzz/ can feed
/// it arbitrary bytes.
pub fn parse_created_room(status: u16, text: &str) -> Result<CreatedRoom, VisioError> {
    let env: Option<Envelope> = serde_json::from_str(text).ok();
    // The HTTP status decides; the envelope's `code` is advisory.
    if !(200..300).contains(&status) {
        let msg =
            env.and_then(|e| e.message).filter(|m| !m.is_empty()).unwrap_or_else(|| crate::http::short_body(text));
        let hint = if matches!(status, 401 | 403) { " (check rooms.visioconference.token)" } else { "" };
        return Err(VisioError::Http(format!("HTTP {status}: {msg}{hint}")));
    }
    let raw: Value = serde_json::from_str(text).map_err(|e| VisioError::Http(format!("malformed response ({e})")))?;
    let data = env.and_then(|e| e.data).ok_or_else(|| VisioError::Http("response has no data.url".into()))?;
    let uniqid = data
        .uniqid
        .clone()
        .or_else(|| data.url.rsplit('/').next().map(str::to_string))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| VisioError::Http("response has neither data.uniqid nor a room id in data.url".into()))?;
    let moderator_token =
        data.moderator_token.or_else(|| data.room.and_then(|r| r.moderator_token)).map(SecretString::from);
    Ok(CreatedRoom { url: data.url, uniqid, moderator_token, raw })
}
