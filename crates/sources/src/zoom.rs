//! Zoom: meetings created for tickets (`POST /users/{userId}/meetings`), and a source that
//! polls the ended ones (participants, cloud recordings) back onto their tickets. Wire
//! details live in `wire.rs`, configuration in `config.rs`.

pub mod config;
mod launch;
mod section;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::screen::{self, json_body, Decoded, Repairs};
use super::{Pages, Rejected, Source, SourceError, WalkEnd};
use crate::http::{ApiError, Auth, CallError, ErrorKind, Failure, OAuthApp, VendorClient};
use crate::note::{human_duration, Link};
use crate::oauth::{ClientAuth, OAuthClient};
use crate::session::{parse_ts, ts, NewSession};
use crate::store::sessions::StoredSession;
use crate::store::Store;
pub use config::ZoomConfig;
use config::{ZoomAccount, ZoomAuth};
use wire::{
    uuid_segment, CreatedMeeting, ErrorBody, MeetingRecord, Page, Participant, PastMeeting, RecordingMeeting, VENDOR,
};

/// How often one walk is restarted after its `next_page_token` expired before giving up
/// for this poll (the next poll starts again; nothing is committed from a partial walk).
const WALK_RESTARTS: usize = 3;

/// Zoom answers 400 or 404 naming the token when a `next_page_token` expired (15 min).
fn page_token_expired(e: &ApiError) -> bool {
    let m = e.message.to_ascii_lowercase();
    matches!(e.status, Some(400 | 404)) && (m.contains("next_page_token") || m.contains("next page token"))
}

/// One Zoom account's API client.
pub struct ZoomApi {
    api: VendorClient,
    base: String,
    pub account: ZoomAccount,
    oauth: Arc<OAuthClient>,
    page_size: u32,
}

pub fn oauth_client(
    cfg: &ZoomConfig,
    index: usize,
    store: &Store,
    http: reqwest::Client,
) -> Result<OAuthClient, SourceError> {
    let a = &cfg.accounts[index];
    let base = cfg.oauth_url.trim_end_matches('/');
    let app = OAuthApp {
        provider: &a.token_key(),
        section: &format!("sources.zoom.accounts[{index}]"),
        credential: &a.credential_name(),
        client_id: Some(a.client_id.clone()),
        client_secret: a.client_secret(index),
        token_url: format!("{base}/oauth/token"),
        authorize_url: format!("{base}/oauth/authorize"),
        redirect_uri: a.redirect_uri.clone(),
        max_response: cfg.outbound().limit(),
    };
    let client = app
        .build(http, store)
        .map_err(cfg_err)?
        .with_client_auth(ClientAuth::Basic)
        // Zoom documents PKCE (S256) for user authorization (docs/security/oauth.md).
        .with_pkce();
    Ok(match (a.auth, &a.account_id) {
        (ZoomAuth::ServerToServer, Some(id)) => client.with_account_credentials(id.clone()),
        _ => client,
    })
}

fn cfg_err(message: String) -> SourceError {
    SourceError::Vendor { source_name: VENDOR.into(), message, transient: false }
}

impl ZoomApi {
    pub fn new(cfg: &ZoomConfig, index: usize, store: &Store) -> Result<ZoomApi, SourceError> {
        let http = cfg
            .outbound()
            .client(Duration::from_secs(cfg.request_timeout_secs.max(1)))
            .map_err(|e| cfg_err(e.to_string()))?;
        let oauth = Arc::new(oauth_client(cfg, index, store, http.clone())?);
        let base = cfg.api_url.trim_end_matches('/').to_string();
        let api = VendorClient::new(VENDOR, http, base.clone(), Auth::OAuth(oauth.clone()), cfg.outbound().limit())
            .accept_json();
        Ok(ZoomApi { api, base, account: cfg.accounts[index].clone(), oauth, page_size: cfg.page_size.clamp(1, 300) })
    }

