//! TeamViewer connection reports (`GET /api/v1/reports/connections`) and service cases
//! (`POST /api/v1/sessions`). Wire details live in `wire.rs`.

pub mod config;
mod launch;
mod section;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{Page, Pages, Source, SourceError, WalkEnd};
use crate::http::{ApiError, Auth, CallError, ErrorKind, Failure, OAuthApp, VendorClient};
use crate::note::Link;
use crate::oauth::OAuthClient;
use crate::session::{parse_ts, ts};
use crate::store::sessions::StoredSession;
use crate::store::{cursors, Store};
pub use config::{TeamViewerAuth, TeamViewerConfig};
use wire::{ConnectionsPage, CreatedSession, ErrorBody, VENDOR};

pub struct TeamViewerApi {
    api: VendorClient,
}

impl TeamViewerApi {
    pub fn new(cfg: &TeamViewerConfig, store: &Store) -> Result<TeamViewerApi, SourceError> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let cfg_err = |m: crate::config::ConfigError| SourceError::Vendor {
            source_name: VENDOR.into(),
            message: m.to_string(),
            transient: false,
        };
        let http = cfg.outbound().client(Duration::from_secs(cfg.request_timeout_secs.max(1))).map_err(cfg_err)?;
        let auth = match cfg.auth {
            TeamViewerAuth::Script => {
                let tok = cfg.token_secret().map_err(cfg_err)?.ok_or_else(|| SourceError::Vendor {
                    source_name: VENDOR.into(),
                    message: "sources.teamviewer.token: missing (token_file or credential teamviewer_token)".into(),
                    transient: false,
                })?;
                Auth::Bearer(tok)
            }
            TeamViewerAuth::Oauth => Auth::OAuth(Arc::new(oauth_client(cfg, store, http.clone())?)),
        };
        let api = VendorClient::new(VENDOR, http, format!("{base}/api/v1"), auth, cfg.outbound().limit());
        Ok(TeamViewerApi { api })
    }

    pub fn with_max_retries(self, n: usize) -> Self {
        TeamViewerApi { api: self.api.with_max_retries(n) }
    }

    /// One request through the vendor client: throttling (403 `rate_limit_reached`, 429),
    /// 5xx and transport errors back off and retry, honouring `Retry-After`; an expired
    /// OAuth token (401 `token_expired` / `invalid_token`) is refreshed once.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, SourceError> {
        self.api.call_body(method, path, query, body, classify).await.map_err(|e| match e {
            CallError::Api(e) => SourceError::Api(with_hint(e)),
            CallError::OAuth(e) => SourceError::OAuth(e),
        })
    }

    pub async fn connections_page(
        &self,
        from: DateTime<Utc>,
        offset_id: Option<&str>,
    ) -> Result<ConnectionsPage, SourceError> {
        self.connections_range(from, None, offset_id).await
    }

    /// `to` is exclusive (`to_date`).
    pub async fn connections_range(
        &self,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        offset_id: Option<&str>,
    ) -> Result<ConnectionsPage, SourceError> {
        let mut q = vec![("from_date", from.format("%Y-%m-%dT%H:%M:%SZ").to_string())];
        if let Some(t) = to {
            q.push(("to_date", t.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
        }
        if let Some(o) = offset_id {
            q.push(("offset_id", o.to_string()));
        }
        let what = "GET /reports/connections";
        let d = super::fetch_parsed(VENDOR, what, self.api.max_retries(), || async {
            let body = self.call(reqwest::Method::GET, "/reports/connections", &q, None).await?;
            Ok(super::screen::json_body::<ConnectionsPage>(&body).map_err(|e| e.to_string()))
        })
        .await
        .map_err(|e| e.into_source_error(VENDOR, what))?;
        Ok(ConnectionsPage { repairs: d.repairs, ..d.value })
    }

    /// `POST /api/v1/sessions`: a service case whose `custom_api` carries the ticket id.
    pub async fn create_session(&self, body: &Value) -> Result<(CreatedSession, Value), SourceError> {
        let text = self.call(reqwest::Method::POST, "/sessions", &[], Some(body)).await?;
        let raw: Value = serde_json::from_slice(&text).map_err(|e| SourceError::Vendor {
            source_name: VENDOR.into(),
            message: format!("POST /sessions: malformed response ({e})"),
            transient: false,
        })?;
        let created: CreatedSession = serde_json::from_value(raw.clone()).map_err(|e| SourceError::Vendor {
            source_name: VENDOR.into(),
            message: format!("POST /sessions: {e}"),
            transient: false,
        })?;
        Ok((created, raw))
    }

    pub async fn ping(&self) -> Result<bool, SourceError> {
        let body = self.call(reqwest::Method::GET, "/ping", &[], None).await?;
        Ok(serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("token_valid").and_then(Value::as_bool))
            .unwrap_or(false))
    }

    pub fn oauth(&self) -> Option<&Arc<OAuthClient>> {
        self.api.auth().oauth()
    }
}

