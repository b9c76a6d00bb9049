//! The optional HTTP listener of `ticketsync run` (`[http]`): `/healthz` (the process
//! answers), `/readyz` (the store answers and every source polled successfully within its
//! schedule), `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use croner::Cron;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

pub struct Health {
    pub store: Store,
    /// Sources added by a reload (`SIGHUP`), judged from the reload rather than the start.
    pub added_at: std::collections::HashMap<String, DateTime<Utc>>,
    /// Cursor key (the source name, or `zoom:<account>`) and its source's parsed schedule.
    pub sources: Vec<(String, Cron)>,
    pub tz: chrono_tz::Tz,
    /// When the daemon started: a source that has not completed a poll since is judged
    /// from here, so a fresh start gets one schedule interval to finish its first poll.
    pub started_at: DateTime<Utc>,
    pub grace: chrono::Duration,
    /// Configured sink names, for the per-sink metrics.
    pub sinks: Vec<String>,
    /// This instance's name, and whether several instances share the store (`/readyz`
    /// then lists the leases: which instance polls which source).
    pub instance_id: String,
    pub shared_store: bool,
}

impl Health {
    pub fn from_app(app: &crate::app::App, started_at: DateTime<Utc>) -> anyhow::Result<Health> {
        let mut sources = Vec::new();
        for (src, schedule) in &app.sources {
            let cron = crate::schedule::parse_cron(schedule).map_err(anyhow::Error::msg)?;
            // A source polling several accounts (Zoom) is ready only when each of them is.
            for key in src.cursor_keys() {
                sources.push((key, cron.clone()));
            }
        }
        Ok(Health {
            store: app.store.clone(),
            added_at: Default::default(),
            sources,
            tz: app.config.daemon_tz(),
            started_at,
            grace: chrono::Duration::seconds(app.config.http.readiness_grace_secs as i64),
            sinks: app.sink_names.clone(),
            instance_id: app.instance_id.clone(),
            shared_store: app.config.daemon.shared_store,
        })
    }

    /// The health of a reloaded app: the same start, and each source the previous
    /// configuration did not have judged from `now`.
    pub fn reloaded(&self, app: &crate::app::App, now: DateTime<Utc>) -> anyhow::Result<Health> {
        let mut h = Health::from_app(app, self.started_at)?;
        h.added_at = self.added_at.clone();
        for (name, _) in &h.sources {
            if !self.sources.iter().any(|(n, _)| n == name) {
                h.added_at.insert(name.clone(), now);
            }
        }
        Ok(h)
    }

    /// Every readiness check with its result, at `now`.
    pub async fn readiness(&self, now: DateTime<Utc>) -> Vec<(String, bool, String)> {
        let mut checks = Vec::new();
        let cursors = crate::store::reads::source_polls(&self.store).await;
        let cursors = match cursors {
            Ok(c) => {
                match self.store.write_failure() {
                    Some((since, error)) => checks.push((
                        "store".to_string(),
                        false,
                        format!("database {}: writes refused since {since}: {error}", self.store.path()),
                    )),
                    None => checks.push(("store".to_string(), true, "database answers".to_string())),
                }
                c
            }
            Err(e) => {
                checks.push(("store".to_string(), false, format!("database error: {}", e.cause())));
                return checks;
            }
        };
        for (name, cron) in &self.sources {
            let last = cursors
                .iter()
                .find(|p| p.source == *name)
                .and_then(|p| p.last_success_at.as_deref())
                .and_then(crate::session::parse_ts);
            let since = self.added_at.get(name).copied().unwrap_or(self.started_at);
            let reference = last.map_or(since, |l| l.max(since));
            let check = format!("source:{name}");
            let last_txt = last.map(crate::session::ts).unwrap_or_else(|| "never".into());
            match cron.find_next_occurrence(&reference.with_timezone(&self.tz), false) {
                Ok(due) => {
                    let due = due.with_timezone(&Utc);
                    let ok = now <= due + self.grace;
                    let detail = if ok {
                        format!("last successful poll {last_txt}; next run due {}", crate::session::ts(due))
                    } else {
                        format!(
                            "missed its schedule: last successful poll {last_txt}, a poll was due by {} (grace {}s)",
                            crate::session::ts(due),
                            self.grace.num_seconds()
                        )
                    };
                    checks.push((check, ok, detail));
                }
                Err(e) => checks.push((check, false, format!("schedule has no next run: {e}"))),
            }
        }
        checks
    }
}

