//! The web console (issue 21): `/ui/` on the daemon's `[http]` listener, off unless
//! `[console] enabled = true`. Server-rendered HTML (maud escapes every interpolated
//! string: vendor text is hostile), no JavaScript. People come from `[[console.users]]`
//! (argon2 password hashes) or a trusted reverse proxy's `X-Forwarded-User`; a login is a
//! random token in a `HttpOnly`, `SameSite=Strict` (and by default `Secure`) cookie, every
//! form carries a CSRF token, failed logins are rate-limited. Viewers read; operators also
//! link, retry, verify and export, and each of those is an audit row naming them.

mod pages;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::config::{ConsoleConfig, ConsoleRole};
use crate::store::audit::Actor;
use crate::store::Store;

/// The peer address of a connection, put on each request by the listener (`health.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

const COOKIE: &str = "ticketsync_console";
/// The login form's own CSRF cookie (double submit: no session exists yet).
const LOGIN_COOKIE: &str = "ticketsync_console_login";
/// Rows per page of every list.
pub const PAGE: i64 = 50;

struct User {
    role: ConsoleRole,
    /// The argon2 PHC string; `None`: only through a trusted proxy.
    hash: Option<String>,
}

struct LoginSession {
    user: String,
    role: ConsoleRole,
    csrf: String,
    expires: Instant,
}

/// The person behind a request.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub role: ConsoleRole,
    pub csrf: String,
}

impl Login {
    pub fn operator(&self) -> bool {
        self.role == ConsoleRole::Operator
    }
    fn actor(&self) -> Actor<'_> {
        Actor { by: &self.user, via: "console" }
    }
}

/// The result of the last on-demand verify, shown on the overview and the audit page.
#[derive(Debug, Clone)]
pub struct VerifyResult {
    pub at: String,
    pub by: String,
    pub ok: bool,
    pub summary: String,
}

pub struct Console {
    store: Store,
    /// Wakes the daemon's match + delivery pass after a link or a retry.
    wake: Option<Arc<Notify>>,
    /// Configured source and sink names, for the overview's rows without any data yet.
    sinks: Vec<String>,
    users: HashMap<String, User>,
    secure: bool,
    ttl: Duration,
    trusted: Vec<IpAddr>,
    attempts: u32,
    window: Duration,
    /// Key of the CSRF tokens of proxy logins, which have no session to hold one.
    proxy_key: [u8; 32],
    /// An argon2 hash of a random password nobody knows, checked for unknown user names.
    dummy: String,
    sessions: Mutex<HashMap<String, LoginSession>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    last_verify: Mutex<Option<VerifyResult>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("console.users[{index}].password_hash: not an argon2 PHC string")]
    BadHash { index: usize },
}

impl Console {
    pub fn new(
        cfg: &ConsoleConfig,
        store: Store,
        sinks: Vec<String>,
        wake: Option<Arc<Notify>>,
    ) -> Result<Console, ConsoleError> {
        let mut users = HashMap::new();
        for (i, u) in cfg.users.iter().enumerate() {
            let hash = u.password_hash_secret(i)?.map(|h| h.expose_secret().to_string());
            if let Some(h) = &hash {
                argon2::PasswordHash::new(h).map_err(|_| ConsoleError::BadHash { index: i })?;
            }
            users.insert(u.name.clone(), User { role: u.role, hash });
        }
        Ok(Console {
            store,
            wake,
            sinks,
            users,
            secure: cfg.secure_cookie,
            ttl: Duration::from_secs(cfg.session_ttl_secs.max(1)),
            trusted: cfg.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect(),
            attempts: cfg.login_attempts.max(1),
            window: Duration::from_secs(cfg.login_window_secs.max(1)),
            proxy_key: rand::random(),
            dummy: hash_password(&random_token()).map_err(|_| ConsoleError::BadHash { index: usize::MAX })?,
            sessions: Mutex::default(),
            failures: Mutex::default(),
            last_verify: Mutex::default(),
        })
    }

