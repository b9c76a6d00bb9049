//! HaloPSA simulator, in the shapes of HaloPSA's API as its documentation and public clients
//! show it: `POST /auth/token[?tenant=…]` (form `grant_type=client_credentials`, `client_id`,
//! `client_secret`, `scope`; `{"access_token","token_type":"Bearer","expires_in","scope"}`,
//! a refused client `{"error":"invalid_client"}`), `GET /api/Agent/me`, `POST /api/Actions`
//! (an array of actions: `ticket_id`, `note_html` or `note`, `hiddenfromuser`, `outcome`,
//! `timetaken`; answered with the action created) and `GET /api/Actions?ticket_id=…`
//! (`{"record_count","actions":[…]}`, `note_html` with `includehtmlnote=true`). Bearer auth;
//! an expired or revoked token is 401.

// Handlers return axum responses as their error side; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The agent the API application logs in as.
pub const API_AGENT_ID: u64 = 12;
/// Another agent, who types notes in the web UI.
pub const PERSON_AGENT_ID: u64 = 7;

#[derive(Debug, Clone)]
pub struct Action {
    pub id: u64,
    pub ticket_id: u64,
    pub note_html: String,
    pub hidden_from_user: bool,
    pub outcome: String,
    /// Hours.
    pub time_taken: f64,
    pub who_agentid: u64,
    pub billable: Option<bool>,
    pub agent_id: Option<u64>,
}

/// A technician's agent, found by e-mail.
pub const TECHNICIAN_AGENT_ID: u64 = 21;
pub const TECHNICIAN_EMAIL: &str = "jon.snow@example.test";

#[derive(Default)]
struct Inner {
    /// Tickets that are closed: no more time on them.
    closed: Vec<u64>,
    tickets: Vec<u64>,
    actions: Vec<Action>,
    next_id: u64,
    posts: usize,
    tokens: Vec<String>,
    issued: usize,
    expires_in: u64,
    /// Token requests answered, with their `tenant` and `scope`.
    token_requests: Vec<(Option<String>, Option<String>)>,
}

#[derive(Clone)]
struct Shared {
    client_id: String,
    client_secret: String,
    /// Hosted: the tenant the token request must name.
    tenant: Option<String>,
    inner: Arc<Mutex<Inner>>,
}

pub struct HaloPsaSim {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

impl HaloPsaSim {
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        tenant: Option<&str>,
        tickets: &[u64],
    ) -> std::io::Result<HaloPsaSim> {
        let inner = Arc::new(Mutex::new(Inner {
            tickets: tickets.to_vec(),
            next_id: 3000,
            expires_in: 3600,
            ..Default::default()
        }));
        let shared = Shared {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            tenant: tenant.map(str::to_string),
            inner: inner.clone(),
        };
        let app = Router::new()
            .route("/auth/token", post(token))
            .route("/api/Agent/me", get(me))
            .route("/api/Agent", get(agents))
            .route("/api/Agent/{id}", get(agent))
            .route("/api/Actions", get(list_actions).post(add_actions))
            .with_state(shared);
        let (server, base_url) = crate::Served::start(app).await?;
        Ok(HaloPsaSim { base_url, inner, _server: server })
    }

    pub fn actions(&self, ticket: u64) -> Vec<Action> {
        self.inner.lock().expect("sim lock").actions.iter().filter(|a| a.ticket_id == ticket).cloned().collect()
    }

    pub fn post_count(&self) -> usize {
        self.inner.lock().expect("sim lock").posts
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().expect("sim lock").issued
    }

    /// The `tenant` and `scope` of each token request.
    pub fn token_requests(&self) -> Vec<(Option<String>, Option<String>)> {
        self.inner.lock().expect("sim lock").token_requests.clone()
    }

    /// The ticket is closed: time can no longer be logged on it.
    pub fn close_ticket(&self, ticket: u64) {
        self.inner.lock().expect("sim lock").closed.push(ticket);
    }

    /// Every token issued so far stops working (as after a secret rotation).
    pub fn revoke_tokens(&self) {
        self.inner.lock().expect("sim lock").tokens.clear();
    }

    /// An action typed by another agent.
    pub fn add_person_note(&self, ticket: u64, html: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        g.actions.push(Action {
            id,
            ticket_id: ticket,
            note_html: html.into(),
            hidden_from_user: true,
            outcome: "Private Note".into(),
            time_taken: 0.0,
            who_agentid: PERSON_AGENT_ID,
            billable: None,
            agent_id: None,
        });
    }
}

fn bearer_ok(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let token = h.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if s.inner.lock().expect("sim lock").tokens.iter().any(|k| k == t) => Ok(()),
        _ => Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized: the access token is invalid or expired"})),
        )
            .into_response()),
    }
}

async fn token(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let f: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut g = s.inner.lock().expect("sim lock");
    g.token_requests.push((q.get("tenant").cloned(), f.get("scope").cloned()));
    if s.tenant.is_some() && q.get("tenant") != s.tenant.as_ref() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": "tenant not found"})),
        )
            .into_response();
    }
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))).into_response();
    }
    if f.get("client_id") != Some(&s.client_id) || f.get("client_secret") != Some(&s.client_secret) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    if f.get("scope").is_none_or(|sc| sc.is_empty()) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_scope"}))).into_response();
    }
    g.issued += 1;
    let t = format!("halo-sim-access-{}-{:08x}", g.issued, rand::random::<u32>());
    g.tokens.push(t.clone());
    Json(json!({"access_token": t, "token_type": "Bearer", "expires_in": g.expires_in, "scope": f["scope"]}))
        .into_response()
}