/// What the handlers read: the current [`Health`], replaced on a reload.
pub type HealthCell = tokio::sync::watch::Receiver<Arc<Health>>;

pub fn router(health: Arc<Health>) -> Router {
    router_cell(tokio::sync::watch::channel(health).1)
}

pub fn router_cell(health: HealthCell) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(h): State<HealthCell>) -> Response {
    let h = h.borrow().clone();
    let checks = h.readiness(Utc::now()).await;
    let ready = checks.iter().all(|c| c.1);
    let mut body = json!({
        "ready": ready,
        "instance": h.instance_id,
        "checks": checks.iter().map(|(name, ok, detail)| json!({"name": name, "ok": ok, "detail": detail})).collect::<Vec<_>>(),
    });
    if h.shared_store {
        // Who polls what; informational: a source another instance holds is not a failure.
        let now = crate::store::leases::now_ms();
        let leases = crate::store::leases::list(&h.store).await.unwrap_or_default();
        body["leases"] = leases
            .iter()
            .map(|l| {
                json!({"name": l.name, "holder": l.holder, "token": l.token, "mine": l.holder == h.instance_id,
                       "expires_in_secs": (l.expires_at_ms - now) as f64 / 1000.0})
            })
            .collect();
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(h): State<HealthCell>) -> Response {
    let h = h.borrow().clone();
    let handle = crate::metrics::install();
    if let Err(e) = crate::metrics::refresh_from_store(&h.store, &h.sinks).await {
        tracing::warn!(error = %e, "metrics: database gauges not refreshed");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

/// Serve until `cancel` fires, with the default [`ListenerOptions`] (no token).
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, health, ListenerOptions::default(), cancel).await
}

/// The listener's defences (`[http]` keys).
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// A connection must send a complete request head within this long after it opens or
    /// after its previous answer (hyper's `header_read_timeout`, which covers idle
    /// keep-alive connections too); otherwise it is closed.
    pub header_read_timeout: Duration,
    /// Open connections at most (see [`Connections::admit`]).
    pub max_connections: usize,
    /// Largest request body; no endpoint takes one.
    pub max_request_bytes: u64,
    /// Bearer token for everything but `/healthz` and `/readyz`.
    pub token: Option<SecretString>,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        let c = crate::config::HttpConfig::default();
        Self {
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
            max_connections: c.max_connections,
            max_request_bytes: c.max_request_bytes,
            token: None,
        }
    }
}

impl ListenerOptions {
    pub fn from_config(c: &crate::config::HttpConfig) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs.max(1)),
            max_connections: c.max_connections.max(1),
            max_request_bytes: c.max_request_bytes,
            token: c.metrics_token_secret()?,
        })
    }
}

/// Request heads larger than this are refused by hyper (431/closed): our paths are short
/// and we read no header but `Authorization`.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The open connections, oldest first, and whether each is answering a request now.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: BTreeMap<u64, Slot>,
}

struct Slot {
    in_flight: Arc<AtomicUsize>,
    close: CancellationToken,
}

