//! HaloPSA through its REST API (`<url>/api`). A ticket is its numeric id. The note is an
//! action on the ticket (`POST /api/Actions` with an array of one:
//! `[{"ticket_id", "note_html", "hiddenfromuser", "outcome", "sendemail": false}]`, answered
//! with the action created). The marker scan lists the ticket's actions directly
//! (`GET /api/Actions?ticket_id=…&excludesys=true&includehtmlnote=true`,
//! `{"record_count", "actions":[{"id", "note", "note_html", "who_agentid", …}]}`) and counts
//! an action only when its note's last line is the marker and `who_agentid` is the agent the
//! API application logs in as (`GET /api/Agent/me`, asked once). Auth is OAuth2 client
//! credentials at the authorisation server (`<url>/auth/token` unless `auth_url` says
//! otherwise; `?tenant=…` for Halo-hosted instances; form `grant_type=client_credentials`,
//! `client_id`, `client_secret`, `scope=all`), the access token kept in memory, renewed
//! before it expires and once more when the API answers 401 (the same token source as
//! ServiceNow's client-credentials grant). A time entry (issue 20) is an action with
//! `timetaken` (billed hours), `actisbillable` and `agent_id` (the technician's agent); its
//! scan accepts an action with time taken whose note ends with the MAC'd marker, whoever
//! the agent (it is written for the technician).
//!
//! Sources, checked 2026-12-06: HaloPSA's API documentation as integrators republish it
//! (Configuration → Integrations → Halo API: authorisation server, resource server, tenant;
//! the token request with `scope=all`), the HaloAPI PowerShell module
//! (homotechsual/HaloAPI: `api/actions` with `ticket_id`, `excludesys`, `includehtmlnote`;
//! `api/agent/me`; the `actions` listing key) and a posted action body (`ticket_id`,
//! `outcome`, `hiddenfromuser`, `timetaken`). Guesses, kept to this module and the
//! simulator: that `note_html` is stored and shown as HTML (so vendor text is escaped), the
//! answer to a POST of one action (an object, or an array of one: both read), that an
//! unknown ticket is answered 404, the error body shapes, and the outcome names
//! ("Private Note", "Public Note": configurable).

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, SinkErrorKind, TicketSink, TimeEntry};
use crate::http::Auth;
use crate::note::{Note, Visibility};
use crate::servicenow::oauth::TokenSource;

/// What the API application authenticates with.
pub struct HaloCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    /// The Halo-hosted tenant (`?tenant=` on the token request); `None` on premise.
    pub tenant: Option<String>,
    /// The authorisation server; `<url>/auth` when `None`.
    pub auth_url: Option<String>,
}

/// The action outcomes a note is written with (each instance names its own).
#[derive(Debug, Clone)]
pub struct Outcomes {
    pub internal: String,
    pub public: String,
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes { internal: "Private Note".into(), public: "Public Note".into() }
    }
}

pub struct HaloPsaSink {
    /// Base URL is the resource server (without `/api`); no static credentials.
    api: common::SinkHttp,
    oauth: Arc<TokenSource>,
    outcomes: Outcomes,
    /// The agent the API application acts as (`/api/Agent/me`), for the author check.
    me: common::ApiUser,
}

impl common::HttpKnobs for HaloPsaSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

/// HaloPSA's error bodies: a JSON string, `{"message"|"Message"|"error_description"|"error"}`,
/// or text.
pub fn halo_error(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::String(s)) => crate::http::short_body(&s),
        Ok(v) => ["message", "Message", "error_description", "error", "title"]
            .iter()
            .find_map(|k| v[*k].as_str())
            .map(crate::http::short_body)
            .unwrap_or_else(|| crate::http::short_body(&v.to_string())),
        Err(_) if body.trim_start().starts_with('<') => String::new(),
        Err(_) => crate::http::short_body(body),
    }
}

/// The note as the action's HTML: [`common::to_html`] (vendor text entity-escaped and
/// marker-neutralised, the note's own http(s) links the only anchors, the marker last).
pub fn render(note: &Note, inline_limit: usize) -> String {
    common::to_html(&note.with_inline_cut(inline_limit))
}

