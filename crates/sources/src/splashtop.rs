//! Splashtop Open API: session logs (polled), attended-support sessions (created for a
//! ticket), API token or OAuth. Every path, field and code lives in `wire.rs`.

pub mod config;
mod launch;
mod section;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::screen::Decoded;
use super::{NoteExtras, Page, Pages, Source, SourceError, WalkEnd};
use crate::http::{Auth, CallError, Failure, OAuthApp, VendorClient};
use crate::note::{Attachment, Field};
use crate::oauth::OAuthClient;
use crate::session::{parse_ts, ts};
use crate::store::sessions::StoredSession;
use crate::store::{cursors, Store};
pub use config::{Region, SplashtopAuth, SplashtopConfig};
use wire::{ResultKind, SupportSession, VENDOR};

/// A Splashtop call that failed, with the vendor's own `result` code and message kept.
pub use crate::http::ApiError;

/// What the operator can do about a `result` code.
fn hint(kind: ResultKind) -> Option<String> {
    let h = match kind {
        ResultKind::BadToken => {
            "token invalid or expired (check sources.splashtop.token or run `ticketsync auth splashtop`)"
        }
        ResultKind::NotAllowed => "not allowed (scope `psa`/`logs`, plan, channel, region, or Owner/Super Admin role)",
        ResultKind::SessionGone => "session not available (closed, expired) or wrong team id",
        ResultKind::BadParams => "wrong parameters",
        ResultKind::MalformedToken => "malformed token (quotes or a BOM around it?)",
        _ => return None,
    };
    Some(h.to_string())
}

pub struct SplashtopApi {
    api: VendorClient,
}

impl SplashtopApi {
    pub fn new(cfg: &SplashtopConfig, store: &Store) -> Result<SplashtopApi, SourceError> {
        let http = cfg
            .outbound()
            .client(Duration::from_secs(cfg.request_timeout_secs.max(1)))
            .map_err(|e| cfg_err(e.to_string()))?;
        let auth = match cfg.auth {
            SplashtopAuth::Token => {
                let tok = cfg.token_secret().map_err(|e| cfg_err(e.to_string()))?.ok_or_else(|| {
                    cfg_err("sources.splashtop.token: missing (token_file or credential splashtop_token)".into())
                })?;
                Auth::Bearer(tok)
            }
            SplashtopAuth::Oauth => Auth::OAuth(Arc::new(oauth_client(cfg, store, http.clone())?)),
        };
        let api = VendorClient::new(VENDOR, http, cfg.base_url(), auth, cfg.outbound().limit()).accept_json();
        Ok(SplashtopApi { api })
    }

    pub fn with_max_retries(self, n: usize) -> Self {
        SplashtopApi { api: self.api.with_max_retries(n) }
    }

    pub fn oauth(&self) -> Option<&Arc<OAuthClient>> {
        self.api.auth().oauth()
    }

