//! GLPI legacy REST simulator (`/apirest.php`): `GET initSession` (`Authorization: user_token …`,
//! `App-Token`), `GET killSession`, `GET getFullSession`, `GET Ticket/{id}`,
//! `GET|POST Ticket/{id}/ITILFollowup` (paged by `range`, 206 with `Content-Range` when
//! partial; 201 `{"id":N,"message":""}`), `GET search/Ticket`. Errors are
//! `["ERROR_CODE","message"]` arrays, as GLPI sends them.

// Handlers return axum responses as their error side; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Followup {
    pub id: u64,
    /// As GLPI returns it: HTML with its entities encoded.
    pub content: String,
    pub is_private: bool,
    /// The author: 2 (the session's user, `getFullSession`'s `glpiID`) for followups added
    /// through the API, [`super::PERSON_ID`] for someone else.
    pub users_id: u64,
}

#[derive(Default)]
struct Inner {
    tickets: BTreeMap<u64, Vec<Followup>>,
    /// TicketTasks: (ticket, the task as GLPI lists it).
    tasks: Vec<(u64, Value)>,
    session_codes: BTreeMap<u64, String>,
    sessions: BTreeSet<String>,
    sessions_opened: usize,
    sessions_killed: usize,
    next_id: u64,
    max_per_page: usize,
}

#[derive(Clone)]
struct Shared {
    user_token: String,
    app_token: Option<String>,
    inner: Arc<Mutex<Inner>>,
}

pub struct GlpiSim {
    /// Ends in `/apirest.php`, like a real GLPI's API URL.
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

fn glpi_err(status: StatusCode, code: &str, msg: &str) -> Response {
    (status, Json(json!([code, msg]))).into_response()
}

impl GlpiSim {
    /// The ticket's tasks (TicketTask), as GLPI lists them.
    pub fn tasks(&self, ticket: u64) -> Vec<Value> {
        let g = self.inner.lock().expect("sim lock");
        g.tasks.iter().filter(|t| t.0 == ticket).map(|t| t.1.clone()).collect()
    }

    pub async fn start(user_token: &str, app_token: Option<&str>, tickets: &[u64]) -> std::io::Result<GlpiSim> {
        let inner = Arc::new(Mutex::new(Inner { next_id: 1, max_per_page: 1000, ..Default::default() }));
        for t in tickets {
            inner.lock().expect("sim lock").tickets.insert(*t, Vec::new());
        }
        let shared =
            Shared { user_token: user_token.into(), app_token: app_token.map(str::to_string), inner: inner.clone() };
        let app = Router::new()
            .route("/apirest.php/initSession", get(init_session))
            .route("/apirest.php/killSession", get(kill_session))
            .route("/apirest.php/getFullSession", get(full_session))
            .route("/apirest.php/Ticket/{id}", get(get_ticket))
            .route("/apirest.php/Ticket/{id}/ITILFollowup", get(list_followups).post(add_followup))
            .route("/apirest.php/search/Ticket", get(search))
            .route("/apirest.php/Ticket/{id}/TicketTask", get(list_tasks).post(add_task))
            .with_state(shared);
        let (server, url) = crate::Served::start(app).await?;
        Ok(GlpiSim { base_url: format!("{url}/apirest.php"), inner, _server: server })
    }

    pub fn followups(&self, ticket: u64) -> Vec<Followup> {
        self.inner.lock().expect("sim lock").tickets.get(&ticket).cloned().unwrap_or_default()
    }

    pub fn sessions_opened(&self) -> usize {
        self.inner.lock().expect("sim lock").sessions_opened
    }

    pub fn sessions_killed(&self) -> usize {
        self.inner.lock().expect("sim lock").sessions_killed
    }

    /// Forget every session, as GLPI does when they expire.
    pub fn expire_sessions(&self) {
        self.inner.lock().expect("sim lock").sessions.clear();
    }

    pub fn set_session_code(&self, ticket: u64, code: &str) {
        self.inner.lock().expect("sim lock").session_codes.insert(ticket, code.into());
    }

