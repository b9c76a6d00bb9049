//! Autotask REST API simulator, in the shapes of Autotask's REST developer help:
//! `GET /atservicesrest/v1.0/zoneInformation?user=…` (no credentials; `{"zoneName","url",
//! "webUrl","ci"}`), `POST /atservicesrest/V1.0/Tickets/{id}/Notes` (a `TicketNotes` entity:
//! `ticketID`, `title`, `description`, `noteType`, `publish`; `{"itemId": …}`), and the query
//! API, `POST /atservicesrest/V1.0/{Entity}/query` with `{"filter":[…]}` (`eq`, `contains`,
//! `or`, `and`) for `Tickets`, `TicketNotes` and `Resources`, answered
//! `{"items":[…],"pageDetails":{"count","requestCount","prevPageUrl","nextPageUrl"}}`, the next
//! page a `GET` of `nextPageUrl`. Every call but the zone lookup needs the headers
//! `ApiIntegrationCode`, `UserName` and `Secret`; errors are `{"errors":["…"]}`.

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

/// The API user's resource id.
pub const API_RESOURCE_ID: u64 = 29_682_885;
/// Another resource, who types notes in the web UI.
pub const PERSON_RESOURCE_ID: u64 = 29_682_886;

#[derive(Debug, Clone)]
pub struct TicketNote {
    pub id: u64,
    pub ticket_id: u64,
    pub title: String,
    pub description: String,
    pub note_type: i64,
    pub publish: i64,
    pub creator_resource_id: u64,
}

#[derive(Debug, Clone)]
pub struct TimeEntry {
    pub id: u64,
    pub ticket_id: u64,
    pub resource_id: u64,
    pub role_id: i64,
    pub hours_worked: f64,
    pub start: String,
    pub end: String,
    pub summary_notes: String,
    pub is_non_billable: bool,
    pub creator_user_id: u64,
}

/// A technician's resource, found by e-mail.
pub const TECHNICIAN_RESOURCE_ID: u64 = 29_682_887;
pub const TECHNICIAN_EMAIL: &str = "jon.snow@example.test";

#[derive(Default)]
struct Inner {
    time: Vec<TimeEntry>,
    /// Tickets whose status is Complete.
    complete: Vec<u64>,
    /// id → ticket number.
    tickets: BTreeMap<u64, String>,
    notes: Vec<TicketNote>,
    next_id: u64,
    posts: usize,
    max_page: usize,
    /// What `zoneInformation` answers as `url`.
    zone_url: String,
    zone_lookups: usize,
}

#[derive(Clone)]
struct Shared {
    username: String,
    code: String,
    secret: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct AutotaskSim {
    /// The server's URL (zone discovery and the zone itself).
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

fn errors(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "errors": [msg] }))).into_response()
}

impl AutotaskSim {
    /// Tickets are given by id; each gets the number `T20261201.<id, 4 digits>`.
    pub async fn start(
        username: &str,
        integration_code: &str,
        secret: &str,
        tickets: &[u64],
    ) -> std::io::Result<AutotaskSim> {
        let inner = Arc::new(Mutex::new(Inner { next_id: 900, max_page: 500, ..Default::default() }));
        for t in tickets {
            inner.lock().expect("sim lock").tickets.insert(*t, ticket_number(*t));
        }
        let shared = Shared {
            username: username.into(),
            code: integration_code.into(),
            secret: secret.into(),
            inner: inner.clone(),
        };
        let app = Router::new()
            .route("/atservicesrest/v1.0/zoneInformation", get(zone_information))
            .route("/atservicesrest/V1.0/Tickets/{id}/Notes", post(add_note))
            .route("/atservicesrest/V1.0/TimeEntries", post(add_time))
            .route("/atservicesrest/V1.0/{entity}/query", post(query))
            .route("/atservicesrest/V1.0/{entity}/query/next", get(query_next))
            .with_state(shared);
        let (server, url) = crate::Served::start(app).await?;
        inner.lock().expect("sim lock").zone_url = format!("{url}/atservicesrest/");
        Ok(AutotaskSim { base_url: url, inner, _server: server })
    }

    /// What the zone lookup answers as `url` (a test points it at a proxy).
    pub fn set_zone_url(&self, url: &str) {
        self.inner.lock().expect("sim lock").zone_url = url.into();
    }

    pub fn zone_lookups(&self) -> usize {
        self.inner.lock().expect("sim lock").zone_lookups
    }

    pub fn set_max_per_page(&self, n: usize) {
        self.inner.lock().expect("sim lock").max_page = n.max(1);
    }

    pub fn notes(&self, ticket: u64) -> Vec<TicketNote> {
        self.inner.lock().expect("sim lock").notes.iter().filter(|n| n.ticket_id == ticket).cloned().collect()
    }

    pub fn post_count(&self) -> usize {
        self.inner.lock().expect("sim lock").posts
    }

