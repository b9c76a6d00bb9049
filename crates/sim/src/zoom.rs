//! A Zoom simulator (OAuth at `/oauth/*`, REST at `/v2`) on 127.0.0.1, following
//! vendor-apis part B: Basic client authentication, rotating refresh tokens,
//! `account_credentials`, error bodies `{code, message}`, `next_page_token` paging whose
//! tokens expire, UUIDs that must be double-encoded, late cloud recordings, 429s.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub const SIM_USER_ID: &str = "z8yCxjabcdEFGHfp8uQ";
pub const SIM_USER_EMAIL: &str = "tech@example.com";
pub const SIM_USER_NAME: &str = "Jon Snow";

#[derive(Clone, Debug)]
pub struct ZoomSimOptions {
    pub client_id: String,
    pub client_secret: String,
    /// Server-to-Server account id accepted by `account_credentials`.
    pub account_id: String,
    pub access_ttl_secs: i64,
    pub daily_create_limit: usize,
    pub page_token_ttl: Duration,
}

impl Default for ZoomSimOptions {
    fn default() -> Self {
        Self {
            client_id: "zoom-client".into(),
            client_secret: "zoom-secret".into(),
            account_id: "Cx3wERazSgup7ZWRHQM8-w".into(),
            access_ttl_secs: 3599,
            daily_create_limit: 100,
            page_token_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// A canned answer for the next `times` requests whose path starts with `path_prefix`.
#[derive(Clone, Debug)]
pub struct ZoomFault {
    pub path_prefix: String,
    pub times: usize,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

#[derive(Clone, Debug)]
pub struct ZoomRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Status sent; 0 while the answer is still pending.
    pub status: u16,
    /// The bearer token (tests compare it with the stored one; never a real secret).
    pub bearer: Option<String>,
}

struct Meeting {
    id: i64,
    user: String,
    created: Value,
    /// Ended instance (`GET /past_meetings/{id}` answer) once the meeting was held.
    past: Option<Value>,
    participants: Vec<Value>,
    recording: Option<Value>,
    recording_visible: bool,
}

#[derive(Default)]
struct St {
    codes: HashMap<String, String>,
    /// PKCE: the `code_challenge` (S256) an authorization request carried, by code.
    challenges: HashMap<String, String>,
    pkce_refused: usize,
    access: HashMap<String, DateTime<Utc>>,
    refresh: HashSet<String>,
    grants: Vec<String>,
    meetings: Vec<Meeting>,
    creates: HashMap<String, usize>,
    page_tokens: HashMap<String, (String, usize, Instant)>,
    expire_next_tokens: usize,
    faults: VecDeque<ZoomFault>,
    log: Vec<ZoomRequest>,
    api_delay: Option<Duration>,
    /// Held before the token endpoint answers (a slow vendor, or a test lining a refresh up
    /// with another source's page transaction).
    token_delay: Option<Duration>,
    next_id: i64,
}

struct Inner {
    opts: ZoomSimOptions,
    base_url: String,
    st: Mutex<St>,
    mis: super::MisEncoding,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct ZoomSim {
    pub base_url: String,
    inner: Arc<Inner>,
    server: crate::Served,
}

fn err(status: u16, code: i64, message: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (s, Json(json!({"code": code, "message": message}))).into_response()
}

fn oauth_err(status: u16, error: &str, reason: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (s, Json(json!({"reason": reason, "error": error}))).into_response()
}

fn random(n: usize) -> String {
    use rand::distr::Alphanumeric;
    use rand::Rng;
    rand::rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_map(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

impl ZoomSim {
    pub async fn start(opts: ZoomSimOptions) -> std::io::Result<ZoomSim> {
        let (listener, base_url) = crate::listen(0).await?;
        let st = St { next_id: 85_746_065_432, ..St::default() };
        let inner = Arc::new(Inner { opts, base_url: base_url.clone(), st: Mutex::new(st), mis: Default::default() });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        Ok(ZoomSim { base_url, inner, server: crate::Served::serve(listener, app) })
    }

    /// From now on `text` goes out as `bytes` in every API answer (see [`super::MisEncoding`]).
    pub fn mis_encode(&self, text: &str, bytes: &[u8]) {
        self.inner.mis.add(text, bytes);
    }

    /// REST base (`api_url` in the configuration).
    pub fn api_url(&self) -> String {
        format!("{}/v2", self.base_url)
    }

    /// The meeting was held: `GET /past_meetings/{id}` answers from now on. Returns its UUID.
    pub fn end_meeting(
        &self,
        id: i64,
        uuid: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        participants: Vec<Value>,
    ) -> String {
        let uuid = uuid.map(str::to_string).unwrap_or_else(|| format!("{}==", random(22)));
        let mut g = self.inner.lock();
        let Some(m) = g.meetings.iter_mut().find(|m| m.id == id) else { panic!("no meeting {id}") };
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        m.past = Some(json!({
            "uuid": uuid, "id": id, "host_id": SIM_USER_ID, "type": 2, "topic": m.created["topic"],
            "user_name": SIM_USER_NAME, "user_email": SIM_USER_EMAIL, "start_time": fmt(start), "end_time": fmt(end),
            "duration": (end - start).num_minutes(), "total_minutes": (end - start).num_minutes(),
            "participants_count": participants.len(), "dept": "", "source": "Zoom"
        }));
        m.participants = participants;
        uuid
    }

    /// A cloud recording for an ended meeting; `visible = false` models Zoom still
    /// processing it (it is not listed until [`ZoomSim::publish_recording`]).
    pub fn add_recording(&self, meeting_id: i64, visible: bool) {
        let mut g = self.inner.lock();
        let Some(m) = g.meetings.iter_mut().find(|m| m.id == meeting_id) else { panic!("no meeting {meeting_id}") };
        let past = m.past.clone().expect("end_meeting first");
        let uuid = past["uuid"].as_str().unwrap_or_default().to_string();
        let slug = random(12);
        m.recording = Some(json!({
            "uuid": uuid, "id": meeting_id, "account_id": "Cx3wERazSgup7ZWRHQM8-w", "host_id": SIM_USER_ID,
            "topic": past["topic"], "type": 2, "start_time": past["start_time"], "duration": past["duration"],
            "total_size": 37795, "recording_count": 2,
            "share_url": format!("https://us05web.zoom.us/rec/share/{slug}"),
            "recording_files": [
                {"id": format!("{slug}-mp4"), "meeting_id": uuid, "recording_start": past["start_time"],
                 "recording_end": past["end_time"], "file_type": "MP4", "file_extension": "MP4", "file_size": 37283,
                 "play_url": format!("https://us05web.zoom.us/rec/play/{slug}"),
                 "download_url": format!("https://us05web.zoom.us/rec/download/{slug}"),
                 "status": "completed", "recording_type": "shared_screen_with_speaker_view"},
                {"id": format!("{slug}-chat"), "meeting_id": uuid, "recording_start": past["start_time"],
                 "recording_end": past["end_time"], "file_type": "CHAT", "file_extension": "TXT", "file_size": 512,
                 "download_url": format!("https://us05web.zoom.us/rec/download/{slug}-chat"),
                 "status": "completed", "recording_type": "chat_file"}
            ]
        }));
        m.recording_visible = visible;
    }

    pub fn publish_recording(&self, meeting_id: i64) {
        let mut g = self.inner.lock();
        if let Some(m) = g.meetings.iter_mut().find(|m| m.id == meeting_id) {
            m.recording_visible = true;
        }
    }

    /// Bodies of the meetings created through the API (with their `id`).
    pub fn created_meetings(&self) -> Vec<Value> {
        self.inner.lock().meetings.iter().map(|m| m.created.clone()).collect()
    }

    pub fn fail_next(&self, f: ZoomFault) {
        self.inner.lock().faults.push_back(f);
    }

    /// The next `n` requests carrying a `next_page_token` find it expired (as after 15 min).
    pub fn expire_next_page_tokens(&self, n: usize) {
        self.inner.lock().expire_next_tokens = n;
    }

    /// Hold every `/v2` answer this long (to kill a client in the middle of a call).
    pub fn set_api_delay(&self, d: Option<Duration>) {
        self.inner.lock().api_delay = d;
    }

    pub fn set_token_delay(&self, d: Option<Duration>) {
        self.inner.lock().token_delay = d;
    }

    /// Grant types of the token requests answered with 200, in order.
    pub fn grants(&self) -> Vec<String> {
        self.inner.lock().grants.clone()
    }

    /// Code exchanges refused for a missing or wrong PKCE `code_verifier`.
    pub fn pkce_refused(&self) -> usize {
        self.inner.lock().pkce_refused
    }

    /// Refresh tokens that still work (the latest of each chain).
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.inner.lock().refresh.iter().cloned().collect()
    }

    /// Invalidate every access token (the next API call gets 401 code 124).
    pub fn revoke_access_tokens(&self) {
        self.inner.lock().access.clear();
    }

    pub fn log(&self) -> Vec<ZoomRequest> {
        self.inner.lock().log.clone()
    }

    /// Stops the server (dropping it does the same).
    pub fn shutdown(self) {
        drop(self.server);
    }
}

/// The authorize page approves at once and redirects with a one-time code.
fn authorize(inner: &Inner, q: &HashMap<String, String>) -> Response {
    if q.get("client_id") != Some(&inner.opts.client_id) || q.get("response_type").map(String::as_str) != Some("code") {
        return oauth_err(400, "invalid_request", "Invalid client_id or response_type");
    }
    let Some(redirect) = q.get("redirect_uri") else {
        return oauth_err(400, "invalid_request", "redirect_uri missing");
    };
    // PKCE (RFC 7636): only S256 is taken; `plain` is refused as Zoom discourages it.
    let challenge = q.get("code_challenge").cloned();
    if challenge.is_some() && q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return oauth_err(400, "invalid_request", "Unsupported code_challenge_method");
    }
    let code = random(32);
    let mut st = inner.lock();
    st.codes.insert(code.clone(), redirect.clone());
    if let Some(c) = challenge {
        st.challenges.insert(code.clone(), c);
    }
    drop(st);
    let mut u = match url::Url::parse(redirect) {
        Ok(u) => u,
        Err(_) => return oauth_err(400, "invalid_request", "Invalid redirect_uri"),
    };
    u.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = q.get("state") {
        u.query_pairs_mut().append_pair("state", s);
    }
    (StatusCode::FOUND, [(header::LOCATION, u.to_string())]).into_response()
}

fn issue(inner: &Inner, st: &mut St, with_refresh: bool) -> Value {
    let access = format!("eyJ.{}", random(40));
    st.access.insert(access.clone(), Utc::now() + chrono::Duration::seconds(inner.opts.access_ttl_secs));
    let mut v = json!({
        "access_token": access, "token_type": "bearer", "expires_in": inner.opts.access_ttl_secs,
        "scope": "meeting:write meeting:read recording:read user:read", "api_url": inner.base_url,
    });
    if with_refresh {
        let r = format!("eyJr.{}", random(40));
        st.refresh.insert(r.clone());
        v["refresh_token"] = json!(r);
    }
    v
}

fn token(inner: &Inner, headers: &HeaderMap, query: &str, body: &[u8]) -> Response {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if basic.as_deref() != Some(&format!("{}:{}", inner.opts.client_id, inner.opts.client_secret)) {
        return oauth_err(401, "invalid_client", "Invalid client_id or client_secret");
    }
    let mut p = query_map(query);
    p.extend(query_map(&String::from_utf8_lossy(body)));
    let mut st = inner.lock();
    let grant = p.get("grant_type").cloned().unwrap_or_default();
    let resp = match grant.as_str() {
        "authorization_code" => {
            let code = p.get("code").cloned().unwrap_or_default();
            // A code issued with a challenge is only exchanged with the verifier that hashes to it.
            if let Some(challenge) = st.challenges.remove(&code) {
                let verifier = p.get("code_verifier").map(String::as_str).unwrap_or("");
                let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
                if verifier.is_empty() || hashed != challenge {
                    st.codes.remove(&code);
                    st.pkce_refused += 1;
                    return oauth_err(400, "invalid_grant", "Invalid code_verifier");
                }
            }
            match st.codes.remove(&code) {
                Some(r) if Some(&r) == p.get("redirect_uri") => issue(inner, &mut st, true),
                Some(_) => return oauth_err(400, "invalid_request", "Redirect URI mismatch."),
                None => return oauth_err(400, "invalid_grant", "Invalid authorization code"),
            }
        }
        "refresh_token" => {
            let r = p.get("refresh_token").cloned().unwrap_or_default();
            // Rotation: the refresh token is single-use; the answer carries the next one.
            if !st.refresh.remove(&r) {
                return oauth_err(400, "invalid_grant", "Invalid Token!");
            }
            issue(inner, &mut st, true)
        }
        "account_credentials" => {
            if p.get("account_id") != Some(&inner.opts.account_id) {
                return oauth_err(400, "invalid_request", "Invalid account_id");
            }
            issue(inner, &mut st, false)
        }
        _ => return oauth_err(400, "unsupported_grant_type", "Unsupported grant type"),
    };
    st.grants.push(grant);
    Json(resp).into_response()
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    if path == "/oauth/authorize" {
        return authorize(&inner, &query_map(&query));
    }
    if path == "/oauth/token" && method == "POST" {
        let delay = inner.lock().token_delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        return token(&inner, &headers, &query, &body);
    }
    let Some(rest) = path.strip_prefix("/v2") else { return err(404, 404, "Not found") };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let idx = {
        let mut g = inner.lock();
        g.log.push(ZoomRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status: 0,
            bearer: bearer.clone(),
        });
        g.log.len() - 1
    };
    let delay = inner.lock().api_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let resp = api(&inner, &method, rest, &query, bearer.as_deref(), &body);
    inner.lock().log[idx].status = resp.status().as_u16();
    inner.mis.apply(resp).await
}

fn api(inner: &Inner, method: &str, rest: &str, query: &str, bearer: Option<&str>, body: &[u8]) -> Response {
    let mut st = inner.lock();
    let valid = bearer.and_then(|b| st.access.get(b)).is_some_and(|exp| *exp > Utc::now());
    if !valid {
        return err(401, 124, "Invalid access token.");
    }
    if let Some(pos) = st
        .faults
        .iter()
        .position(|f| rest.starts_with(&f.path_prefix) || format!("/v2{rest}").starts_with(&f.path_prefix))
    {
        let f = st.faults[pos].clone();
        if f.times <= 1 {
            st.faults.remove(pos);
        } else {
            st.faults[pos].times -= 1;
        }
        let mut r =
            (StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(f.body)).into_response();
        for (k, v) in f.headers {
            if let (Ok(k), Ok(v)) = (header::HeaderName::from_bytes(k.as_bytes()), header::HeaderValue::from_str(&v)) {
                r.headers_mut().insert(k, v);
            }
        }
        return r;
    }
    let q = query_map(query);
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        ("POST", ["users", user, "meetings"]) => create_meeting(inner, &mut st, &pct_decode(user), body),
        ("GET", ["past_meetings", id]) => match find_past(&st, id) {
            Ok(m) => Json(m.past.clone().unwrap_or_default()).into_response(),
            Err(r) => *r,
        },
        ("GET", ["past_meetings", id, "participants"]) => match find_past(&st, id) {
            Ok(m) => {
                let key = format!("p:{}", m.id);
                let items = m.participants.clone();
                page(inner, &mut st, &q, key, items, "participants", json!({}))
            }
            Err(r) => *r,
        },
        ("GET", ["users", _user, "recordings"]) => {
            let today = Utc::now().format("%Y-%m-%d").to_string();
            let from = q.get("from").cloned().unwrap_or(today.clone());
            let to = q.get("to").cloned().unwrap_or(today);
            let items: Vec<Value> = st
                .meetings
                .iter()
                .filter(|m| m.recording_visible)
                .filter_map(|m| m.recording.clone())
                .filter(|r| {
                    let d = r["start_time"].as_str().unwrap_or("").get(..10).unwrap_or("").to_string();
                    d >= from && d <= to
                })
                .collect();
            let key = format!("r:{from}:{to}");
            page(inner, &mut st, &q, key, items, "meetings", json!({"from": from, "to": to}))
        }
        _ => err(404, 404, "Not found"),
    }
}

/// `{id}` is a meeting id or a UUID. UUIDs that start with `/` or contain `//` only
/// survive Zoom's routing when encoded twice: encoded once, they are not found.
fn find_past<'a>(st: &'a St, raw: &str) -> Result<&'a Meeting, Box<Response>> {
    let once = pct_decode(raw);
    let id = if once.contains('%') { pct_decode(&once) } else { once.clone() };
    let single_encoded_slashes = !once.contains('%') && (once.starts_with('/') || once.contains("//"));
    let found = st.meetings.iter().find(|m| {
        m.past.as_ref().is_some_and(|p| {
            p["uuid"].as_str() == Some(id.as_str()) || p["id"].as_i64().is_some_and(|n| n.to_string() == id)
        })
    });
    match found {
        Some(m) if !single_encoded_slashes => Ok(m),
        _ => Err(Box::new(err(404, 3001, &format!("Meeting does not exist: {id}.")))),
    }
}