/// How far back TeamViewer keeps connection reports, as far as we know: no retention is
/// documented for `/reports/connections`; the vendor's other audit record (the event log,
/// DOC21 §4.2) keeps the last 12 months, and this is assumed for connection reports too.
/// `check` warns when `initial_lookback_days` reads less than this on a first start.
pub const REPORT_RETENTION_DAYS: u64 = 365;

pub fn oauth_client(cfg: &TeamViewerConfig, store: &Store, http: reqwest::Client) -> Result<OAuthClient, SourceError> {
    let app = OAuthApp {
        provider: VENDOR,
        section: "sources.teamviewer",
        credential: "teamviewer_client_secret",
        client_id: cfg.client_id.clone(),
        client_secret: cfg.client_secret(),
        token_url: format!("{}/api/v1/oauth2/token", cfg.base_url.trim_end_matches('/')),
        authorize_url: cfg.authorize_url.clone(),
        redirect_uri: cfg.redirect_uri.clone(),
        max_response: cfg.outbound().limit(),
    };
    app.build(http, store).map_err(|message| SourceError::Vendor {
        source_name: VENDOR.into(),
        message,
        transient: false,
    })
}

/// An answer that is not 2xx, with TeamViewer's `error` kept as the error code.
pub fn classify(status: u16, headers: &reqwest::header::HeaderMap, body: &str) -> ApiError {
    let e: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let rate_limited = e.error == "rate_limit_reached" || status == 429;
    let message = if e.error_description.is_empty() {
        crate::http::short_body(body)
    } else {
        crate::http::short_body(&e.error_description)
    };
    let kind = match status {
        _ if rate_limited => ErrorKind::RateLimited,
        401 => ErrorKind::BadToken,
        403 => ErrorKind::NotAllowed,
        404 => ErrorKind::SessionGone,
        400 | 422 => ErrorKind::BadParams,
        _ => ErrorKind::Unknown,
    };
    Failure {
        kind,
        error: Some(if e.error.is_empty() { format!("http_{status}") } else { e.error.clone() }),
        retry_after: crate::http::retry_after(headers),
        transient: rate_limited || status >= 500 || status == 408,
        auth_expired: status == 401 && matches!(e.error.as_str(), "token_expired" | "invalid_token"),
        ..Failure::answered(VENDOR, "", status, message)
    }
    .into()
}

/// What the operator can do about a rejected token or a missing permission.
fn with_hint(mut e: ApiError) -> ApiError {
    e.hint = match e.kind {
        ErrorKind::BadToken => {
            Some("token rejected: check sources.teamviewer.token or run `ticketsync auth teamviewer`")
        }
        ErrorKind::NotAllowed => Some("the token lacks a permission, e.g. Connections.Read or Sessions.Create"),
        _ => None,
    }
    .map(str::to_string);
    e
}

/// Where the poll stands: a walk in progress is resumed after a restart from its `offset_id`.
pub type Cursor = super::common::Cursor<WalkAt>;
pub type Walk = super::common::Walk<WalkAt>;

