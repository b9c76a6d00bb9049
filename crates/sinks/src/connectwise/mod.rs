//! ConnectWise PSA (Manage) through its REST API (`<site>/v4_6_release/apis/3.0`). A ticket
//! is a service ticket's numeric id. The note is a service ticket note
//! (`POST /service/tickets/{id}/notes`: `text`, and `internalAnalysisFlag: true` for an
//! internal note or `detailDescriptionFlag: true` for one the contact sees; 201 with the
//! note). The marker scan lists the ticket's notes directly
//! (`GET /service/tickets/{id}/notes?page=&pageSize=`, a JSON array per page, the next page
//! announced by a `Link: <…>; rel="next"` header) and counts a note only when its last line
//! is the marker and its `createdBy` is the configured API member. Auth is HTTP Basic
//! `company+publicKey:privateKey` plus the integration's `clientId` header. A time entry
//! (issue 20) is `POST /time/entries` charged to the ticket (`chargeToType: "ServiceTicket"`,
//! `chargeToId`, `timeStart`, `timeEnd`, `actualHours`, `billableOption`, `notes` ending with
//! the marker, `member` when the technician has one), scanned for with
//! `GET /time/entries?conditions=chargeToId=… AND chargeToType="ServiceTicket"` (author:
//! `enteredBy`). Errors are
//! `{"code","message","errors":[{"code","message","resource","field"}]}`; a rate limit is 429
//! (with `Retry-After` where the server sends one).
//!
//! Sources, checked 2026-12-06: ConnectWise's developer documentation as republished
//! (developer.connectwise.com "Manage REST", the clientId page), the ConnectWiseManageAPI
//! PowerShell module (`New-CWMTicketNote`: the note's fields and path), integrators' notes
//! on the error shape (`{"code":"InvalidObject","message":…,"errors":[{"code":"NotFound",
//! "message":…,"resource":"ticket","field":"status/id"}]}`) and the Basic user
//! `company+publicKey`. Guesses, kept to this module and the simulator: the exact text of
//! a 404 and 401 body, that a 429 carries `Retry-After`, that `createdBy` holds the API
//! member's identifier, and the check call (`GET /system/members?conditions=identifier="…"`).

pub mod config;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, SinkErrorKind, TicketSink, TimeEntry};
use crate::http::Auth;
use crate::note::{Note, Visibility};

/// The REST API's root under the site URL (every current Manage release answers here).
pub const API_PATH: &str = "/v4_6_release/apis/3.0";
/// Notes read per page of the marker scan (ConnectWise allows up to 1000).
const PAGE: usize = 100;
/// Pages read by one scan at most.
const MAX_PAGES: usize = 100;

/// What ConnectWise authenticates a call with: an API member's key pair under the company,
/// and the integration's `clientId`.
pub struct ConnectWiseKeys {
    pub company: String,
    pub public_key: String,
    pub private_key: SecretString,
    pub client_id: String,
}

impl ConnectWiseKeys {
    /// The Basic user name: `company+publicKey`.
    pub fn basic_user(&self) -> String {
        format!("{}+{}", self.company, self.public_key)
    }
}

pub struct ConnectWiseSink {
    /// Base URL is the site plus [`API_PATH`]; Basic `company+publicKey:privateKey`.
    api: common::SinkHttp,
    /// The integration's `clientId` (developer.connectwise.com/ClientID), sent on every call.
    client_id: String,
    /// The API member's identifier: a note counts in a scan only when it `createdBy` it.
    member: String,
}

impl common::HttpKnobs for ConnectWiseSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

/// ConnectWise's error bodies: `{"code":"NotFound","message":"…","errors":[{"message":…}]}`;
/// the message with the code, and each detail's message.
pub fn connectwise_error(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let mut parts: Vec<String> = Vec::new();
            match (v["code"].as_str(), v["message"].as_str()) {
                (Some(c), Some(m)) => parts.push(format!("{c}: {m}")),
                (None, Some(m)) => parts.push(m.to_string()),
                (Some(c), None) => parts.push(c.to_string()),
                (None, None) => {}
            }
            for e in v["errors"].as_array().into_iter().flatten() {
                if let Some(m) = e["message"].as_str() {
                    parts.push(m.to_string());
                }
            }
            match parts.is_empty() {
                true => crate::http::short_body(&v.to_string()),
                false => crate::http::short_body(&parts.join("; ")),
            }
        }
        Err(_) if body.trim_start().starts_with('<') => String::new(),
        Err(_) => crate::http::short_body(body),
    }
}

/// The note as ConnectWise stores it: [`common::to_plain`] (ConnectWise shows note text as
/// typed, no markup), the marker line last.
pub fn render(note: &Note, inline_limit: usize) -> String {
    common::to_plain(note, inline_limit)
}