    pub fn set_max_per_page(&self, n: usize) {
        self.inner.lock().expect("sim lock").max_per_page = n.max(1);
    }

    pub fn seed_followups(&self, ticket: u64, n: usize) {
        let mut g = self.inner.lock().expect("sim lock");
        for i in 0..n {
            let id = g.next_id;
            g.next_id += 1;
            g.tickets.entry(ticket).or_default().push(Followup {
                id,
                content: format!("&lt;p&gt;technician follow-up {i}&lt;/p&gt;"),
                is_private: false,
                users_id: super::PERSON_ID,
            });
        }
    }

    /// A followup typed by a person (not the API user), HTML as a person's editor sends it.
    pub fn add_person_followup(&self, ticket: u64, html: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        g.tickets.entry(ticket).or_default().push(Followup {
            id,
            content: encode(html),
            is_private: false,
            users_id: super::PERSON_ID,
        });
    }
}

fn app_ok(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    match &s.app_token {
        Some(want) if h.get("app-token").and_then(|v| v.to_str().ok()) != Some(want.as_str()) => {
            Err(glpi_err(StatusCode::BAD_REQUEST, "ERROR_WRONG_APP_TOKEN_PARAMETER", "parameter app_token seems wrong"))
        }
        _ => Ok(()),
    }
}

/// A request needs a live session.
fn session_ok(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    app_ok(s, h)?;
    let tok = h.get("session-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if tok.is_empty() {
        return Err(glpi_err(
            StatusCode::BAD_REQUEST,
            "ERROR_SESSION_TOKEN_MISSING",
            "parameter session_token is missing or empty",
        ));
    }
    if !s.inner.lock().expect("sim lock").sessions.contains(tok) {
        return Err(glpi_err(StatusCode::UNAUTHORIZED, "ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid"));
    }
    Ok(())
}

async fn init_session(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = app_ok(&s, &h) {
        return r;
    }
    let auth = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if auth.strip_prefix("user_token ") != Some(s.user_token.as_str()) {
        return glpi_err(StatusCode::UNAUTHORIZED, "ERROR_GLPI_LOGIN_USER_TOKEN", "parameter user_token seems invalid");
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut g = s.inner.lock().expect("sim lock");
    g.sessions.insert(token.clone());
    g.sessions_opened += 1;
    Json(json!({"session_token": token})).into_response()
}

async fn kill_session(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    let tok = h.get("session-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut g = s.inner.lock().expect("sim lock");
    g.sessions.remove(&tok);
    g.sessions_killed += 1;
    Json(json!([])).into_response()
}

async fn full_session(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    Json(json!({"session": {"glpiID": 2, "glpiname": "ticketsync"}})).into_response()
}

fn not_found() -> Response {
    glpi_err(StatusCode::NOT_FOUND, "ERROR_ITEM_NOT_FOUND", "Item not found")
}

async fn get_ticket(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    match id.parse::<u64>().ok().filter(|i| g.tickets.contains_key(i)) {
        Some(i) => Json(json!({"id": i, "name": format!("Ticket {i}"), "status": 2})).into_response(),
        None => not_found(),
    }
}

#[derive(serde::Deserialize)]
struct RangeQ {
    range: Option<String>,
}

async fn list_followups(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<RangeQ>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some(list) = id.parse::<u64>().ok().and_then(|i| g.tickets.get(&i)) else { return not_found() };
    let (from, to) = q
        .range
        .as_deref()
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .unwrap_or((0, 49));
    let to = to.min(from + g.max_per_page - 1);
    let total = list.len();
    if total > 0 && from >= total {
        return glpi_err(
            StatusCode::BAD_REQUEST,
            "ERROR_RANGE_EXCEED_TOTAL",
            "Provided range exceed total count of data",
        );
    }
    let items: Vec<Value> = list
        .iter()
        .skip(from)
        .take(to + 1 - from)
        .map(|f| json!({"id": f.id, "itemtype": "Ticket", "items_id": id.parse::<u64>().unwrap_or(0), "users_id": f.users_id, "content": f.content, "is_private": i32::from(f.is_private)}))
        .collect();
    let last = (from + items.len()).saturating_sub(1);
    let status = if from + items.len() < total { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    (
        status,
        [
            ("Content-Range", format!("{from}-{last}/{total}")),
            ("Accept-Range", format!("ITILFollowup {}", g.max_per_page)),
        ],
        Json(Value::Array(items)),
    )
        .into_response()
}

/// GLPI stores rich text with its HTML entities encoded and returns it that way.
fn encode(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn add_followup(
    State(s): State<Shared>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return glpi_err(StatusCode::BAD_REQUEST, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid");
    };
    let input = &v["input"];
    let (Some(content), Some(items_id)) = (input["content"].as_str(), input["items_id"].as_u64()) else {
        return glpi_err(StatusCode::BAD_REQUEST, "ERROR_BAD_ARRAY", "input parameter must be an array of objects");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let parent = id.parse::<u64>().ok();
    if parent != Some(items_id) || !g.tickets.contains_key(&items_id) {
        return glpi_err(
            StatusCode::BAD_REQUEST,
            "ERROR_GLPI_ADD",
            "You don't have permission to perform this action.",
        );
    }
    let fid = g.next_id;
    g.next_id += 1;
    let is_private = input["is_private"].as_i64() == Some(1) || input["is_private"].as_bool() == Some(true);
    g.tickets.get_mut(&items_id).expect("checked").push(Followup {
        id: fid,
        content: encode(content),
        is_private,
        users_id: 2,
    });
    (StatusCode::CREATED, Json(json!({"id": fid, "message": ""}))).into_response()
}

async fn search(
    State(s): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    let wanted = q.get("criteria[0][value]").cloned().unwrap_or_default();
    let g = s.inner.lock().expect("sim lock");
    let data: Vec<Value> = g
        .session_codes
        .iter()
        .filter(|(_, c)| **c == wanted)
        .map(|(t, _)| json!({"2": t, "1": format!("Ticket {t}")}))
        .collect();
    Json(json!({"totalcount": data.len(), "count": data.len(), "data": data})).into_response()
}

/// `POST /Ticket/{id}/TicketTask` with `{"input":{"tickets_id","content","actiontime",…}}`:
/// 201 `{"id":N,"message":""}`; the content stored entity-encoded, as for followups.
async fn add_task(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return glpi_err(StatusCode::BAD_REQUEST, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid");
    };
    let input = &v["input"];
    let (Some(content), Some(ticket)) = (input["content"].as_str(), input["tickets_id"].as_u64()) else {
        return glpi_err(StatusCode::BAD_REQUEST, "ERROR_BAD_ARRAY", "input parameter must be an array of objects");
    };
    let mut g = s.inner.lock().expect("sim lock");
    if id.parse::<u64>().ok() != Some(ticket) || !g.tickets.contains_key(&ticket) {
        return glpi_err(
            StatusCode::BAD_REQUEST,
            "ERROR_GLPI_ADD",
            "You don't have permission to perform this action.",
        );
    }
    let tid = g.next_id;
    g.next_id += 1;
    let task = json!({
        "id": tid, "tickets_id": ticket, "users_id": 2, "users_id_tech": input["users_id_tech"].as_u64().unwrap_or(2),
        "content": encode(content), "actiontime": input["actiontime"].as_u64().unwrap_or(0),
        "is_private": input["is_private"].as_i64().unwrap_or(0), "date": input["date"], "state": input["state"].as_i64().unwrap_or(1),
    });
    g.tasks.push((ticket, task));
    (StatusCode::CREATED, Json(json!({"id": tid, "message": ""}))).into_response()
}

async fn list_tasks(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = session_ok(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some(ticket) = id.parse::<u64>().ok().filter(|i| g.tickets.contains_key(i)) else { return not_found() };
    let items: Vec<Value> = g.tasks.iter().filter(|t| t.0 == ticket).map(|t| t.1.clone()).collect();
    let total = items.len();
    ([("Content-Range", format!("0-{}/{total}", total.saturating_sub(1)))], Json(Value::Array(items))).into_response()
}