impl HaloPsaSink {
    pub fn new(name: &str, url: &str, creds: HaloCredentials, outcomes: Outcomes, http: reqwest::Client) -> Self {
        let base = url.trim_end_matches('/').to_string();
        let auth = creds.auth_url.clone().unwrap_or_else(|| format!("{base}/auth"));
        let mut token_url = format!("{}/token", auth.trim_end_matches('/'));
        if let Some(t) = creds.tenant.as_deref().filter(|t| !t.is_empty()) {
            let t: String = url::form_urlencoded::byte_serialize(t.as_bytes()).collect();
            token_url.push_str(&format!("?tenant={t}"));
        }
        let oauth = TokenSource::client_credentials(
            name,
            &token_url,
            &creds.client_id,
            creds.client_secret,
            vec![("scope", "all".to_string())],
            "sinks.halopsa.client_id, client_secret, tenant",
            http.clone(),
        );
        Self {
            api: common::SinkHttp::new(name, &base, Auth::None, http),
            oauth: Arc::new(oauth),
            outcomes,
            me: Default::default(),
        }
    }

    fn ticket_id(&self, ticket: &str) -> Result<u64, SinkError> {
        let what = "a HaloPSA ticket id";
        let id = common::numeric_ticket(&self.api.name, ticket, what)?;
        id.parse::<u64>().map_err(|_| common::not_a_ticket(&self.api.name, ticket, what))
    }

    fn error(&self, r: &Reply) -> SinkError {
        let detail = halo_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        match r.status.as_u16() {
            401 => err.message = format!("credentials rejected (HTTP 401): HaloPSA refused a fresh token: {detail}"),
            403 => {
                err.message = format!(
                "forbidden (HTTP 403): the API application or its agent lacks ticket rights (edit:tickets): {detail}"
            )
            }
            _ => {}
        }
        err
    }

