//! ServiceNow simulator, in the shapes of ServiceNow's Table API and OAuth documentation:
//! `GET /api/now/table/{table}?sysparm_query=…&sysparm_fields=…&sysparm_limit=…&sysparm_offset=…`
//! (`{"result":[…]}`; encoded queries with `=`, `IN` and `LIKE` joined by `^`),
//! `PATCH /api/now/table/{table}/{sys_id}` (200 `{"result":{…}}`; `work_notes` and `comments`
//! become `sys_journal_field` rows), the journal itself as the table `sys_journal_field`
//! (`element_id`, `element`, `value`, `sys_created_by`), and `POST /oauth_token.do` (password,
//! client-credentials and refresh-token grants). Basic or Bearer auth; errors as
//! `{"error":{"message","detail"},"status":"failure"}`.

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
use serde_json::{json, Map, Value};

/// The user name of someone else writing on records.
pub const PERSON: &str = "pat.person";

#[derive(Debug, Clone)]
pub struct Record {
    pub table: String,
    pub sys_id: String,
    pub number: String,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub sys_id: String,
    pub element_id: String,
    /// `work_notes` or `comments`.
    pub element: String,
    pub value: String,
    pub sys_created_by: String,
}

#[derive(Default)]
struct Inner {
    records: Vec<Record>,
    /// `task_time_worked` rows (time worked on a task, rolled up into its `time_worked`).
    time_worked: Vec<Map<String, Value>>,
    journal: Vec<JournalEntry>,
    patches: usize,
    /// OAuth client (id, secret), when OAuth is on.
    client: Option<(String, String)>,
    /// Access tokens issued and still valid.
    access: Vec<String>,
    /// Refresh tokens issued and still valid.
    refresh: Vec<String>,
    expires_in: u64,
    /// Grant types asked for, in order.
    grants: Vec<String>,
    /// Requests answered per path prefix (`/api/now/table/incident`).
    reads: BTreeMap<String, usize>,
}

#[derive(Clone)]
struct Shared {
    user: String,
    password: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct ServiceNowSim {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

fn failure(status: StatusCode, message: &str, detail: &str) -> Response {
    (status, Json(json!({"error": {"message": message, "detail": detail}, "status": "failure"}))).into_response()
}

fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The table of a number, as a stock instance numbers them.
fn table_for(number: &str) -> &'static str {
    let up = number.to_ascii_uppercase();
    if up.starts_with("RITM") {
        "sc_req_item"
    } else if up.starts_with("SCTASK") {
        "sc_task"
    } else if up.starts_with("CHG") {
        "change_request"
    } else {
        "incident"
    }
}

impl ServiceNowSim {
    /// The `task_time_worked` rows of the record numbered `number`.
    pub fn time_worked(&self, number: &str) -> Vec<Map<String, Value>> {
        let g = self.inner.lock().expect("sim lock");
        let Some(r) = g.records.iter().find(|r| r.number == number) else { return Vec::new() };
        g.time_worked
            .iter()
            .filter(|t| t.get("task").and_then(Value::as_str) == Some(r.sys_id.as_str()))
            .cloned()
            .collect()
    }

    /// An instance where `user`/`password` may log in (Basic, and the OAuth password grant),
    /// with a record per number (`INC0010001`, `RITM0010001`, …).
    pub async fn start(user: &str, password: &str, numbers: &[&str]) -> std::io::Result<ServiceNowSim> {
        let inner = Arc::new(Mutex::new(Inner { expires_in: 1799, ..Default::default() }));
        {
            let mut g = inner.lock().expect("sim lock");
            for n in numbers {
                g.records.push(Record {
                    table: table_for(n).into(),
                    sys_id: new_sys_id(),
                    number: n.to_string(),
                    fields: BTreeMap::new(),
                });
            }
        }
        let shared = Shared { user: user.into(), password: password.into(), inner: inner.clone() };
        let app = Router::new()
            .route("/api/now/table/{table}", get(list).post(insert))
            .route("/api/now/table/{table}/{sys_id}", get(get_record).patch(patch_record))
            .route("/oauth_token.do", post(token))
            .with_state(shared);
        let (server, base_url) = crate::Served::start(app).await?;
        Ok(ServiceNowSim { base_url, inner, _server: server })
    }

    /// Turn on OAuth with this client; tokens live `expires_in` seconds.
    pub fn enable_oauth(&self, client_id: &str, client_secret: &str, expires_in: u64) {
        let mut g = self.inner.lock().expect("sim lock");
        g.client = Some((client_id.into(), client_secret.into()));
        g.expires_in = expires_in;
    }

    /// Forget every access token (revoked, or the instance restarted its OAuth state).
    pub fn revoke_access_tokens(&self) {
        self.inner.lock().expect("sim lock").access.clear();
    }

    /// The grant types asked for so far.
    pub fn grants(&self) -> Vec<String> {
        self.inner.lock().expect("sim lock").grants.clone()
    }

    pub fn sys_id(&self, number: &str) -> Option<String> {
        let g = self.inner.lock().expect("sim lock");
        g.records.iter().find(|r| r.number == number).map(|r| r.sys_id.clone())
    }

