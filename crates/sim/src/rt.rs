//! Request Tracker 5 REST 2.0 simulator, in the wire shapes a real RT 5.0.3 (Debian bookworm)
//! answered (`shared/vendor-apis/request-tracker.md`, `docs/vendors/rt.md`), under `/REST/2.0`:
//! `POST /ticket/{id}/comment|correspond` (JSON with `ContentType`, or a text/plain body whose
//! non-ASCII RT stores double-encoded; 201 `["Comments added"]` with `Location:
//! /REST/2.0/transaction/{n}`; a missing ticket is 400 "Message could not be recorded"),
//! `GET /ticket/{id}` (404 `{"message":"Not Found"}`), `GET /ticket/{id}/attachments` and
//! `GET /ticket/{id}/history` (collections: `per_page` capped at 100, `page`, `orderby=id`,
//! `order`, `fields`, a JSON `query`; a missing ticket lists nothing), `GET /user/{id|name}`,
//! `GET /rt`, `GET /tickets?query=CF.{name} = 'value'`. Auth `Authorization: token …`; 401
//! `{"message":"Unauthorized"}`.

// Handlers return axum responses as their error side; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// The API user the token belongs to: RT's `root` is user 14 on a fresh install.
pub const API_USER_ID: u64 = 14;
pub const API_USER: &str = "root";
/// Someone else (an agent or a requestor) writing on tickets.
pub const PERSON: &str = "person";

#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: u64,
    pub content_type: String,
    /// As RT stores it (a text/plain body form's non-ASCII double-encoded).
    pub content: String,
}

/// One transaction on a ticket.
#[derive(Debug, Clone)]
pub struct Txn {
    pub id: u64,
    /// `Create`, `Comment`, `Correspond`.
    pub kind: String,
    /// The creator's user name.
    pub creator: String,
    pub attachments: Vec<Attachment>,
}

