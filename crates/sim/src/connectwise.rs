//! ConnectWise PSA (Manage) simulator, in the shapes of ConnectWise's REST documentation
//! (`<site>/v4_6_release/apis/3.0`): `POST /service/tickets/{id}/notes` (201 with the note:
//! `id`, `ticketId`, `text`, `detailDescriptionFlag`, `internalAnalysisFlag`,
//! `resolutionFlag`, `member`, `createdBy`, `dateCreated`, `_info`),
//! `GET /service/tickets/{id}/notes?page=&pageSize=` (a JSON array; `Link` header with
//! `rel="next"` while more pages follow), `GET /system/members?conditions=identifier="…"`.
//! Auth: Basic `company+publicKey:privateKey` and a `clientId` header; errors as
//! `{"code","message","errors"}`. What the documentation does not show (the exact 401/404
//! texts) is a guess, named in the sink's module docs.

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

pub const API_PATH: &str = "/v4_6_release/apis/3.0";
/// The API member's identifier and id.
pub const API_MEMBER: &str = "ticketsync";
pub const API_MEMBER_ID: u64 = 150;
/// Another member, who types notes in the web UI.
pub const PERSON: &str = "pperson";
/// A technician with a member of their own, found by `officeEmail`.
pub const TECHNICIAN: &str = "jsnow";
pub const TECHNICIAN_EMAIL: &str = "jon.snow@example.test";

#[derive(Debug, Clone)]
pub struct TicketNote {
    pub id: u64,
    pub text: String,
    pub internal: bool,
    pub detail: bool,
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct TimeEntry {
    pub id: u64,
    pub charge_to_id: u64,
    pub member: String,
    pub time_start: String,
    pub time_end: String,
    pub actual_hours: f64,
    pub billable_option: String,
    pub notes: String,
    pub entered_by: String,
}

#[derive(Default)]
struct Inner {
    tickets: BTreeMap<u64, Vec<TicketNote>>,
    time: Vec<TimeEntry>,
    closed: Vec<u64>,
    next_id: u64,
    posts: usize,
    max_page: usize,
}

#[derive(Clone)]
struct Shared {
    /// The whole accepted `Authorization` value.
    auth: String,
    client_id: String,
    inner: Arc<Mutex<Inner>>,
    base_url: Arc<Mutex<String>>,
}

pub struct ConnectWiseSim {
    /// The site URL (the sink adds the API path).
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

fn err(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message, "errors": null}))).into_response()
}

