//! A small Redmine simulator: `PUT /issues/{id}.json` (204), `GET /issues/{id}.json?include=journals`,
//! `GET /users/current.json`, API key in `X-Redmine-API-Key`. The tests also run the same
//! sink against a real Redmine; this one backs the demo and fault tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub id: u64,
    pub notes: String,
    pub private_notes: bool,
    /// The journal's author: 1 (the API user, `/users/current.json`) for notes written
    /// through the API, [`super::PERSON_ID`] for [`RedmineSim::add_person_note`].
    pub user_id: u64,
}

/// One request the simulator received, for tests that check who was sent what and when
/// (e.g. nothing during a `Retry-After` hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    pub at: std::time::Instant,
    pub method: &'static str,
    pub issue: Option<u64>,
    pub status: u16,
    /// The `Retry-After` seconds of a 429 answer.
    pub retry_after: Option<u64>,
}

#[derive(Default)]
struct Inner {
    issues: BTreeMap<u64, Vec<Journal>>,
    next_journal: u64,
    puts: usize,
    log: Vec<SimRequest>,
    /// Issue → (Retry-After seconds, how many more PUTs on it answer 429).
    throttled: BTreeMap<u64, (u64, usize)>,
    /// Every n-th PUT (counting all issues) answers 429 with this Retry-After: a storm.
    throttle_every: Option<(usize, u64)>,
    /// Latency added to every answer (after the write is applied), like a slow server.
    delay: std::time::Duration,
}

#[derive(Clone)]
struct Shared {
    key: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct RedmineSim {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    server: crate::Served,
}

impl RedmineSim {
    pub async fn start(api_key: &str, issues: &[u64]) -> std::io::Result<RedmineSim> {
        let inner = Arc::new(Mutex::new(Inner { next_journal: 1, ..Default::default() }));
        for i in issues {
            inner.lock().expect("sim lock").issues.insert(*i, Vec::new());
        }
        let shared = Shared { key: api_key.to_string(), inner: inner.clone() };
        let app = Router::new()
            .route("/issues/{file}", get(get_issue).put(put_issue))
            .route("/users/current.json", get(current_user))
            .with_state(shared);
        let (server, base_url) = crate::Served::start(app).await?;
        Ok(RedmineSim { base_url, inner, server })
    }

    pub fn journals(&self, issue: u64) -> Vec<Journal> {
        self.inner.lock().expect("sim lock").issues.get(&issue).cloned().unwrap_or_default()
    }

    /// A note typed by a person (another user) on the issue, as a quoting colleague would.
    pub fn add_person_note(&self, issue: u64, notes: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_journal;
        g.next_journal += 1;
        g.issues.entry(issue).or_default().push(Journal {
            id,
            notes: notes.to_string(),
            private_notes: false,
            user_id: super::PERSON_ID,
        });
    }

    pub fn set_delay(&self, d: std::time::Duration) {
        self.inner.lock().expect("sim lock").delay = d;
    }

    /// Create more issues (ticket ids) after start.
    pub fn add_issues(&self, ids: impl IntoIterator<Item = u64>) {
        let mut g = self.inner.lock().expect("sim lock");
        for i in ids {
            g.issues.entry(i).or_default();
        }
    }

    /// The next `times` PUTs on `issue` answer 429 with `Retry-After: secs`, as Redmine
    /// behind a rate-limiting proxy does.
    pub fn throttle_issue(&self, issue: u64, secs: u64, times: usize) {
        self.inner.lock().expect("sim lock").throttled.insert(issue, (secs, times));
    }

    /// Every `n`-th PUT (whatever the issue) answers 429 with `Retry-After: secs`.
    pub fn throttle_every_nth_put(&self, n: usize, secs: u64) {
        self.inner.lock().expect("sim lock").throttle_every = Some((n.max(1), secs));
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.inner.lock().expect("sim lock").log.clone()
    }

    pub fn put_count(&self) -> usize {
        self.inner.lock().expect("sim lock").puts
    }

    /// Stops the server (dropping it does the same).
    pub fn shutdown(self) {
        drop(self.server);
    }
}

fn authorized(s: &Shared, h: &HeaderMap) -> bool {
    h.get("x-redmine-api-key").and_then(|v| v.to_str().ok()) == Some(s.key.as_str())
}

fn issue_id(file: &str) -> Option<u64> {
    file.strip_suffix(".json")?.parse().ok()
}

async fn current_user(State(s): State<Shared>, h: HeaderMap) -> Response {
    if !authorized(&s, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"user": {"id": 1, "login": "admin"}})).into_response()
}

async fn get_issue(State(s): State<Shared>, Path(file): Path<String>, h: HeaderMap) -> Response {
    if !authorized(&s, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(id) = issue_id(&file) else { return StatusCode::NOT_FOUND.into_response() };
    let mut g = s.inner.lock().expect("sim lock");
    let at = std::time::Instant::now();
    let status = if g.issues.contains_key(&id) { 200 } else { 404 };
    g.log.push(SimRequest { at, method: "GET", issue: Some(id), status, retry_after: None });
    let Some(journals) = g.issues.get(&id) else { return StatusCode::NOT_FOUND.into_response() };
    let js: Vec<Value> = journals
        .iter()
        .map(|j| {
            let name = if j.user_id == 1 { "Redmine Admin" } else { "Pat Person" };
            json!({"id": j.id, "user": {"id": j.user_id, "name": name}, "notes": j.notes, "private_notes": j.private_notes, "details": []})
        })
        .collect();
    Json(json!({"issue": {"id": id, "subject": format!("Issue {id}"), "journals": js}})).into_response()
}

async fn put_issue(
    State(s): State<Shared>,
    Path(file): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&s, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(id) = issue_id(&file) else { return StatusCode::NOT_FOUND.into_response() };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"errors": ["Invalid JSON"]}))).into_response();
    };
    let delay = {
        let mut g = s.inner.lock().expect("sim lock");
        g.puts += 1;
        let at = std::time::Instant::now();
        let mut throttle = None;
        if let Some((secs, left)) = g.throttled.get_mut(&id).filter(|(_, left)| *left > 0) {
            *left -= 1;
            throttle = Some(*secs);
        }
        if let Some((n, secs)) = g.throttle_every.filter(|(n, _)| g.puts % n == 0) {
            let _ = n;
            throttle = Some(secs);
        }
        if let Some(secs) = throttle {
            g.log.push(SimRequest { at, method: "PUT", issue: Some(id), status: 429, retry_after: Some(secs) });
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())]).into_response();
        }
        let status = if g.issues.contains_key(&id) { 204 } else { 404 };
        g.log.push(SimRequest { at, method: "PUT", issue: Some(id), status, retry_after: None });
        let jid = g.next_journal;
        let delay = g.delay;
        let Some(journals) = g.issues.get_mut(&id) else { return StatusCode::NOT_FOUND.into_response() };
        if let Some(notes) = v["issue"]["notes"].as_str().filter(|n| !n.is_empty()) {
            journals.push(Journal {
                id: jid,
                notes: notes.to_string(),
                private_notes: v["issue"]["private_notes"].as_bool().unwrap_or(false),
                user_id: 1,
            });
            g.next_journal += 1;
        }
        delay
    };
    // The note is already applied: a client killed or timing out now is the duplicate window.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    StatusCode::NO_CONTENT.into_response()
}