fn page(
    inner: &Inner,
    st: &mut St,
    q: &HashMap<String, String>,
    key: String,
    items: Vec<Value>,
    field: &str,
    mut extra: Value,
) -> Response {
    let size: usize = q.get("page_size").and_then(|s| s.parse().ok()).unwrap_or(30).clamp(1, 300);
    let offset = match q.get("next_page_token").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => {
            let expired_now = st.expire_next_tokens > 0;
            if expired_now {
                st.expire_next_tokens -= 1;
            }
            match st.page_tokens.get(t) {
                Some((k, off, at)) if *k == key && !expired_now && at.elapsed() < inner.opts.page_token_ttl => *off,
                _ => return err(400, 300, "The next page token is invalid or expired."),
            }
        }
    };
    let end = (offset + size).min(items.len());
    let next = if end < items.len() {
        let t = random(32);
        st.page_tokens.insert(t.clone(), (key, end, Instant::now()));
        t
    } else {
        String::new()
    };
    extra[field] = Value::Array(items[offset.min(end)..end].to_vec());
    extra["next_page_token"] = json!(next);
    extra["page_size"] = json!(size);
    extra["total_records"] = json!(items.len());
    extra["page_count"] = json!(items.len().div_ceil(size));
    Json(extra).into_response()
}