    /// One call through the vendor client: 429, 5xx, transport errors and unknown
    /// `result` codes back off (honouring `Retry-After`); an expired OAuth access token
    /// (40100/40101/401) is refreshed once. Returns the envelope's `data`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, SourceError> {
        let data = self.call_decoded(method.clone(), path, query, body).await?.value;
        serde_json::from_str(data.get()).map_err(|e| SourceError::Vendor {
            source_name: VENDOR.into(),
            message: format!("{method} {path}: unreadable `data` ({e})"),
            transient: false,
        })
    }

    /// [`Self::call`] with `data` as the vendor's text, saying what decoding the body
    /// repaired (bad UTF-8, lone surrogates).
    pub async fn call_decoded(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Decoded<Box<RawValue>>, SourceError> {
        let decode = |a: crate::http::Answer| classify(path, a.status, &a.headers, &a.body);
        self.api.call(method, path, query, body, decode).await.map_err(|e| match e {
            CallError::Api(mut e) => {
                e.hint = hint(e.kind);
                SourceError::Splashtop(e)
            }
            CallError::OAuth(e) => SourceError::OAuth(e),
        })
    }

    pub async fn basic_info(&self) -> Result<Value, SourceError> {
        self.call(reqwest::Method::GET, &wire::basic_info_path(), &[], None).await
    }

    pub async fn team_id(&self, configured: Option<i64>) -> Result<i64, SourceError> {
        if let Some(t) = configured {
            return Ok(t);
        }
        let info = self.basic_info().await?;
        wire::team_id(&info).ok_or_else(|| {
            cfg_err(
                "users/basic_info has no PSA team id (token without the `psa` scope?); set sources.splashtop.team_id"
                    .into(),
            )
        })
    }

    pub async fn logs_page(
        &self,
        team: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: u64,
        per_page: u64,
    ) -> Result<wire::LogsPage, SourceError> {
        let q = [
            (wire::Q_FROM, wire::query_time(from)),
            (wire::Q_TO, wire::query_time(to)),
            (wire::Q_PAGE, page.to_string()),
            (wire::Q_PER_PAGE, per_page.to_string()),
        ];
        let path = wire::session_logs_path(team);
        let what = format!("GET {path}");
        // A body without the `result` envelope is retried inside the call already; one whose
        // `data` is not a page of logs is asked for again here, as for every vendor.
        super::fetch_parsed(VENDOR, &what, self.api.max_retries(), || async {
            let data = self.call_decoded(reqwest::Method::GET, &path, &q, None).await?;
            Ok(serde_json::from_str::<wire::LogsPage>(data.value.get())
                .map(|page| wire::LogsPage { repairs: data.repairs, ..page })
                .map_err(|e| e.to_string()))
        })
        .await
        .map_err(|e| e.into_source_error(VENDOR, &what))
    }

    pub async fn default_channel(&self, team: i64) -> Result<i64, SourceError> {
        let (k, v) = wire::CHANNEL_LIST_QUERY;
        let data = self.call(reqwest::Method::GET, &wire::channel_list_path(team), &[(k, v.to_string())], None).await?;
        wire::default_channel(&data)
            .ok_or_else(|| cfg_err("psa/channel_list returned no channel; set sources.splashtop.channel_id".into()))
    }

    pub async fn create_support_session(&self, team: i64, body: &Value) -> Result<SupportSession, SourceError> {
        let path = wire::support_sessions_path(team);
        let data = self.call(reqwest::Method::POST, &path, &[], Some(body)).await?;
        wire::support_session(&data).map_err(|m| SourceError::Vendor {
            source_name: VENDOR.into(),
            message: format!("POST {path}: {m}"),
            transient: false,
        })
    }
}

fn cfg_err(message: String) -> SourceError {
    SourceError::Vendor { source_name: VENDOR.into(), message, transient: false }
}

