//! Zammad simulator, in the shapes of Zammad's REST API documentation and its controllers
//! (`ticket_articles_controller.rb`, `application_controller/handles_errors.rb`,
//! `authenticates.rb`): `POST /api/v1/ticket_articles` (201 with the article; a missing
//! ticket is 404 `{"error":"Couldn't find Ticket with 'id'=…","error_human":…}`),
//! `GET /api/v1/ticket_articles/by_ticket/{id}` (every article, no paging), an article's
//! `time_unit` recorded as its time accounting (`GET /api/v1/tickets/{id}/time_accountings`), `GET
//! /api/v1/users/me`, `GET /api/v1/tickets/{id}`, `GET /api/v1/tickets/search`. Auth
//! `Authorization: Token token=…` (401 "Can't find User for Token") or Bearer; none at all
//! is 403 "Authentication required". Text/html bodies are sanitised as Zammad does for the
//! parts that matter here: links get `rel` and `target` attributes.

// Handlers return axum responses as their error side; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The API user's id (`/api/v1/users/me`).
pub const API_USER_ID: u64 = 3;

#[derive(Debug, Clone)]
pub struct Article {
    pub id: u64,
    pub body: String,
    pub content_type: String,
    pub internal: bool,
    pub kind: String,
    /// [`API_USER_ID`] for articles posted through the API, [`super::PERSON_ID`] otherwise.
    pub created_by_id: u64,
}

#[derive(Default)]
struct Inner {
    tickets: BTreeMap<u64, Vec<Article>>,
    /// Time accountings: (ticket, article, time_unit), as an article's `time_unit` creates them.
    time_accountings: Vec<(u64, u64, String)>,
    fields: BTreeMap<u64, BTreeMap<String, String>>,
    next_id: u64,
    posts: usize,
}