fn create_meeting(inner: &Inner, st: &mut St, user: &str, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return err(400, 300, "Request Body should be a valid JSON object.");
    };
    let topic = req["topic"].as_str().unwrap_or("Zoom Meeting").to_string();
    if topic.chars().count() > 200 {
        return json_err_fields("topic");
    }
    let n = st.creates.entry(user.to_string()).or_default();
    *n += 1;
    if *n > inner.opts.daily_create_limit {
        let midnight = (Utc::now() + chrono::Duration::days(1)).date_naive().and_hms_opt(0, 0, 0).unwrap_or_default();
        let msg = format!(
            "You have exceeded the daily rate limit ({}) of Meeting Create/Update API requests permitted for this particular user. You may resume these requests at GMT 00:00:00.",
            inner.opts.daily_create_limit
        );
        let mut r = err(429, 429, &msg);
        let h = r.headers_mut();
        h.insert("x-ratelimit-category", header::HeaderValue::from_static("Medium"));
        h.insert("x-ratelimit-type", header::HeaderValue::from_static("Daily-limit"));
        if let Ok(v) = header::HeaderValue::from_str(&format!("{}Z", midnight.format("%Y-%m-%dT%H:%M:%S"))) {
            h.insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    st.next_id += 1;
    let id = st.next_id;
    let pwd = format!("{:06}", rand::random::<u32>() % 1_000_000);
    let enc = random(24);
    let created = json!({
        "id": id, "uuid": format!("{}==", random(22)), "host_id": SIM_USER_ID, "host_email": SIM_USER_EMAIL,
        "topic": topic, "type": req["type"].as_i64().unwrap_or(2), "status": "waiting",
        "start_time": req["start_time"], "duration": req["duration"], "timezone": req["timezone"],
        "agenda": req["agenda"], "created_at": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "password": pwd, "encrypted_password": enc, "h323_password": pwd, "pstn_password": pwd,
        "join_url": format!("https://us05web.zoom.us/j/{id}?pwd={enc}"),
        "start_url": format!("https://us05web.zoom.us/s/{id}?zak=eyJ{}", random(30)),
        "settings": req["settings"],
    });
    st.meetings.push(Meeting {
        id,
        user: user.to_string(),
        created: created.clone(),
        past: None,
        participants: vec![],
        recording: None,
        recording_visible: false,
    });
    (StatusCode::CREATED, Json(created)).into_response()
}

fn json_err_fields(field: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"code": 300, "message": "Validation Failed.", "errors": [{"field": field, "message": "Invalid field."}]})),
    )
        .into_response()
}

/// A participant record as `GET /past_meetings/{uuid}/participants` lists it.
pub fn participant(name: &str, email: &str, join: DateTime<Utc>, leave: DateTime<Utc>) -> Value {
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "id": random(22), "name": name, "user_id": "27423744", "registrant_id": "", "user_email": email,
        "join_time": fmt(join), "leave_time": fmt(leave), "duration": (leave - join).num_seconds(),
        "failover": false, "status": "in_meeting", "internal_user": false
    })
}

impl ZoomSim {
    /// How many meetings this user created through the API.
    pub fn meetings_of(&self, user: &str) -> usize {
        self.inner.lock().meetings.iter().filter(|m| m.user == user).count()
    }
}