/// HTTP status and envelope → data or a typed error. The HTTP status of error results is
/// undocumented, so both are read: a non-2xx without envelope is classified by status.
pub fn classify(
    path: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Result<Decoded<Box<RawValue>>, ApiError> {
    let (env, repairs) = match super::screen::json_body::<wire::Envelope>(body) {
        Ok(d) => (Some(d.value), d.repairs),
        Err(_) => (None, Default::default()),
    };
    let text = String::from_utf8_lossy(body);
    let text = text.as_ref();
    let http_transient = status == 429 || status == 408 || status >= 500;
    let answered = |kind: ResultKind, code: Option<i64>, message: String, transient: bool| -> ApiError {
        Failure {
            kind,
            code,
            retry_after: crate::http::retry_after(headers),
            transient,
            auth_expired: wire::is_expired_token(code, status),
            ..Failure::answered(VENDOR, path, status, message)
        }
        .into()
    };
    match env {
        Some(mut e) if (200..300).contains(&status) && e.ok() => Ok(Decoded { value: e.take_data(), repairs }),
        Some(e) if e.result.is_some() && !http_transient => {
            let code = e.result.expect("checked");
            let kind = wire::result_kind(code);
            Err(answered(kind, Some(code), crate::http::short_body(&e.error_message()), kind == ResultKind::Unknown))
        }
        other => Err(answered(
            if status == 401 { ResultKind::BadToken } else { ResultKind::Unknown },
            other.as_ref().and_then(|e| e.result),
            other.map(|e| e.error_message()).filter(|m| !m.is_empty()).unwrap_or_else(|| {
                if (200..300).contains(&status) {
                    "response without a `result` envelope".into()
                } else {
                    crate::http::short_body(text)
                }
            }),
            http_transient || (200..300).contains(&status),
        )),
    }
}

pub fn oauth_client(cfg: &SplashtopConfig, store: &Store, http: reqwest::Client) -> Result<OAuthClient, SourceError> {
    let app = OAuthApp {
        provider: VENDOR,
        section: "sources.splashtop",
        credential: "splashtop_client_secret",
        client_id: cfg.client_id.clone(),
        client_secret: cfg.client_secret(),
        token_url: cfg.token_url(),
        authorize_url: cfg.authorize_url(),
        redirect_uri: cfg.redirect_uri.clone(),
        max_response: cfg.outbound().limit(),
    };
    Ok(app
        .build(http, store)
        .map_err(cfg_err)?
        // Splashtop separates scopes with commas.
        .with_authorize_params(vec![("scope".into(), cfg.scopes.join(","))])
        .with_refresh_lifetime(
            chrono::Duration::days(cfg.refresh_token_days as i64),
            chrono::Duration::days(cfg.refresh_warn_days as i64),
        ))
}

/// Where the poll stands: a walk over `[from, to)` resumed by page after a restart.
pub type Cursor = super::common::Cursor<WalkAt>;
pub type Walk = super::common::Walk<WalkAt>;

/// How far a Splashtop walk got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WalkAt {
    /// The window's end, fixed for the walk.
    pub to: String,
    /// The next page to fetch (1-based).
    pub page: u64,
}

pub struct SplashtopSource {
    api: SplashtopApi,
    team_id: Option<i64>,
    /// The team id read from `users/basic_info` once per process.
    team: std::sync::OnceLock<i64>,
    per_page: u64,
    overlap: chrono::Duration,
    initial_lookback: chrono::Duration,
    open_max_age: chrono::Duration,
}

impl SplashtopSource {
    pub fn new(cfg: &SplashtopConfig, store: &Store) -> Result<Self, SourceError> {
        Ok(Self::with_api(cfg, SplashtopApi::new(cfg, store)?))
    }

    pub fn with_api(cfg: &SplashtopConfig, api: SplashtopApi) -> Self {
        Self {
            api,
            team_id: cfg.team_id,
            team: std::sync::OnceLock::new(),
            per_page: cfg.page_size.clamp(1, 1000),
            overlap: chrono::Duration::minutes(cfg.overlap_minutes as i64),
            initial_lookback: chrono::Duration::days(cfg.initial_lookback_days as i64),
            open_max_age: chrono::Duration::hours(cfg.open_session_max_age_hours as i64),
        }
    }

    pub fn api(&self) -> &SplashtopApi {
        &self.api
    }

    async fn team(&self) -> Result<i64, SourceError> {
        match self.team.get() {
            Some(t) => Ok(*t),
            None => {
                let t = self.api.team_id(self.team_id).await?;
                Ok(*self.team.get_or_init(|| t))
            }
        }
    }

    async fn walk_from(&self, store: &Store, cur: &Cursor, now: DateTime<Utc>) -> Result<DateTime<Utc>, SourceError> {
        let windows = (self.overlap, self.initial_lookback, self.open_max_age);
        Ok(super::walk_start(store, VENDOR, cur.high_watermark.as_deref(), windows, now).await?)
    }
}

#[async_trait]
impl Source for SplashtopSource {
    fn name(&self) -> &str {
        VENDOR
    }