    pub fn with_max_retries(self, n: usize) -> Self {
        ZoomApi { api: self.api.with_max_retries(n), ..self }
    }

    pub fn oauth(&self) -> &Arc<OAuthClient> {
        &self.oauth
    }

    /// One request through the vendor client: 429 (per-second limits), 5xx and transport
    /// errors back off and retry, honouring `Retry-After` (seconds or a date); a rejected
    /// access token is refreshed once. The daily meeting-create limit is not retried.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, CallError> {
        self.api.call_body(method, path, query, body, classify).await
    }

    /// The source's error for a failed call: the account and what was called, the vendor's
    /// status and code kept, and what the operator can do.
    fn vendor_err(&self, e: CallError, what: &str) -> SourceError {
        let mut e = match e {
            CallError::Api(e) => e,
            CallError::OAuth(e) => return SourceError::OAuth(e),
        };
        e.hint = match e.kind {
            ErrorKind::DailyLimit => Some(format!(
                "Zoom's daily limit of meeting create/update requests for user {:?} is reached; Zoom accepts new ones after 00:00 UTC{}",
                self.account.user_id,
                e.retry_after.map(|d| format!(", in {}", human_duration(d.as_secs() as i64))).unwrap_or_default()
            )),
            ErrorKind::BadToken => Some(format!("token rejected: run `ticketsync auth zoom --account {}`", self.account.name)),
            ErrorKind::NotAllowed => {
                Some("the app lacks a scope: meeting:write, meeting:read, recording:read, user:read".into())
            }
            _ => None,
        };
        e.what = format!("account {}: {what}", self.account.name);
        SourceError::Api(e)
    }

    /// `POST /users/{userId}/meetings`.
    pub async fn create_meeting(&self, body: &Value) -> Result<(CreatedMeeting, Value), SourceError> {
        let path = format!("/users/{}/meetings", uuid_segment(&self.account.user_id));
        let text = self
            .call(reqwest::Method::POST, &path, &[], Some(body))
            .await
            .map_err(|e| self.vendor_err(e, "creating a meeting"))?;
        let raw: Value = serde_json::from_slice(&text).map_err(|e| cfg_err(format!("POST {path}: malformed ({e})")))?;
        let m = serde_json::from_value(raw.clone()).map_err(|e| cfg_err(format!("POST {path}: {e}")))?;
        Ok((m, raw))
    }

    /// `GET /past_meetings/{meetingId}`: `None` while the meeting has not ended (Zoom
    /// answers 404 code 3001 until then).
    pub async fn past_meeting(&self, meeting_id: &str) -> Result<Option<Decoded<Value>>, SourceError> {
        let path = format!("/past_meetings/{}", uuid_segment(meeting_id));
        match self.call(reqwest::Method::GET, &path, &[], None).await {
            Ok(body) => json_body(&body).map(Some).map_err(|e| SourceError::Vendor {
                source_name: VENDOR.into(),
                message: format!("GET {path}: not JSON ({e})"),
                transient: true,
            }),
            Err(CallError::Api(e)) if e.status == Some(404) => Ok(None),
            Err(e) => Err(self.vendor_err(e, &format!("GET {path}"))),
        }
    }

    /// Every item of a paged list. An expired `next_page_token` (15 min) restarts the walk
    /// from the first page, so no page is ever skipped; callers de-duplicate.
    async fn walk(&self, path: &str, query: &[(&str, String)], key: &str) -> Result<Decoded<Vec<Value>>, SourceError> {
        let mut restarts = 0;
        'walk: loop {
            let mut items = Vec::new();
            let mut repairs = Repairs::default();
            let mut token: Option<String> = None;
            loop {
                let mut q = query.to_vec();
                q.push(("page_size", self.page_size.to_string()));
                if let Some(t) = &token {
                    q.push(("next_page_token", t.clone()));
                }
                let what = format!("GET {path}");
                // A page that does not parse is asked for again, as for every vendor.
                let fetched: Result<_, super::PageError<CallError>> =
                    super::fetch_parsed(VENDOR, &what, self.api.max_retries(), || async {
                        let text = self.call(reqwest::Method::GET, path, &q, None).await?;
                        Ok(json_body::<Page>(&text).map_err(|e| e.to_string()))
                    })
                    .await;
                let page = match fetched {
                    Ok(p) => p,
                    Err(super::PageError::Call(CallError::Api(e)))
                        if page_token_expired(&e) && restarts < WALK_RESTARTS =>
                    {
                        restarts += 1;
                        tracing::warn!(source = VENDOR, path, restarts, "next_page_token expired; restarting the walk");
                        continue 'walk;
                    }
                    Err(super::PageError::Call(e)) => return Err(self.vendor_err(e, &what)),
                    Err(super::PageError::Unparsable { attempts, detail }) => {
                        return Err(SourceError::Vendor {
                            source_name: VENDOR.into(),
                            message: format!(
                                "account {}: {what}: malformed page ({detail}), {attempts} attempt(s)",
                                self.account.name
                            ),
                            transient: true,
                        })
                    }
                };
                repairs.merge(page.repairs);
                let page = page.value;
                if let Some(Value::Array(a)) = page.rest.get(key) {
                    items.extend(a.iter().cloned());
                }
                match page.next_page_token.filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t),
                    None => return Ok(Decoded { value: items, repairs }),
                }
            }
        }
    }

    pub async fn participants(&self, uuid: &str) -> Result<Decoded<Vec<Value>>, SourceError> {
        self.walk(&format!("/past_meetings/{}/participants", uuid_segment(uuid)), &[], "participants").await
    }

    /// A harmless read for `doctor`: one item of the user's recordings of today. It proves
    /// the credentials, the token and the `recording:read` scope; returns what was called.
    pub async fn check(&self) -> Result<String, SourceError> {
        let path = self.recordings_path();
        let today = Utc::now().format("%Y-%m-%d").to_string();
        let q = [("from", today.clone()), ("to", today), ("page_size", "1".to_string())];
        let text = self
            .call(reqwest::Method::GET, &path, &q, None)
            .await
            .map_err(|e| self.vendor_err(e, &format!("GET {path}")))?;
        json_body::<Page>(&text).map_err(|e| cfg_err(format!("GET {path}: malformed page ({e})")))?;
        Ok(format!("GET {}{path}", self.base))
    }

    fn recordings_path(&self) -> String {
        format!("/users/{}/recordings", uuid_segment(&self.account.user_id))
    }

    /// The user's cloud recordings of meetings started between `from` and `to` (dates).
    pub async fn recordings(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Decoded<Vec<Value>>, SourceError> {
        let path = self.recordings_path();
        let q = [("from", from.format("%Y-%m-%d").to_string()), ("to", to.format("%Y-%m-%d").to_string())];
        self.walk(&path, &q, "meetings").await
    }
}

