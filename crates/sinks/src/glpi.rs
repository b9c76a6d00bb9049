//! GLPI (legacy REST, `apirest.php`): `initSession` with the user token (and App-Token),
//! a private `ITILFollowup` on the Ticket (201 `{"id":N,"message":""}`), marker scan
//! through `GET /Ticket/{id}/ITILFollowup` (paged by `range`, 206 + `Content-Range`).
//! The session is reused across calls, opened again when GLPI reports it invalid
//! (`ERROR_SESSION_TOKEN_INVALID`, e.g. expired), and ended with `killSession` at close.
//!
//! Time entries (issue 20): a private `TicketTask` (`POST /Ticket/{id}/TicketTask`,
//! `tickets_id`, `content` with the marker paragraph last, `actiontime` in seconds, `date`,
//! `state` 2 = done, `users_id_tech` for a mapped technician), the scan paging
//! `GET /Ticket/{id}/TicketTask` for a task of the session's user ending with the marker.
//! Documents: GLPI's `apirest.md` (sub-items, `range`, `Content-Range`) and the TicketTask
//! fields of GLPI 10's CommonITILTask; not checked against a live GLPI.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderName;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, SinkErrorKind, TicketSink};
use crate::http::Auth;
use crate::note::{Note, Visibility};
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, yes, BuildCtx, ConfigError, Errors, Outbound,
    RouteConfig, SecretUse, SinkSection,
};

pub struct GlpiSink {
    /// Its credentials are the App-Token, when there is one; the session token is per call.
    api: common::SinkHttp,
    user_token: SecretString,
    /// searchOption id of a Ticket field holding the session code (`listSearchOptions/Ticket`).
    session_search_option: Option<u32>,
    session: Mutex<Option<SecretString>>,
    /// The session's user id (`getFullSession`: `session.glpiID`), for the marker scan's
    /// author check against a followup's `users_id`.
    api_user: common::ApiUser,
}

/// A followup's `content` as text: GLPI stores it entity-encoded (`&lt;p&gt;…`) and answers
/// it so unless `expand_dropdowns`/`htmlentities` say otherwise, so it is decoded once when it
/// looks encoded, then reduced to its text.
fn followup_text(content: &str) -> String {
    let html = if content.contains("&lt;") && !content.contains('<') {
        common::unescape_html(content)
    } else {
        content.to_string()
    };
    common::html_to_text(&html)
}

const PAGE: u64 = 50;

impl common::HttpKnobs for GlpiSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

impl GlpiSink {
    pub fn new(
        name: &str,
        base_url: &str,
        user_token: SecretString,
        app_token: Option<SecretString>,
        session_search_option: Option<u32>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            api: common::SinkHttp::new(
                name,
                base_url,
                match app_token {
                    Some(value) => Auth::Header { name: HeaderName::from_static("app-token"), value },
                    None => Auth::None,
                },
                http,
            ),
            user_token,
            session_search_option,
            session: Mutex::new(None),
            api_user: Default::default(),
        }
    }

    async fn api_user(&self) -> Result<Option<&str>, SinkError> {
        self.api_user
            .get(|| async {
                let url = format!("{}/getFullSession", self.api.base);
                let r = self.call(|| self.api.http.get(&url)).await?;
                let v = common::parse_listing(&self.api.name, &r.body, "session")?;
                Ok(common::id_text(&v["session"]["glpiID"]))
            })
            .await
    }

    fn ticket_id(&self, ticket: &str) -> Result<u64, SinkError> {
        let what = "a GLPI ticket id";
        let id = common::numeric_ticket(&self.api.name, ticket, what)?;
        id.parse::<u64>().map_err(|_| common::not_a_ticket(&self.api.name, ticket, what))
    }

    fn error(&self, r: &Reply) -> SinkError {
        let (code, msg) = glpi_error(&r.body);
        let detail =
            [code.as_str(), msg.as_str()].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join(": ");
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        match code.as_str() {
            // A wrong or missing App-Token is a 400, but it is a credentials problem.
            "ERROR_WRONG_APP_TOKEN_PARAMETER" | "ERROR_APP_TOKEN_PARAMETERS_MISSING" => {
                err.kind = SinkErrorKind::Auth;
                err.message = format!("App-Token rejected (HTTP {}): {detail}", r.status.as_u16());
            }
            "ERROR_ITEM_NOT_FOUND" => err.message = format!("ticket not found (HTTP 404): {detail}"),
            _ => {}
        }
        err
    }

    async fn open_session(&self) -> Result<SecretString, SinkError> {
        let req = self
            .api
            .get("/initSession")
            .header("Authorization", format!("user_token {}", self.user_token.expose_secret()));
        let r = self.api.send(req).await?;
        if !r.status.is_success() {
            return Err(self.error(&r));
        }
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let token = v["session_token"].as_str().ok_or_else(|| {
            SinkError::new(
                &self.api.name,
                SinkErrorKind::Retry { retry_after: None },
                "initSession answered without session_token",
            )
        })?;
        crate::redact::register(token);
        tracing::debug!(sink = %self.api.name, "GLPI session opened");
        Ok(SecretString::from(token.to_string()))
    }

    /// One call with the current session; opens one first if needed, and once more if GLPI
    /// says the session token is no longer valid.
    async fn call(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        for fresh in [false, true] {
            let token = {
                let mut s = self.session.lock().await;
                if fresh || s.is_none() {
                    *s = Some(self.open_session().await?);
                }
                s.as_ref().expect("session set above").expose_secret().to_string()
            };
            let r = self.api.send(build().header("Session-Token", token)).await?;
            if r.status.is_success() {
                return Ok(r);
            }
            if !fresh && r.status.as_u16() == 401 && glpi_error(&r.body).0 == "ERROR_SESSION_TOKEN_INVALID" {
                tracing::info!(sink = %self.api.name, "GLPI session expired; opening a new one");
                continue;
            }
            return Err(self.error(&r));
        }
        unreachable!("the loop returns on its second pass")
    }
}

