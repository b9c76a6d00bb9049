//! Jira Service Management simulator: `POST|GET /rest/servicedeskapi/request/{key}/comment`
//! (201; paged `{"start","limit","isLastPage","values"}`), `POST /rest/api/2/issue/{key}/remotelink`
//! (upsert by `globalId`: 201 on create, 200 on update), `GET /rest/api/2/search` (JQL
//! `cf[id] ~ "…"` only), `GET /rest/api/2/myself`. Cloud Basic `email:token` or Bearer PAT.
//! Errors: `{"errorMessage":…,"i18nErrorMessage":…}` (servicedeskapi) and
//! `{"errorMessages":[…],"errors":{}}` (platform).

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

#[derive(Debug, Clone)]
pub struct JsmComment {
    pub id: u64,
    pub body: String,
    pub public: bool,
    /// The author's `accountId`: [`API_ACCOUNT`] for comments written through the API.
    pub author: String,
}

/// The `accountId` of `/rest/api/2/myself`.
pub const API_ACCOUNT: &str = "5b10a2844c20165700ede21g";

#[derive(Debug, Clone)]
pub struct RemoteLink {
    pub id: u64,
    pub global_id: Option<String>,
    pub object: Value,
}

#[derive(Default)]
struct Inner {
    issues: BTreeMap<String, (Vec<JsmComment>, Vec<RemoteLink>)>,
    /// Worklogs: (issue key, id, REST version it was written with, the worklog as stored).
    worklogs: Vec<(String, u64, u8, Value)>,
    session_codes: BTreeMap<String, String>,
    next_id: u64,
    max_per_page: usize,
}

#[derive(Clone)]
struct Shared {
    auth: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct JsmSim {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
    // Held for its drop, which stops the server.
    _server: crate::Served,
}

impl JsmSim {
    /// The issue's worklogs as stored: (REST version written with, worklog JSON).
    pub fn worklogs(&self, key: &str) -> Vec<(u8, Value)> {
        let g = self.inner.lock().expect("sim lock");
        g.worklogs.iter().filter(|w| w.0 == key).map(|w| (w.2, w.3.clone())).collect()
    }

    /// `authorization` is the exact header value accepted (Basic for Cloud, Bearer for DC).
    pub async fn start(authorization: &str, keys: &[&str]) -> std::io::Result<JsmSim> {
        let inner = Arc::new(Mutex::new(Inner { next_id: 10000, max_per_page: 50, ..Default::default() }));
        for k in keys {
            inner.lock().expect("sim lock").issues.insert(k.to_string(), Default::default());
        }
        let shared = Shared { auth: authorization.to_string(), inner: inner.clone() };
        let app = Router::new()
            .route("/rest/servicedeskapi/request/{key}/comment", get(list_comments).post(add_comment))
            .route("/rest/api/2/issue/{key}/remotelink", post(remote_link).get(list_links))
            .route("/rest/api/2/search", get(search))
            .route("/rest/api/2/myself", get(myself))
            .route("/rest/api/3/issue/{key}/worklog", get(list_worklogs_v3).post(add_worklog_v3))
            .route("/rest/api/2/issue/{key}/worklog", get(list_worklogs_v2).post(add_worklog_v2))
            .with_state(shared);
        let (server, base_url) = crate::Served::start(app).await?;
        Ok(JsmSim { base_url, inner, _server: server })
    }

    pub fn add_issue(&self, key: &str) {
        self.inner.lock().expect("sim lock").issues.entry(key.to_string()).or_default();
    }

    pub fn comments(&self, key: &str) -> Vec<JsmComment> {
        self.inner.lock().expect("sim lock").issues.get(key).map(|i| i.0.clone()).unwrap_or_default()
    }

    /// A comment typed by a person (another account), in wiki markup.
    pub fn add_person_comment(&self, key: &str, body: &str) {
        let mut g = self.inner.lock().expect("sim lock");
        let id = g.next_id;
        g.next_id += 1;
        if let Some(issue) = g.issues.get_mut(key) {
            issue.0.push(JsmComment { id, body: body.to_string(), public: true, author: "557058:person".into() });
        }
    }

