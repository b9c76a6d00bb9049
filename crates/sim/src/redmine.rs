//! A small Redmine simulator: `PUT /issues/{id}.json` (204), `GET /issues/{id}.json?include=journals`,
//! `GET /users/current.json`, API key in `X-Redmine-API-Key`; time entries (`POST` and
//! `GET /time_entries.json?issue_id=`, paged by `offset`/`limit` with `total_count`),
//! `GET /users.json?name=` and `GET /users/{id}.json`, with the answers Redmine 5.0.4 gave
//! (201 with the entry; 422 `{"errors":[…]}` for a closed project's issue, an unknown issue,
//! a missing activity, an unknown user). The tests also run the same
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

/// A time entry as Redmine lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeEntryRec {
    pub id: u64,
    pub issue: u64,
    pub user_id: u64,
    pub hours: f64,
    pub spent_on: String,
    pub activity_id: u64,
    pub comments: String,
}

#[derive(Default)]
struct Inner {
    time_entries: Vec<TimeEntryRec>,
    /// Issues of a closed project: notes 403, time entries 422.
    closed: std::collections::BTreeSet<u64>,
    /// Users by id → e-mail (1 is the API user).
    users: BTreeMap<u64, String>,
    /// The next `n` time entry POSTs answer 429 with this Retry-After.
    throttle_time: Option<(u64, usize)>,
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
        let users = BTreeMap::from([(1, "admin@example.net".to_string()), (12, "jon.snow@example.com".to_string())]);
        let inner = Arc::new(Mutex::new(Inner { next_journal: 1, users, ..Default::default() }));
        for i in issues {
            inner.lock().expect("sim lock").issues.insert(*i, Vec::new());
        }
        let shared = Shared { key: api_key.to_string(), inner: inner.clone() };
        let app = Router::new()
            .route("/issues/{file}", get(get_issue).put(put_issue))
            .route("/users/current.json", get(current_user))
            .route("/users.json", get(list_users))
            .route("/users/{file}", get(get_user))
            .route("/time_entries.json", get(list_time_entries).post(post_time_entry))
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

    /// The time entries written so far.
    pub fn time_entries(&self) -> Vec<TimeEntryRec> {
        self.inner.lock().expect("sim lock").time_entries.clone()
    }

    /// The issue's project is closed: notes answer 403, time entries 422 "Issue is invalid".
    pub fn close_project_of(&self, issue: u64) {
        self.inner.lock().expect("sim lock").closed.insert(issue);
    }

    /// Remove a user (a technician who left): a time entry for them answers 422 "User is invalid".
    pub fn remove_user(&self, id: u64) {
        self.inner.lock().expect("sim lock").users.remove(&id);
    }

    /// The next `times` time entry POSTs answer 429 with `Retry-After: secs`.
    pub fn throttle_time_entries(&self, secs: u64, times: usize) {
        self.inner.lock().expect("sim lock").throttle_time = Some((secs, times));
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
        let status = if !g.issues.contains_key(&id) {
            404
        } else if g.closed.contains(&id) {
            403
        } else {
            204
        };
        g.log.push(SimRequest { at, method: "PUT", issue: Some(id), status, retry_after: None });
        if status == 403 {
            return StatusCode::FORBIDDEN.into_response();
        }
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

fn unprocessable(errors: &[&str]) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"errors": errors}))).into_response()
}

fn entry_json(t: &TimeEntryRec) -> Value {
    let name = if t.user_id == 1 { "Redmine Admin" } else { "Jon Snow" };
    json!({
        "id": t.id, "project": {"id": 1, "name": "CI"}, "issue": {"id": t.issue},
        "user": {"id": t.user_id, "name": name}, "activity": {"id": t.activity_id, "name": "Development"},
        "hours": t.hours, "comments": t.comments, "spent_on": t.spent_on,
        "created_on": "2026-12-06T05:55:41Z", "updated_on": "2026-12-06T05:55:41Z",
    })
}

