//! Autotask (Datto/Kaseya) through its REST API. The zone (the REST root of the database
//! the API user lives in, `https://webservices<N>.autotask.net/atservicesrest`) is discovered
//! once per process from `GET <url>/atservicesrest/v1.0/zoneInformation?user=<UserName>`
//! (no credentials; `{"zoneName","url","webUrl","ci"}`) unless `zone_url` pins it. Every
//! other call carries the headers `ApiIntegrationCode`, `UserName` and `Secret`.
//!
//! A ticket is addressed by its id (`12345`) or by its number (`T20240101.0001`): a number is
//! resolved to its id once (`POST /V1.0/Tickets/query`, filter `ticketNumber eq …`) and kept.
//! The note is a `TicketNotes` entity created under its ticket
//! (`POST /V1.0/Tickets/{id}/Notes`: `ticketID`, `title`, `description` (plain text, at most
//! 32000 characters), `noteType`, `publish`; answered `{"itemId": …}`). The marker scan uses
//! the query API (`POST /V1.0/TicketNotes/query` with a filter on `ticketID` and `description
//! contains` the marker; `{"items":[…],"pageDetails":{"count","requestCount","prevPageUrl",
//! "nextPageUrl"}}`, the next page fetched with `GET nextPageUrl`, only on the zone's own
//! origin) and counts a note only when its last line is the marker and its
//! `creatorResourceID` is the API user's resource (looked up once: `POST
//! /V1.0/Resources/query`, `userName` or `email` equal to the configured user name).
//! A time entry (issue 20) is `POST /V1.0/TimeEntries` (`ticketID`, `resourceID`, `roleID`,
//! `hoursWorked`, `summaryNotes` ending with the marker, `isNonBillable`), scanned for with
//! `TimeEntries/query` (author: `creatorUserID`). Errors are `{"errors":["…"]}`; Autotask
//! answers a business-rule refusal with 500 and that array, which is therefore final, while
//! a 500 without it is an outage and retried. The zone is kept for the process's life (a
//! failed lookup is not kept; a database moved to another zone needs a restart).
//!
//! Sources, checked 2026-12-06: Autotask's REST developer help (zone information, the
//! `TicketNotes` entity page: title/description/publish rules and its child path under
//! Tickets, the query filter grammar and paging with `pageDetails.nextPageUrl`, "Finding
//! resource and child access URLs"), and its API tracking identifier page (the
//! `ApiIntegrationCode`). Guesses, kept to this module and the simulator: the default
//! `noteType` (1) and `publish` values (1 internal, 3 everyone: both are per-instance
//! picklists, hence `note_type`, `publish` and `publish_public` in the section), that an
//! unknown parent ticket answers 404, that `nextPageUrl` is fetched with GET, and which
//! `Resources` field holds the API user's name.

pub mod config;

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::common::{self, Reply};
use super::{Capabilities, RemoteRef, SinkError, SinkErrorKind, TicketSink, TimeEntry};
use crate::http::Auth;
use crate::note::{Note, Visibility};

/// Pages read by one scan at most (Autotask pages hold up to 500 records).
const MAX_PAGES: usize = 100;
/// `TicketNotes.description` holds at most this many characters.
pub const DESCRIPTION_MAX: usize = 32_000;
/// `TicketNotes.title` holds at most this many characters.
pub const TITLE_MAX: usize = 250;

/// Who ticketsync is to Autotask: the API-only user and its integration's tracking id.
pub struct AutotaskCredentials {
    pub username: String,
    pub integration_code: String,
    pub secret: SecretString,
}

/// The picklist values a note is created with (they differ between instances).
#[derive(Debug, Clone, Copy)]
pub struct NoteKinds {
    pub note_type: i64,
    /// `publish` of an internal note.
    pub publish: i64,
    /// `publish` of a note the contact may see.
    pub publish_public: i64,
}