    /// One call with a Bearer token; once more with a new token when HaloPSA refuses the one
    /// it issued (revoked, or expired earlier than it said).
    async fn call(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        for fresh in [false, true] {
            let (token, generation) = self.oauth.token(fresh).await?;
            let req = build().bearer_auth(secrecy::ExposeSecret::expose_secret(&token));
            let r = self.api.send(req.header("Accept", "application/json")).await?;
            if r.status.is_success() {
                return Ok(r);
            }
            if r.status.as_u16() == 401 && !fresh {
                self.oauth.rejected(generation).await;
                continue;
            }
            return Err(self.error(&r));
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn me(&self) -> Result<Option<&str>, SinkError> {
        self.me
            .get(|| async {
                let r = self.call(|| self.api.get("/api/Agent/me")).await?;
                let v = common::parse_listing(&self.api.name, &r.body, "current agent")?;
                Ok(common::id_text(&v["id"]))
            })
            .await
    }
}

#[async_trait]
impl TicketSink for HaloPsaSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?.to_string();
        let me = self.me().await?.map(str::to_string);
        let q = [("ticket_id", id.as_str()), ("excludesys", "true"), ("includehtmlnote", "true")];
        let r = self.call(|| self.api.get("/api/Actions").query(&q)).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "actions")?;
        let found = v["actions"].as_array().into_iter().flatten().find(|a| {
            let hit = match (a["note_html"].as_str().filter(|h| !h.is_empty()), a["note"].as_str()) {
                (Some(html), _) => common::html_ends_with_marker(html, marker),
                (None, Some(text)) => crate::marker::ends_with_marker(text, marker),
                _ => false,
            };
            hit && common::author_ok(me.as_deref(), common::id_text(&a["who_agentid"]))
        });
        Ok(found.map(|a| format!("ticket:{id}#action-{}", a["id"])))
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let internal = note.visibility == Visibility::Internal;
        let outcome = if internal { &self.outcomes.internal } else { &self.outcomes.public };
        let body = json!([{
            "ticket_id": id,
            "note_html": render(note, self.api.inline_limit),
            "hiddenfromuser": internal,
            "outcome": outcome,
            "sendemail": false,
        }]);
        let r = self.call(|| self.api.post("/api/Actions").json(&body)).await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let action = match &v {
            Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        Ok(match common::id_text(&action["id"]) {
            Some(a) => format!("ticket:{id}#action-{a}"),
            None => format!("ticket:{id}"),
        })
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?.to_string();
        let q = [("ticket_id", id.as_str()), ("excludesys", "true"), ("includehtmlnote", "true")];
        let r = self.call(|| self.api.get("/api/Actions").query(&q)).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "actions")?;
        // A time entry is an action with time taken; it is written for the technician's agent,
        // so the author is not ours to check: the MAC'd marker as the last line decides.
        let found = v["actions"].as_array().into_iter().flatten().find(|a| {
            let text = match (a["note_html"].as_str().filter(|h| !h.is_empty()), a["note"].as_str()) {
                (Some(html), _) => common::html_to_text(html),
                (None, Some(t)) => t.to_string(),
                _ => String::new(),
            };
            a["timetaken"].as_f64().is_some_and(|h| h > 0.0) && crate::time_entry::ends_with_marker(&text, marker)
        });
        Ok(found.map(|a| format!("ticket:{id}#action-{}", a["id"])))
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
        let comment = entry.comment(user.is_none());
        let html: Vec<String> = comment.lines().map(common::escape_html).collect();
        let mut action = json!({
            "ticket_id": id,
            "note_html": format!("<p>{}</p>", html.join("<br>\n")),
            "hiddenfromuser": true,
            "outcome": self.outcomes.internal,
            "timetaken": entry.hours(),
            "actisbillable": entry.billable,
            "actionarrivaldate": entry.started_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "actioncompletiondate": entry.ended_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "sendemail": false,
        });
        if let Some(agent) = user.as_deref().and_then(|u| u.parse::<u64>().ok()) {
            action["agent_id"] = json!(agent);
        }
        let body = Value::Array(vec![action]);
        let r = self.call(|| self.api.post("/api/Actions").json(&body)).await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let created = match &v {
            Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        Ok(match common::id_text(&created["id"]) {
            Some(a) => format!("ticket:{id}#action-{a}"),
            None => format!("ticket:{id}#time"),
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<String>, SinkError> {
        let r = self.call(|| self.api.get("/api/Agent").query(&[("search", email)])).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "agents")?;
        let list = match &v {
            Value::Array(a) => a.clone(),
            other => other["agents"].as_array().cloned().unwrap_or_default(),
        };
        // The search also matches names and phone numbers: only an exact e-mail counts.
        let hit = list.iter().find(|a| a["email"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(email)));
        Ok(hit.and_then(|a| common::id_text(&a["id"])))
    }

    async fn user_exists(&self, user: &str) -> Result<Option<bool>, SinkError> {
        let Ok(agent) = user.parse::<u64>() else { return Ok(Some(false)) };
        let req = || self.api.get(&format!("/api/Agent/{agent}"));
        match self.call(req).await {
            Ok(r) => {
                let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                Ok(Some(v["id"].as_u64() == Some(agent) && v["isdisabled"].as_bool() != Some(true)))
            }
            Err(e) if e.kind == SinkErrorKind::Permanent && e.message.contains("404") => Ok(Some(false)),
            Err(e) => Err(e),
        }
    }

    async fn check(&self) -> Result<(), SinkError> {
        match self.me().await? {
            Some(_) => Ok(()),
            None => Err(SinkError::new(
                &self.api.name,
                SinkErrorKind::Permanent,
                "HaloPSA did not name the API application's agent (GET /api/Agent/me): set its login type to Agent",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_halos_words() {
        assert_eq!(halo_error(r#"{"error":"invalid_client"}"#), "invalid_client");
        assert_eq!(halo_error(r#""Ticket 9 not found""#), "Ticket 9 not found");
        assert_eq!(halo_error(r#"{"ClassName":"System.Exception","Message":"boom"}"#), "boom");
        assert_eq!(halo_error("<html>"), "");
    }
}
