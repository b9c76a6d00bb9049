//! Zendesk simulator: `PUT /api/v2/tickets/{id}.json` (200 `{"ticket","audit"}`),
//! `GET /api/v2/tickets/{id}/comments.json` (`per_page`, absolute `next_page`),
//! `GET /api/v2/search.json` (custom field), `GET /api/v2/users/me.json`. Basic
//! `{email}/token:{token}` auth; errors as `{"error":…,"description":…}`; `X-Rate-Limit`
//! headers; the per-ticket update limit answers 429 without `Retry-After`, as Zendesk does.

// Handlers return axum responses as their error side; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub html_body: String,
    pub plain_body: String,
    pub public: bool,
    /// 1: the API user (`/api/v2/users/me.json`); [`super::PERSON_ID`]: someone else.
    pub author_id: u64,
}

#[derive(Default)]
struct Inner {
    tickets: BTreeMap<u64, Vec<Comment>>,
    fields: BTreeMap<u64, BTreeMap<u64, Value>>,
    next_id: u64,
    updates: usize,
    updates_per_ticket: BTreeMap<u64, usize>,
    per_ticket_limit: usize,
    max_per_page: usize,
}

#[derive(Clone)]
struct Shared {
    auth: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct ZendeskSim {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

fn err(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "description": description}))).into_response()
}

impl ZendeskSim {
    pub async fn start(email: &str, token: &str, tickets: &[u64]) -> std::io::Result<ZendeskSim> {
        let inner = Inner { next_id: 1000, per_ticket_limit: 30, max_per_page: 100, ..Default::default() };
        let inner = Arc::new(Mutex::new(inner));
        for t in tickets {
            inner.lock().expect("sim lock").tickets.insert(*t, Vec::new());
        }
        let auth =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{email}/token:{token}")));
        let shared = Shared { auth, inner: inner.clone() };
        let app = Router::new()
            .route("/api/v2/tickets/{file}", get(get_ticket).put(put_ticket))
            .route("/api/v2/tickets/{id}/comments.json", get(list_comments))
            .route("/api/v2/search.json", get(search))
            .route("/api/v2/users/me.json", get(me))
            .with_state(shared);
        let (server, base_url) = crate::Served::start(app).await?;
        Ok(ZendeskSim { base_url, inner, _server: server })
    }

    pub fn comments(&self, ticket: u64) -> Vec<Comment> {
        self.inner.lock().expect("sim lock").tickets.get(&ticket).cloned().unwrap_or_default()
    }

    /// Add comments written by someone else (to make the scan walk pages).
    pub fn seed_comments(&self, ticket: u64, n: usize) {
        let mut g = self.inner.lock().expect("sim lock");
        for i in 0..n {
            let id = g.next_id;
            g.next_id += 1;
            let body = format!("agent reply {i}");
            g.tickets.entry(ticket).or_default().push(Comment {
                id,
                html_body: format!("<p>{body}</p>"),
                plain_body: body,
                public: true,
                author_id: super::PERSON_ID,
            });
        }
    }

    /// A comment typed by a person (not the API user), as HTML.
    pub fn add_person_comment(&self, ticket: u64, html: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        let plain = super::html::to_text(html);
        g.tickets.entry(ticket).or_default().push(Comment {
            id,
            html_body: html.to_string(),
            plain_body: plain,
            public: true,
            author_id: super::PERSON_ID,
        });
    }

    pub fn set_max_per_page(&self, n: usize) {
        self.inner.lock().expect("sim lock").max_per_page = n.max(1);
    }

    pub fn set_per_ticket_limit(&self, n: usize) {
        self.inner.lock().expect("sim lock").per_ticket_limit = n;
    }

    /// Successful ticket updates so far.
    pub fn update_count(&self) -> usize {
        self.inner.lock().expect("sim lock").updates
    }

    pub fn custom_field(&self, ticket: u64, field: u64) -> Option<Value> {
        self.inner.lock().expect("sim lock").fields.get(&ticket).and_then(|f| f.get(&field)).cloned()
    }
}

fn rate_headers() -> [(&'static str, &'static str); 2] {
    [("X-Rate-Limit", "700"), ("X-Rate-Limit-Remaining", "699")]
}

fn authorized(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) == Some(s.auth.as_str()) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, Json(json!({"error": "Couldn't authenticate you"}))).into_response())
    }
}

fn ticket_id(file: &str) -> Option<u64> {
    file.strip_suffix(".json")?.parse().ok()
}