    /// The session-log API is time-ranged and paged by number. The page token is
    /// `<number>:<digest of the previous page's first log>`, so that a server ignoring `page`
    /// (serving the same page again) ends the read, as in a poll.
    async fn fetch_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: Option<&str>,
    ) -> Result<super::RangePage, SourceError> {
        let (n, previous_first) = match page {
            None => (1, None),
            Some(p) => {
                let (n, prev) = p.split_once(':').unwrap_or((p, ""));
                let n = n.parse::<u64>().map_err(|_| cfg_err(format!("backfill: bad page token {p:?}")))?;
                (n, Some(prev.to_string()))
            }
        };
        let team = self.team().await?;
        let mut p = self.api.logs_page(team, from, to, n, self.per_page).await?;
        let first = p.logs.first().map(|v| {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(v.get().as_bytes())[..8])
        });
        let stuck = first.is_some() && first == previous_first;
        if stuck {
            tracing::warn!(source = VENDOR, page = n, "vendor repeated the previous page; ending this backfill");
        }
        let count = p.logs.len() as u64;
        let records = p.take_sessions(Utc::now());
        let seen = (n - 1) * self.per_page + count;
        let more = !stuck && count > 0 && count >= self.per_page && p.total.is_none_or(|t| seen < t);
        Ok(super::RangePage {
            records,
            next: more.then(|| format!("{}:{}", n + 1, first.unwrap_or_default())),
            remaining: p.total.map(|t| t.saturating_sub(seen)),
        })
    }

    async fn poll(&self, store: &Store, pages: Pages, cancel: &CancellationToken) -> Result<WalkEnd, SourceError> {
        let now = Utc::now();
        let saved = cursors::load(store, VENDOR).await?;
        let first_poll = saved.is_none();
        let mut cur = Cursor::from_saved(saved.as_deref());
        let mut walk = match cur.resume(VENDOR) {
            Some(w) => w,
            // A fixed upper bound keeps page numbers stable while new sessions arrive.
            None => Walk::start(ts(self.walk_from(store, &cur, now).await?), WalkAt { to: ts(now), page: 1 }),
        };
        let team = self.team().await?;
        let from = parse_ts(&walk.from).unwrap_or(now - self.initial_lookback);
        let to = parse_ts(&walk.to).unwrap_or(now);
        if first_poll {
            super::first_poll_notice(VENDOR, from, self.initial_lookback.num_days().max(0) as u64);
        }
        let mut previous_first: Option<String> = None;
        loop {
            if cancel.is_cancelled() {
                return Ok(WalkEnd::Cancelled);
            }
            let mut page = self.api.logs_page(team, from, to, walk.page, self.per_page).await?;
            let first = page.logs.first().map(|r| r.get().to_string());
            // A server that ignores `page` would serve the same page forever: end the walk.
            let stuck = first.is_some() && first == previous_first;
            if stuck {
                tracing::warn!(
                    source = VENDOR,
                    page = walk.page,
                    "vendor repeated the previous page; ending this walk"
                );
            }
            previous_first = first;
            let count = page.logs.len() as u64;
            let records = page.take_sessions(Utc::now());
            cur.observe(&records);
            let seen = (walk.page - 1) * self.per_page + count;
            let more = !stuck && count > 0 && count >= self.per_page && page.total.is_none_or(|t| seen < t);
            if more {
                walk.page += 1;
                cur.walk = Some(walk.clone());
            } else {
                cur.walk = None;
            }
            // Page numbers can shift when the vendor inserts late records, so no vanished
            // detection here: the overlap re-read picks such records up instead. The last page
            // still ends the walk, which is what marks the poll successful (readiness, the
            // staleness metric): it is committed as complete over an empty range, as Zoom's.
            let now_s = ts(Utc::now());
            let cursor = serde_json::to_string(&cur).unwrap_or_default();
            let complete = (!more).then(|| (now_s.clone(), now_s));
            pages.send(Page { source: VENDOR.into(), records, walk_id: walk.id.clone(), cursor, complete }).await?;
            if !more {
                return Ok(WalkEnd::Complete);
            }
        }
    }
}