/// How far a TeamViewer walk got: the report to continue after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WalkAt {
    pub started_at: String,
    pub offset_id: Option<String>,
}

pub struct TeamViewerSource {
    api: TeamViewerApi,
    overlap: chrono::Duration,
    initial_lookback: chrono::Duration,
    open_max_age: chrono::Duration,
    name: String,
}

impl TeamViewerSource {
    pub fn new(cfg: &TeamViewerConfig, store: &Store) -> Result<Self, SourceError> {
        Ok(Self::with_api(cfg, TeamViewerApi::new(cfg, store)?))
    }

    pub fn with_api(cfg: &TeamViewerConfig, api: TeamViewerApi) -> Self {
        Self {
            api,
            overlap: chrono::Duration::minutes(cfg.overlap_minutes as i64),
            initial_lookback: chrono::Duration::days(cfg.initial_lookback_days as i64),
            open_max_age: chrono::Duration::hours(cfg.open_session_max_age_hours as i64),
            name: VENDOR.into(),
        }
    }

    pub fn api(&self) -> &TeamViewerApi {
        &self.api
    }

    /// Where a new walk starts: the watermark minus the overlap, pulled back to the oldest
    /// still-running session (filters act on start_date only, so a running session is
    /// only seen again if the window reaches back to its start).
    async fn walk_from(&self, store: &Store, cur: &Cursor, now: DateTime<Utc>) -> Result<DateTime<Utc>, SourceError> {
        let windows = (self.overlap, self.initial_lookback, self.open_max_age);
        Ok(super::walk_start(store, VENDOR, cur.high_watermark.as_deref(), windows, now).await?)
    }
}

#[async_trait]
impl Source for TeamViewerSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: Option<&str>,
    ) -> Result<super::RangePage, SourceError> {
        let mut p = self.api.connections_range(from, Some(to), page).await?;
        let records = p.take_sessions(Utc::now());
        let more = p.records_remaining.unwrap_or(0) > 0 && p.next_offset.is_some();
        // A repeated offset would loop forever: treat it as the last page.
        let next = p.next_offset.filter(|n| more && Some(n.to_ascii_lowercase()) != page.map(str::to_ascii_lowercase));
        Ok(super::RangePage { records, next, remaining: p.records_remaining })
    }

    async fn poll(&self, store: &Store, pages: Pages, cancel: &CancellationToken) -> Result<WalkEnd, SourceError> {
        let now = Utc::now();
        let saved = cursors::load(store, VENDOR).await?;
        let first_poll = saved.is_none();
        let mut cur = Cursor::from_saved(saved.as_deref());
        let mut walk = match cur.resume(VENDOR) {
            Some(w) => w,
            None => Walk::start(
                ts(self.walk_from(store, &cur, now).await?),
                WalkAt { started_at: ts(now), offset_id: None },
            ),
        };
        let from = parse_ts(&walk.from).unwrap_or(now - self.initial_lookback);
        if first_poll {
            super::first_poll_notice(VENDOR, from, self.initial_lookback.num_days().max(0) as u64);
        }
        // Each page is handed over with its cursor and the next one fetched while it is
        // written (the ingest's task).
        loop {
            if cancel.is_cancelled() {
                return Ok(WalkEnd::Cancelled);
            }
            let mut page = self.api.connections_page(from, walk.offset_id.as_deref()).await?;
            let records = page.take_sessions(Utc::now());
            cur.observe(&records);
            let more = page.records_remaining.unwrap_or(0) > 0 && page.next_offset.is_some();
            // A cursor that does not move would loop forever (seen in the wild): end the walk.
            let stuck = more
                && page.next_offset.as_deref().map(str::to_ascii_lowercase)
                    == walk.offset_id.as_deref().map(str::to_ascii_lowercase);
            if stuck {
                tracing::warn!(source = VENDOR, offset = ?walk.offset_id, "vendor repeated next_offset; ending this walk");
            }
            let complete = if more && !stuck {
                walk.offset_id = page.next_offset.clone();
                cur.walk = Some(walk.clone());
                None
            } else {
                cur.walk = None;
                // Vanished detection only for a clean walk: a stuck cursor may have skipped
                // records. Either way the walk ended, which marks the poll successful
                // (readiness): a stuck one is committed as complete over an empty range.
                let from = if stuck { walk.started_at.clone() } else { walk.from.clone() };
                Some((from, walk.started_at.clone()))
            };
            let end = complete.is_some();
            let cursor = serde_json::to_string(&cur).unwrap_or_default();
            pages.send(Page { source: VENDOR.into(), records, walk_id: walk.id.clone(), cursor, complete }).await?;
            if end {
                return Ok(WalkEnd::Complete);
            }
        }
    }
}