    /// The record's work notes and comments, oldest first.
    pub fn journal(&self, number: &str) -> Vec<JournalEntry> {
        let Some(id) = self.sys_id(number) else { return Vec::new() };
        self.inner.lock().expect("sim lock").journal.iter().filter(|j| j.element_id == id).cloned().collect()
    }

    /// A work note written by a person (not the API user).
    pub fn add_person_work_note(&self, number: &str, text: &str) {
        let Some(element_id) = self.sys_id(number) else { return };
        self.inner.lock().expect("sim lock").journal.push(JournalEntry {
            sys_id: new_sys_id(),
            element_id,
            element: "work_notes".into(),
            value: text.into(),
            sys_created_by: PERSON.into(),
        });
    }

    /// `n` work notes by a person, so scans walk several pages.
    pub fn seed_work_notes(&self, number: &str, n: usize) {
        for i in 0..n {
            self.add_person_work_note(number, &format!("work note {i}"));
        }
    }

    pub fn set_field(&self, number: &str, field: &str, value: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        if let Some(r) = g.records.iter_mut().find(|r| r.number == number) {
            r.fields.insert(field.into(), value.into());
        }
    }

    pub fn patch_count(&self) -> usize {
        self.inner.lock().expect("sim lock").patches
    }

    /// Requests answered for this path (`/api/now/table/incident`): lookups of numbers.
    pub fn reads(&self, path: &str) -> usize {
        self.inner.lock().expect("sim lock").reads.get(path).copied().unwrap_or(0)
    }
}

/// The user a request authenticates as, or ServiceNow's 401.
fn authorized(s: &Shared, h: &HeaderMap) -> Result<String, Response> {
    let denied = || failure(StatusCode::UNAUTHORIZED, "User Not Authenticated", "Required to provide Auth information");
    let auth = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some(b) = auth.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b.trim()).map_err(|_| denied())?;
        let pair = String::from_utf8(decoded).map_err(|_| denied())?;
        return match pair.split_once(':') {
            Some((u, p)) if u == s.user && p == s.password => Ok(u.to_string()),
            _ => Err(denied()),
        };
    }
    if let Some(t) = auth.strip_prefix("Bearer ") {
        let g = s.inner.lock().expect("sim lock");
        if g.access.iter().any(|a| a == t.trim()) {
            return Ok(s.user.clone());
        }
    }
    Err(denied())
}

/// One condition of an encoded query.
enum Cond {
    Eq(String, String),
    In(String, Vec<String>),
    Like(String, String),
}

fn parse_query(q: &str) -> Vec<Cond> {
    q.split('^')
        .filter(|c| !c.is_empty())
        .filter_map(|c| {
            let name_end = c.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))?;
            let (field, rest) = c.split_at(name_end);
            if let Some(v) = rest.strip_prefix("LIKE") {
                Some(Cond::Like(field.into(), v.into()))
            } else if let Some(v) = rest.strip_prefix("IN") {
                Some(Cond::In(field.into(), v.split(',').map(str::to_string).collect()))
            } else {
                rest.strip_prefix('=').map(|v| Cond::Eq(field.into(), v.into()))
            }
        })
        .collect()
}

fn matches(row: &Map<String, Value>, conds: &[Cond]) -> bool {
    let get = |f: &str| row.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
    conds.iter().all(|c| match c {
        Cond::Eq(f, v) => get(f) == *v,
        Cond::In(f, vs) => vs.contains(&get(f)),
        Cond::Like(f, v) => get(f).to_lowercase().contains(&v.to_lowercase()),
    })
}

fn record_row(r: &Record) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sys_id".into(), json!(r.sys_id));
    m.insert("number".into(), json!(r.number));
    m.insert("short_description".into(), json!(format!("{} record", r.number)));
    for (k, v) in &r.fields {
        m.insert(k.clone(), json!(v));
    }
    m
}

fn journal_row(j: &JournalEntry) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in [
        ("sys_id", &j.sys_id),
        ("element_id", &j.element_id),
        ("element", &j.element),
        ("value", &j.value),
        ("sys_created_by", &j.sys_created_by),
    ] {
        m.insert(k.into(), json!(v));
    }
    m.insert("name".into(), json!("task"));
    m
}

/// Only the `sysparm_fields` asked for (all without it).
fn project(row: Map<String, Value>, fields: Option<&String>) -> Value {
    match fields {
        None => Value::Object(row),
        Some(f) => {
            let keep: Vec<&str> = f.split(',').map(str::trim).collect();
            Value::Object(row.into_iter().filter(|(k, _)| keep.contains(&k.as_str())).collect())
        }
    }
}