impl Connections {
    /// Room for a new connection. At the limit, the oldest connection that is not
    /// answering a request (idle, or still sending its head: a slowloris) is closed to make
    /// room, so a flood of idle or slow connections delays nobody: a fresh `/readyz` always
    /// gets a slot. Only when every slot is answering a request is the newcomer refused.
    fn admit(&mut self, max: usize) -> Option<(u64, Arc<AtomicUsize>, CancellationToken)> {
        if self.open.len() >= max {
            let victim = self.open.iter().find(|(_, s)| s.in_flight.load(Ordering::Acquire) == 0).map(|(id, _)| *id)?;
            if let Some(s) = self.open.remove(&victim) {
                s.close.cancel();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let slot = Slot { in_flight: Arc::new(AtomicUsize::new(0)), close: CancellationToken::new() };
        let handles = (id, slot.in_flight.clone(), slot.close.clone());
        self.open.insert(id, slot);
        Some(handles)
    }
}

/// Serve until `cancel` fires: hyper's HTTP/1 server with a header-read (and idle)
/// timeout, a head-size limit, the connection limit of [`Connections::admit`], a body
/// limit and the optional bearer token.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    opts: ListenerOptions,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_cell(listener, tokio::sync::watch::channel(health).1, opts, cancel).await
}

/// [`serve_with`] over a [`HealthCell`], whose sender replaces the health on a reload.
pub async fn serve_cell(
    listener: tokio::net::TcpListener,
    health: HealthCell,
    opts: ListenerOptions,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_console(listener, health, opts, None, cancel).await
}

/// [`serve_cell`] with the web console's `/ui/` routes when `console` is given.
pub async fn serve_console(
    listener: tokio::net::TcpListener,
    health: HealthCell,
    opts: ListenerOptions,
    console: Option<Arc<crate::console::Console>>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let mut app = router_cell(health);
    if let Some(c) = console {
        app = app.merge(c.router());
    }
    let app = app.layer(axum::middleware::from_fn_with_state(Arc::new(Guard::new(&opts)), guard));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conns = Arc::new(Mutex::new(Connections::default()));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, peer)) => (s, peer),
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "http listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return Ok(()),
        };
        let admitted = conns.lock().unwrap_or_else(|e| e.into_inner()).admit(opts.max_connections);
        let Some((id, in_flight, close)) = admitted else {
            tracing::debug!("http listener: every connection is answering a request; new connection refused");
            continue;
        };
        let app = app.clone();
        let counter = in_flight.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::AcqRel);
            // Who is on the other end: the console trusts `X-Forwarded-User` only from
            // its configured proxies.
            req.extensions_mut().insert(crate::console::Peer(peer));
            async move {
                let resp = tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await;
                counter.fetch_sub(1, Ordering::AcqRel);
                resp
            }
        });
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let (conns, cancel) = (conns.clone(), cancel.clone());
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Evicted to make room: dropping the connection closes the socket.
                _ = close.cancelled() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
            conns.lock().unwrap_or_else(|e| e.into_inner()).open.remove(&id);
        });
    }
}

/// The token as a SHA-256 digest: comparing digests in constant time compares the tokens
/// without leaking their length or a matching prefix through timing.
struct Guard {
    token: Option<[u8; 32]>,
    max_body: u64,
}

impl Guard {
    fn new(o: &ListenerOptions) -> Self {
        Self { token: o.token.as_ref().map(|t| digest(t.expose_secret().as_bytes())), max_body: o.max_request_bytes }
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Body limit for every path; the bearer token for every path but the two probes.
async fn guard(State(g): State<Arc<Guard>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // A chunked body has no declared length: nothing here reads one, so refuse it too.
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if chunked || declared.is_some_and(|n| n > g.max_body) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    }
    let path = req.uri().path();
    // The console (`/ui`) has logins of its own; a browser sends no bearer token.
    if path == "/healthz" || path == "/readyz" || path == "/ui" || path.starts_with("/ui/") {
        return next.run(req).await;
    }
    if let Some(want) = &g.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| digest(t.trim().as_bytes()));
        let ok = given.is_some_and(|d| bool::from(subtle::ConstantTimeEq::ct_eq(&d[..], &want[..])));
        if !ok {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "bearer token required\n")
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_the_oldest_idle_connection_makes_room_never_a_busy_one() {
        let mut c = Connections::default();
        let (_, busy, busy_close) = c.admit(2).unwrap();
        busy.fetch_add(1, Ordering::AcqRel);
        let (_, _, idle_close) = c.admit(2).unwrap();
        // Full: the idle one (not the older, busy one) is closed for the newcomer.
        let (_, newest, _) = c.admit(2).unwrap();
        assert!(idle_close.is_cancelled() && !busy_close.is_cancelled());
        assert_eq!(c.open.len(), 2);
        // Every slot answering a request: the newcomer is refused.
        newest.fetch_add(1, Ordering::AcqRel);
        assert!(c.admit(2).is_none());
        assert_eq!(c.open.len(), 2);
    }
}