    pub fn time_entries(&self, ticket: u64) -> Vec<TimeEntry> {
        self.inner.lock().expect("sim lock").time.iter().filter(|t| t.ticket_id == ticket).cloned().collect()
    }

    /// A time entry another resource typed, its summary ending as `notes` says.
    pub fn add_person_time_entry(&self, ticket: u64, notes: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        g.time.push(TimeEntry {
            id,
            ticket_id: ticket,
            resource_id: PERSON_RESOURCE_ID,
            role_id: 1,
            hours_worked: 0.25,
            start: String::new(),
            end: String::new(),
            summary_notes: notes.into(),
            is_non_billable: false,
            creator_user_id: PERSON_RESOURCE_ID,
        });
    }

    /// The ticket's status becomes Complete.
    pub fn complete_ticket(&self, ticket: u64) {
        self.inner.lock().expect("sim lock").complete.push(ticket);
    }

    /// A note typed by another resource in the web UI.
    pub fn add_person_note(&self, ticket: u64, text: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        g.notes.push(TicketNote {
            id,
            ticket_id: ticket,
            title: "Note".into(),
            description: text.into(),
            note_type: 1,
            publish: 1,
            creator_resource_id: PERSON_RESOURCE_ID,
        });
    }
}

/// The number Autotask would print for the simulator's ticket `id`.
pub fn ticket_number(id: u64) -> String {
    format!("T20261201.{id:04}")
}

fn authorized(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if get("ApiIntegrationCode") != s.code {
        return Err(errors(StatusCode::UNAUTHORIZED, "Missing or invalid ApiIntegrationCode header."));
    }
    if !get("UserName").eq_ignore_ascii_case(&s.username) || get("Secret") != s.secret {
        return Err(errors(StatusCode::UNAUTHORIZED, "User authentication failed."));
    }
    Ok(())
}

async fn zone_information(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let mut g = s.inner.lock().expect("sim lock");
    g.zone_lookups += 1;
    match q.get("user") {
        Some(u) if u.eq_ignore_ascii_case(&s.username) => Json(json!({
            "zoneName": "Simulated Zone", "url": g.zone_url, "webUrl": "https://ww2.autotask.net/", "ci": 12345,
        }))
        .into_response(),
        _ => errors(StatusCode::NOT_FOUND, "Zone information could not be determined"),
    }
}

fn note_json(n: &TicketNote) -> Value {
    json!({
        "id": n.id, "ticketID": n.ticket_id, "title": n.title, "description": n.description,
        "noteType": n.note_type, "publish": n.publish, "creatorResourceID": n.creator_resource_id,
        "createdByContactID": null, "createDateTime": "2026-12-01T10:00:00.000Z",
        "lastActivityDate": "2026-12-01T10:00:00.000Z", "impersonatorCreatorResourceID": null,
    })
}

async fn add_note(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return errors(StatusCode::BAD_REQUEST, "The request body could not be read as JSON.");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let Some(ticket) = id.parse::<u64>().ok().filter(|t| g.tickets.contains_key(t)) else {
        return errors(StatusCode::NOT_FOUND, &format!("Unable to find Tickets with Id {id}."));
    };
    if v["ticketID"].as_u64().is_some_and(|t| t != ticket) {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, "ticketID does not match the parent entity.");
    }
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let (title, description) = (text("title"), text("description"));
    let (Some(note_type), Some(publish)) = (v["noteType"].as_i64(), v["publish"].as_i64()) else {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, "Missing Required Field: noteType, publish");
    };
    // Autotask answers business-rule failures with 500 and its errors array.
    if title.is_empty() || title.chars().count() > 250 {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, "title is required and holds at most 250 characters");
    }
    if description.is_empty() || description.chars().count() > 32_000 {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, "description is required and holds at most 32000 characters");
    }
    let nid = g.next_id;
    g.next_id += 1;
    g.posts += 1;
    g.notes.push(TicketNote {
        id: nid,
        ticket_id: ticket,
        title,
        description,
        note_type,
        publish,
        creator_resource_id: API_RESOURCE_ID,
    });
    Json(json!({ "itemId": nid })).into_response()
}