    pub fn remote_links(&self, key: &str) -> Vec<RemoteLink> {
        self.inner.lock().expect("sim lock").issues.get(key).map(|i| i.1.clone()).unwrap_or_default()
    }

    pub fn set_session_code(&self, key: &str, code: &str) {
        self.inner.lock().expect("sim lock").session_codes.insert(key.into(), code.into());
    }

    pub fn set_max_per_page(&self, n: usize) {
        self.inner.lock().expect("sim lock").max_per_page = n.max(1);
    }
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) == Some(s.auth.as_str()) {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            [("WWW-Authenticate", "OAuth realm=\"https%3A%2F%2Fjira.example\"")],
            Json(json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."], "errors": {}})),
        )
            .into_response())
    }
}

fn sd_not_found(key: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({"errorMessage": format!("The request {key} does not exist or you do not have permission to see it."),
                    "i18nErrorMessage": {"i18nKey": "sd.customer.request.not.found", "parameters": [key]}}),
        ),
    )
        .into_response()
}

async fn myself(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    Json(json!({"accountId": "5b10a2844c20165700ede21g", "active": true})).into_response()
}

async fn add_comment(
    State(s): State<Shared>,
    Path(key): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"errorMessage": "Invalid JSON body"}))).into_response();
    };
    let Some(text) = v["body"].as_str().filter(|b| !b.trim().is_empty()) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"errorMessage": "The comment body is required."})))
            .into_response();
    };
    let mut g = s.inner.lock().expect("sim lock");
    let id = g.next_id;
    g.next_id += 1;
    let Some(issue) = g.issues.get_mut(&key) else { return sd_not_found(&key) };
    let public = v["public"].as_bool().unwrap_or(true);
    issue.0.push(JsmComment { id, body: text.to_string(), public, author: API_ACCOUNT.into() });
    (
        StatusCode::CREATED,
        Json(json!({"id": id.to_string(), "body": text, "public": public, "author": {"accountId": "5b10a2844c20165700ede21g"},
                    "created": {"iso8601": "2026-11-23T10:00:00+0000"}})),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct PageQ {
    start: Option<usize>,
    limit: Option<usize>,
}

async fn list_comments(
    State(s): State<Shared>,
    Path(key): Path<String>,
    Query(q): Query<PageQ>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some(issue) = g.issues.get(&key) else { return sd_not_found(&key) };
    let start = q.start.unwrap_or(0);
    let limit = q.limit.unwrap_or(50).min(g.max_per_page).max(1);
    let values: Vec<Value> = issue
        .0
        .iter()
        .skip(start)
        .take(limit)
        .map(|c| json!({"id": c.id.to_string(), "body": c.body, "public": c.public, "author": {"accountId": c.author}}))
        .collect();
    let last = start + values.len() >= issue.0.len();
    Json(json!({"size": values.len(), "start": start, "limit": limit, "isLastPage": last, "values": values}))
        .into_response()
}

async fn remote_link(
    State(s): State<Shared>,
    Path(key): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"errorMessages": ["Invalid JSON"], "errors": {}})))
            .into_response();
    };
    if v["object"]["url"].as_str().is_none() || v["object"]["title"].as_str().is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"errorMessages": [], "errors": {"title": "'title' is required.", "url": "'url' is required."}}),
            ),
        )
            .into_response();
    }
    let mut g = s.inner.lock().expect("sim lock");
    let next = g.next_id;
    let Some(issue) = g.issues.get_mut(&key) else {
        return (StatusCode::NOT_FOUND, Json(json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})))
            .into_response();
    };
    let gid = v["globalId"].as_str().map(str::to_string);
    // "If a globalId is provided and a remote issue link exists with that globalId, the
    // remote issue link is updated."
    if let Some(existing) = issue.1.iter_mut().find(|l| gid.is_some() && l.global_id == gid) {
        existing.object = v["object"].clone();
        let id = existing.id;
        return Json(json!({"id": id, "self": format!("/rest/api/2/issue/{key}/remotelink/{id}")})).into_response();
    }
    issue.1.push(RemoteLink { id: next, global_id: gid, object: v["object"].clone() });
    g.next_id += 1;
    (StatusCode::CREATED, Json(json!({"id": next, "self": format!("/rest/api/2/issue/{key}/remotelink/{next}")})))
        .into_response()
}