/// GLPI errors are a JSON array: `["ERROR_ITEM_NOT_FOUND", "Item not found"]`.
pub fn glpi_error(body: &str) -> (String, String) {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => (
            a.first().and_then(Value::as_str).unwrap_or_default().to_string(),
            a.get(1).and_then(Value::as_str).unwrap_or_default().to_string(),
        ),
        _ => (String::new(), if body.trim_start().starts_with('<') { String::new() } else { body.to_string() }),
    }
}

#[async_trait]
impl TicketSink for GlpiSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let mut start = 0u64;
        let me = self.api_user().await?;
        for _ in 0..1000 {
            let url = format!("{}/Ticket/{id}/ITILFollowup", self.api.base);
            let range = format!("{start}-{}", start + PAGE - 1);
            let r = self.call(|| self.api.http.get(&url).query(&[("range", range.as_str())])).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "followups")?;
            let items = v.as_array().cloned().unwrap_or_default();
            // The followup must end with the marker line and be written by the session's user.
            if let Some(f) = items.iter().find(|f| {
                f["content"].as_str().is_some_and(|c| crate::marker::ends_with_marker(&followup_text(c), marker))
                    && common::author_ok(me, common::id_text(&f["users_id"]))
            }) {
                return Ok(Some(format!("Ticket/{id}/ITILFollowup/{}", f["id"])));
            }
            // `Content-Range: 0-49/120`: stop when this page reached the total.
            let total = r
                .headers
                .get("content-range")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.rsplit('/').next())
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
            // GLPI may cap the range (`Accept-Range`): continue after what it returned.
            start += items.len() as u64;
            if items.is_empty() || start >= total {
                break;
            }
        }
        Ok(None)
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        // GLPI answers 400 ERROR_GLPI_ADD for a follow-up on a missing ticket; asking for the
        // ticket first gives the clear 404 (GLPI has no rate limit to spare calls for).
        let ticket_url = format!("{}/Ticket/{id}", self.api.base);
        self.call(|| self.api.http.get(&ticket_url)).await?;
        let body = json!({"input": {
            "itemtype": "Ticket",
            "items_id": id,
            "content": common::to_html(&note.with_inline_cut(self.api.inline_limit)),
            "is_private": if note.visibility == Visibility::Internal { 1 } else { 0 },
        }});
        let url = format!("{}/Ticket/{id}/ITILFollowup", self.api.base);
        let r = self.call(|| self.api.http.post(&url).json(&body)).await?;
        let fid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["id"].as_u64());
        Ok(match fid {
            Some(f) => format!("Ticket/{id}/ITILFollowup/{f}"),
            None => format!("Ticket/{id}"),
        })
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let me = self.api_user().await?;
        let mut start = 0u64;
        for _ in 0..1000 {
            let url = format!("{}/Ticket/{id}/TicketTask", self.api.base);
            let range = format!("{start}-{}", start + PAGE - 1);
            let r = self.call(|| self.api.http.get(&url).query(&[("range", range.as_str())])).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "tasks")?;
            let items = v.as_array().cloned().unwrap_or_default();
            if let Some(t) = items.iter().find(|t| {
                t["content"].as_str().is_some_and(|c| crate::marker::ends_with_marker(&followup_text(c), marker))
                    && common::author_ok(me, common::id_text(&t["users_id"]))
            }) {
                return Ok(Some(format!("Ticket/{id}/TicketTask/{}", t["id"])));
            }
            let total = r
                .headers
                .get("content-range")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.rsplit('/').next())
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
            start += items.len() as u64;
            if items.is_empty() || start >= total {
                break;
            }
        }
        Ok(None)
    }

    async fn post_time_entry(&self, ticket: &str, entry: &crate::TimeEntry) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let ticket_url = format!("{}/Ticket/{id}", self.api.base);
        self.call(|| self.api.http.get(&ticket_url)).await?;
        let html: String =
            entry.comment(entry.user.is_none()).lines().map(|l| format!("<p>{}</p>", common::escape_html(l))).collect();
        let mut input = json!({
            "tickets_id": id,
            "content": html,
            "actiontime": entry.seconds(),
            "date": entry.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            "is_private": 1,
            "state": 2,
        });
        if let Some(u) = entry.user.as_deref().and_then(|u| u.parse::<u64>().ok()) {
            input["users_id_tech"] = json!(u);
        }
        let body = json!({"input": input});
        let url = format!("{}/Ticket/{id}/TicketTask", self.api.base);
        let r = self.call(|| self.api.http.post(&url).json(&body)).await?;
        let tid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["id"].as_u64());
        Ok(match tid {
            Some(t) => format!("Ticket/{id}/TicketTask/{t}"),
            None => format!("Ticket/{id}"),
        })
    }

    async fn find_ticket_by_session_code(&self, code: &str) -> Result<Option<String>, SinkError> {
        let Some(opt) = self.session_search_option else { return Ok(None) };
        let url = format!("{}/search/Ticket", self.api.base);
        let opt = opt.to_string();
        let r = self
            .call(|| {
                self.api.http.get(&url).query(&[
                    ("criteria[0][field]", opt.as_str()),
                    ("criteria[0][searchtype]", "equals"),
                    ("criteria[0][value]", code),
                    ("forcedisplay[0]", "2"),
                ])
            })
            .await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        Ok(v["data"].as_array().and_then(|a| a.first()).and_then(|row| match &row["2"] {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }))
    }

    async fn check(&self) -> Result<(), SinkError> {
        let url = format!("{}/getFullSession", self.api.base);
        self.call(|| self.api.http.get(&url)).await.map(|_| ())
    }

    async fn close(&self) {
        let token = self.session.lock().await.take();
        if let Some(t) = token {
            let req = self.api.get("/killSession").header("Session-Token", t.expose_secret());
            if let Err(e) = self.api.send(req).await {
                tracing::debug!(sink = %self.api.name, error = %e, "killSession failed");
            }
        }
    }
}

