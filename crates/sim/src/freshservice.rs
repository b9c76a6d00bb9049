//! Freshservice simulator: `POST /api/v2/tickets/{id}/notes` (201 `{"conversation"}`),
//! `GET /api/v2/tickets/{id}/conversations` (`page`/`per_page`, `Link: <…>; rel="next"`),
//! `GET /api/v2/tickets/filter`, `GET /api/v2/agents/me`. Basic `{api_key}:X`; errors as
//! `{"code":…,"message":…}` or `{"description":…,"errors":[…]}`; `X-RateLimit-*` headers on
//! every answer, failed ones included (they count against the limit).

// Handlers return axum responses as their error side; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: u64,
    pub body: String,
    pub body_text: String,
    pub private: bool,
    /// 1: the API key's agent (`/api/v2/agents/me`); [`super::PERSON_ID`]: someone else.
    pub user_id: u64,
}

#[derive(Default)]
struct Inner {
    tickets: BTreeMap<u64, Vec<Conversation>>,
    /// Time entries: (ticket, the entry as Freshservice answers it).
    time_entries: Vec<(u64, Value)>,
    session_codes: BTreeMap<u64, String>,
    next_id: u64,
    notes_created: usize,
    used: u64,
    max_per_page: usize,
}

#[derive(Clone)]
struct Shared {
    auth: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct FreshserviceSim {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

const TOTAL: u64 = 5000;

fn with_limits(inner: &Arc<Mutex<Inner>>, status: StatusCode, body: Value) -> Response {
    let used = {
        let mut g = inner.lock().expect("sim lock");
        g.used += 1;
        g.used
    };
    let remaining = TOTAL.saturating_sub(used).to_string();
    (
        status,
        [
            ("X-RateLimit-Total", TOTAL.to_string()),
            ("X-RateLimit-Remaining", remaining),
            ("X-RateLimit-Used-CurrentRequest", "1".to_string()),
        ],
        Json(body),
    )
        .into_response()
}

impl FreshserviceSim {
    pub async fn start(api_key: &str, tickets: &[u64]) -> std::io::Result<FreshserviceSim> {
        let inner = Arc::new(Mutex::new(Inner { next_id: 5000, max_per_page: 100, ..Default::default() }));
        for t in tickets {
            inner.lock().expect("sim lock").tickets.insert(*t, Vec::new());
        }
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{api_key}:X")));
        let shared = Shared { auth, inner: inner.clone() };
        let app = Router::new()
            .route("/api/v2/tickets/{id}/notes", post(create_note))
            .route("/api/v2/tickets/{id}/time_entries", post(create_time_entry).get(list_time_entries))
            .route("/api/v2/tickets/{id}/conversations", get(conversations))
            .route("/api/v2/tickets/filter", get(filter))
            .route("/api/v2/agents/me", get(me))
            .with_state(shared);
        let (server, base_url) = crate::Served::start(app).await?;
        Ok(FreshserviceSim { base_url, inner, _server: server })
    }

    pub fn conversations(&self, ticket: u64) -> Vec<Conversation> {
        self.inner.lock().expect("sim lock").tickets.get(&ticket).cloned().unwrap_or_default()
    }

    /// The ticket's time entries, as Freshservice lists them.
    pub fn time_entries(&self, ticket: u64) -> Vec<Value> {
        let g = self.inner.lock().expect("sim lock");
        g.time_entries.iter().filter(|t| t.0 == ticket).map(|t| t.1.clone()).collect()
    }

    pub fn notes_created(&self) -> usize {
        self.inner.lock().expect("sim lock").notes_created
    }

    /// Calls counted against the rate limit, failed ones included.
    pub fn calls_used(&self) -> u64 {
        self.inner.lock().expect("sim lock").used
    }

    pub fn set_session_code(&self, ticket: u64, code: &str) {
        self.inner.lock().expect("sim lock").session_codes.insert(ticket, code.into());
    }

    pub fn set_max_per_page(&self, n: usize) {
        self.inner.lock().expect("sim lock").max_per_page = n.max(1);
    }

    pub fn seed_conversations(&self, ticket: u64, n: usize) {
        let mut g = self.inner.lock().expect("sim lock");
        for i in 0..n {
            let id = g.next_id;
            g.next_id += 1;
            g.tickets.entry(ticket).or_default().push(Conversation {
                id,
                body: format!("<div>reply {i}</div>"),
                body_text: format!("reply {i}"),
                private: false,
                user_id: super::PERSON_ID,
            });
        }
    }

    /// A note typed by a person (not the API user), as HTML.
    pub fn add_person_note(&self, ticket: u64, html: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        let body_text = super::html::to_text(html);
        g.tickets.entry(ticket).or_default().push(Conversation {
            id,
            body: html.to_string(),
            body_text,
            private: true,
            user_id: super::PERSON_ID,
        });
    }
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) == Some(s.auth.as_str()) {
        Ok(())
    } else {
        Err(with_limits(
            &s.inner,
            StatusCode::UNAUTHORIZED,
            json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}),
        ))
    }
}

fn not_found(s: &Shared) -> Response {
    with_limits(&s.inner, StatusCode::NOT_FOUND, json!({"code": "access_denied", "message": "Record not found"}))
}

async fn me(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    with_limits(&s.inner, StatusCode::OK, json!({"agent": {"id": 1}}))
}