impl Default for NoteKinds {
    fn default() -> Self {
        NoteKinds { note_type: 1, publish: 1, publish_public: 3 }
    }
}

pub struct AutotaskSink {
    /// Base URL is the zone-discovery server; no static credentials (the three headers are
    /// added per call).
    api: common::SinkHttp,
    creds: AutotaskCredentials,
    kinds: NoteKinds,
    /// The zone's REST root (`https://webservices2.autotask.net/atservicesrest`), discovered
    /// once or configured.
    zone: OnceCell<String>,
    /// The API user's resource id, for the scan's author check (`None`: Autotask did not
    /// say, so the final marker line and its MAC decide).
    me: common::ApiUser,
    /// Ticket numbers resolved to ids.
    resolved: Mutex<HashMap<String, u64>>,
    /// Time entries: `roleID` (required by Autotask for ticket time) and `billingCodeID`.
    time: Option<TimeSettings>,
}

/// What a ticket time entry needs beyond the session: the role the work is billed at, and
/// optionally the work type (billing code).
#[derive(Debug, Clone, Copy)]
pub struct TimeSettings {
    pub role_id: i64,
    pub billing_code_id: Option<i64>,
}

impl common::HttpKnobs for AutotaskSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

/// Autotask's error bodies: `{"errors":["…","…"]}`; the messages joined.
pub fn autotask_error(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let msgs: Vec<&str> = v["errors"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            match msgs.is_empty() {
                true => {
                    v["message"].as_str().map(str::to_string).unwrap_or_else(|| crate::http::short_body(&v.to_string()))
                }
                false => crate::http::short_body(&msgs.join("; ")),
            }
        }
        Err(_) if body.trim_start().starts_with('<') => String::new(),
        Err(_) => crate::http::short_body(body),
    }
}

/// A ticket number as Autotask prints it: `T` + date + `.` + sequence (`T20240101.0001`).
pub fn is_ticket_number(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('T').or_else(|| s.strip_prefix('t')) else { return false };
    let Some((date, seq)) = rest.split_once('.') else { return false };
    date.len() == 8 && common::is_decimal(date) && (1..=8).contains(&seq.len()) && common::is_decimal(seq)
}

/// Whether a zone URL the discovery answered may receive our credentials: the discovery
/// server's scheme, and its host or a sibling under the same parent domain
/// (`webservices.autotask.net` → `webservices2.autotask.net`). An answer pointing anywhere
/// else is refused: the zone answer is vendor data.
pub fn zone_allowed(discovery: &str, zone: &str) -> bool {
    let (Ok(d), Ok(z)) = (url::Url::parse(discovery), url::Url::parse(zone)) else { return false };
    if d.scheme() != z.scheme() || !z.username().is_empty() || z.password().is_some() {
        return false;
    }
    let (Some(dh), Some(zh)) = (d.host_str(), z.host_str()) else { return false };
    if dh.eq_ignore_ascii_case(zh) {
        return d.port_or_known_default() == z.port_or_known_default();
    }
    let parent = |h: &str| {
        let labels: Vec<&str> = h.split('.').collect();
        (labels.len() >= 3).then(|| labels[labels.len() - 2..].join(".").to_ascii_lowercase())
    };
    matches!((parent(dh), parent(zh)), (Some(a), Some(b)) if a == b)
}

/// The note's title: its first line, cut to [`TITLE_MAX`] characters.
pub fn title(note: &Note) -> String {
    let t = note.sanitized().title;
    let line = t.lines().next().unwrap_or("").trim();
    line.chars().take(TITLE_MAX).collect()
}