impl Txn {
    /// The message's text (its first attachment), as RT stores it.
    pub fn text(&self) -> String {
        self.attachments.first().map(|a| a.content.clone()).unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    tickets: BTreeMap<u64, Vec<Txn>>,
    /// Minutes worked per ticket: the sum of the messages' `TimeTaken`, as RT keeps `TimeWorked`.
    time_worked: BTreeMap<u64, i64>,
    custom_fields: BTreeMap<u64, BTreeMap<String, String>>,
    next_txn: u64,
    next_attachment: u64,
    /// Messages recorded through the API (comments and replies).
    posts: usize,
}

#[derive(Clone)]
struct Shared {
    token: String,
    base: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct RtSim {
    /// RT's web address; REST 2.0 is at `{base_url}/REST/2.0`.
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

fn msg(status: StatusCode, m: &str) -> Response {
    (status, [("content-type", "application/json; charset=utf-8")], json!({"message": m}).to_string()).into_response()
}

impl Inner {
    fn add(&mut self, ticket: u64, kind: &str, creator: &str, content_type: &str, content: &str) -> u64 {
        let (tid, aid) = (self.next_txn, self.next_attachment);
        self.next_txn += 1;
        self.next_attachment += 1;
        let attachments = vec![Attachment { id: aid, content_type: content_type.into(), content: content.into() }];
        let txn = Txn { id: tid, kind: kind.into(), creator: creator.into(), attachments };
        self.tickets.entry(ticket).or_default().push(txn);
        tid
    }

    fn create(&mut self, ticket: u64) {
        let tid = self.next_txn;
        self.next_txn += 1;
        let txn = Txn { id: tid, kind: "Create".into(), creator: PERSON.into(), attachments: vec![] };
        self.tickets.insert(ticket, vec![txn]);
    }
}

impl RtSim {
    /// A simulator whose API user holds `token`, with these tickets (each with its Create
    /// transaction, by a person, without content).
    pub async fn start(token: &str, tickets: &[u64]) -> std::io::Result<RtSim> {
        let inner = Arc::new(Mutex::new(Inner { next_txn: 30, next_attachment: 1, ..Default::default() }));
        for t in tickets {
            inner.lock().expect("sim lock").create(*t);
        }
        let (listener, base_url) = crate::listen(0).await?;
        let shared = Shared { token: token.into(), base: format!("{base_url}/REST/2.0"), inner: inner.clone() };
        let app = Router::new()
            .route("/REST/2.0/ticket/{id}", get(get_ticket))
            .route("/REST/2.0/ticket/{id}/comment", post(post_comment))
            .route("/REST/2.0/ticket/{id}/correspond", post(post_correspond))
            .route("/REST/2.0/ticket/{id}/attachments", get(list_attachments))
            .route("/REST/2.0/ticket/{id}/history", get(list_history))
            .route("/REST/2.0/user/{id}", get(get_user))
            .route("/REST/2.0/rt", get(version))
            .route("/REST/2.0/tickets", get(search))
            .with_state(shared);
        Ok(RtSim { base_url, inner, _server: crate::Served::serve(listener, app) })
    }

    /// Every transaction on the ticket, oldest first.
    pub fn transactions(&self, ticket: u64) -> Vec<Txn> {
        self.inner.lock().expect("sim lock").tickets.get(&ticket).cloned().unwrap_or_default()
    }

    /// The comments and replies on the ticket, oldest first.
    pub fn messages(&self, ticket: u64) -> Vec<Txn> {
        self.transactions(ticket).into_iter().filter(|t| t.kind == "Comment" || t.kind == "Correspond").collect()
    }

    /// Comments and replies recorded through the API.
    /// The ticket's `TimeWorked` in minutes.
    pub fn time_worked(&self, ticket: u64) -> i64 {
        self.inner.lock().expect("sim lock").time_worked.get(&ticket).copied().unwrap_or(0)
    }

    pub fn post_count(&self) -> usize {
        self.inner.lock().expect("sim lock").posts
    }

    /// A comment typed by a person (not the API user).
    pub fn add_person_comment(&self, ticket: u64, text: &str) {
        self.inner.lock().expect("sim lock").add(ticket, "Comment", PERSON, "text/plain", text);
    }

    /// `n` comments by a person, so scans walk several pages.
    pub fn seed_comments(&self, ticket: u64, n: usize) {
        let mut g = self.inner.lock().expect("sim lock");
        for i in 0..n {
            g.add(ticket, "Comment", PERSON, "text/plain", &format!("technician comment {i}"));
        }
    }

    /// The ticket's custom field `name` holds `value`.
    pub fn set_custom_field(&self, ticket: u64, name: &str, value: &str) {
        self.inner.lock().expect("sim lock").custom_fields.entry(ticket).or_default().insert(name.into(), value.into());
    }
}

fn authorized(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let auth = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match auth.strip_prefix("token ") == Some(s.token.as_str()) {
        true => Ok(()),
        false => Err(msg(StatusCode::UNAUTHORIZED, "Unauthorized")),
    }
}

fn user_ref(s: &Shared, name: &str) -> Value {
    json!({"type": "user", "id": name, "_url": format!("{}/user/{name}", s.base)})
}

async fn get_ticket(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    match id.parse::<u64>().ok().filter(|i| g.tickets.contains_key(i)) {
        Some(i) => axum::Json(json!({
            "id": i, "Subject": format!("Ticket {i}"), "Status": "open", "Queue": {"type": "queue", "id": "1"},
            "Creator": user_ref(&s, PERSON), "_hyperlinks": [],
            "TimeWorked": g.time_worked.get(&i).copied().unwrap_or(0).to_string(),
        }))
        .into_response(),
        None => msg(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// What RT's `Message.pm` does with a text/plain body: it hands the raw bytes to MIME as if
/// they were Latin-1, so each UTF-8 byte of non-ASCII text becomes a character of its own.
fn double_encoded(body: &[u8]) -> String {
    body.iter().map(|b| char::from(*b)).collect()
}

async fn post_comment(s: State<Shared>, id: Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    post_message(s, id, h, body, ("Comment", "Comments added")).await
}

async fn post_correspond(s: State<Shared>, id: Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    post_message(s, id, h, body, ("Correspond", "Correspondence added")).await
}

async fn post_message(
    State(s): State<Shared>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
    (txn_kind, done): (&str, &str),
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let ctype = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let (content_type, content, taken) = if ctype.starts_with("application/json") {
        // Malformed JSON: RT dies in the decoder and Plack answers 500 with no body.
        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let Some(ct) = v["ContentType"].as_str() else {
            return msg(StatusCode::BAD_REQUEST, "ContentType is a required field for application/json");
        };
        let taken = v["TimeTaken"].as_str().and_then(|t| t.trim().parse::<i64>().ok()).or(v["TimeTaken"].as_i64());
        (ct.to_string(), v["Content"].as_str().unwrap_or_default().to_string(), taken)
    } else if ctype.starts_with("text/plain") || ctype.starts_with("text/html") {
        (ctype.split(';').next().unwrap_or("text/plain").trim().to_string(), double_encoded(&body), None)
    } else {
        return msg(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let Some(ticket) = id.parse::<u64>().ok().filter(|i| g.tickets.contains_key(i)) else {
        return msg(StatusCode::BAD_REQUEST, "Message could not be recorded");
    };
    let tid = g.add(ticket, txn_kind, API_USER, &content_type, &content);
    *g.time_worked.entry(ticket).or_default() += taken.unwrap_or(0);
    g.posts += 1;
    (
        StatusCode::CREATED,
        [
            ("location", format!("/REST/2.0/transaction/{tid}")),
            ("content-type", "application/json; charset=\"utf-8\"".into()),
        ],
        format!("[\n   \"{done}\"\n]\n"),
    )
        .into_response()
}

/// A collection's paging and ordering parameters, as RT reads them.
struct Paging {
    per_page: usize,
    page: usize,
    desc: bool,
    fields: Vec<String>,
}

fn paging(q: &BTreeMap<String, String>) -> Paging {
    let num = |k: &str, d: usize| q.get(k).and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(d);
    let fields = q.get("fields").map(|f| f.split(',').map(|x| x.trim().to_string()).collect()).unwrap_or_default();
    Paging {
        per_page: num("per_page", 20).min(100),
        page: num("page", 1),
        desc: q.get("order").is_some_and(|o| o.eq_ignore_ascii_case("desc")),
        fields,
    }
}

/// One page of `all` (each `(id, full record)`), with only the fields asked for, in RT's
/// collection envelope.
fn collection(s: &Shared, path: &str, kind: &str, mut all: Vec<(u64, Value)>, p: &Paging) -> Response {
    all.sort_by_key(|(id, _)| *id);
    if p.desc {
        all.reverse();
    }
    let total = all.len();
    let pages = total.div_ceil(p.per_page);
    let items: Vec<Value> = all
        .into_iter()
        .skip((p.page - 1) * p.per_page)
        .take(p.per_page)
        .map(|(id, full)| {
            let mut item = json!({"type": kind, "id": id.to_string(), "_url": format!("{}/{kind}/{id}", s.base)});
            for f in &p.fields {
                if let Some(v) = full.get(f) {
                    item[f] = v.clone();
                }
            }
            item
        })
        .collect();
    let mut out = json!({
        "count": items.len(), "page": p.page, "pages": pages, "per_page": p.per_page, "total": total, "items": items,
    });
    if p.page < pages {
        out["next_page"] = json!(format!("{}{path}?page={}", s.base, p.page + 1));
    }
    if p.page > 1 {
        out["prev_page"] = json!(format!("{}{path}?page={}", s.base, p.page - 1));
    }
    axum::Json(out).into_response()
}

/// The JSON `query` RT's attachments collection accepts; only `ContentType` LIKE / `=` is
/// modelled (RT ignores fields it does not know).
fn content_type_filter(q: &BTreeMap<String, String>) -> Option<(String, bool)> {
    let v: Value = serde_json::from_str(q.get("query")?).ok()?;
    v.as_array()?.iter().find(|l| l["field"] == "ContentType").map(|l| {
        let like = l["operator"].as_str().is_some_and(|o| o.eq_ignore_ascii_case("LIKE"));
        (l["value"].as_str().unwrap_or_default().to_ascii_lowercase(), like)
    })
}

async fn list_attachments(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let filter = content_type_filter(&q);
    let all: Vec<(u64, Value)> = {
        let g = s.inner.lock().expect("sim lock");
        // RT lists nothing (200) for a ticket it does not have.
        let txns = id.parse::<u64>().ok().and_then(|i| g.tickets.get(&i)).cloned().unwrap_or_default();
        txns.iter()
            .flat_map(|t| t.attachments.iter().map(move |a| (t.id, a)))
            .filter(|(_, a)| match &filter {
                Some((v, true)) => a.content_type.to_ascii_lowercase().contains(v.as_str()),
                Some((v, false)) => a.content_type.eq_ignore_ascii_case(v),
                None => true,
            })
            .map(|(tid, a)| {
                let full = json!({"TransactionId": tid.to_string(), "ContentType": a.content_type, "Content": a.content, "Filename": ""});
                (a.id, full)
            })
            .collect()
    };
    collection(&s, &format!("/ticket/{id}/attachments"), "attachment", all, &paging(&q))
}

async fn list_history(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let all: Vec<(u64, Value)> = {
        let g = s.inner.lock().expect("sim lock");
        let txns = id.parse::<u64>().ok().and_then(|i| g.tickets.get(&i)).cloned().unwrap_or_default();
        txns.iter()
            .map(|t| (t.id, json!({"Type": t.kind, "Creator": user_ref(&s, &t.creator), "Data": "No Subject"})))
            .collect()
    };
    collection(&s, &format!("/ticket/{id}/history"), "transaction", all, &paging(&q))
}

async fn get_user(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let (uid, name) = match id.as_str() {
        i if i == API_USER_ID.to_string() || i == API_USER => (API_USER_ID, API_USER),
        PERSON => (31, PERSON),
        "31" => (31, PERSON),
        _ => return msg(StatusCode::NOT_FOUND, "Not Found"),
    };
    axum::Json(json!({"id": uid, "Name": name, "RealName": name, "Privileged": 1, "Disabled": "0"})).into_response()
}

async fn version(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    axum::Json(json!({"Version": "5.0.3+dfsg-3~deb12u7", "Plugins": []})).into_response()
}

/// TicketSQL, only `CF.{name} = 'value'`.
async fn search(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let query = q.get("query").cloned().unwrap_or_default();
    let parsed = query.trim().strip_prefix("CF.{").and_then(|r| r.split_once('}')).and_then(|(name, rest)| {
        let v = rest.trim().strip_prefix('=')?.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        Some((name.to_string(), v.to_string()))
    });
    let Some((name, value)) = parsed else { return msg(StatusCode::BAD_REQUEST, "Invalid query") };
    let all: Vec<(u64, Value)> = {
        let g = s.inner.lock().expect("sim lock");
        g.custom_fields.iter().filter(|(_, cf)| cf.get(&name) == Some(&value)).map(|(t, _)| (*t, json!({}))).collect()
    };
    collection(&s, "/tickets", "ticket", all, &paging(&q))
}