    /// The routes under `/ui`, to merge into the listener's router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/ui", get(|| async { Redirect::to("/ui/") }))
            .route("/ui/", get(overview))
            .route("/ui/login", get(login_form).post(login))
            .route("/ui/logout", get(logout))
            .route("/ui/sessions", get(sessions))
            .route("/ui/sessions/{id}", get(session_page))
            .route("/ui/unmatched", get(unmatched))
            .route("/ui/link", post(link))
            .route("/ui/deliveries", get(deliveries))
            .route("/ui/retry", post(retry))
            .route("/ui/retry-bulk", post(retry_bulk))
            .route("/ui/audit", get(audit_page))
            .route("/ui/audit/verify", post(verify))
            .route("/ui/audit/export", post(export))
            .with_state(self)
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("cookie from hex")
    }

    /// Who sends `headers` from `peer`: a trusted proxy's user, else the session cookie's.
    fn login(&self, headers: &HeaderMap, peer: Option<Peer>) -> Option<Login> {
        if let Some(Peer(addr)) = peer {
            if self.trusted.contains(&addr.ip()) {
                if let Some(name) = headers.get("x-forwarded-user").and_then(|v| v.to_str().ok()) {
                    let user = self.users.get(name)?;
                    return Some(Login { user: name.to_string(), role: user.role, csrf: self.proxy_csrf(name) });
                }
            }
        }
        let token = cookie_value(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        let s = sessions.get(&token_key(&token))?;
        // A user removed from the configuration (and the daemon restarted) has no session
        // left anyway: sessions live in memory only.
        Some(Login { user: s.user.clone(), role: s.role, csrf: s.csrf.clone() })
    }

    fn proxy_csrf(&self, user: &str) -> String {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.proxy_key).expect("any key length");
        m.update(user.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// Whether `keys` (user name, client address) may try a password now.
    fn may_try(&self, keys: &[String]) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        f.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        keys.iter().all(|k| f.get(k).is_none_or(|(n, _)| *n < self.attempts))
    }

    fn failed(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            f.entry(k.clone()).or_insert((0, Instant::now())).0 += 1;
        }
    }

    fn wake(&self) {
        if let Some(w) = &self.wake {
            w.notify_one();
        }
    }
}

/// The SHA-256 of a session token: the map holds no usable token.
fn token_key(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

type Shared = State<Arc<Console>>;
type MaybePeer = Option<Extension<Peer>>;

fn html(m: maud::Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-frame-options"), "DENY"),
            (header::HeaderName::from_static("content-security-policy"), "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"),
            (header::HeaderName::from_static("x-content-type-options"), "nosniff"),
        ],
        m.into_string(),
    )
        .into_response()
}

fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{why}\n")).into_response()
}

/// A store error as a page: the cause, scrubbed, and the details in the log.
fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "console: store read failed");
    refuse(StatusCode::INTERNAL_SERVER_ERROR, &crate::redact::scrubbed(&format!("database error: {e}")))
}

/// The checks of every POST but the login: a login, the operator role, the CSRF token.
fn operator(c: &Console, headers: &HeaderMap, peer: MaybePeer, csrf: &str) -> Result<Login, Refused> {
    let Some(l) = c.login(headers, peer.map(|p| p.0)) else {
        return Err(Refused(StatusCode::UNAUTHORIZED, "log in first"));
    };
    if !l.operator() {
        return Err(Refused(StatusCode::FORBIDDEN, "viewers cannot change anything"));
    }
    if !ct_eq(csrf, &l.csrf) {
        return Err(Refused(StatusCode::FORBIDDEN, "missing or wrong CSRF token: reload the page and try again"));
    }
    Ok(l)
}

