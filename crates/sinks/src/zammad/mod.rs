//! Zammad: an internal note per session (`POST /api/v1/ticket_articles`, `type: "note"`,
//! `internal: true`, `content_type: "text/html"`; 201 with the article), the marker scan
//! through `GET /api/v1/ticket_articles/by_ticket/{id}` (every article of the ticket, no
//! paging: the direct listing, never the search index, which lags). An API token
//! (`Authorization: Token token=…`) or an OAuth access token (Bearer). Errors are
//! `{"error":…,"error_human":…}`; a missing ticket is 404. Wire shapes from Zammad's
//! documentation and code: `docs/vendors/zammad.md`.
//!
//! Time entries (issue 20): one internal note article whose `time_unit` (minutes) Zammad
//! records as the ticket's time accounting for that article, in the same request
//! (`app/controllers/concerns/creates_ticket_articles.rb`; the separate
//! `POST /api/v1/tickets/{id}/time_accountings` of Zammad's time accounting API carries no
//! text, so no marker, and would need a second, non-atomic call). The article's text is the
//! entry's comment with the marker last: the note scan finds it. Zammad records the time for
//! the API user; the comment names the technician. Documents: Zammad's REST API docs
//! (ticket articles, time accounting) and its code; `time_unit` on an article is read from
//! the code, not from a running Zammad (none runs in CI).

pub mod config;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, TicketSink};
use crate::http::Auth;
use crate::note::{Note, Visibility};

pub enum ZammadAuth {
    /// An agent's API token: `Authorization: Token token=…`.
    Token(SecretString),
    /// An OAuth access token: `Authorization: Bearer …`.
    OAuth(SecretString),
}

impl From<ZammadAuth> for Auth {
    fn from(a: ZammadAuth) -> Auth {
        match a {
            ZammadAuth::Token(t) => Auth::Header {
                name: AUTHORIZATION,
                value: SecretString::from(format!("Token token={}", t.expose_secret().trim())),
            },
            ZammadAuth::OAuth(t) => Auth::Bearer(t),
        }
    }
}

pub struct ZammadSink {
    api: common::SinkHttp,
    /// A ticket object attribute holding the session code (`session_code`), for lookups.
    session_field: Option<String>,
    /// The API user's id (`/api/v1/users/me`), for the marker scan's author check against
    /// an article's `created_by_id`.
    api_user: common::ApiUser,
}

impl common::HttpKnobs for ZammadSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

/// Zammad's error bodies: `{"error":"Couldn't find Ticket with 'id'=9","error_human":…}`;
/// the human text when there is one.
pub fn zammad_error(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => v["error_human"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| crate::http::short_body(&v.to_string())),
        Err(_) if body.trim_start().starts_with('<') => String::new(),
        Err(_) => body.to_string(),
    }
}

impl ZammadSink {
    pub fn new(
        name: &str,
        base_url: &str,
        auth: ZammadAuth,
        session_field: Option<String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            api: common::SinkHttp::new(name, base_url, auth.into(), http),
            session_field,
            api_user: Default::default(),
        }
    }

    fn ticket_id(&self, ticket: &str) -> Result<u64, SinkError> {
        let what = "a Zammad ticket id";
        let id = common::numeric_ticket(&self.api.name, ticket, what)?;
        id.parse::<u64>().map_err(|_| common::not_a_ticket(&self.api.name, ticket, what))
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let r = self.api.send(req).await?;
        if r.status.is_success() {
            return Ok(r);
        }
        let detail = zammad_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        match r.status.as_u16() {
            401 => err.message = format!("credentials rejected (HTTP 401): Zammad refused the token: {detail}"),
            // "Authentication required" is a 403 in Zammad: no credentials reached it.
            403 if detail.contains("Authentication required") => {
                err.kind = super::SinkErrorKind::Auth;
                err.message = format!("credentials rejected (HTTP 403): {detail}");
            }
            422 => err.message = format!("Zammad rejected the note (HTTP 422): {detail}"),
            _ => {}
        }
        Err(err)
    }

    async fn api_user(&self) -> Result<Option<&str>, SinkError> {
        self.api_user
            .get(|| async {
                let r = self.call(self.api.get("/api/v1/users/me")).await?;
                let v = common::parse_listing(&self.api.name, &r.body, "current user")?;
                Ok(common::id_text(&v["id"]))
            })
            .await
    }
}