fn base_of(h: &HeaderMap) -> String {
    format!("http://{}", h.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1"))
}

async fn me(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    (rate_headers(), Json(json!({"user": {"id": 1, "role": "agent"}}))).into_response()
}

async fn get_ticket(State(s): State<Shared>, Path(file): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    match ticket_id(&file).filter(|id| g.tickets.contains_key(id)) {
        Some(id) => {
            let fields: Vec<Value> =
                g.fields.get(&id).into_iter().flatten().map(|(fid, v)| json!({"id": fid, "value": v})).collect();
            let t = json!({"ticket": {"id": id, "subject": format!("Ticket {id}"), "custom_fields": fields}});
            (rate_headers(), Json(t)).into_response()
        }
        None => err(StatusCode::NOT_FOUND, "RecordNotFound", "Not found"),
    }
}

async fn put_ticket(
    State(s): State<Shared>,
    Path(file): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "InvalidJSON", "Could not parse the request body");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let Some(id) = ticket_id(&file).filter(|id| g.tickets.contains_key(id)) else {
        return err(StatusCode::NOT_FOUND, "RecordNotFound", "Not found");
    };
    let done = g.updates_per_ticket.get(&id).copied().unwrap_or(0);
    if done >= g.per_ticket_limit {
        // The per-ticket update limit comes without Retry-After.
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": "TooManyRequests", "description": "Ticket update limit exceeded"})),
        )
            .into_response();
    }
    let c = &v["ticket"]["comment"];
    let html =
        c["html_body"].as_str().map(str::to_string).or_else(|| c["body"].as_str().map(|b| b.replace('\n', "<br>")));
    let Some(html) = html.filter(|b| !b.trim().is_empty()) else {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "RecordInvalid", "Record validation errors");
    };
    let cid = g.next_id;
    g.next_id += 2;
    let public = c["public"].as_bool().unwrap_or(true);
    let plain = super::html::to_text(&html);
    g.tickets.get_mut(&id).expect("checked").push(Comment {
        id: cid,
        html_body: html,
        plain_body: plain,
        public,
        author_id: 1,
    });
    for f in v["ticket"]["custom_fields"].as_array().into_iter().flatten() {
        if let Some(fid) = f["id"].as_u64() {
            g.fields.entry(id).or_default().insert(fid, f["value"].clone());
        }
    }
    g.updates += 1;
    *g.updates_per_ticket.entry(id).or_default() += 1;
    (
        rate_headers(),
        Json(json!({"ticket": {"id": id}, "audit": {"id": cid + 1, "ticket_id": id, "events": [{"id": cid, "type": "Comment", "public": public}]}})),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct PageQ {
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list_comments(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<PageQ>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some((id, comments)) = id.parse::<u64>().ok().and_then(|i| g.tickets.get(&i).map(|c| (i, c))) else {
        return err(StatusCode::NOT_FOUND, "RecordNotFound", "Not found");
    };
    let per = q.per_page.unwrap_or(100).min(g.max_per_page).max(1);
    let page = q.page.unwrap_or(1).max(1);
    let items: Vec<Value> = comments
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .map(|c| json!({"id": c.id, "type": "Comment", "author_id": c.author_id, "body": c.plain_body, "html_body": c.html_body, "plain_body": c.plain_body, "public": c.public}))
        .collect();
    let next = (page * per < comments.len())
        .then(|| format!("{}/api/v2/tickets/{id}/comments.json?page={}&per_page={per}", base_of(&h), page + 1));
    (
        rate_headers(),
        Json(json!({"comments": items, "next_page": next, "previous_page": null, "count": comments.len()})),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct SearchQ {
    query: String,
}

async fn search(State(s): State<Shared>, Query(q): Query<SearchQ>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    // Supports `type:ticket custom_field_{id}:"value"` only.
    let g = s.inner.lock().expect("sim lock");
    let mut results = Vec::new();
    if let Some(rest) = q.query.split_whitespace().find_map(|t| t.strip_prefix("custom_field_")) {
        if let Some((fid, val)) = rest.split_once(':') {
            let val = val.trim_matches('"');
            for (tid, fields) in &g.fields {
                if fid.parse::<u64>().ok().and_then(|f| fields.get(&f)).and_then(Value::as_str) == Some(val) {
                    results.push(json!({"id": tid, "result_type": "ticket"}));
                }
            }
        }
    }
    (rate_headers(), Json(json!({"results": results, "count": results.len(), "next_page": null}))).into_response()
}