/// Why a POST was refused (status and a line for the person).
struct Refused(StatusCode, &'static str);

async fn overview(State(c): Shared, headers: HeaderMap, peer: MaybePeer) -> Response {
    let Some(l) = c.login(&headers, peer.map(|p| p.0)) else { return to_login() };
    let sources = match crate::store::console::source_status(&c.store).await {
        Ok(s) => s,
        Err(e) => return store_failed(e),
    };
    let mut sinks = match crate::store::console::sink_outboxes(&c.store).await {
        Ok(s) => s,
        Err(e) => return store_failed(e),
    };
    for name in &c.sinks {
        if !sinks.iter().any(|s| &s.sink == name) {
            sinks.push(crate::store::console::SinkOutbox { sink: name.clone(), ..Default::default() });
        }
    }
    let head = crate::store::audit::head(&c.store).await.unwrap_or_else(|e| format!("unreadable: {e}"));
    let verify = c.last_verify.lock().unwrap_or_else(|e| e.into_inner()).clone();
    html(pages::overview(&l, &sources, &sinks, &head, verify.as_ref(), chrono::Utc::now()))
}

async fn login_form(State(c): Shared, headers: HeaderMap, peer: MaybePeer) -> Response {
    if c.login(&headers, peer.map(|p| p.0)).is_some() {
        return Redirect::to("/ui/").into_response();
    }
    let token = random_token();
    let mut r = html(pages::login(&token, None));
    r.headers_mut().append(header::SET_COOKIE, c.cookie(LOGIN_COOKIE, &token, 600));
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Form(f): Form<LoginForm>) -> Response {
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !ct_eq(&f.csrf, &expected) {
        return refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token: reload the login page");
    }
    let ip = peer.map_or("unknown".to_string(), |p| p.0 .0.ip().to_string());
    let keys = [format!("user:{}", f.user), format!("ip:{ip}")];
    if !c.may_try(&keys) {
        tracing::warn!(user = %f.user, client = %ip, "console: login refused, too many failed attempts");
        return refuse(StatusCode::TOO_MANY_REQUESTS, "too many failed logins: wait a few minutes");
    }
    let hash = c.users.get(&f.user).and_then(|u| u.hash.clone());
    // Argon2 costs tens of milliseconds of CPU: off the async workers. An unknown user is
    // checked against a fixed hash, so the answer takes as long as for a known one.
    let password = f.password.clone();
    let dummy = c.dummy.clone();
    let ok = tokio::task::spawn_blocking(move || {
        use argon2::PasswordVerifier;
        let h = hash.as_deref().unwrap_or(&dummy);
        let parsed = argon2::PasswordHash::new(h).ok();
        let ok = parsed.is_some_and(|p| argon2::Argon2::default().verify_password(password.as_bytes(), &p).is_ok());
        ok && hash.is_some()
    })
    .await
    .unwrap_or(false);
    if !ok {
        c.failed(&keys);
        tracing::info!(user = %f.user, client = %ip, "console: failed login");
        let token = random_token();
        let mut r = html(pages::login(&token, Some("wrong user name or password")));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().append(header::SET_COOKIE, c.cookie(LOGIN_COOKIE, &token, 600));
        return r;
    }
    let role = c.users[&f.user].role;
    let token = random_token();
    let session = LoginSession { user: f.user.clone(), role, csrf: random_token(), expires: Instant::now() + c.ttl };
    c.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(token_key(&token), session);
    tracing::info!(user = %f.user, role = role.as_str(), client = %ip, "console: login");
    let mut r = Redirect::to("/ui/").into_response();
    r.headers_mut().append(header::SET_COOKIE, c.cookie(COOKIE, &token, c.ttl.as_secs()));
    r.headers_mut().append(header::SET_COOKIE, c.cookie(LOGIN_COOKIE, "", 0));
    r
}

/// A plain link, not a form: the cookie is `SameSite=Strict`, so another site cannot log
/// anyone out, and a viewer's pages carry no form at all.
async fn logout(State(c): Shared, headers: HeaderMap) -> Response {
    if let Some(t) = cookie_value(&headers, COOKIE) {
        c.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&token_key(&t));
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, c.cookie(COOKIE, "", 0));
    r
}

/// The search form's fields, as typed.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct SessionQuery {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub ticket: String,
    #[serde(default)]
    pub technician: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub tenant: String,
    /// `YYYY-MM-DD` (UTC) or a stored timestamp.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    pub before: Option<i64>,
}