/// The note as Zammad's HTML article: [`common::to_html`] (vendor text entity-escaped and
/// marker-neutralised, anchors only for the note's http(s) links, the marker paragraph last).
pub fn render(note: &Note, inline_limit: usize) -> String {
    common::to_html(&note.with_inline_cut(inline_limit))
}

#[async_trait]
impl TicketSink for ZammadSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let r = self.call(self.api.get(&format!("/api/v1/ticket_articles/by_ticket/{id}"))).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "articles")?;
        let me = self.api_user().await?;
        let found = v.as_array().into_iter().flatten().find(|a| {
            let hit = match (a["body"].as_str(), a["content_type"].as_str()) {
                (Some(b), Some(ct)) if ct.to_ascii_lowercase().starts_with("text/html") => {
                    common::html_ends_with_marker(b, marker)
                }
                (Some(b), _) => crate::marker::ends_with_marker(b, marker),
                _ => false,
            };
            hit && common::author_ok(me, common::id_text(&a["created_by_id"]))
        });
        Ok(found.map(|a| format!("ticket:{id}#article-{}", a["id"])))
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        // A note is no communication article: it sends no mail and touches no SLA. Internal
        // notes are for agents; an external one is shown to the customer in Zammad's web UI.
        let body = json!({
            "ticket_id": id,
            "body": render(note, self.api.inline_limit),
            "content_type": "text/html",
            "type": "note",
            "internal": note.visibility == Visibility::Internal,
        });
        let r = self.call(self.api.post("/api/v1/ticket_articles").json(&body)).await?;
        let aid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| common::id_text(&v["id"]));
        Ok(match aid {
            Some(a) => format!("ticket:{id}#article-{a}"),
            None => format!("ticket:{id}"),
        })
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        self.find_marker(ticket, marker).await
    }

    async fn post_time_entry(&self, ticket: &str, entry: &crate::TimeEntry) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let text = entry.comment(entry.technician.is_some());
        let html: String =
            text.lines().map(|l| format!("<p>{}</p>", common::escape_html(l))).collect::<Vec<_>>().join("");
        let body = json!({
            "ticket_id": id,
            "body": html,
            "content_type": "text/html",
            "type": "note",
            "internal": true,
            "time_unit": entry.minutes.to_string(),
        });
        let r = self.call(self.api.post("/api/v1/ticket_articles").json(&body)).await?;
        let aid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| common::id_text(&v["id"]));
        Ok(match aid {
            Some(a) => format!("ticket:{id}#article-{a}"),
            None => format!("ticket:{id}"),
        })
    }

    async fn find_ticket_by_session_code(&self, code: &str) -> Result<Option<String>, SinkError> {
        let Some(field) = &self.session_field else { return Ok(None) };
        // Zammad's search (Elasticsearch query syntax): the value quoted, its own quotes and
        // backslashes dropped so vendor text cannot change the query.
        let value: String = code.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
        let query = format!("{field}:\"{value}\"");
        let r = self
            .call(self.api.get("/api/v1/tickets/search").query(&[("query", query.as_str()), ("limit", "1")]))
            .await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        // Zammad answers a list of tickets, or `{"tickets":[ids],"assets":…}` without `expand`.
        let first = match &v {
            Value::Array(a) => a.first().and_then(|t| common::id_text(&t["id"])),
            _ => v["tickets"].as_array().and_then(|a| a.first()).and_then(common::id_text),
        };
        Ok(first)
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.call(self.api.get("/api/v1/users/me")).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_zammads_words() {
        assert_eq!(
            zammad_error(
                r#"{"error":"Couldn't find Ticket with 'id'=9","error_human":"Couldn't find Ticket with 'id'=9"}"#
            ),
            "Couldn't find Ticket with 'id'=9"
        );
        assert_eq!(zammad_error(r#"{"error":"Not authorized"}"#), "Not authorized");
        assert_eq!(zammad_error("<html>"), "");
    }
}