/// Splashtop's part of a note: connection details, transfers and the chat transcript.
pub struct Notes;

impl super::VendorNotes for Notes {
    fn vendor(&self) -> &'static str {
        wire::VENDOR
    }
    fn display_name(&self) -> &'static str {
        "Splashtop"
    }
    fn extras(&self, s: &StoredSession) -> NoteExtras {
        note_extras(s)
    }
}

/// The file-transfer table and the chat transcript of a session log, for its note.
pub fn note_extras(s: &StoredSession) -> NoteExtras {
    let Ok(raw) = serde_json::from_str::<Value>(&s.raw_json) else { return NoteExtras::default() };
    let mut x = NoteExtras {
        fields: wire::connection_details(&raw).into_iter().map(|(l, v)| Field { label: l.into(), value: v }).collect(),
        ..Default::default()
    };
    let transfers = wire::file_transfers(&raw);
    if !transfers.is_empty() {
        let mut t = format!("File transfers ({}):\n", transfers.len());
        t.push_str("| Time | Direction | File | Size |\n|---|---|---|---|\n");
        for f in &transfers {
            let cell = |v: Option<&str>| v.unwrap_or("-").replace('|', "\\|").replace('\n', " ");
            t.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(f.time.as_deref()),
                cell(f.direction.as_deref()),
                cell(f.file_name.as_deref()),
                f.size.map(human_size).unwrap_or_else(|| "-".into())
            ));
        }
        x.body = Some(t);
    }
    if let Some(lines) = wire::chat_transcript(&raw) {
        let mut text = String::new();
        for l in &lines {
            text.push_str(&format!(
                "[{}] {}: {}\n",
                l.time.as_deref().unwrap_or("-"),
                l.from.as_deref().unwrap_or("?"),
                l.text.as_deref().unwrap_or("")
            ));
        }
        x.attachments.push(Attachment {
            filename: format!("splashtop-chat-{}.txt", s.external_id),
            content_type: "text/plain".into(),
            text,
        });
    }
    x
}

fn human_size(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Customer name cut to the vendor's limit; says whether it was cut.
pub fn customer_name(name: &str) -> (String, bool) {
    let cut: String = name.chars().take(wire::CUSTOMER_NAME_MAX).collect();
    let was_cut = cut.chars().count() < name.chars().count();
    (cut, was_cut)
}

pub fn customer_issue(cfg: &SplashtopConfig, ticket: &str) -> String {
    cfg.issue_template.replace("{ticket}", ticket).chars().take(wire::CUSTOMER_ISSUE_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_to_64_characters() {
        let long = "é".repeat(70);
        let (n, cut) = customer_name(&long);
        assert_eq!((n.chars().count(), cut), (64, true));
        assert_eq!(customer_name("Jane"), ("Jane".to_string(), false));
    }

    #[test]
    fn envelope_errors_are_typed() {
        let h = reqwest::header::HeaderMap::new();
        let e = classify("/x", 404, &h, br#"{"result":40404,"message":"session closed"}"#).unwrap_err();
        assert_eq!((e.kind, e.code, e.transient), (ResultKind::SessionGone, Some(40404), false));
        assert!(e.to_string().contains("session closed") && e.to_string().contains("40404"), "{e}");
        let e = classify("/x", 200, &h, br#"{"result":49999}"#).unwrap_err();
        assert!(e.transient);
        let e = classify("/x", 503, &h, b"<html>").unwrap_err();
        assert!(e.transient);
        assert_eq!(classify("/x", 200, &h, br#"{"result":20200,"data":{"a": 1}}"#).unwrap().value.get(), r#"{"a": 1}"#);
        assert_eq!(classify("/x", 200, &h, br#"{"result":20200}"#).unwrap().value.get(), "null");
    }
}