fn nonempty(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl SessionQuery {
    fn filter(&self) -> Result<crate::store::console::SessionFilter, String> {
        let bound = |s: &str, end: bool, key: &str| -> Result<Option<String>, String> {
            match nonempty(s) {
                None => Ok(None),
                Some(v) => crate::export::parse_bound(&v, end).map(Some).map_err(|e| format!("{key}: {e}")),
            }
        };
        Ok(crate::store::console::SessionFilter {
            code: nonempty(&self.code),
            ticket: nonempty(&self.ticket),
            technician: nonempty(&self.technician),
            vendor: nonempty(&self.vendor),
            from: bound(&self.from, false, "from")?,
            to: bound(&self.to, true, "to")?,
            before: self.before,
            vendors: crate::sources::VENDORS.iter().map(|v| v.kind.to_string()).collect(),
            tenant: nonempty(&self.tenant),
        })
    }

    /// The query string of the next page.
    pub fn next(&self, before: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("code", &self.code),
            ("ticket", &self.ticket),
            ("technician", &self.technician),
            ("vendor", &self.vendor),
            ("tenant", &self.tenant),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("before", &before.to_string());
        q.finish()
    }
}

async fn sessions(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Query(q): Query<SessionQuery>) -> Response {
    let Some(l) = c.login(&headers, peer.map(|p| p.0)) else { return to_login() };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return html(pages::sessions(&l, &q, &[], Some(&e))),
    };
    match crate::store::console::search_sessions(&c.store, &filter, PAGE).await {
        Ok(rows) => html(pages::sessions(&l, &q, &rows, None)),
        Err(e) => store_failed(e),
    }
}

async fn session_page(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Path(id): Path<i64>) -> Response {
    let Some(l) = c.login(&headers, peer.map(|p| p.0)) else { return to_login() };
    match crate::store::console::session_record(&c.store, id).await {
        Ok(Some(r)) => html(pages::session(&l, &r)),
        Ok(None) => refuse(StatusCode::NOT_FOUND, &format!("no session {id}")),
        Err(e) => store_failed(e),
    }
}

#[derive(Deserialize)]
struct Before {
    before: Option<i64>,
    #[serde(default)]
    done: String,
    #[serde(default)]
    error: String,
}

async fn unmatched(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Query(q): Query<Before>) -> Response {
    let Some(l) = c.login(&headers, peer.map(|p| p.0)) else { return to_login() };
    match crate::store::console::unmatched_page(&c.store, q.before, PAGE).await {
        Ok(rows) => html(pages::unmatched(&l, &rows, nonempty(&q.done).as_deref(), nonempty(&q.error).as_deref())),
        Err(e) => store_failed(e),
    }
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    /// The session code, or the vendor's session id when it has no code.
    #[serde(default)]
    code: String,
    #[serde(default)]
    ticket: String,
    /// The session's tenant: the link is that tenant's (`link --tenant`).
    #[serde(default)]
    tenant: String,
}

fn back(to: &str, key: &str, msg: &str) -> Response {
    let q = url::form_urlencoded::Serializer::new(String::new()).append_pair(key, msg).finish();
    Redirect::to(&format!("{to}?{q}")).into_response()
}

async fn link(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Form(f): Form<LinkForm>) -> Response {
    let l = match operator(&c, &headers, peer, &f.csrf) {
        Ok(l) => l,
        Err(Refused(status, why)) => return refuse(status, why),
    };
    let ticket = f.ticket.trim().trim_start_matches('#');
    let store = match nonempty(&f.tenant).map(|t| crate::store::TenantName::new(&t)) {
        None => c.store.clone(),
        Some(Ok(t)) => c.store.for_tenant(&t),
        Some(Err(e)) => return back("/ui/unmatched", "error", &format!("tenant: {e}")),
    };
    match crate::operator::link_session(&store, f.code.trim(), ticket, l.actor()).await {
        Ok(id) => {
            tracing::info!(user = %l.user, link = id, code = %f.code, ticket, "console: session linked");
            c.wake();
            back("/ui/unmatched", "done", &format!("linked {} to ticket {ticket}; its notes follow", f.code.trim()))
        }
        Err(e) => back("/ui/unmatched", "error", &e.to_string()),
    }
}