async fn create_note(
    State(s): State<Shared>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else { return not_found(&s) };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return with_limits(
                &s.inner,
                StatusCode::BAD_REQUEST,
                json!({"description": "Validation failed", "errors": [{"field": "body", "message": "Invalid JSON", "code": "invalid_json"}]}),
            )
        }
    };
    let Some(html) = v["body"].as_str().filter(|b| !b.trim().is_empty()).map(str::to_string) else {
        return with_limits(
            &s.inner,
            StatusCode::BAD_REQUEST,
            json!({"description": "Validation failed", "errors": [{"field": "body", "message": "It should not be blank", "code": "missing_field"}]}),
        );
    };
    let conv = {
        let mut g = s.inner.lock().expect("sim lock");
        if !g.tickets.contains_key(&id) {
            drop(g);
            return not_found(&s);
        }
        let cid = g.next_id;
        g.next_id += 1;
        g.notes_created += 1;
        let private = v["private"].as_bool().unwrap_or(true);
        let c = Conversation { id: cid, body_text: super::html::to_text(&html), body: html, private, user_id: 1 };
        g.tickets.get_mut(&id).expect("checked").push(c.clone());
        c
    };
    with_limits(
        &s.inner,
        StatusCode::CREATED,
        json!({"conversation": {"id": conv.id, "body": conv.body, "body_text": conv.body_text, "private": conv.private, "ticket_id": id, "incoming": false}}),
    )
}

#[derive(serde::Deserialize)]
struct PageQ {
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn conversations(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<PageQ>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let (items, more, per, page) = {
        let g = s.inner.lock().expect("sim lock");
        let Some(convs) = id.parse::<u64>().ok().and_then(|i| g.tickets.get(&i)) else {
            drop(g);
            return not_found(&s);
        };
        let per = q.per_page.unwrap_or(30).min(g.max_per_page).max(1);
        let page = q.page.unwrap_or(1).max(1);
        let items: Vec<Value> = convs
            .iter()
            .skip((page - 1) * per)
            .take(per)
            .map(|c| json!({"id": c.id, "user_id": c.user_id, "body": c.body, "body_text": c.body_text, "private": c.private, "incoming": false}))
            .collect();
        (items, page * per < convs.len(), per, page)
    };
    let mut r = with_limits(&s.inner, StatusCode::OK, json!({"conversations": items, "meta": {"count": items.len()}}));
    if more {
        let host = h.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
        let link =
            format!("<http://{host}/api/v2/tickets/{id}/conversations?page={}&per_page={per}>; rel=\"next\"", page + 1);
        r.headers_mut().insert("link", link.parse().expect("valid header"));
    }
    r
}

#[derive(serde::Deserialize)]
struct FilterQ {
    query: String,
}

async fn filter(State(s): State<Shared>, Query(q): Query<FilterQ>, h: HeaderMap) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    // Supports `"cf_<name>:'value'"` only.
    let wanted = q.query.trim_matches('"').split_once(':').map(|(_, v)| v.trim_matches('\'').to_string());
    let tickets: Vec<Value> = {
        let g = s.inner.lock().expect("sim lock");
        g.session_codes
            .iter()
            .filter(|(_, c)| Some(c.as_str()) == wanted.as_deref())
            .map(|(t, _)| json!({"id": t}))
            .collect()
    };
    with_limits(&s.inner, StatusCode::OK, json!({"tickets": tickets, "total": tickets.len()}))
}

/// `POST /api/v2/tickets/{id}/time_entries` (Freshservice API v2, "Create a Time Entry"):
/// `time_spent` "hh:mm", `agent_id` mandatory, `billable`, `executed_at`, `note`; 201 with
/// `{"time_entry":{…}}`.
async fn create_time_entry(
    State(s): State<Shared>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else { return not_found(&s) };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut errors = Vec::new();
    let spent = v["time_spent"].as_str().unwrap_or("");
    let valid_spent = spent
        .split_once(':')
        .is_some_and(|(h, m)| h.len() == 2 && m.len() == 2 && h.chars().chain(m.chars()).all(|c| c.is_ascii_digit()));
    if !valid_spent {
        errors.push(
            json!({"field": "time_spent", "message": "It should be in the 'hh:mm' format", "code": "invalid_value"}),
        );
    }
    if v["agent_id"].as_u64().is_none() {
        errors.push(
            json!({"field": "agent_id", "message": "It should be a/an Positive Integer", "code": "missing_field"}),
        );
    }
    if !errors.is_empty() {
        return with_limits(
            &s.inner,
            StatusCode::BAD_REQUEST,
            json!({"description": "Validation failed", "errors": errors}),
        );
    }
    let entry = {
        let mut g = s.inner.lock().expect("sim lock");
        if !g.tickets.contains_key(&id) {
            drop(g);
            return not_found(&s);
        }
        let eid = g.next_id;
        g.next_id += 1;
        let e = json!({
            "id": eid, "task_id": null, "agent_id": v["agent_id"], "billable": v["billable"].as_bool().unwrap_or(true),
            "note": v["note"].as_str().unwrap_or(""), "time_spent": spent, "timer_running": false,
            "executed_at": v["executed_at"], "start_time": v["start_time"], "custom_fields": {},
            "created_at": "2026-12-06T06:00:00Z", "updated_at": "2026-12-06T06:00:00Z",
        });
        g.time_entries.push((id, e.clone()));
        e
    };
    with_limits(&s.inner, StatusCode::CREATED, json!({"time_entry": entry}))
}

async fn list_time_entries(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else { return not_found(&s) };
    let list: Vec<Value> = {
        let g = s.inner.lock().expect("sim lock");
        if !g.tickets.contains_key(&id) {
            drop(g);
            return not_found(&s);
        }
        g.time_entries.iter().filter(|t| t.0 == id).map(|t| t.1.clone()).collect()
    };
    with_limits(&s.inner, StatusCode::OK, json!({"time_entries": list}))
}