impl ConnectWiseSim {
    pub async fn start(
        company: &str,
        public_key: &str,
        private_key: &str,
        client_id: &str,
        tickets: &[u64],
    ) -> std::io::Result<ConnectWiseSim> {
        let inner = Arc::new(Mutex::new(Inner { next_id: 500, max_page: 1000, ..Default::default() }));
        for t in tickets {
            inner.lock().expect("sim lock").tickets.insert(*t, Vec::new());
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{company}+{public_key}:{private_key}"));
        let base_url = Arc::new(Mutex::new(String::new()));
        let shared = Shared {
            auth: format!("Basic {basic}"),
            client_id: client_id.into(),
            inner: inner.clone(),
            base_url: base_url.clone(),
        };
        let api = Router::new()
            .route("/service/tickets/{id}/notes", get(list_notes).post(add_note))
            .route("/system/members", get(members))
            .route("/time/entries", get(list_time).post(add_time))
            .with_state(shared);
        let app = Router::new().nest(API_PATH, api);
        let (server, url) = crate::Served::start(app).await?;
        *base_url.lock().expect("sim lock") = url.clone();
        Ok(ConnectWiseSim { base_url: url, inner, _server: server })
    }

    pub fn notes(&self, ticket: u64) -> Vec<TicketNote> {
        self.inner.lock().expect("sim lock").tickets.get(&ticket).cloned().unwrap_or_default()
    }

    pub fn post_count(&self) -> usize {
        self.inner.lock().expect("sim lock").posts
    }

    /// Caps `pageSize`, so that scans walk several pages.
    pub fn set_max_per_page(&self, n: usize) {
        self.inner.lock().expect("sim lock").max_page = n.max(1);
    }

    pub fn time_entries(&self, ticket: u64) -> Vec<TimeEntry> {
        self.inner.lock().expect("sim lock").time.iter().filter(|t| t.charge_to_id == ticket).cloned().collect()
    }

    /// The ticket's status becomes a closed one: time can no longer be charged to it.
    pub fn close_ticket(&self, ticket: u64) {
        self.inner.lock().expect("sim lock").closed.push(ticket);
    }

    /// A time entry another member typed, its notes ending as `notes` says.
    pub fn add_person_time_entry(&self, ticket: u64, notes: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        g.time.push(TimeEntry {
            id,
            charge_to_id: ticket,
            member: PERSON.into(),
            time_start: "2026-12-01T10:00:00Z".into(),
            time_end: "2026-12-01T10:15:00Z".into(),
            actual_hours: 0.25,
            billable_option: "Billable".into(),
            notes: notes.into(),
            entered_by: PERSON.into(),
        });
    }

    /// A note typed by another member in the web UI.
    pub fn add_person_note(&self, ticket: u64, text: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        g.tickets.entry(ticket).or_default().push(TicketNote {
            id,
            text: text.into(),
            internal: true,
            detail: false,
            created_by: PERSON.into(),
        });
    }
}

fn authorized(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let auth = h.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(s.auth.as_str()) {
        return Err(err(StatusCode::UNAUTHORIZED, "Unauthorized", "Incorrect public/private key"));
    }
    match h.get("clientid").and_then(|v| v.to_str().ok()) {
        Some(c) if c == s.client_id => Ok(()),
        _ => Err(err(StatusCode::UNAUTHORIZED, "Unauthorized", "clientId is required and must be valid")),
    }
}

fn note_json(ticket: u64, n: &TicketNote) -> Value {
    let member_id = if n.created_by == API_MEMBER { API_MEMBER_ID } else { 151 };
    json!({
        "id": n.id, "ticketId": ticket, "text": n.text,
        "detailDescriptionFlag": n.detail, "internalAnalysisFlag": n.internal, "resolutionFlag": false,
        "issueFlag": false,
        "member": {"id": member_id, "identifier": n.created_by, "name": n.created_by},
        "contact": null, "customerUpdatedFlag": false, "processNotifications": true,
        "dateCreated": "2026-12-01T10:00:00Z", "createdBy": n.created_by,
        "internalFlag": n.internal, "externalFlag": n.detail,
        "_info": {"lastUpdated": "2026-12-01T10:00:00Z", "updatedBy": n.created_by},
    })
}

async fn add_note(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "InvalidObject", "The request body could not be parsed");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let Some(ticket) = id.parse::<u64>().ok().filter(|t| g.tickets.contains_key(t)) else {
        return err(StatusCode::NOT_FOUND, "NotFound", &format!("Ticket with id {id} not found"));
    };
    let Some(text) = v["text"].as_str().filter(|t| !t.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": "InvalidObject", "message": "serviceNote object is invalid",
                "errors": [{"code": "NullValue", "message": "text may not be null", "resource": "serviceNote", "field": "text"}]})),
        )
            .into_response();
    };
    let flag = |k: &str| v[k].as_bool().unwrap_or(false);
    if !flag("internalAnalysisFlag") && !flag("detailDescriptionFlag") && !flag("resolutionFlag") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": "InvalidObject", "message": "serviceNote object is invalid",
                "errors": [{"code": "InvalidField", "message": "At least one of detailDescriptionFlag, internalAnalysisFlag, resolutionFlag must be true", "resource": "serviceNote", "field": "detailDescriptionFlag"}]})),
        )
            .into_response();
    }
    let nid = g.next_id;
    g.next_id += 1;
    g.posts += 1;
    let n = TicketNote {
        id: nid,
        text: text.into(),
        internal: flag("internalAnalysisFlag"),
        detail: flag("detailDescriptionFlag"),
        created_by: API_MEMBER.into(),
    };
    let out = note_json(ticket, &n);
    g.tickets.get_mut(&ticket).expect("checked").push(n);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn list_notes(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some((ticket, notes)) = id.parse::<u64>().ok().and_then(|t| g.tickets.get(&t).map(|n| (t, n))) else {
        return err(StatusCode::NOT_FOUND, "NotFound", &format!("Ticket with id {id} not found"));
    };
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let size: usize = q.get("pageSize").and_then(|p| p.parse().ok()).unwrap_or(25).clamp(1, g.max_page);
    let items: Vec<Value> = notes.iter().skip((page - 1) * size).take(size).map(|n| note_json(ticket, n)).collect();
    let mut resp = Json(Value::Array(items)).into_response();
    let base = s.base_url.lock().expect("sim lock").clone();
    let mut links =
        vec![format!("<{base}{API_PATH}/service/tickets/{ticket}/notes?pageSize={size}&page=1>; rel=\"first\"")];
    if page * size < notes.len() {
        links.push(format!(
            "<{base}{API_PATH}/service/tickets/{ticket}/notes?pageSize={size}&page={}>; rel=\"next\"",
            page + 1
        ));
    }
    if let Ok(v) = links.join(", ").parse() {
        resp.headers_mut().insert("link", v);
    }
    resp
}

/// `conditions=identifier="…"`: the API member, or nobody.
async fn members(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let cond = q.get("conditions").cloned().unwrap_or_default();
    let (field, wanted) = match cond.split_once('=') {
        Some((f, v)) => (f.trim().to_string(), Some(v.trim().trim_matches('"').to_string())),
        None => (String::new(), None),
    };
    let all = [
        (API_MEMBER_ID, API_MEMBER, "ticketsync-api@example.test"),
        (151, PERSON, "pat.person@example.test"),
        (152, TECHNICIAN, TECHNICIAN_EMAIL),
    ];
    let out: Vec<Value> = all
        .iter()
        .filter(|(id, ident, mail)| match (field.as_str(), wanted.as_deref()) {
            (_, None) => true,
            ("identifier", Some(w)) => w.eq_ignore_ascii_case(ident),
            ("officeEmail", Some(w)) => w.eq_ignore_ascii_case(mail),
            ("id", Some(w)) => w == id.to_string(),
            _ => false,
        })
        .map(|(id, ident, mail)| json!({"id": id, "identifier": ident, "officeEmail": mail}))
        .collect();
    Json(Value::Array(out)).into_response()
}

