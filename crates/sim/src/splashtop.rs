//! A simulator of the Splashtop Open API on 127.0.0.1, speaking the wire format of
//! vendor-apis/splashtop-zoom-visio.md part A: the `result` envelope and its codes (with
//! HTTP 4xx), `users/basic_info`, PSA channels and support sessions, the reconstructed
//! session-log endpoint with page/per_page paging, API tokens, and OAuth (authorization
//! code, refresh with rotation on or off, access-token expiry). It serves the console's
//! `/oauth2/authorize` too, so one simulator stands for both hosts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub use crate::teamviewer::Fault;

pub const SIM_TEAM_ID: i64 = 123456;
pub const SIM_CHANNEL_ID: i64 = 4673;
pub const SIM_ACCOUNT: &str = "owner@example.com";

#[derive(Clone)]
pub struct SimOptions {
    pub api_tokens: Vec<String>,
    /// `(client_id, client_secret)`; `None` accepts any client.
    pub oauth_client: Option<(String, String)>,
    pub access_token_ttl: Duration,
    pub rotate_refresh_tokens: bool,
    pub default_per_page: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            api_tokens: Vec::new(),
            oauth_client: None,
            access_token_ttl: Duration::from_secs(86_400),
            rotate_refresh_tokens: true,
            default_per_page: 100,
        }
    }
}

#[derive(Default)]
struct St {
    logs: Vec<Value>,
    sessions: HashMap<String, Value>,
    access: HashMap<String, Instant>,
    refresh: HashSet<String>,
    codes: HashMap<String, String>,
    faults: VecDeque<Fault>,
    requests: Vec<(String, String, String)>,
    refresh_count: usize,
    next_id: u64,
}

struct Inner {
    opts: SimOptions,
    base_url: String,
    state: Mutex<St>,
    mis: super::MisEncoding,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct SplashtopSim {
    pub base_url: String,
    inner: Arc<Inner>,
    server: crate::Served,
}

fn envelope_err(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"result": code, "message": message, "data": null}))).into_response()
}

fn ok(data: Value) -> Response {
    Json(json!({"result": 20200, "data": data})).into_response()
}

fn rand_token(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}{n:032x}")
}

impl SplashtopSim {
    pub async fn start(opts: SimOptions) -> std::io::Result<SplashtopSim> {
        let (listener, base_url) = crate::listen(0).await?;
        let state = Mutex::new(St::default());
        let inner = Arc::new(Inner { opts, base_url: base_url.clone(), state, mis: Default::default() });
        let app = router(inner.clone());
        Ok(SplashtopSim { base_url, inner, server: crate::Served::serve(listener, app) })
    }

    /// From now on `text` goes out as `bytes` in every answer (see [`super::MisEncoding`]).
    pub fn mis_encode(&self, text: &str, bytes: &[u8]) {
        self.inner.mis.add(text, bytes);
    }

    /// Stores a session-log record exactly as given (malformed ones too).
    pub fn add_log(&self, record: Value) {
        self.inner.lock().logs.push(record);
    }