/// Whether a `Link` header announces a next page.
pub(crate) fn has_next_link(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| part.split(';').skip(1).any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\"")))
}

impl ConnectWiseSink {
    /// `site` is the server (`https://api-na.myconnectwise.net`, or an on-premise host);
    /// `company` the company id people log in with.
    pub fn new(name: &str, site: &str, keys: ConnectWiseKeys, member: &str, http: reqwest::Client) -> Self {
        let base = format!("{}{API_PATH}", site.trim_end_matches('/'));
        let user = SecretString::from(keys.basic_user());
        let auth = Auth::Basic { user, password: Some(keys.private_key) };
        Self {
            api: common::SinkHttp::new(name, &base, auth, http),
            client_id: keys.client_id,
            member: member.to_string(),
        }
    }

    fn ticket_id(&self, ticket: &str) -> Result<u64, SinkError> {
        let what = "a ConnectWise service ticket id";
        let id = common::numeric_ticket(&self.api.name, ticket, what)?;
        id.parse::<u64>().map_err(|_| common::not_a_ticket(&self.api.name, ticket, what))
    }

    /// One call with the credentials and the `clientId` header; a non-2xx answer is the
    /// sink's error with ConnectWise's own code and message.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let req = req.header("clientId", &self.client_id).header("Accept", "application/json");
        let r = self.api.send(req).await?;
        if r.status.is_success() {
            return Ok(r);
        }
        Err(self.error(&r))
    }

    fn error(&self, r: &Reply) -> SinkError {
        let detail = connectwise_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        match r.status.as_u16() {
            401 => {
                err.message = format!(
                    "credentials rejected (HTTP 401): check sinks.connectwise.company, public_key, private_key and client_id: {detail}"
                )
            }
            403 => {
                err.message = format!(
                    "forbidden (HTTP 403): the API member's security role lacks Service Desk → Service Tickets rights: {detail}"
                )
            }
            400 => err.message = format!("ConnectWise rejected the request (HTTP 400): {detail}"),
            _ => {}
        }
        err
    }
}