/// The note's description: [`common::to_plain`], cut before the marker line when it would
/// pass [`DESCRIPTION_MAX`] so that the marker stays the last line.
pub fn description(note: &Note, inline_limit: usize) -> String {
    let text = common::to_plain(note, inline_limit);
    if text.chars().count() <= DESCRIPTION_MAX {
        return text;
    }
    let line = note.marker_line();
    let cut_note = "\n[… cut to fit Autotask's 32000 characters; the full text is kept in the ticketsync database]\n\n";
    let room = DESCRIPTION_MAX - line.chars().count() - cut_note.chars().count();
    let head: String = text.chars().take(room).collect();
    format!("{head}{cut_note}{line}")
}

impl AutotaskSink {
    /// `url` is the zone-discovery server (`https://webservices.autotask.net`); `zone_url`,
    /// when given, is the zone's REST root and skips the discovery.
    pub fn new(
        name: &str,
        url: &str,
        zone_url: Option<&str>,
        creds: AutotaskCredentials,
        kinds: NoteKinds,
        http: reqwest::Client,
    ) -> Self {
        let zone = OnceCell::new();
        if let Some(z) = zone_url {
            let _ = zone.set(z.trim_end_matches('/').to_string());
        }
        Self {
            api: common::SinkHttp::new(name, url, Auth::None, http),
            creds,
            kinds,
            zone,
            me: Default::default(),
            resolved: Mutex::new(HashMap::new()),
            time: None,
        }
    }

    /// Time entries on, with the role (and work type) they are written with.
    pub fn with_time_entries(mut self, time: TimeSettings) -> Self {
        self.time = Some(time);
        self
    }

    /// A resource's id, found by a filter.
    async fn resource(&self, filter: Value) -> Result<Option<String>, SinkError> {
        let mut id = None;
        self.query("Resources", filter, |items| {
            id = items.first().and_then(|r| common::id_text(&r["id"]));
            true
        })
        .await?;
        Ok(id)
    }

    fn with_creds(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("ApiIntegrationCode", &self.creds.integration_code)
            .header("UserName", &self.creds.username)
            .header("Secret", self.creds.secret.expose_secret())
            .header("Accept", "application/json")
    }

    /// The zone's REST root, discovered once.
    async fn zone(&self) -> Result<&str, SinkError> {
        self.zone
            .get_or_try_init(|| async {
                let url = format!("{}/atservicesrest/v1.0/zoneInformation", self.api.base);
                let req = self.api.http.get(&url).query(&[("user", self.creds.username.as_str())]);
                let r = common::send(&self.api.name, self.api.max_response, req).await?;
                if !r.status.is_success() {
                    let mut e = self.error(&r);
                    e.message = format!("zone discovery for user {:?} failed: {}", self.creds.username, e.message);
                    if r.status.as_u16() == 404 {
                        // No zone knows this user: the operator must fix the user name.
                        e.kind = SinkErrorKind::Auth;
                        e.message = format!("{} (check sinks.autotask.username)", e.message);
                    }
                    return Err(e);
                }
                let v = common::parse_listing(&self.api.name, &r.body, "zone information")?;
                let Some(zone) = v["url"].as_str().filter(|z| zone_allowed(&self.api.base, z)) else {
                    return Err(SinkError::new(
                        &self.api.name,
                        SinkErrorKind::Auth,
                        format!(
                            "zone discovery for user {:?} gave no usable zone URL (want one under {}): check sinks.autotask.username or set sinks.autotask.zone_url",
                            self.creds.username, self.api.base
                        ),
                    ));
                };
                Ok(zone.trim_end_matches('/').to_string())
            })
            .await
            .map(String::as_str)
    }

    fn error(&self, r: &Reply) -> SinkError {
        let detail = autotask_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        match r.status.as_u16() {
            401 => {
                err.message = format!(
                "credentials rejected (HTTP 401): check sinks.autotask.username, secret and integration_code: {detail}"
            )
            }
            403 => {
                err.message =
                    format!("forbidden (HTTP 403): the API user's security level lacks ticket note rights: {detail}")
            }
            // Autotask answers a business-rule refusal (a completed ticket, a missing role)
            // with 500 and its `errors` array; an outage answers without one.
            500 if has_errors_array(&r.body) => {
                err.kind = SinkErrorKind::Permanent;
                err.message = format!("Autotask refused the request (HTTP 500): {detail}");
            }
            _ => {}
        }
        err
    }