/// TeamViewer's part of a note: the link back to the device.
pub struct Notes;

impl super::VendorNotes for Notes {
    fn vendor(&self) -> &'static str {
        wire::VENDOR
    }
    fn display_name(&self) -> &'static str {
        "TeamViewer"
    }
    fn links(&self, s: &StoredSession) -> Vec<Link> {
        links_for(s)
    }
}

/// Links for a TeamViewer session note: reconnect to the same device.
pub fn links_for(s: &StoredSession) -> Vec<Link> {
    s.device_id
        .as_deref()
        .filter(|d| d.chars().all(|c| c.is_ascii_digit()))
        .map(|d| {
            vec![Link { label: "Connect to this device".into(), url: format!("https://start.teamviewer.com/{d}") }]
        })
        .unwrap_or_default()
}

/// The body of `POST /sessions` for a ticket.
pub fn session_request(
    cfg: &TeamViewerConfig,
    ticket: &str,
    customer_name: Option<&str>,
    customer_email: Option<&str>,
) -> Value {
    let mut body = json!({
        "description": cfg.description_template.replace("{ticket}", ticket).chars().take(1000).collect::<String>(),
        "custom_api": json!({"ticket_id": ticket}).to_string(),
        "valid_until": (Utc::now() + chrono::Duration::hours(cfg.valid_hours.max(1) as i64)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    match &cfg.group_id {
        Some(g) => body["groupid"] = json!(g),
        None => body["groupname"] = json!(cfg.group_name),
    }
    if customer_name.is_some() || customer_email.is_some() {
        let mut c = serde_json::Map::new();
        if let Some(n) = customer_name {
            c.insert("name".into(), json!(n.chars().take(100).collect::<String>()));
        }
        if let Some(e) = customer_email {
            c.insert("email".into(), json!(e.chars().take(254).collect::<String>()));
        }
        body["end_customer"] = Value::Object(c);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_error_codes_are_kept_typed() {
        let h = reqwest::header::HeaderMap::new();
        let e = classify(403, &h, r#"{"error":"invalid_permission","error_description":"no Connections.Read"}"#);
        assert_eq!(
            (e.kind, e.error.as_deref(), e.status, e.transient),
            (ErrorKind::NotAllowed, Some("invalid_permission"), Some(403), false)
        );
        let mut e = e;
        e.what = "/reports/connections".into();
        let e = with_hint(e);
        assert_eq!(
            e.to_string(),
            "teamviewer: /reports/connections: HTTP 403 invalid_permission: no Connections.Read \
             (the token lacks a permission, e.g. Connections.Read or Sessions.Create)"
        );
        let e = classify(403, &h, r#"{"error":"rate_limit_reached"}"#);
        assert_eq!((e.kind, e.transient, e.hint.is_none()), (ErrorKind::RateLimited, true, true));
        let e = classify(401, &h, r#"{"error":"token_expired"}"#);
        assert_eq!((e.kind, e.auth_expired), (ErrorKind::BadToken, true));
        let e = classify(502, &h, "<html>bad gateway</html>");
        assert_eq!((e.error.as_deref(), e.transient), (Some("http_502"), true));
    }
}