#[async_trait]
impl TicketSink for ConnectWiseSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let path = format!("/service/tickets/{id}/notes");
        let size = PAGE.to_string();
        for page in 1..=MAX_PAGES {
            let p = page.to_string();
            let q = [("page", p.as_str()), ("pageSize", size.as_str()), ("orderBy", "id asc")];
            let r = self.call(self.api.get(&path).query(&q)).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "ticket notes")?;
            let notes = v.as_array().cloned().unwrap_or_default();
            let found = notes.iter().find(|n| {
                n["text"].as_str().is_some_and(|t| crate::marker::ends_with_marker(t, marker))
                    && n["createdBy"].as_str().is_some_and(|by| by.eq_ignore_ascii_case(&self.member))
            });
            if let Some(n) = found {
                return Ok(Some(format!("ticket:{id}#note-{}", n["id"])));
            }
            // The `Link` header says whether there is more; without one, a short page is the last.
            let more = match r.headers.contains_key(reqwest::header::LINK) {
                true => has_next_link(&r.headers),
                false => notes.len() >= PAGE,
            };
            if !more || notes.is_empty() {
                break;
            }
        }
        Ok(None)
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        // Internal analysis is for members only; the detail description is what the contact
        // sees on the portal and in notifications.
        let internal = note.visibility == Visibility::Internal;
        let body = json!({
            "text": render(note, self.api.inline_limit),
            "internalAnalysisFlag": internal,
            "detailDescriptionFlag": !internal,
            "resolutionFlag": false,
        });
        let r = self.call(self.api.post(&format!("/service/tickets/{id}/notes")).json(&body)).await?;
        let nid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| common::id_text(&v["id"]));
        Ok(match nid {
            Some(n) => format!("ticket:{id}#note-{n}"),
            None => format!("ticket:{id}"),
        })
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        // The ticket's own time entries, by a condition on what they are charged to.
        let cond = format!("chargeToId={id} AND chargeToType=\"ServiceTicket\"");
        let size = PAGE.to_string();
        for page in 1..=MAX_PAGES {
            let p = page.to_string();
            let q = [("conditions", cond.as_str()), ("page", p.as_str()), ("pageSize", size.as_str())];
            let r = self.call(self.api.get("/time/entries").query(&q)).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "time entries")?;
            let entries = v.as_array().cloned().unwrap_or_default();
            // `enteredBy` is who wrote the entry (the API member), `member` whom it is for.
            let found = entries.iter().find(|e| {
                e["notes"].as_str().is_some_and(|t| crate::time_entry::ends_with_marker(t, marker))
                    && e["enteredBy"].as_str().is_some_and(|by| by.eq_ignore_ascii_case(&self.member))
            });
            if let Some(e) = found {
                return Ok(Some(format!("ticket:{id}#time-{}", e["id"])));
            }
            let more = match r.headers.contains_key(reqwest::header::LINK) {
                true => has_next_link(&r.headers),
                false => entries.len() >= PAGE,
            };
            if !more || entries.is_empty() {
                break;
            }
        }
        Ok(None)
    }

    async fn post_time_entry(&self, ticket: &str, entry: &TimeEntry) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let user = match &entry.user {
            Some(u) => Some(u.clone()),
            None => match entry.technician_email.as_deref() {
                Some(mail) => self.user_by_email(mail).await?,
                None => None,
            },
        };
        // `timeStart`/`timeEnd` are the sessions' span; `actualHours` the billed (rounded) time.
        let mut body = json!({
            "chargeToType": "ServiceTicket",
            "chargeToId": id,
            "timeStart": entry.started_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "timeEnd": entry.ended_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "actualHours": entry.hours(),
            "billableOption": if entry.billable { "Billable" } else { "DoNotBill" },
            "notes": entry.comment(user.is_none()),
            "addToDetailDescriptionFlag": false,
            "addToInternalAnalysisFlag": false,
            "addToResolutionFlag": false,
        });
        if let Some(u) = &user {
            body["member"] = member_ref(u);
        }
        let r = self.call(self.api.post("/time/entries").json(&body)).await?;
        let tid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| common::id_text(&v["id"]));
        Ok(match tid {
            Some(t) => format!("ticket:{id}#time-{t}"),
            None => format!("ticket:{id}#time"),
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<String>, SinkError> {
        let cond = format!("officeEmail=\"{}\"", email.replace(['"', '\\'], ""));
        let q = [("conditions", cond.as_str()), ("pageSize", "1"), ("fields", "id,identifier")];
        let r = self.call(self.api.get("/system/members").query(&q)).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "members")?;
        Ok(v.as_array().and_then(|a| a.first()).and_then(|m| m["identifier"].as_str().map(str::to_string)))
    }

    async fn user_exists(&self, user: &str) -> Result<Option<bool>, SinkError> {
        let cond = match common::is_decimal(user) {
            true => format!("id={user}"),
            false => format!("identifier=\"{}\"", user.replace(['"', '\\'], "")),
        };
        let q = [("conditions", cond.as_str()), ("pageSize", "1"), ("fields", "id,identifier")];
        let r = self.call(self.api.get("/system/members").query(&q)).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "members")?;
        Ok(Some(v.as_array().is_some_and(|a| !a.is_empty())))
    }

    async fn check(&self) -> Result<(), SinkError> {
        // Proves the keys, the clientId and that the configured API member exists (the scan's
        // author check depends on it).
        let cond = format!("identifier=\"{}\"", self.member.replace(['"', '\\'], ""));
        let q = [("conditions", cond.as_str()), ("pageSize", "1"), ("fields", "id,identifier")];
        let r = self.call(self.api.get("/system/members").query(&q)).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "members")?;
        match v.as_array().is_some_and(|a| !a.is_empty()) {
            true => Ok(()),
            false => Err(SinkError::new(
                &self.api.name,
                SinkErrorKind::Permanent,
                format!("no ConnectWise member with identifier {:?} (sinks.connectwise.member)", self.member),
            )),
        }
    }
}

/// A member reference: `{"id": n}` for a numeric id, `{"identifier": …}` otherwise.
fn member_ref(user: &str) -> Value {
    match user.parse::<u64>() {
        Ok(n) => json!({ "id": n }),
        Err(_) => json!({ "identifier": user }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_connectwise_codes() {
        let body = r#"{"code":"InvalidObject","message":"ticket object is invalid","errors":[{"code":"NotFound","message":"Service Status 17 not found for Service Board 21","resource":"ticket","field":"status/id"}]}"#;
        assert_eq!(
            connectwise_error(body),
            "InvalidObject: ticket object is invalid; Service Status 17 not found for Service Board 21"
        );
        assert_eq!(
            connectwise_error(r#"{"code":"NotFound","message":"Ticket not found"}"#),
            "NotFound: Ticket not found"
        );
        assert_eq!(connectwise_error("<html>"), "");
    }

    #[test]
    fn link_header_next() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "<https://x/a?page=2>; rel=\"next\", <https://x/a?page=9>; rel=\"last\"".parse().unwrap(),
        );
        assert!(has_next_link(&h));
        h.insert(reqwest::header::LINK, "<https://x/a?page=1>; rel=\"first\"".parse().unwrap());
        assert!(!has_next_link(&h));
    }
}