#[derive(Deserialize, Default, Clone)]
pub struct DeliveryQuery {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub sink: String,
    pub before: Option<i64>,
    #[serde(default)]
    pub done: String,
    #[serde(default)]
    pub error: String,
}

impl DeliveryQuery {
    fn filter(&self) -> crate::store::console::DeliveryFilter {
        crate::store::console::DeliveryFilter {
            state: nonempty(&self.state).filter(|s| s == "failed" || s == "dead"),
            sink: nonempty(&self.sink),
            before: self.before,
        }
    }
}

async fn deliveries(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Query(q): Query<DeliveryQuery>) -> Response {
    let Some(l) = c.login(&headers, peer.map(|p| p.0)) else { return to_login() };
    match crate::store::console::failed_deliveries(&c.store, &q.filter(), PAGE).await {
        Ok(rows) => html(pages::deliveries(&l, &q, &rows)),
        Err(e) => store_failed(e),
    }
}

#[derive(Deserialize)]
struct RetryForm {
    #[serde(default)]
    csrf: String,
    id: i64,
}

async fn retry(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Form(f): Form<RetryForm>) -> Response {
    let l = match operator(&c, &headers, peer, &f.csrf) {
        Ok(l) => l,
        Err(Refused(status, why)) => return refuse(status, why),
    };
    match crate::operator::retry_delivery(&c.store, f.id, l.actor()).await {
        Ok(()) => {
            tracing::info!(user = %l.user, delivery = f.id, "console: delivery requeued");
            c.wake();
            back("/ui/deliveries", "done", &format!("delivery {} requeued", f.id))
        }
        Err(e) => back("/ui/deliveries", "error", &e.to_string()),
    }
}

#[derive(Deserialize)]
struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    sink: String,
}

/// Most deliveries one bulk retry requeues (the rest: press again).
const BULK_MAX: i64 = 1000;

async fn retry_bulk(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Form(f): Form<BulkForm>) -> Response {
    let l = match operator(&c, &headers, peer, &f.csrf) {
        Ok(l) => l,
        Err(Refused(status, why)) => return refuse(status, why),
    };
    let filter = DeliveryQuery { state: f.state.clone(), sink: f.sink.clone(), ..Default::default() }.filter();
    let rows = match crate::store::console::failed_deliveries(&c.store, &filter, BULK_MAX).await {
        Ok(r) => r,
        Err(e) => return store_failed(e),
    };
    let (mut done, mut refused) = (0, Vec::new());
    for d in rows.iter().rev() {
        match crate::operator::retry_delivery(&c.store, d.id, l.actor()).await {
            Ok(()) => done += 1,
            Err(e) => refused.push(e.to_string()),
        }
    }
    tracing::info!(user = %l.user, requeued = done, refused = refused.len(), "console: bulk retry");
    c.wake();
    if refused.is_empty() {
        back("/ui/deliveries", "done", &format!("{done} deliveries requeued"))
    } else {
        back("/ui/deliveries", "error", &format!("{done} requeued; {} refused: {}", refused.len(), refused.join("; ")))
    }
}