fn time_json(t: &TimeEntry) -> Value {
    json!({
        "id": t.id, "company": {"id": 250, "identifier": "Customer"},
        "chargeToId": t.charge_to_id, "chargeToType": "ServiceTicket",
        "member": {"id": if t.member == API_MEMBER { API_MEMBER_ID } else { 152 }, "identifier": t.member},
        "timeStart": t.time_start, "timeEnd": t.time_end, "actualHours": t.actual_hours,
        "billableOption": t.billable_option, "notes": t.notes, "enteredBy": t.entered_by,
        "dateEntered": "2026-12-01T10:00:00Z",
        "_info": {"lastUpdated": "2026-12-01T10:00:00Z", "updatedBy": t.entered_by},
    })
}

fn invalid(field: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"code": "InvalidObject", "message": "timeEntry object is invalid",
            "errors": [{"code": "InvalidField", "message": message, "resource": "timeEntry", "field": field}]})),
    )
        .into_response()
}

async fn add_time(State(s): State<Shared>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "InvalidObject", "The request body could not be parsed");
    };
    let mut g = s.inner.lock().expect("sim lock");
    if v["chargeToType"].as_str() != Some("ServiceTicket") {
        return invalid("chargeToType", "chargeToType must be ServiceTicket, ProjectTicket, ChargeCode or Activity");
    }
    let Some(ticket) = v["chargeToId"].as_u64().filter(|t| g.tickets.contains_key(t)) else {
        return invalid("chargeToId", &format!("Service ticket {} not found", v["chargeToId"]));
    };
    if g.closed.contains(&ticket) {
        return invalid("chargeToId", "Time cannot be entered against a closed ticket");
    }
    let (Some(start), Some(end)) = (v["timeStart"].as_str(), v["timeEnd"].as_str()) else {
        return invalid("timeStart", "timeStart and timeEnd are required");
    };
    let option = v["billableOption"].as_str().unwrap_or("Billable");
    if !["Billable", "DoNotBill", "NoCharge", "NoDefault"].contains(&option) {
        return invalid("billableOption", "billableOption must be Billable, DoNotBill, NoCharge or NoDefault");
    }
    let member = match (&v["member"]["identifier"], &v["member"]["id"]) {
        (Value::String(i), _) => i.clone(),
        (_, Value::Number(n)) if n.as_u64() == Some(152) => TECHNICIAN.to_string(),
        (_, Value::Number(n)) if n.as_u64() == Some(API_MEMBER_ID) => API_MEMBER.to_string(),
        (Value::Null, Value::Null) => API_MEMBER.to_string(),
        _ => return invalid("member", "Member not found"),
    };
    if ![API_MEMBER, TECHNICIAN, PERSON].iter().any(|m| m.eq_ignore_ascii_case(&member)) {
        return invalid("member/identifier", &format!("Member {member} not found"));
    }
    let id = g.next_id;
    g.next_id += 1;
    g.posts += 1;
    let t = TimeEntry {
        id,
        charge_to_id: ticket,
        member,
        time_start: start.into(),
        time_end: end.into(),
        actual_hours: v["actualHours"].as_f64().unwrap_or(0.0),
        billable_option: option.into(),
        notes: v["notes"].as_str().unwrap_or("").into(),
        entered_by: API_MEMBER.into(),
    };
    let out = time_json(&t);
    g.time.push(t);
    (StatusCode::CREATED, Json(out)).into_response()
}

/// `conditions=chargeToId=<id> AND chargeToType="ServiceTicket"`, paged like the notes.
async fn list_time(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>, h: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let cond = q.get("conditions").cloned().unwrap_or_default();
    let charge: Option<u64> = cond
        .split(" AND ")
        .filter_map(|c| c.trim().strip_prefix("chargeToId="))
        .next()
        .and_then(|v| v.trim().parse().ok());
    let all: Vec<&TimeEntry> = g.time.iter().filter(|t| charge.is_none_or(|c| t.charge_to_id == c)).collect();
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let size: usize = q.get("pageSize").and_then(|p| p.parse().ok()).unwrap_or(25).clamp(1, g.max_page);
    let items: Vec<Value> = all.iter().skip((page - 1) * size).take(size).map(|t| time_json(t)).collect();
    let mut resp = Json(Value::Array(items)).into_response();
    if page * size < all.len() {
        let base = s.base_url.lock().expect("sim lock").clone();
        let next = format!("<{base}{API_PATH}/time/entries?pageSize={size}&page={}>; rel=\"next\"", page + 1);
        if let Ok(v) = next.parse() {
            resp.headers_mut().insert("link", v);
        }
    }
    resp
}
