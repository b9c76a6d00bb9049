//! Redmine: private note via `PUT /issues/{id}.json` (204), marker scan through
//! `GET /issues/{id}.json?include=journals`.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{Capabilities, RemoteRef, SinkError, SinkErrorKind, TicketSink};
use crate::note::{Note, Visibility};

pub struct RedmineSink {
    name: String,
    base: String,
    key: SecretString,
    private_notes: bool,
    http: reqwest::Client,
    inline_limit: usize,
    /// Cap on one answer's body (`max_response_bytes`).
    max_response: u64,
}

impl RedmineSink {
    pub fn new(name: &str, base_url: &str, api_key: SecretString, private_notes: bool, http: reqwest::Client) -> Self {
        Self {
            name: name.into(),
            base: base_url.trim_end_matches('/').to_string(),
            key: api_key,
            private_notes,
            http,
            max_response: crate::http::DEFAULT_MAX_RESPONSE_BYTES,
            inline_limit: 20_000,
        }
    }

    /// Attachments are inlined (see `post_note`), cut at this many characters.
    pub fn with_inline_limit(mut self, chars: usize) -> Self {
        self.inline_limit = chars;
        self
    }

    /// The component's `max_response_bytes`: answers are read up to this many bytes.
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response = bytes;
        self
    }

    fn issue_url(&self, ticket: &str) -> Result<String, SinkError> {
        // Redmine issue ids are integers; anything else cannot be a Redmine ticket.
        let id = ticket.trim_start_matches('#');
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(SinkError::new(
                &self.name,
                SinkErrorKind::Permanent,
                format!("ticket {ticket:?} is not a Redmine issue id"),
            ));
        }
        Ok(format!("{}/issues/{id}.json", self.base))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String), SinkError> {
        let resp =
            super::common::send_held(&self.name, req.header("X-Redmine-API-Key", self.key.expose_secret())).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body =
            crate::http::read_text(resp, self.max_response).await.map_err(|e| SinkError::from_body(&self.name, e))?;
        if status.is_success() {
            return Ok((status, body));
        }
        let mut err = SinkError::from_status(&self.name, status, &headers, &redmine_errors(&body));
        if status.as_u16() == 422 {
            err.message = format!("Redmine rejected the note (HTTP 422): {}", redmine_errors(&body));
        }
        Err(err)
    }
}

/// Redmine error bodies are `{"errors":["…"]}`.
pub fn redmine_errors(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
        })
        .unwrap_or_else(|| if body.trim_start().starts_with('<') { String::new() } else { body.to_string() })
}

#[async_trait]
impl TicketSink for RedmineSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { marker_scan: true, private_notes: true, attachments: false }
    }

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let url = self.issue_url(ticket)?;
        let (_, body) = self.send(self.http.get(&url).query(&[("include", "journals")])).await?;
        let v = super::common::parse_listing(&self.name, &body, "issue JSON")?;
        let found = v["issue"]["journals"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["notes"].as_str().is_some_and(|n| n.contains(marker)));
        Ok(found.map(|j| format!("issue:{}#journal-{}", ticket.trim_start_matches('#'), j["id"])))
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let url = self.issue_url(ticket)?;
        let private = note.visibility == Visibility::Internal && self.private_notes;
        let plain = note.to_plain_text();
        let marker_line = note.marker_line();
        // The marker line stays last, after any inlined attachment.
        let mut text = plain.strip_suffix(&marker_line).unwrap_or(&plain).trim_end().to_string();
        // Attachments go inline, inside this (private) note. A Redmine upload sent with a
        // private note is split off into a separate journal that is PUBLIC, and attachment
        // files have no visibility of their own: a chat transcript uploaded that way would
        // be readable by the customer (vendor-apis/sinks.md; shown against the real Redmine
        // by tests/it/splashtop.rs).
        for a in &note.attachments {
            let inline = a.inline_text(self.inline_limit);
            let inline = inline.trim_end();
            text.push_str(&format!("\n\n{}:\n<pre>\n{}\n</pre>", a.filename, inline.replace("</pre>", "&lt;/pre&gt;")));
        }
        text.push_str("\n\n");
        text.push_str(&marker_line);
        let body = json!({"issue": {"notes": text, "private_notes": private}});
        self.send(self.http.put(&url).json(&body)).await?;
        Ok(format!("issue:{}", ticket.trim_start_matches('#')))
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.send(self.http.get(format!("{}/users/current.json", self.base))).await.map(|_| ())
    }

    fn hold_probe(&self) -> Option<reqwest::RequestBuilder> {
        Some(self.http.get(&self.base).header("X-Redmine-API-Key", self.key.expose_secret()))
    }
}