async fn audit_page(State(c): Shared, headers: HeaderMap, peer: MaybePeer) -> Response {
    let Some(l) = c.login(&headers, peer.map(|p| p.0)) else { return to_login() };
    let head = match crate::store::audit::head(&c.store).await {
        Ok(h) => h,
        Err(e) => return store_failed(e),
    };
    let verify = c.last_verify.lock().unwrap_or_else(|e| e.into_inner()).clone();
    html(pages::audit(&l, &head, verify.as_ref()))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn verify(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Form(f): Form<CsrfForm>) -> Response {
    let l = match operator(&c, &headers, peer, &f.csrf) {
        Ok(l) => l,
        Err(Refused(status, why)) => return refuse(status, why),
    };
    let started = Instant::now();
    let verdict = crate::store::audit::verify(&c.store).await;
    let secs = started.elapsed().as_secs_f64();
    use crate::store::audit::Verify;
    let (ok, summary, detail) = match verdict {
        Ok(Verify::Ok { rows, head, checked_sessions, checked_deliveries, .. }) => (
            true,
            format!("OK: {rows} rows in {secs:.2}s; {checked_sessions} sessions and {checked_deliveries} deliveries match their latest audit event; head {head}"),
            serde_json::json!({"ok": true, "rows": rows, "head": head}),
        ),
        Ok(Verify::Broken { row_id, reason }) => (
            false,
            format!("BROKEN at row {row_id}: {reason}"),
            serde_json::json!({"ok": false, "problems": format!("row {row_id}: {reason}")}),
        ),
        Ok(Verify::Evidence { subject, row_id, reason }) => (
            false,
            format!("evidence BROKEN: {subject} (audit row {row_id:?}): {reason}"),
            serde_json::json!({"ok": false, "problems": format!("{subject}: {reason}")}),
        ),
        Err(e) => return store_failed(e),
    };
    // The verify itself is recorded after it ran, so it does not verify its own row.
    if let Err(e) = crate::store::audit::record_action(&c.store, "audit_verified", l.actor(), detail).await {
        return store_failed(e);
    }
    let at = crate::store::now();
    *c.last_verify.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(VerifyResult { at, by: l.user.clone(), ok, summary });
    Redirect::to("/ui/audit").into_response()
}

#[derive(Deserialize)]
struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// Chunks of an export on their way to the client: a bounded channel, so a slow download
/// holds the export's read, not the whole export in memory.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.buf);
        // The export runs on a blocking thread of its own (see `export`): waiting for room
        // here stalls no async worker. (Inside that thread's `block_on`, tokio's own
        // `blocking_send` refuses to block, so the send is driven by a plain executor.)
        futures::executor::block_on(self.tx.send(Ok(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

async fn export(State(c): Shared, headers: HeaderMap, peer: MaybePeer, Form(f): Form<ExportForm>) -> Response {
    let l = match operator(&c, &headers, peer, &f.csrf) {
        Ok(l) => l,
        Err(Refused(status, why)) => return refuse(status, why),
    };
    let format = match f.format.as_str() {
        "csv" => crate::export::Format::Csv,
        "jsonl" | "" => crate::export::Format::Jsonl,
        other => return refuse(StatusCode::BAD_REQUEST, &format!("format {other:?}: expected csv or jsonl")),
    };
    let from = nonempty(&f.from).unwrap_or_else(|| "1970-01-01".into());
    // No end: up to tomorrow (UTC), past anything written so far.
    let to = nonempty(&f.to)
        .unwrap_or_else(|| (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d").to_string());
    let (from, to) = match (crate::export::parse_bound(&from, false), crate::export::parse_bound(&to, true)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) => return refuse(StatusCode::BAD_REQUEST, &format!("from: {e}")),
        (_, Err(e)) => return refuse(StatusCode::BAD_REQUEST, &format!("to: {e}")),
    };
    if from >= to {
        return refuse(StatusCode::BAD_REQUEST, "the range is empty: from must be before to");
    }
    let ext = if format == crate::export::Format::Csv { "csv" } else { "jsonl" };
    let detail = serde_json::json!({"format": ext, "from": from, "to": to});
    // Recorded before the first byte leaves: an export that is cut off was still taken.
    if let Err(e) = crate::store::audit::record_action(&c.store, "audit_exported", l.actor(), detail).await {
        return store_failed(e);
    }
    tracing::info!(user = %l.user, format = ext, "console: audit export");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let store = c.store.clone();
    // The export writes to a synchronous `Write` while it reads the store: it runs on a
    // blocking thread, which may wait for the client without holding an async worker.
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let filter = crate::export::Filter { from, to, vendor: None };
        let mut w = ChannelWriter { tx: tx.clone(), buf: Vec::new() };
        let r = rt.block_on(crate::export::export(&store, &filter, format, &mut w));
        let r = match r {
            Ok(_) => std::io::Write::flush(&mut w),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "console: export ended early");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    let name = format!("attachment; filename=\"ticketsync-audit.{ext}\"");
    let ctype = if ext == "csv" { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CONTENT_DISPOSITION, name)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_else(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `ticketsync console hash-password`: an argon2id PHC string of `password` with a fresh
/// random salt, for `password_hash_file`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}