    /// The technician used a support session created through the API: its log appears.
    #[allow(clippy::too_many_arguments)]
    pub fn connect_session(
        &self,
        code: &str,
        tech: &str,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        file_transfers: Value,
        chat: Option<Value>,
        note: Option<&str>,
    ) {
        let mut st = self.inner.lock();
        let id = st
            .sessions
            .values()
            .find(|s| s["code"].as_str() == Some(code))
            .and_then(|s| s["id"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("x{code}"));
        let mut rec = log_record(&id, Some(code), tech, start, end, note);
        rec["file_transfers"] = file_transfers;
        if let Some(c) = chat {
            rec["chat_transcript"] = c;
        }
        st.logs.push(rec);
    }

    /// `n` ended sessions from `first_start` on, one every 3 minutes; every third carries a
    /// ticket reference `#<10000 + k>` in its note, some have file transfers and a transcript.
    pub fn generate(&self, n: usize, seed: u64, first_start: DateTime<Utc>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut st = self.inner.lock();
        for i in 0..n {
            let start = first_start + chrono::Duration::minutes(3 * i as i64);
            let end = start + chrono::Duration::seconds(rng.random_range(60..1800));
            let note = (i % 3 == 0).then(|| format!("Fixed, see #{}", 10_000 + rng.random_range(0..1000)));
            let mut rec =
                log_record(&format!("gen{seed}-{i:06}"), None, "tech@example.com", start, Some(end), note.as_deref());
            if i % 4 == 0 {
                rec["file_transfers"] = json!([{"file_name": format!("log-{i}.zip"), "size": rng.random_range(1..5_000_000u64), "direction": "download", "time": start.to_rfc3339()}]);
                rec["chat_transcript"] = json!([{"time": start.to_rfc3339(), "from": "tech@example.com", "text": "Hello, I am connecting now."}]);
            }
            st.logs.push(rec);
        }
    }

    pub fn push_fault(&self, f: Fault) {
        self.inner.lock().faults.push_back(f);
    }

    pub fn expire_access_tokens(&self) {
        let past = Instant::now() - Duration::from_secs(1);
        for v in self.inner.lock().access.values_mut() {
            *v = past;
        }
    }

    pub fn refresh_count(&self) -> usize {
        self.inner.lock().refresh_count
    }

    pub fn refresh_tokens(&self) -> usize {
        self.inner.lock().refresh.len()
    }

    /// Refresh tokens the token endpoint would still accept, to check a stored one without
    /// spending it.
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        self.inner.lock().refresh.iter().cloned().collect()
    }

    /// Requests seen: (method, path, query).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.inner.lock().requests.clone()
    }

    pub fn support_sessions(&self) -> Vec<Value> {
        self.inner.lock().sessions.values().cloned().collect()
    }

    /// Stops the server, letting in-flight requests finish (see [`crate::Served::stop`]).
    pub async fn shutdown(mut self) {
        self.server.stop().await;
    }
}

fn log_record(
    id: &str,
    code: Option<&str>,
    tech: &str,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    note: Option<&str>,
) -> Value {
    let f = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "session_id": id, "support_session_code": code, "user_email": tech,
        "src_name": "TECH-LAPTOP", "src_ip": "203.0.113.5", "dst_name": "DESKTOP-1", "dst_ip": "198.51.100.7",
        "start_time": f(start), "end_time": end.map(f), "duration": end.map(|e| (e - start).num_seconds()),
        "session_type": if code.is_some() { "attended" } else { "unattended" }, "connection_type": "remote",
        "file_transfers": [], "note": note,
    })
}

fn router(inner: Arc<Inner>) -> Router {
    let api = Router::new()
        .route("/users/basic_info", get(basic_info))
        .route("/teams/{team}/psa/channel_list", get(channel_list))
        .route("/teams/{team}/psa/support_sessions", post(create_session))
        .route("/teams/{team}/psa/support_sessions/{id}", get(get_session))
        .route("/teams/{team}/logs/sessions", get(session_logs))
        .route_layer(middleware::from_fn_with_state(inner.clone(), require_auth));
    Router::new()
        .nest("/api/open/v1", api)
        .route("/oauth2/authorize", get(authorize))
        .route("/oauth2/token", post(token))
        .fallback(|| async { envelope_err(StatusCode::NOT_FOUND, 40404, "not found") })
        .layer(middleware::from_fn_with_state(inner.clone(), log_and_faults))
        .with_state(inner)
}