    /// One authenticated call to `path` under the zone (`/V1.0/…`).
    async fn call(
        &self,
        build: impl FnOnce(&reqwest::Client, String) -> reqwest::RequestBuilder,
        path: &str,
    ) -> Result<Reply, SinkError> {
        let zone = self.zone().await?;
        let req = self.with_creds(build(&self.api.http, format!("{zone}{path}")));
        self.send(req).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let r = common::send(&self.api.name, self.api.max_response, req).await?;
        match r.status.is_success() {
            true => Ok(r),
            false => Err(self.error(&r)),
        }
    }

    /// A query of `entity` with `filter`: every page's items, read until `stop` says enough.
    async fn query(
        &self,
        entity: &str,
        filter: Value,
        mut stop: impl FnMut(&[Value]) -> bool,
    ) -> Result<(), SinkError> {
        let zone = self.zone().await?.to_string();
        let body = json!({ "filter": filter });
        let mut r = self.call(|c, u| c.post(u).json(&body), &format!("/V1.0/{entity}/query")).await?;
        for _ in 0..MAX_PAGES {
            let v = common::parse_listing(&self.api.name, &r.body, "query answer")?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if stop(&items) {
                return Ok(());
            }
            let Some(next) = v["pageDetails"]["nextPageUrl"].as_str().filter(|n| !n.is_empty()) else {
                return Ok(());
            };
            // The next page's URL is vendor data: only on the zone's own origin.
            if !same_origin(&zone, next) {
                return Err(SinkError::new(
                    &self.api.name,
                    SinkErrorKind::Retry { retry_after: None },
                    "the query's nextPageUrl is not on the zone's origin: not followed",
                ));
            }
            r = self.send(self.with_creds(self.api.http.get(next))).await?;
        }
        Ok(())
    }

    /// The ticket's id: as given, or its number resolved once.
    async fn ticket_id(&self, ticket: &str) -> Result<u64, SinkError> {
        let t = ticket.trim().trim_start_matches('#');
        if common::is_decimal(t) {
            return t.parse().map_err(|_| common::not_a_ticket(&self.api.name, ticket, "an Autotask ticket id"));
        }
        if !is_ticket_number(t) {
            return Err(common::not_a_ticket(
                &self.api.name,
                ticket,
                "an Autotask ticket id or number (T20240101.0001)",
            ));
        }
        let number = t.to_ascii_uppercase();
        if let Some(id) = self.resolved.lock().unwrap_or_else(|e| e.into_inner()).get(&number) {
            return Ok(*id);
        }
        let mut found = None;
        let filter = json!([{ "op": "eq", "field": "ticketNumber", "value": number }]);
        self.query("Tickets", filter, |items| {
            found = items.iter().find_map(|t| t["id"].as_u64());
            true
        })
        .await?;
        let Some(id) = found else {
            return Err(SinkError::new(
                &self.api.name,
                SinkErrorKind::Permanent,
                format!("ticket not found (HTTP 404): no Autotask ticket numbered {number}"),
            ));
        };
        self.resolved.lock().unwrap_or_else(|e| e.into_inner()).insert(number, id);
        Ok(id)
    }

    /// The API user's resource id.
    async fn me(&self) -> Result<Option<&str>, SinkError> {
        self.me
            .get(|| async {
                let u = self.creds.username.clone();
                let filter = json!([{ "op": "or", "items": [
                    { "op": "eq", "field": "userName", "value": u },
                    { "op": "eq", "field": "email", "value": u },
                ]}]);
                let mut id = None;
                self.query("Resources", filter, |items| {
                    id = items.first().and_then(|r| common::id_text(&r["id"]));
                    true
                })
                .await?;
                Ok(id)
            })
            .await
    }
}