/// An answer that is not 2xx, with Zoom's `code` kept.
fn classify(status: u16, headers: &reqwest::header::HeaderMap, body: &str) -> ApiError {
    let e: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let message =
        if e.message.is_empty() { crate::http::short_body(body) } else { crate::http::short_body(&e.message) };
    let limit_type = headers.get("x-ratelimit-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let daily_limit = status == 429
        && (limit_type.eq_ignore_ascii_case("daily-limit")
            || message.to_ascii_lowercase().contains("daily rate limit"));
    let kind = match status {
        _ if daily_limit => ErrorKind::DailyLimit,
        429 => ErrorKind::RateLimited,
        401 => ErrorKind::BadToken,
        403 => ErrorKind::NotAllowed,
        404 => ErrorKind::SessionGone,
        400 => ErrorKind::BadParams,
        _ => ErrorKind::Unknown,
    };
    if let Some(t) = headers.get("x-zm-trackingid").and_then(|v| v.to_str().ok()) {
        tracing::debug!(source = VENDOR, tracking_id = t, status, code = ?e.code, "Zoom error");
    }
    Failure {
        kind,
        code: e.code,
        retry_after: crate::http::retry_after(headers),
        transient: !daily_limit && (status == 429 || status >= 500 || status == 408),
        auth_expired: status == 401 && matches!(e.code, Some(124) | None),
        ..Failure::answered(VENDOR, "", status, message)
    }
    .into()
}

/// The body of `POST /users/{userId}/meetings` for a ticket.
pub fn meeting_request(cfg: &ZoomConfig, ticket: &str) -> Value {
    json!({
        "topic": cfg.topic_template.replace("{ticket}", ticket).chars().take(200).collect::<String>(),
        "type": 2,
        "start_time": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "duration": cfg.duration_minutes.max(1),
        "timezone": "UTC",
        "agenda": format!("Helpdesk ticket {ticket}"),
        "settings": { "join_before_host": false, "waiting_room": true, "auto_recording": cfg.auto_recording },
    })
}

/// Polls the ended meetings that were created for tickets, for every configured account.
pub struct ZoomSource {
    apis: Vec<ZoomApi>,
    deadline: chrono::Duration,
    lookback: chrono::Duration,
    expect_recordings: bool,
    default_account: String,
    /// For backfill, which reads the links of a time range (a poll is handed the store).
    store: Store,
}

/// Links a backfill page reads: each costs a few calls (the meeting, its participants).
const BACKFILL_LINKS_PER_PAGE: usize = 20;

impl ZoomSource {
    pub fn new(cfg: &ZoomConfig, store: &Store) -> Result<Self, SourceError> {
        let apis = (0..cfg.accounts.len()).map(|i| ZoomApi::new(cfg, i, store)).collect::<Result<Vec<_>, _>>()?;
        let default_account = cfg.account(None).map(|(_, a)| a.name.clone()).unwrap_or_default();
        Ok(ZoomSource {
            apis,
            deadline: chrono::Duration::minutes(cfg.recording_deadline_minutes as i64),
            lookback: chrono::Duration::days(cfg.lookback_days.max(1) as i64),
            expect_recordings: cfg.auto_recording == "cloud",
            default_account,
            store: store.clone(),
        })
    }

    /// The account a link's meeting was created with (`default_account` before accounts were named).
    fn account_of<'a>(&'a self, l: &'a crate::store::links::OpenLink) -> &'a str {
        l.details.as_ref().and_then(|d| d.get("account")).and_then(Value::as_str).unwrap_or(&self.default_account)
    }

    async fn poll_account(
        &self,
        api: &ZoomApi,
        links: &[crate::store::links::OpenLink],
        pages: &Pages,
    ) -> Result<(), SourceError> {
        let now = Utc::now();
        let mine: Vec<_> = links.iter().filter(|l| self.account_of(l) == api.account.name).collect();
        let (records, ended) = self.read_meetings(api, &mine, now).await?;
        let walk_id = uuid::Uuid::new_v4().simple().to_string();
        let cursor_key = format!("{VENDOR}:{}", api.account.name);
        let cursor = json!({"last_poll_at": ts(now), "ended_meetings_seen": ended}).to_string();
        // A finished poll, but with an empty range: meetings are read by link, so a meeting
        // missing from this poll has not vanished.
        let now_s = ts(now);
        let complete = Some((now_s.clone(), now_s));
        pages.send(super::Page { source: cursor_key, records, walk_id, cursor, complete }).await
    }

    /// The records of the meetings behind `links` (one account's) that have ended: each with
    /// its participants and, when recordings are expected, its cloud recordings; what could
    /// not be read as a session is rejected with the reason. Also how many had ended. The
    /// poll and backfill read meetings this one way.
    async fn read_meetings(
        &self,
        api: &ZoomApi,
        links: &[&crate::store::links::OpenLink],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Result<NewSession, Rejected>>, usize), SourceError> {
        let mut ended: Vec<PastMeeting> = Vec::new();
        let mut records = Vec::new();
        for l in links {
            let Some(Decoded { value: v, repairs }) = api.past_meeting(&l.session_code).await? else { continue };
            if let Some(reason) = screen::problem(&v, repairs) {
                records.push(Err(Rejected {
                    external_id: v.get("uuid").and_then(Value::as_str).map(str::to_string),
                    reason: format!("meeting {}: {reason}", l.session_code),
                    raw: screen::cut_raw(&v).to_string(),
                }));
                continue;
            }
            match serde_json::from_value::<PastMeeting>(v.clone()) {
                Ok(pm) => ended.push(pm),
                // Kept with the reason (serde names the field); the other meetings go on.
                Err(e) => records.push(Err(Rejected {
                    external_id: v.get("uuid").and_then(Value::as_str).map(str::to_string),
                    reason: format!("meeting {}: {e}", l.session_code),
                    raw: v.to_string(),
                })),
            }
        }
        let ended_count = ended.len();
        if ended.is_empty() {
            return Ok((records, 0));
        }
        let mut recordings: HashMap<String, RecordingMeeting> = HashMap::new();
        if self.expect_recordings {
            let starts: Vec<DateTime<Utc>> = ended.iter().filter_map(|m| parse_ts(&m.start_time)).collect();
            let latest = (now + chrono::Duration::days(1)).date_naive();
            let to = starts.iter().max().map_or(latest, |t| (*t + chrono::Duration::days(1)).date_naive().min(latest));
            let mut from = (starts.iter().min().copied().unwrap_or(now) - chrono::Duration::days(1)).date_naive();
            // Zoom answers at most one month per call: older meetings (a backfill) take more.
            while from <= to {
                let until = (from + chrono::Duration::days(30)).min(to);
                for v in api.recordings(from, until).await?.value {
                    if let Ok(r) = serde_json::from_value::<RecordingMeeting>(v) {
                        recordings.insert(r.uuid.clone(), r);
                    }
                }
                from = until + chrono::Duration::days(1);
            }
        }
        for pm in ended {
            let mut participants: Vec<Participant> = Vec::new();
            let Decoded { value: people, repairs } = api.participants(&pm.uuid).await?;
            for v in people {
                if let Some(reason) = screen::problem(&v, repairs) {
                    // The meeting's note still goes out, without this participant.
                    records.push(Err(Rejected {
                        external_id: Some(pm.uuid.clone()),
                        reason: format!("meeting {} participant: {reason}", pm.id),
                        raw: screen::cut_raw(&v).to_string(),
                    }));
                    continue;
                }
                match serde_json::from_value::<Participant>(v.clone()) {
                    Ok(p) if !participants.contains(&p) => participants.push(p),
                    Ok(_) => {}
                    // The meeting's note still goes out, without this participant.
                    Err(e) => records.push(Err(Rejected {
                        external_id: Some(pm.uuid.clone()),
                        reason: format!("meeting {} participant: {e}", pm.id),
                        raw: v.to_string(),
                    })),
                }
            }
            let rec = recordings.remove(&pm.uuid);
            records.push(to_session(
                &api.account.name,
                pm,
                participants,
                rec,
                self.expect_recordings,
                self.deadline,
                now,
            ));
        }
        Ok((records, ended_count))
    }
}

pub fn to_session(
    account: &str,
    pm: PastMeeting,
    participants: Vec<Participant>,
    rec: Option<RecordingMeeting>,
    expect_recordings: bool,
    deadline: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<NewSession, Rejected> {
    let reject = |reason: String, pm: &PastMeeting| Rejected {
        external_id: Some(pm.uuid.clone()),
        reason,
        raw: serde_json::to_string(pm).unwrap_or_default(),
    };
    let start =
        parse_ts(&pm.start_time).ok_or_else(|| reject(format!("start_time: not a date ({:?})", pm.start_time), &pm))?;
    let end = parse_ts(&pm.end_time).ok_or_else(|| reject(format!("end_time: not a date ({:?})", pm.end_time), &pm))?;
    let status = match &rec {
        _ if !expect_recordings => "not_recorded",
        Some(r) if r.complete() => "complete",
        _ if now > end + deadline => "deadline_passed",
        _ => "pending",
    };
    let record = MeetingRecord {
        account: account.to_string(),
        meeting: pm.clone(),
        participants,
        recordings: rec,
        recording_status: status.to_string(),
    };
    Ok(NewSession {
        vendor: VENDOR.into(),
        external_id: pm.uuid.clone(),
        session_code: Some(pm.id.to_string()),
        technician: pm.user_name.clone(),
        technician_id: pm.host_id.clone(),
        device: None,
        device_id: None,
        group_name: None,
        started_at: start,
        // Held back while recordings are still expected: the matcher only writes the note
        // of an ended session, and that note must carry the recordings.
        ended_at: (status != "pending").then_some(end),
        notes: None,
        description: pm.topic.clone(),
        custom_api: None,
        customer_name: None,
        customer_email: None,
        raw_json: serde_json::to_string(&record).unwrap_or_default(),
    })
}

#[async_trait]
impl Source for ZoomSource {
    fn name(&self) -> &str {
        VENDOR
    }

    fn cursor_keys(&self) -> Vec<String> {
        self.apis.iter().map(|a| format!("{VENDOR}:{}", a.account.name)).collect()
    }

    /// The meetings created for tickets (`session create --provider zoom`) in [`from`, `to`),
    /// by when they were created, read again as a poll reads them, ended or not in the store
    /// and whatever `lookback_days` says; a page is [`BACKFILL_LINKS_PER_PAGE`] links.
    async fn fetch_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: Option<&str>,
    ) -> Result<super::RangePage, SourceError> {
        let start = match page {
            None => 0,
            Some(p) => p.parse::<usize>().map_err(|_| cfg_err(format!("backfill: bad page token {p:?}")))?,
        };
        let links = crate::store::links::created_between(&self.store, VENDOR, &ts(from), &ts(to)).await?;
        let end = (start + BACKFILL_LINKS_PER_PAGE).min(links.len());
        let batch = &links[start.min(end)..end];
        let now = Utc::now();
        let mut records = Vec::new();
        for api in &self.apis {
            let mine: Vec<_> = batch.iter().filter(|l| self.account_of(l) == api.account.name).collect();
            if !mine.is_empty() {
                records.extend(self.read_meetings(api, &mine, now).await?.0);
            }
        }
        let left = links.len() - end;
        Ok(super::RangePage { records, next: (left > 0).then(|| end.to_string()), remaining: Some(left as u64) })
    }

    async fn poll(&self, store: &Store, pages: Pages, cancel: &CancellationToken) -> Result<WalkEnd, SourceError> {
        let since = ts(Utc::now() - self.lookback);
        let links = crate::store::links::open_created(store, VENDOR, &since).await?;
        // One account failing (revoked app, outage) does not keep the others from polling.
        let mut first_err = None;
        for api in &self.apis {
            if cancel.is_cancelled() {
                return Ok(WalkEnd::Cancelled);
            }
            match self.poll_account(api, &links, &pages).await {
                Ok(()) => {}
                // The write failed: that is the poll's error, for every account.
                Err(SourceError::Stopped) => return Err(SourceError::Stopped),
                Err(e) => {
                    tracing::warn!(source = VENDOR, account = %api.account.name, error = %e, "Zoom account poll failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(WalkEnd::Complete),
        }
    }
}

fn record_of(s: &StoredSession) -> Option<MeetingRecord> {
    serde_json::from_str(&s.raw_json).ok()
}

fn size(bytes: Option<i64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KB", b as f64 / (1 << 10) as f64),
        Some(b) => format!("{b} B"),
        None => "size unknown".into(),
    }
}

/// Zoom's part of a note: recording links, participants and the recording status.
pub struct Notes;

impl super::VendorNotes for Notes {
    fn vendor(&self) -> &'static str {
        wire::VENDOR
    }
    fn display_name(&self) -> &'static str {
        "Zoom"
    }
    fn links(&self, s: &StoredSession) -> Vec<Link> {
        links_for(s)
    }
    fn extras(&self, s: &StoredSession) -> super::NoteExtras {
        note_extras(s)
    }
}

/// Recording links for the note: the share link, then each file.
pub fn links_for(s: &StoredSession) -> Vec<Link> {
    let Some(r) = record_of(s).and_then(|r| r.recordings) else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(u) = &r.share_url {
        out.push(Link { label: "Recordings (share link)".into(), url: u.clone() });
    }
    for f in &r.recording_files {
        let kind = f.file_type.as_deref().unwrap_or("file");
        let what = f.recording_type.as_deref().map(|t| t.replace('_', " ")).unwrap_or_else(|| kind.to_string());
        match (&f.play_url, &f.download_url) {
            (Some(p), _) => out
                .push(Link { label: format!("Play {kind} recording, {what} ({})", size(f.file_size)), url: p.clone() }),
            (None, Some(d)) => out.push(Link {
                label: format!("Download {kind} ({}, Zoom sign-in needed)", size(f.file_size)),
                url: d.clone(),
            }),
            _ => {}
        }
    }
    out
}

/// Zoom's part of a note: participants and the recording status, as body text.
pub fn note_extras(s: &StoredSession) -> super::NoteExtras {
    super::NoteExtras { body: note_body(s), ..Default::default() }
}

/// Participants and the recording status, as text under the note's fields.
fn note_body(s: &StoredSession) -> Option<String> {
    let r = record_of(s)?;
    let hm = |t: &str| parse_ts(t).map(|t| t.format("%H:%M").to_string()).unwrap_or_else(|| t.to_string());
    let mut out = format!("Participants ({}):\n", r.participants.len());
    for p in &r.participants {
        let email = p.user_email.as_deref().filter(|e| !e.is_empty()).map(|e| format!(" <{e}>")).unwrap_or_default();
        let leave = p.leave_time.as_deref().map(hm).unwrap_or_else(|| "?".into());
        let dur = p.duration.map(human_duration).unwrap_or_else(|| "-".into());
        out.push_str(&format!("- {}{email}: {}–{leave} UTC ({dur})\n", p.name, hm(&p.join_time)));
    }
    match r.recording_status.as_str() {
        "deadline_passed" => out.push_str("Cloud recordings: none available by the configured deadline.\n"),
        "complete" => out.push_str(&format!(
            "Cloud recordings: {} file(s), {} in total (links above).\n",
            r.recordings.as_ref().map(|x| x.recording_files.len()).unwrap_or(0),
            size(r.recordings.as_ref().and_then(|x| x.total_size))
        )),
        _ => {}
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn vendor_error_codes_are_kept_typed() {
        let h = HeaderMap::new();
        let e = classify(401, &h, r#"{"code":124,"message":"Invalid access token."}"#);
        assert_eq!((e.kind, e.code, e.auth_expired, e.transient), (ErrorKind::BadToken, Some(124), true, false));
        let e = classify(404, &h, r#"{"code":3001,"message":"Meeting does not exist."}"#);
        assert_eq!((e.kind, e.code), (ErrorKind::SessionGone, Some(3001)));
        let mut daily = HeaderMap::new();
        daily.insert("x-ratelimit-type", HeaderValue::from_static("Daily-limit"));
        let e = classify(429, &daily, r#"{"code":429,"message":"You have reached the maximum."}"#);
        assert_eq!((e.kind, e.transient), (ErrorKind::DailyLimit, false));
        let e = classify(429, &h, r#"{"code":429,"message":"Too many requests."}"#);
        assert_eq!((e.kind, e.transient), (ErrorKind::RateLimited, true));
        let e = classify(400, &h, r#"{"code":300,"message":"The next page token is invalid or expired."}"#);
        assert!(page_token_expired(&e));
    }
}