async fn log_and_faults(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let fault = {
        let mut st = inner.lock();
        st.requests.push((req.method().to_string(), path.clone(), req.uri().query().unwrap_or("").to_string()));
        match st.faults.iter().position(|f| path.starts_with(&f.path_prefix)) {
            Some(i) => {
                let f = st.faults[i].clone();
                if f.times <= 1 {
                    st.faults.remove(i);
                } else {
                    st.faults[i].times -= 1;
                }
                Some(f)
            }
            None => None,
        }
    };
    let Some(f) = fault else { return inner.mis.apply(next.run(req).await).await };
    if let Some(d) = f.delay {
        tokio::time::sleep(d).await;
    }
    if f.status == 0 {
        return next.run(req).await;
    }
    let mut resp =
        (StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), f.body.clone()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in &f.headers {
        if let (Ok(k), Ok(v)) = (header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

async fn require_auth(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(tok) = auth.strip_prefix("Bearer ") else {
        return envelope_err(StatusCode::UNAUTHORIZED, 40100, "missing token");
    };
    // Quotes or a BOM around the token (a badly written env file) [V: Akab cleanEnv].
    if tok.starts_with('"') || tok.starts_with('\'') || tok.starts_with('\u{feff}') {
        return envelope_err(StatusCode::UNAUTHORIZED, 41406, "invalid token format");
    }
    let verdict = {
        let st = inner.lock();
        if inner.opts.api_tokens.iter().any(|t| t == tok) {
            Ok(())
        } else {
            match st.access.get(tok) {
                Some(exp) if *exp > Instant::now() => Ok(()),
                Some(_) => Err((40101, "token expired")),
                None => Err((40100, "invalid token")),
            }
        }
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err((code, msg)) => envelope_err(StatusCode::UNAUTHORIZED, code, msg),
    }
}

/// The answer for a team id the token does not belong to.
fn check_team(team: i64) -> Option<Response> {
    (team != SIM_TEAM_ID).then(|| envelope_err(StatusCode::NOT_FOUND, 40404, "team not found"))
}

async fn basic_info() -> Response {
    ok(json!({"email": SIM_ACCOUNT, "name": "Jane Owner",
        "scopes": {"psa": {"team_id": SIM_TEAM_ID}, "users": {}, "logs": {"team_id": SIM_TEAM_ID}}}))
}

async fn channel_list(Path(team): Path<i64>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = check_team(team) {
        return r;
    }
    if q.get("mode").map(String::as_str) != Some("psa") {
        return envelope_err(StatusCode::UNPROCESSABLE_ENTITY, 40422, "wrong_params: mode");
    }
    ok(json!({"private": {"id": 0, "name": "Private", "default": false},
        "channels": [{"id": 1200, "name": "Second line", "default": false}, {"id": SIM_CHANNEL_ID, "name": "Default", "default": true}]}))
}

async fn create_session(State(inner): State<Arc<Inner>>, Path(team): Path<i64>, body: axum::body::Bytes) -> Response {
    if let Some(r) = check_team(team) {
        return r;
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        return envelope_err(StatusCode::UNPROCESSABLE_ENTITY, 40422, "wrong_params: body is not JSON");
    };
    let channel = b["channel_id"].as_i64();
    if !matches!(channel, Some(0) | Some(1200) | Some(SIM_CHANNEL_ID)) {
        return envelope_err(StatusCode::FORBIDDEN, 40403, "channel not allowed");
    }
    let name = b["customer_name"].as_str().unwrap_or("");
    if name.is_empty() || name.chars().count() > 64 {
        return envelope_err(StatusCode::UNPROCESSABLE_ENTITY, 40422, "wrong_params: customer_name");
    }
    let mut st = inner.lock();
    st.next_id += 1;
    let id = format!("{:06x}", 0x8f3c2a + st.next_id);
    let code = format!("{:09}", rand::rng().random_range(100_000_000..999_999_999u64));
    let s = json!({
        "id": id, "code": code, "support_portal_link": format!("{}/service_desk/psa/{code}", inner.base_url),
        "status": "open", "channel_id": channel, "expires_at": (Utc::now() + chrono::Duration::hours(24)).to_rfc3339(),
        "assignee_email": SIM_ACCOUNT, "name": name, "issue": b["customer_issue"],
        "server_name": null, "server_os": null, "associated_at": null, "online_since": null, "connected_since": null,
    });
    st.sessions.insert(id, s.clone());
    ok(json!({"support_session": s}))
}

async fn get_session(State(inner): State<Arc<Inner>>, Path((team, id)): Path<(i64, String)>) -> Response {
    if let Some(r) = check_team(team) {
        return r;
    }
    match inner.lock().sessions.get(&id) {
        Some(s) => ok(json!({"support_session": s})),
        None => envelope_err(StatusCode::NOT_FOUND, 40404, "session not available"),
    }
}

async fn session_logs(
    State(inner): State<Arc<Inner>>,
    Path(team): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = check_team(team) {
        return r;
    }
    let time = |k: &str| q.get(k).and_then(|v| DateTime::parse_from_rfc3339(v).ok()).map(|d| d.with_timezone(&Utc));
    let (Some(from), Some(to)) = (time("from"), time("to")) else {
        return envelope_err(StatusCode::UNPROCESSABLE_ENTITY, 40422, "wrong_params: from/to");
    };
    let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
    let per_page: usize = q.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(inner.opts.default_per_page);
    if page == 0 || per_page == 0 || per_page > 1000 {
        return envelope_err(StatusCode::UNPROCESSABLE_ENTITY, 40422, "wrong_params: page/per_page");
    }
    let st = inner.lock();
    let start = |r: &Value| {
        r["start_time"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|d| d.with_timezone(&Utc))
    };
    // Records without a readable start are returned in every window (the vendor's data is
    // what it is); the client quarantines them.
    let mut hits: Vec<&Value> = st.logs.iter().filter(|r| start(r).is_none_or(|s| s >= from && s < to)).collect();
    hits.sort_by_key(|r| (start(r), r["session_id"].to_string()));
    let total = hits.len();
    let logs: Vec<Value> = hits.into_iter().skip((page - 1) * per_page).take(per_page).cloned().collect();
    ok(json!({"total": total, "page": page, "per_page": per_page, "logs": logs}))
}

async fn authorize(State(inner): State<Arc<Inner>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(redirect), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri and state are required").into_response();
    };
    if q.get("response_type").map(String::as_str) != Some("code") || !q.contains_key("client_id") {
        return (StatusCode::BAD_REQUEST, "response_type=code and client_id are required").into_response();
    }
    let code = rand_token("code-");
    inner.lock().codes.insert(code.clone(), redirect.clone());
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let scope = q.get("scope").cloned().unwrap_or_default();
    Redirect::to(&format!(
        "{redirect}{sep}code={code}&state={}&scope={}",
        url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>()
    ))
    .into_response()
}

async fn token(State(inner): State<Arc<Inner>>, _h: HeaderMap, body: axum::body::Bytes) -> Response {
    let p: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let bad =
        |e: &str, d: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": e, "error_description": d}))).into_response();
    if let Some((id, secret)) = &inner.opts.oauth_client {
        if p.get("client_id") != Some(id) || p.get("client_secret") != Some(secret) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client", "error_description": "bad client"})),
            )
                .into_response();
        }
    }
    let mut st = inner.lock();
    let keep_refresh = match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(redirect) = p.get("code").and_then(|c| st.codes.remove(c)) else {
                return bad("invalid_grant", "authorization code invalid or used");
            };
            if p.get("redirect_uri") != Some(&redirect) {
                return bad("invalid_grant", "redirect_uri mismatch");
            }
            false
        }
        Some("refresh_token") => {
            let Some(rt) = p.get("refresh_token").filter(|r| st.refresh.contains(*r)).cloned() else {
                return bad("invalid_grant", "refresh token invalid or used");
            };
            st.refresh_count += 1;
            if inner.opts.rotate_refresh_tokens {
                st.refresh.remove(&rt);
            }
            !inner.opts.rotate_refresh_tokens
        }
        _ => return bad("unsupported_grant_type", "grant_type"),
    };
    let access = rand_token("st-at-");
    st.access.insert(access.clone(), Instant::now() + inner.opts.access_token_ttl);
    let mut body =
        json!({"access_token": access, "token_type": "Bearer", "expires_in": inner.opts.access_token_ttl.as_secs()});
    // Without rotation the old refresh token stays valid and none is returned.
    if !keep_refresh {
        let rt = rand_token("st-rt-");
        st.refresh.insert(rt.clone());
        body["refresh_token"] = json!(rt);
    }
    Json(body).into_response()
}