/// Whether an answer body is Autotask's `{"errors":[…]}` with at least one message.
fn has_errors_array(body: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errors"].as_array().map(|a| a.iter().any(|e| e.as_str().is_some_and(|m| !m.is_empty()))))
        .unwrap_or(false)
}

fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

#[async_trait]
impl TicketSink for AutotaskSink {
    fn name(&self) -> &str {
        &self.api.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { marker_scan: true, private_notes: true, attachments: false }
    }

    fn hold_probe(&self) -> Option<reqwest::RequestBuilder> {
        // The zone is the system that rate-limits; before it is known, the discovery server.
        let target = self.zone.get().cloned().unwrap_or_else(|| self.api.base.clone());
        Some(self.api.http.get(target))
    }

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket).await?;
        let me = self.me().await?.map(str::to_string);
        let filter = json!([
            { "op": "eq", "field": "ticketID", "value": id },
            { "op": "contains", "field": "description", "value": marker },
        ]);
        let mut hit = None;
        self.query("TicketNotes", filter, |items| {
            hit = items
                .iter()
                .find(|n| {
                    n["description"].as_str().is_some_and(|d| crate::marker::ends_with_marker(d, marker))
                        && common::author_ok(me.as_deref(), common::id_text(&n["creatorResourceID"]))
                })
                .and_then(|n| common::id_text(&n["id"]));
            hit.is_some()
        })
        .await?;
        Ok(hit.map(|n| format!("ticket:{id}#note-{n}")))
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket).await?;
        let publish = match note.visibility {
            Visibility::Internal => self.kinds.publish,
            Visibility::Public => self.kinds.publish_public,
        };
        let body = json!({
            "ticketID": id,
            "title": title(note),
            "description": description(note, self.api.inline_limit),
            "noteType": self.kinds.note_type,
            "publish": publish,
        });
        let r = self.call(|c, u| c.post(u).json(&body), &format!("/V1.0/Tickets/{id}/Notes")).await?;
        let item = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| common::id_text(&v["itemId"]));
        Ok(match item {
            Some(n) => format!("ticket:{id}#note-{n}"),
            None => format!("ticket:{id}"),
        })
    }

    fn supports_time_entries(&self) -> bool {
        self.time.is_some()
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket).await?;
        let me = self.me().await?.map(str::to_string);
        let filter = json!([
            { "op": "eq", "field": "ticketID", "value": id },
            { "op": "contains", "field": "summaryNotes", "value": marker },
        ]);
        let mut hit = None;
        self.query("TimeEntries", filter, |items| {
            // `creatorUserID` is who wrote the entry (the API user), `resourceID` whom it is for.
            hit = items
                .iter()
                .find(|e| {
                    e["summaryNotes"].as_str().is_some_and(|t| crate::time_entry::ends_with_marker(t, marker))
                        && common::author_ok(me.as_deref(), common::id_text(&e["creatorUserID"]))
                })
                .and_then(|e| common::id_text(&e["id"]));
            hit.is_some()
        })
        .await?;
        Ok(hit.map(|t| format!("ticket:{id}#time-{t}")))
    }

    async fn post_time_entry(&self, ticket: &str, entry: &TimeEntry) -> Result<RemoteRef, SinkError> {
        let Some(time) = self.time else {
            return Err(SinkError::new(
                &self.api.name,
                SinkErrorKind::Permanent,
                "time entries are off (time_entries)",
            ));
        };
        let id = self.ticket_id(ticket).await?;
        let user = match &entry.user {
            Some(u) => Some(u.clone()),
            None => match entry.technician_email.as_deref() {
                Some(mail) => self.user_by_email(mail).await?,
                None => None,
            },
        };
        // Without a technician's resource the entry is the API user's own.
        let resource = match &user {
            Some(u) => u.clone(),
            None => self.me().await?.map(str::to_string).ok_or_else(|| {
                SinkError::new(
                    &self.api.name,
                    SinkErrorKind::Permanent,
                    "no resource to write the time entry for: the API user's own resource was not found",
                )
            })?,
        };
        let resource: Value = resource.parse::<u64>().map(Value::from).unwrap_or(Value::String(resource));
        let fmt = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut body = json!({
            "ticketID": id,
            "resourceID": resource,
            "roleID": time.role_id,
            "dateWorked": format!("{}T00:00:00", entry.spent_on.format("%Y-%m-%d")),
            "startDateTime": fmt(&entry.started_at),
            "endDateTime": fmt(&entry.ended_at),
            "hoursWorked": entry.hours(),
            "summaryNotes": entry.comment(user.is_none()),
            "isNonBillable": !entry.billable,
        });
        if let Some(code) = time.billing_code_id {
            body["billingCodeID"] = json!(code);
        }
        let r = self.call(|c, u| c.post(u).json(&body), "/V1.0/TimeEntries").await?;
        let item = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| common::id_text(&v["itemId"]));
        Ok(match item {
            Some(t) => format!("ticket:{id}#time-{t}"),
            None => format!("ticket:{id}#time"),
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<String>, SinkError> {
        self.resource(json!([{ "op": "eq", "field": "email", "value": email }])).await
    }

    async fn user_exists(&self, user: &str) -> Result<Option<bool>, SinkError> {
        let Ok(id) = user.parse::<u64>() else { return Ok(Some(false)) };
        Ok(Some(self.resource(json!([{ "op": "eq", "field": "id", "value": id }])).await?.is_some()))
    }

    async fn check(&self) -> Result<(), SinkError> {
        // The zone, the three headers, and the API user's resource (the scan's author check).
        match self.me().await? {
            Some(_) => Ok(()),
            None => Err(SinkError::new(
                &self.api.name,
                SinkErrorKind::Permanent,
                format!(
                    "no Autotask resource with user name or email {:?}: the marker scan cannot tell its own notes",
                    self.creds.username
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_zones() {
        assert!(is_ticket_number("T20240101.0001") && is_ticket_number("t20261206.12345"));
        assert!(
            !is_ticket_number("T2024011.0001") && !is_ticket_number("T20240101") && !is_ticket_number("20240101.1")
        );
        assert!(zone_allowed("https://webservices.autotask.net", "https://webservices2.autotask.net/atservicesrest/"));
        assert!(!zone_allowed("https://webservices.autotask.net", "https://evil.example/atservicesrest/"));
        assert!(!zone_allowed("https://webservices.autotask.net", "http://webservices2.autotask.net/atservicesrest/"));
        assert!(!zone_allowed("https://webservices.autotask.net", "https://autotask.net.evil.example/"));
        assert!(zone_allowed("http://127.0.0.1:4000", "http://127.0.0.1:4000/atservicesrest/"));
        assert!(!zone_allowed("http://127.0.0.1:4000", "http://127.0.0.1:4001/atservicesrest/"));
        assert!(!zone_allowed("https://webservices.autotask.net", "https://u:p@webservices2.autotask.net/"));
    }

    #[test]
    fn errors_and_long_descriptions() {
        assert_eq!(
            autotask_error(r#"{"errors":["Unable to find Ticket 9.","second"]}"#),
            "Unable to find Ticket 9.; second"
        );
        let note = Note {
            title: "Session x\nsecond line".into(),
            fields: vec![],
            links: vec![],
            body: Some("a".repeat(40_000)),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: "tsd:v1:t:1:report".into(),
        };
        let d = description(&note, 20_000);
        assert_eq!(d.chars().count(), DESCRIPTION_MAX);
        assert!(crate::marker::ends_with_marker(&d, "tsd:v1:t:1:report"), "{}", &d[d.len() - 200..]);
        assert_eq!(title(&note), "Session x");
    }
}