async fn post_time_entry(State(s): State<Shared>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorized(&s, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return unprocessable(&["Invalid JSON"]) };
    let t = &v["time_entry"];
    let delay = {
        let mut g = s.inner.lock().expect("sim lock");
        let at = std::time::Instant::now();
        let issue = t["issue_id"].as_u64();
        if let Some((secs, left)) = g.throttle_time.as_mut().filter(|(_, left)| *left > 0) {
            *left -= 1;
            let secs = *secs;
            g.log.push(SimRequest { at, method: "POST", issue, status: 429, retry_after: Some(secs) });
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())]).into_response();
        }
        let mut errors = Vec::new();
        match issue {
            Some(i) if g.closed.contains(&i) => errors.push("Issue is invalid"),
            Some(i) if g.issues.contains_key(&i) => {}
            _ => errors.extend(["Project cannot be blank", "Project is invalid", "Issue is invalid"]),
        }
        let hours = t["hours"].as_f64().unwrap_or(0.0);
        if hours <= 0.0 {
            errors.push("Hours is invalid");
        }
        let Some(activity_id) = t["activity_id"].as_u64() else {
            errors.push("Activity cannot be blank");
            g.log.push(SimRequest { at, method: "POST", issue, status: 422, retry_after: None });
            return unprocessable(&errors);
        };
        let user_id = match &t["user_id"] {
            Value::Null => 1,
            u => match u.as_u64().or_else(|| u.as_str().and_then(|x| x.parse().ok())) {
                Some(id) if g.users.contains_key(&id) => id,
                _ => {
                    errors.push("User is invalid");
                    0
                }
            },
        };
        let status = if errors.is_empty() { 201 } else { 422 };
        g.log.push(SimRequest { at, method: "POST", issue, status, retry_after: None });
        if !errors.is_empty() {
            return unprocessable(&errors);
        }
        let rec = TimeEntryRec {
            id: g.time_entries.len() as u64 + 1,
            issue: issue.expect("checked"),
            user_id,
            hours,
            spent_on: t["spent_on"].as_str().unwrap_or("2026-12-06").to_string(),
            activity_id,
            comments: t["comments"].as_str().unwrap_or("").to_string(),
        };
        g.time_entries.push(rec.clone());
        (g.delay, rec)
    };
    // Applied already: a client that times out now is the duplicate window, as for notes.
    if !delay.0.is_zero() {
        tokio::time::sleep(delay.0).await;
    }
    (StatusCode::CREATED, Json(json!({"time_entry": entry_json(&delay.1)}))).into_response()
}

async fn list_time_entries(
    State(s): State<Shared>,
    h: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&s, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let g = s.inner.lock().expect("sim lock");
    let issue: Option<u64> = q.get("issue_id").and_then(|i| i.parse().ok());
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(25).min(100);
    let offset: usize = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    // Redmine lists the newest first.
    let all: Vec<&TimeEntryRec> = g.time_entries.iter().rev().filter(|t| issue.is_none_or(|i| t.issue == i)).collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).map(|t| entry_json(t)).collect();
    Json(json!({"time_entries": page, "total_count": all.len(), "offset": offset, "limit": limit})).into_response()
}

async fn list_users(
    State(s): State<Shared>,
    h: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&s, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let g = s.inner.lock().expect("sim lock");
    let name = q.get("name").map(|n| n.to_lowercase()).unwrap_or_default();
    let users: Vec<Value> = g
        .users
        .iter()
        .filter(|(_, mail)| mail.to_lowercase().contains(&name))
        .map(|(id, mail)| json!({"id": id, "login": mail.split('@').next(), "mail": mail}))
        .collect();
    Json(json!({"users": users, "total_count": users.len(), "offset": 0, "limit": 25})).into_response()
}

async fn get_user(State(s): State<Shared>, Path(file): Path<String>, h: HeaderMap) -> Response {
    if !authorized(&s, &h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let g = s.inner.lock().expect("sim lock");
    match issue_id(&file).and_then(|id| g.users.get(&id).map(|m| (id, m))) {
        Some((id, mail)) => Json(json!({"user": {"id": id, "mail": mail}})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