/// Whether `item` passes one filter expression.
fn passes(item: &Value, f: &Value) -> bool {
    let op = f["op"].as_str().unwrap_or("").to_ascii_lowercase();
    let items = || f["items"].as_array().cloned().unwrap_or_default();
    match op.as_str() {
        "or" => items().iter().any(|i| passes(item, i)),
        "and" => items().iter().all(|i| passes(item, i)),
        _ => {
            // Field names are case-insensitive in Autotask.
            let field = f["field"].as_str().unwrap_or("");
            let got = item
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map(|(_, v)| v.clone()))
                .unwrap_or(Value::Null);
            let text = |v: &Value| match v {
                Value::String(s) => s.to_ascii_lowercase(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let (got, want) = (text(&got), text(&f["value"]));
            match op.as_str() {
                "eq" => got == want,
                "noteq" => got != want,
                "contains" => got.contains(&want),
                "beginswith" => got.starts_with(&want),
                _ => false,
            }
        }
    }
}

fn entity_items(g: &Inner, entity: &str, username: &str) -> Option<Vec<Value>> {
    match entity.to_ascii_lowercase().as_str() {
        "tickets" => Some(
            g.tickets
                .iter()
                .map(|(id, num)| json!({"id": id, "ticketNumber": num, "title": format!("Ticket {id}")}))
                .collect(),
        ),
        "ticketnotes" => Some(g.notes.iter().map(note_json).collect()),
        "timeentries" => Some(g.time.iter().map(time_json).collect()),
        "resources" => Some(vec![
            json!({"id": API_RESOURCE_ID, "userName": username, "email": "api-user@example.test", "isActive": true}),
            json!({"id": PERSON_RESOURCE_ID, "userName": "pat.person", "email": "pat@example.test", "isActive": true}),
            json!({"id": TECHNICIAN_RESOURCE_ID, "userName": "jsnow", "email": TECHNICIAN_EMAIL, "isActive": true}),
        ]),
        _ => None,
    }
}

fn page(s: &Shared, entity: &str, filter: &Value, offset: usize) -> Response {
    let g = s.inner.lock().expect("sim lock");
    let Some(all) = entity_items(&g, entity, &s.username) else {
        return errors(StatusCode::NOT_FOUND, &format!("No entity named {entity}"));
    };
    let Some(conds) = filter.as_array().filter(|c| !c.is_empty()) else {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, "A query requires at least one filter expression.");
    };
    let hits: Vec<Value> = all.into_iter().filter(|i| conds.iter().all(|c| passes(i, c))).collect();
    let size = g.max_page;
    let items: Vec<Value> = hits.iter().skip(offset).take(size).cloned().collect();
    let next = (offset + size < hits.len()).then(|| {
        let paging = json!({"filter": filter, "offset": offset + size}).to_string();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(paging);
        format!("{}/V1.0/{entity}/query/next?paging={token}", g.zone_url.trim_end_matches('/'))
    });
    Json(json!({
        "items": items,
        "pageDetails": {"count": items.len(), "requestCount": size, "prevPageUrl": null, "nextPageUrl": next},
    }))
    .into_response()
}

async fn query(State(s): State<Shared>, Path(entity): Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return errors(StatusCode::BAD_REQUEST, "The request body could not be read as JSON.");
    };
    page(&s, &entity, &v["filter"], 0)
}

async fn query_next(
    State(s): State<Shared>,
    Path(entity): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let paging = q
        .get("paging")
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(p) = paging else {
        return errors(StatusCode::BAD_REQUEST, "Invalid paging token.");
    };
    page(&s, &entity, &p["filter"], p["offset"].as_u64().unwrap_or(0) as usize)
}

fn time_json(t: &TimeEntry) -> Value {
    json!({
        "id": t.id, "ticketID": t.ticket_id, "resourceID": t.resource_id, "roleID": t.role_id,
        "hoursWorked": t.hours_worked, "startDateTime": t.start, "endDateTime": t.end,
        "summaryNotes": t.summary_notes, "isNonBillable": t.is_non_billable,
        "creatorUserID": t.creator_user_id, "createDateTime": "2026-12-01T10:00:00.000Z",
    })
}

async fn add_time(State(s): State<Shared>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return errors(StatusCode::BAD_REQUEST, "The request body could not be read as JSON.");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let Some(ticket) = v["ticketID"].as_u64().filter(|t| g.tickets.contains_key(t)) else {
        return errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Unable to find Tickets with Id {}.", v["ticketID"]),
        );
    };
    if g.complete.contains(&ticket) {
        return errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Time Entries cannot be added to a ticket whose status is Complete.",
        );
    }
    let Some(role) = v["roleID"].as_i64() else {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, "Missing Required Field: roleID");
    };
    let resource = v["resourceID"].as_u64().unwrap_or(0);
    if ![API_RESOURCE_ID, PERSON_RESOURCE_ID, TECHNICIAN_RESOURCE_ID].contains(&resource) {
        return errors(StatusCode::INTERNAL_SERVER_ERROR, &format!("Unable to find Resources with Id {resource}."));
    }
    let id = g.next_id;
    g.next_id += 1;
    g.posts += 1;
    g.time.push(TimeEntry {
        id,
        ticket_id: ticket,
        resource_id: resource,
        role_id: role,
        hours_worked: v["hoursWorked"].as_f64().unwrap_or(0.0),
        start: v["startDateTime"].as_str().unwrap_or("").into(),
        end: v["endDateTime"].as_str().unwrap_or("").into(),
        summary_notes: v["summaryNotes"].as_str().unwrap_or("").into(),
        is_non_billable: v["isNonBillable"].as_bool().unwrap_or(false),
        creator_user_id: API_RESOURCE_ID,
    });
    Json(json!({ "itemId": id })).into_response()
}