async fn me(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = bearer_ok(&s, &h) {
        return r;
    }
    Json(json!({"id": API_AGENT_ID, "name": "ticketsync API", "email": "ticketsync@example.test", "isdisabled": false}))
        .into_response()
}

/// Tags dropped, entities of our own rendering decoded: what HaloPSA shows as `note`.
fn text_of(html: &str) -> String {
    crate::html::to_text(html)
}

fn action_json(a: &Action, html: bool) -> Value {
    let mut v = json!({
        "id": a.id, "ticket_id": a.ticket_id, "outcome": a.outcome, "note": text_of(&a.note_html),
        "hiddenfromuser": a.hidden_from_user, "timetaken": a.time_taken, "who_agentid": a.who_agentid,
        "who": if a.who_agentid == API_AGENT_ID { "ticketsync API" } else { "Pat Person" },
        "who_type": 1, "datetime": "2026-12-01T10:00:00",
    });
    if html {
        v["note_html"] = json!(a.note_html);
    }
    v
}

async fn add_actions(State(s): State<Shared>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = bearer_ok(&s, &h) {
        return r;
    }
    let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!("The request body must be an array of actions"))).into_response();
    };
    let mut g = s.inner.lock().expect("sim lock");
    let mut out = Vec::new();
    for v in &list {
        let ticket = v["ticket_id"].as_u64().or_else(|| v["ticket_id"].as_str().and_then(|t| t.parse().ok()));
        let Some(ticket) = ticket.filter(|t| g.tickets.contains(t)) else {
            return (StatusCode::NOT_FOUND, Json(json!(format!("Ticket {} not found", v["ticket_id"]))))
                .into_response();
        };
        if g.closed.contains(&ticket) && v["timetaken"].as_f64().is_some_and(|t| t > 0.0) {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!(format!("Ticket {ticket} is closed: time cannot be logged against it"))),
            )
                .into_response();
        }
        if let Some(a) =
            v["agent_id"].as_u64().filter(|a| ![API_AGENT_ID, PERSON_AGENT_ID, TECHNICIAN_AGENT_ID].contains(a))
        {
            return (StatusCode::BAD_REQUEST, Json(json!(format!("Agent {a} not found")))).into_response();
        }
        let note_html = match (v["note_html"].as_str(), v["note"].as_str()) {
            (Some(h), _) => h.to_string(),
            (None, Some(n)) => n.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"),
            _ => String::new(),
        };
        let id = g.next_id;
        g.next_id += 1;
        g.posts += 1;
        let a = Action {
            id,
            ticket_id: ticket,
            note_html,
            hidden_from_user: v["hiddenfromuser"].as_bool().unwrap_or(false),
            outcome: v["outcome"].as_str().unwrap_or("Note").to_string(),
            time_taken: v["timetaken"].as_f64().unwrap_or(0.0),
            who_agentid: v["agent_id"].as_u64().unwrap_or(API_AGENT_ID),
            billable: v["actisbillable"].as_bool(),
            agent_id: v["agent_id"].as_u64(),
        };
        out.push(action_json(&a, true));
        g.actions.push(a);
    }
    // One action posted: the action itself; several: the list.
    let body = match out.len() {
        1 => out.remove(0),
        _ => Value::Array(out),
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn list_actions(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>, h: HeaderMap) -> Response {
    if let Err(r) = bearer_ok(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let ticket: Option<u64> = q.get("ticket_id").and_then(|t| t.parse().ok());
    let html = q.get("includehtmlnote").is_some_and(|v| v == "true");
    let list: Vec<Value> =
        g.actions.iter().filter(|a| Some(a.ticket_id) == ticket).map(|a| action_json(a, html)).collect();
    Json(json!({"record_count": list.len(), "actions": list})).into_response()
}

fn agent_json(id: u64) -> Value {
    let (name, email) = match id {
        API_AGENT_ID => ("ticketsync API", "ticketsync@example.test"),
        PERSON_AGENT_ID => ("Pat Person", "pat.person@example.test"),
        _ => ("Jon Snow", TECHNICIAN_EMAIL),
    };
    json!({"id": id, "name": name, "email": email, "isdisabled": false})
}

/// `?search=` matches names and e-mail addresses; an array of agents.
async fn agents(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>, h: HeaderMap) -> Response {
    if let Err(r) = bearer_ok(&s, &h) {
        return r;
    }
    let search = q.get("search").map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let list: Vec<Value> = [API_AGENT_ID, PERSON_AGENT_ID, TECHNICIAN_AGENT_ID]
        .into_iter()
        .map(agent_json)
        .filter(|a| a.to_string().to_ascii_lowercase().contains(&search))
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn agent(
    State(s): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = bearer_ok(&s, &h) {
        return r;
    }
    match id.parse::<u64>() {
        Ok(a) if [API_AGENT_ID, PERSON_AGENT_ID, TECHNICIAN_AGENT_ID].contains(&a) => {
            Json(agent_json(a)).into_response()
        }
        _ => (StatusCode::NOT_FOUND, Json(json!(format!("Agent {id} not found")))).into_response(),
    }
}