async fn list_links(State(s): State<Shared>, Path(key): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    let Some(issue) = g.issues.get(&key) else {
        return (StatusCode::NOT_FOUND, Json(json!({"errorMessages": ["Issue does not exist"], "errors": {}})))
            .into_response();
    };
    let links: Vec<Value> =
        issue.1.iter().map(|l| json!({"id": l.id, "globalId": l.global_id, "object": l.object})).collect();
    Json(Value::Array(links)).into_response()
}

#[derive(serde::Deserialize)]
struct SearchQ {
    jql: String,
}

async fn search(State(s): State<Shared>, Query(q): Query<SearchQ>, h: HeaderMap) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    // Supports `cf[N] ~ "value"` only.
    let wanted = q.jql.split_once('~').map(|(_, v)| v.trim().trim_matches('"').to_string());
    let g = s.inner.lock().expect("sim lock");
    let issues: Vec<Value> = g
        .session_codes
        .iter()
        .filter(|(_, c)| Some(c.as_str()) == wanted.as_deref())
        .map(|(k, _)| json!({"key": k, "fields": {}}))
        .collect();
    Json(json!({"startAt": 0, "maxResults": 2, "total": issues.len(), "issues": issues})).into_response()
}

async fn add_worklog_v3(s: State<Shared>, key: Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    add_worklog(s, key, h, body, 3).await
}

async fn add_worklog_v2(s: State<Shared>, key: Path<String>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    add_worklog(s, key, h, body, 2).await
}

/// `POST /rest/api/{3|2}/issue/{key}/worklog`: v3 wants the comment as an Atlassian
/// Document, v2 as a string; `timeSpentSeconds` at least 60; 201 with the worklog.
async fn add_worklog(
    State(s): State<Shared>,
    Path(key): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
    version: u8,
) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let bad = |m: &str| {
        (StatusCode::BAD_REQUEST, Json(json!({"errorMessages": [], "errors": {"comment": m}}))).into_response()
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad("Invalid JSON") };
    match (version, &v["comment"]) {
        (3, Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("doc") => {}
        (3, _) => return bad("Comment must be an Atlassian Document."),
        (_, Value::String(_)) => {}
        _ => return bad("Comment must be a string."),
    }
    if v["timeSpentSeconds"].as_u64().is_none_or(|t| t < 60) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errorMessages": [], "errors": {"timeLogged": "You must indicate the time spent working."}})),
        )
            .into_response();
    }
    let mut g = s.inner.lock().expect("sim lock");
    if !g.issues.contains_key(&key) {
        return (StatusCode::NOT_FOUND, Json(json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}))).into_response();
    }
    let id = g.next_id;
    g.next_id += 1;
    let w = json!({
        "id": id.to_string(), "issueId": "10001", "author": {"accountId": API_ACCOUNT, "key": API_ACCOUNT},
        "comment": v["comment"], "started": v["started"], "timeSpentSeconds": v["timeSpentSeconds"],
    });
    g.worklogs.push((key, id, version, w.clone()));
    (StatusCode::CREATED, Json(w)).into_response()
}

async fn list_worklogs_v3(s: State<Shared>, key: Path<String>, h: HeaderMap) -> Response {
    list_worklogs(s, key, h, 3).await
}

async fn list_worklogs_v2(s: State<Shared>, key: Path<String>, h: HeaderMap) -> Response {
    list_worklogs(s, key, h, 2).await
}

async fn list_worklogs(State(s): State<Shared>, Path(key): Path<String>, h: HeaderMap, _version: u8) -> Response {
    if let Err(r) = check_auth(&s, &h) {
        return r;
    }
    let g = s.inner.lock().expect("sim lock");
    if !g.issues.contains_key(&key) {
        return (StatusCode::NOT_FOUND, Json(json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}))).into_response();
    }
    let logs: Vec<Value> = g.worklogs.iter().filter(|w| w.0 == key).map(|w| w.3.clone()).collect();
    Json(json!({"startAt": 0, "maxResults": logs.len(), "total": logs.len(), "worklogs": logs})).into_response()
}