/// `[sinks.glpi]` before it is read: its name, its secret keys and what `init` asks.
impl crate::section::Described for GlpiConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "glpi",
        section: "sinks.glpi",
        secrets: &["sinks.glpi.user_token", "sinks.glpi.app_token"],
        setup: &crate::section::Plain {
            keys: &[crate::section::InitKey::new("url", "GLPI API URL (https://…/apirest.php)", None)],
            secrets: &["user_token", "app_token"],
        },
    };
}

// Its section, `[sinks.glpi]`: keys, checks, secrets and how the sink is built.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlpiConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The legacy REST endpoint, ending in `/apirest.php`.
    pub url: String,
    #[serde(default)]
    pub user_token: Option<SecretString>,
    #[serde(default)]
    pub user_token_file: Option<PathBuf>,
    #[serde(default)]
    pub app_token: Option<SecretString>,
    #[serde(default)]
    pub app_token_file: Option<PathBuf>,
    /// searchOption id of the Ticket field holding the session code.
    #[serde(default)]
    pub session_code_search_option: Option<u32>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::section::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::section::OutboundConfig,
}

crate::section::outbound_section!(GlpiConfig, "sinks.glpi");

impl GlpiConfig {
    fn check_into(&self, e: &mut Errors) {
        check_url(e, "sinks.glpi.url", &self.url);
        if !self.url.trim_end_matches('/').ends_with("apirest.php") {
            e.key("sinks.glpi.url", "must be the legacy REST endpoint, ending in /apirest.php");
        }
    }
    pub fn user_token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.glpi.user_token", self.user_token.as_ref(), self.user_token_file.as_deref())
    }
    pub fn user_token_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.user_token_value()?, "sinks.glpi.user_token")
    }
    /// Optional: only when the GLPI API client is configured with an App-Token.
    pub fn app_token_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.glpi.app_token", self.app_token.as_ref(), self.app_token_file.as_deref())
    }
}

impl SinkSection for GlpiConfig {
    section_basics!("glpi");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![
            SecretUse::declared("sinks.glpi.user_token", true, self.user_token_value()),
            // Optional: only when the GLPI API client is configured with an App-Token.
            SecretUse::declared("sinks.glpi.app_token", false, self.app_token_secret()),
        ]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let http = self.outbound().client(ctx.timeout)?;
        let (user, app) = (self.user_token_secret()?, self.app_token_secret()?);
        let sink = GlpiSink::new("glpi", &self.url, user, app, self.session_code_search_option, http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}