async fn list(
    State(s): State<Shared>,
    Path(table): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let conds = parse_query(q.get("sysparm_query").map(String::as_str).unwrap_or_default());
    let limit = q.get("sysparm_limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(10_000);
    let offset = q.get("sysparm_offset").and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
    let mut g = s.inner.lock().expect("sim lock");
    *g.reads.entry(format!("/api/now/table/{table}")).or_default() += 1;
    let rows: Vec<Map<String, Value>> = match table.as_str() {
        "sys_journal_field" => g.journal.iter().map(journal_row).collect(),
        "task_time_worked" => g.time_worked.clone(),
        t => g.records.iter().filter(|r| r.table == t).map(record_row).collect(),
    };
    let total = rows.iter().filter(|r| matches(r, &conds)).count();
    let result: Vec<Value> = rows
        .into_iter()
        .filter(|r| matches(r, &conds))
        .skip(offset)
        .take(limit)
        .map(|r| project(r, q.get("sysparm_fields")))
        .collect();
    (StatusCode::OK, [("x-total-count", total.to_string())], Json(json!({"result": result}))).into_response()
}

fn not_found() -> Response {
    failure(StatusCode::NOT_FOUND, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
}

async fn get_record(
    State(s): State<Shared>,
    Path((table, sys_id)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    match g.records.iter().find(|r| r.table == table && r.sys_id == sys_id) {
        Some(r) => Json(json!({"result": project(record_row(r), q.get("sysparm_fields"))})).into_response(),
        None => not_found(),
    }
}

async fn patch_record(
    State(s): State<Shared>,
    Path((table, sys_id)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = match authorized(&s, &h) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&body) else {
        return failure(StatusCode::BAD_REQUEST, "Exception while reading request", "The payload is not valid JSON.");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let Some(rec) = g.records.iter().find(|r| r.table == table && r.sys_id == sys_id).cloned() else {
        return not_found();
    };
    g.patches += 1;
    for element in ["work_notes", "comments"] {
        if let Some(text) = v.get(element).and_then(Value::as_str).filter(|t| !t.is_empty()) {
            g.journal.push(JournalEntry {
                sys_id: new_sys_id(),
                element_id: sys_id.clone(),
                element: element.into(),
                value: text.into(),
                sys_created_by: user.clone(),
            });
        }
    }
    Json(json!({"result": project(record_row(&rec), q.get("sysparm_fields"))})).into_response()
}

async fn token(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    let f: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let denied =
        || (StatusCode::UNAUTHORIZED, Json(json!({"error_description": "access_denied", "error": "server_error"})));
    let mut g = s.inner.lock().expect("sim lock");
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    g.grants.push(grant.clone());
    let client_ok = g
        .client
        .as_ref()
        .is_some_and(|(id, secret)| f.get("client_id") == Some(id) && f.get("client_secret") == Some(secret));
    if !client_ok {
        return denied().into_response();
    }
    let ok = match grant.as_str() {
        "password" => f.get("username") == Some(&s.user) && f.get("password") == Some(&s.password),
        "client_credentials" => true,
        "refresh_token" => {
            let r = f.get("refresh_token").cloned().unwrap_or_default();
            g.refresh.contains(&r)
        }
        _ => false,
    };
    if !ok {
        return denied().into_response();
    }
    let access = format!("sn-access-{}", new_sys_id());
    g.access.push(access.clone());
    let mut out =
        json!({"access_token": access, "scope": "useraccount", "token_type": "Bearer", "expires_in": g.expires_in});
    // The password grant (and a refresh) issue a refresh token; client credentials do not.
    if grant != "client_credentials" {
        let refresh = format!("sn-refresh-{}", new_sys_id());
        g.refresh.push(refresh.clone());
        out["refresh_token"] = json!(refresh);
    }
    Json(out).into_response()
}

/// `POST /api/now/table/task_time_worked` (the only table this simulator inserts into):
/// `task` (a record's sys_id), `time_worked` (a glide duration, `1970-01-01 HH:MM:SS`),
/// `comments`; 201 with the row, `sys_created_by` the caller.
async fn insert(State(s): State<Shared>, Path(table): Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    let user = match authorized(&s, &h) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if table != "task_time_worked" {
        return failure(StatusCode::FORBIDDEN, "Operation Failed", "insert not allowed in this simulator");
    }
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&body) else {
        return failure(StatusCode::BAD_REQUEST, "Exception while reading request", "The payload is not valid JSON.");
    };
    let mut g = s.inner.lock().expect("sim lock");
    let task = v.get("task").and_then(Value::as_str).unwrap_or_default().to_string();
    if !g.records.iter().any(|r| r.sys_id == task) {
        return failure(StatusCode::BAD_REQUEST, "Invalid reference", "task: no such record");
    }
    let duration = v.get("time_worked").and_then(Value::as_str).unwrap_or_default();
    if !duration.starts_with("1970-01-01 ") {
        return failure(StatusCode::BAD_REQUEST, "Invalid duration", "time_worked must be a glide duration");
    }
    let mut row = Map::new();
    row.insert("sys_id".into(), json!(new_sys_id()));
    row.insert("task".into(), json!(task));
    row.insert("time_worked".into(), json!(duration));
    row.insert("comments".into(), v.get("comments").cloned().unwrap_or(json!("")));
    row.insert("sys_created_by".into(), json!(user));
    g.time_worked.push(row.clone());
    (StatusCode::CREATED, Json(json!({"result": row}))).into_response()
}