#[derive(Clone)]
struct Shared {
    /// The whole `Authorization` value that is accepted.
    auth: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct ZammadSim {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

fn err(status: StatusCode, e: &str) -> Response {
    (status, Json(json!({"error": e, "error_human": e}))).into_response()
}

impl ZammadSim {
    /// `auth` is the accepted `Authorization` header (`Token token=…` or `Bearer …`).
    pub async fn start(auth: &str, tickets: &[u64]) -> std::io::Result<ZammadSim> {
        let inner = Arc::new(Mutex::new(Inner { next_id: 100, ..Default::default() }));
        for t in tickets {
            inner.lock().expect("sim lock").tickets.insert(*t, Vec::new());
        }
        let shared = Shared { auth: auth.into(), inner: inner.clone() };
        let app = Router::new()
            .route("/api/v1/ticket_articles", post(add_article))
            .route("/api/v1/ticket_articles/by_ticket/{id}", get(by_ticket))
            .route("/api/v1/users/me", get(me))
            .route("/api/v1/tickets/search", get(search))
            .route("/api/v1/tickets/{id}", get(get_ticket))
            .route("/api/v1/tickets/{id}/time_accountings", get(time_accountings))
            .with_state(shared);
        let (server, base_url) = crate::Served::start(app).await?;
        Ok(ZammadSim { base_url, inner, _server: server })
    }

    /// The ticket's time accountings: (article id, time_unit).
    pub fn time_accountings(&self, ticket: u64) -> Vec<(u64, String)> {
        let g = self.inner.lock().expect("sim lock");
        g.time_accountings.iter().filter(|t| t.0 == ticket).map(|t| (t.1, t.2.clone())).collect()
    }

    pub fn articles(&self, ticket: u64) -> Vec<Article> {
        self.inner.lock().expect("sim lock").tickets.get(&ticket).cloned().unwrap_or_default()
    }

    pub fn post_count(&self) -> usize {
        self.inner.lock().expect("sim lock").posts
    }

    /// An article typed by a person (not the API user), HTML as Zammad's editor sends it.
    pub fn add_person_note(&self, ticket: u64, html: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        g.tickets.entry(ticket).or_default().push(Article {
            id,
            body: html.into(),
            content_type: "text/html".into(),
            internal: true,
            kind: "note".into(),
            created_by_id: super::PERSON_ID,
        });
    }

    /// The ticket's object attribute `name` holds `value` (found by the search).
    pub fn set_field(&self, ticket: u64, name: &str, value: &str) {
        self.inner.lock().expect("sim lock").fields.entry(ticket).or_default().insert(name.into(), value.into());
    }
}

fn authorized(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    match h.get("authorization").and_then(|v| v.to_str().ok()) {
        None => Err(err(StatusCode::FORBIDDEN, "Authentication required")),
        Some(a) if a == s.auth => Ok(()),
        Some(a) if a.starts_with("Bearer ") => Err(err(StatusCode::UNAUTHORIZED, "The provided token is invalid.")),
        Some(_) => Err(err(StatusCode::UNAUTHORIZED, "Can't find User for Token")),
    }
}

/// Zammad's HtmlSanitizer adds these to every link it keeps.
fn sanitize(html: &str) -> String {
    html.replace("<a href=", "<a rel=\"nofollow noreferrer noopener\" target=\"_blank\" href=")
}

fn article_json(ticket: u64, a: &Article) -> Value {
    let login = if a.created_by_id == API_USER_ID { "ticketsync@example.test" } else { "pat@example.test" };
    json!({
        "id": a.id, "ticket_id": ticket, "type_id": 10, "sender_id": 1, "from": "ticketsync", "to": null,
        "subject": null, "content_type": a.content_type, "body": a.body, "internal": a.internal,
        "created_by_id": a.created_by_id, "updated_by_id": a.created_by_id, "origin_by_id": null,
        "type": a.kind, "sender": "Agent", "created_by": login, "updated_by": login,
        "attachments": [], "preferences": {}, "created_at": "2026-12-01T10:00:00.000Z",
    })
}

async fn add_article(State(s): State<Shared>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "Unable to process the request body");
    };
    let ticket = v["ticket_id"].as_u64().or_else(|| v["ticket_id"].as_str().and_then(|t| t.parse().ok()));
    let mut g = s.inner.lock().expect("sim lock");
    let Some(ticket) = ticket.filter(|t| g.tickets.contains_key(t)) else {
        let t = v["ticket_id"].to_string();
        return err(StatusCode::NOT_FOUND, &format!("Couldn't find Ticket with 'id'={}", t.trim_matches('"')));
    };
    let content_type = v["content_type"].as_str().unwrap_or("text/plain").to_string();
    let raw = v["body"].as_str().unwrap_or_default();
    let body = if content_type == "text/html" { sanitize(raw) } else { raw.to_string() };
    let id = g.next_id;
    g.next_id += 1;
    g.posts += 1;
    let a = Article {
        id,
        body,
        content_type,
        internal: v["internal"].as_bool().unwrap_or(false),
        kind: v["type"].as_str().unwrap_or("note").to_string(),
        created_by_id: API_USER_ID,
    };
    // An article's `time_unit` creates the ticket's time accounting for it
    // (`creates_ticket_articles.rb`), listed by `GET /api/v1/tickets/{id}/time_accountings`.
    if let Some(unit) =
        v["time_unit"].as_str().map(str::to_string).or_else(|| v["time_unit"].as_f64().map(|f| f.to_string()))
    {
        g.time_accountings.push((ticket, id, unit));
    }
    let out = article_json(ticket, &a);
    g.tickets.get_mut(&ticket).expect("checked").push(a);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn by_ticket(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some((t, list)) = id.parse::<u64>().ok().and_then(|i| g.tickets.get(&i).map(|l| (i, l))) else {
        return err(StatusCode::NOT_FOUND, &format!("Couldn't find Ticket with 'id'={id}"));
    };
    Json(Value::Array(list.iter().map(|a| article_json(t, a)).collect())).into_response()
}

async fn me(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    Json(json!({"id": API_USER_ID, "login": "ticketsync@example.test", "firstname": "ticketsync", "active": true}))
        .into_response()
}

async fn get_ticket(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    match id.parse::<u64>().ok().filter(|i| g.tickets.contains_key(i)) {
        Some(i) => {
            Json(json!({"id": i, "number": format!("{}", 31000 + i), "title": format!("Ticket {i}")})).into_response()
        }
        None => err(StatusCode::NOT_FOUND, &format!("Couldn't find Ticket with 'id'={id}")),
    }
}

/// `query=<field>:"<value>"` (the Elasticsearch syntax Zammad passes on), `expand=true`
/// or not.
async fn search(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let query = q.get("query").cloned().unwrap_or_default();
    let Some((field, value)) = query.split_once(':') else {
        return Json(json!({"tickets": [], "assets": {}})).into_response();
    };
    let value = value.trim().trim_matches('"');
    let g = s.inner.lock().expect("sim lock");
    let ids: Vec<u64> =
        g.fields.iter().filter(|(_, f)| f.get(field).map(String::as_str) == Some(value)).map(|(t, _)| *t).collect();
    Json(json!({"tickets": ids, "tickets_count": ids.len(), "assets": {}})).into_response()
}

async fn time_accountings(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some(ticket) = id.parse::<u64>().ok().filter(|t| g.tickets.contains_key(t)) else {
        return err(StatusCode::NOT_FOUND, &format!("Couldn't find Ticket with 'id'={id}"));
    };
    let list: Vec<Value> = g
        .time_accountings
        .iter()
        .enumerate()
        .filter(|(_, t)| t.0 == ticket)
        .map(|(i, t)| {
            json!({"id": i + 1, "ticket_id": t.0, "ticket_article_id": t.1, "time_unit": t.2,
            "type_id": null, "created_by_id": API_USER_ID})
        })
        .collect();
    Json(Value::Array(list)).into_response()
}
