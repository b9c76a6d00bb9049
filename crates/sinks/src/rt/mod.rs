//! Request Tracker 5 through REST 2.0 (`<url>/REST/2.0`, built into RT 5), with an auth token
//! (`Authorization: token …`). A private note is a comment, a public one a reply
//! (`POST /ticket/{id}/comment|correspond`, JSON with `ContentType: text/plain`: the plain-text
//! request body form stores non-ASCII double-encoded); 201 with `Location: …/transaction/{n}`.
//! The marker scan reads the ticket's text attachments (`GET /ticket/{id}/attachments`, their
//! `Content` as plain text in collections) and pairs a hit with the ticket's history (`GET
//! /ticket/{id}/history`: the transaction's `Type` and `Creator`). Wire shapes as a real RT
//! 5.0.3 answered them: `docs/vendors/rt.md`.
//!
//! Time entries (issue 20): a comment with `TimeTaken` in minutes (RT adds it to the
//! ticket's `TimeWorked`, for the comment's author, the token's user), its text the entry's
//! comment with the marker line last, found by the same scan as a note. Documents: RT 5's
//! REST2 documentation (lib/RT/REST2.pm, "Replying/Commenting Tickets": `TimeTaken`) in
//! Debian's request-tracker5, checked against the real RT of `.ci/rt-ci.sh`.

pub mod config;

use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, TicketSink};
use crate::http::Auth;
use crate::note::{Note, Visibility};

/// RT caps a collection page at 100 items.
const PER_PAGE: u32 = 100;
/// Pages read by one scan at most (10 000 attachments or transactions).
const MAX_PAGES: u32 = 100;
/// RT's answer to a comment on a ticket that does not exist (a 400, not a 404).
const NOT_RECORDED: &str = "Message could not be recorded";

pub struct RtSink {
    /// `base` is the REST 2.0 root, `…/REST/2.0`.
    api: common::SinkHttp,
    /// A ticket custom field holding the session code, for lookups.
    session_field: Option<String>,
    /// The token's owner: the number RT puts in the token (`1-<user id>-<secret>`), not secret.
    token_user: Option<String>,
    /// The token owner's name (history names a transaction's creator by name), asked once.
    api_user: common::ApiUser,
}

impl common::HttpKnobs for RtSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

/// The user id in an RT auth token (`1-14-<32 hex>`: version, user id, secret); `None` for
/// another shape.
pub fn token_user(token: &str) -> Option<String> {
    let mut parts = token.trim().splitn(3, '-');
    let (version, user, secret) = (parts.next()?, parts.next()?, parts.next()?);
    (common::is_decimal(version) && common::is_decimal(user) && !secret.is_empty()).then(|| user.to_string())
}

/// The REST 2.0 root under RT's web address (`https://rt.example.org/rt` →
/// `https://rt.example.org/rt/REST/2.0`); an address already ending there is kept.
pub fn rest_base(url: &str) -> String {
    let u = url.trim_end_matches('/');
    match u.ends_with("/REST/2.0") {
        true => u.to_string(),
        false => format!("{u}/REST/2.0"),
    }
}

/// RT's error bodies are `{"message":"…"}`.
pub fn rt_error(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => v["message"].as_str().map(str::to_string).unwrap_or_else(|| crate::http::short_body(&v.to_string())),
        Err(_) if body.trim_start().starts_with('<') => String::new(),
        Err(_) => body.to_string(),
    }
}

/// The note as the text/plain comment RT shows: title, fields, links, body, inlined
/// attachments, the marker line last. RT escapes text/plain when it displays it, so vendor
/// text needs no escaping, only [`Note::sanitized`] (no marker line of its own, links only
/// to http(s) targets).
pub fn render(note: &Note, inline_limit: usize) -> String {
    let n = note.with_inline_cut(inline_limit).sanitized();
    let mut out = format!("{}\n\n", n.title.trim_end());
    for f in &n.fields {
        out.push_str(&format!("{}: {}\n", f.label, f.value));
    }
    if !n.links.is_empty() {
        out.push('\n');
        for l in &n.links {
            out.push_str(&format!("{}: {}\n", l.label, l.url));
        }
    }
    if let Some(body) = n.body.as_deref().filter(|b| !b.trim().is_empty()) {
        out.push('\n');
        out.push_str(body.trim_end());
        out.push('\n');
    }
    for a in &n.attachments {
        out.push_str(&format!("\n{}:\n{}\n", a.filename, a.text.trim_end()));
    }
    out.push('\n');
    out.push_str(&n.marker_line());
    out
}

/// One page of an RT collection: its items and whether another page follows.
fn page_items(v: &Value, page: u32) -> (Vec<Value>, bool) {
    let items = v["items"].as_array().cloned().unwrap_or_default();
    // `pages` is the total; without it, a full page may have a successor.
    let more = match v["pages"].as_u64() {
        Some(pages) => u64::from(page) < pages,
        None => items.len() as u64 >= u64::from(PER_PAGE),
    };
    let more = more && !items.is_empty();
    (items, more)
}

/// The text of an attachment as its reader sees it (HTML reduced to text).
fn attachment_text(a: &Value) -> Option<String> {
    let content = a["Content"].as_str()?;
    let ct = a["ContentType"].as_str().unwrap_or("text/plain").to_ascii_lowercase();
    Some(if ct.starts_with("text/html") { common::html_to_text(content) } else { content.to_string() })
}

impl RtSink {
    pub fn new(
        name: &str,
        url: &str,
        token: SecretString,
        session_field: Option<String>,
        http: reqwest::Client,
    ) -> Self {
        let token_user = token_user(token.expose_secret());
        let header = SecretString::from(format!("token {}", token.expose_secret().trim()));
        Self {
            api: common::SinkHttp::new(
                name,
                &rest_base(url),
                Auth::Header { name: AUTHORIZATION, value: header },
                http,
            ),
            session_field,
            token_user,
            api_user: Default::default(),
        }
    }

    fn ticket_id<'t>(&self, ticket: &'t str) -> Result<&'t str, SinkError> {
        common::numeric_ticket(&self.api.name, ticket, "an RT ticket number")
    }

    fn error(&self, r: &Reply) -> SinkError {
        let detail = rt_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        if r.status.as_u16() == 401 {
            err.message = format!("credentials rejected (HTTP 401): RT refused the token (sinks.rt.token): {detail}");
        }
        err
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let r = self.api.send(req).await?;
        match r.status.is_success() {
            true => Ok(r),
            false => Err(self.error(&r)),
        }
    }

    /// The token owner's name, asked once (`GET /user/{id}`); `None` when the token does not
    /// say who owns it.
    async fn api_user(&self) -> Result<Option<&str>, SinkError> {
        let Some(uid) = &self.token_user else { return Ok(None) };
        self.api_user
            .get(|| async {
                let r = self.call(self.api.get(&format!("/user/{uid}"))).await?;
                let v = common::parse_listing(&self.api.name, &r.body, "current user")?;
                Ok(v["Name"].as_str().filter(|n| !n.is_empty()).map(str::to_string))
            })
            .await
    }

    /// One page of a ticket's collection (`attachments`, `history`), newest first.
    async fn page(&self, path: &str, extra: &[(&str, &str)], page: u32) -> Result<(Vec<Value>, bool), SinkError> {
        let (per_page, page_s) = (PER_PAGE.to_string(), page.to_string());
        let mut q: Vec<(&str, &str)> =
            vec![("per_page", &per_page), ("page", &page_s), ("orderby", "id"), ("order", "DESC")];
        q.extend_from_slice(extra);
        let r = self.call(self.api.get(path).query(&q)).await?;
        let v = common::parse_listing(&self.api.name, &r.body, path)?;
        Ok(page_items(&v, page))
    }

    /// The transactions (ids) among `wanted` that are a comment or reply written by `me`,
    /// read from the ticket's history.
    async fn own_messages(&self, id: &str, wanted: &[String], me: Option<&str>) -> Result<Vec<String>, SinkError> {
        let path = format!("/ticket/{id}/history");
        let (mut left, mut own) = (wanted.to_vec(), Vec::new());
        for page in 1..=MAX_PAGES {
            let (items, more) = self.page(&path, &[("fields", "Type,Creator")], page).await?;
            for t in &items {
                let Some(tid) = common::id_text(&t["id"]) else { continue };
                if !left.contains(&tid) {
                    continue;
                }
                left.retain(|w| *w != tid);
                // Only a comment or a reply: a ticket's Create content or a person's message
                // quoting the marker proves nothing.
                let message = matches!(t["Type"].as_str(), Some("Comment" | "Correspond"));
                if message && common::author_ok(me, common::id_text(&t["Creator"]["id"])) {
                    own.push(tid);
                }
            }
            if left.is_empty() || !more {
                break;
            }
        }
        Ok(own)
    }

    /// Ask RT whether the ticket exists, after a comment it would not record: RT answers a
    /// comment on a missing ticket with 400 "Message could not be recorded", not 404.
    async fn missing_ticket(&self, id: &str, refused: SinkError) -> SinkError {
        match self.call(self.api.get(&format!("/ticket/{id}"))).await {
            Err(e) => e,
            Ok(_) => refused,
        }
    }
}

impl RtSink {
    /// Post a comment or reply (`kind`) with `body`: RT's answers turned into the sink's errors.
    async fn post_message(&self, ticket: &str, kind: &str, body: Value) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let r = self.api.send(self.api.post(&format!("/ticket/{id}/{kind}")).json(&body)).await?;
        if !r.status.is_success() {
            let mut err = self.error(&r);
            if r.status.as_u16() == 400 {
                let detail = rt_error(&r.body);
                err.message = format!("RT refused the {kind} (HTTP 400): {detail}");
                if detail == NOT_RECORDED {
                    return Err(self.missing_ticket(id, err).await);
                }
                if detail.eq_ignore_ascii_case("Permission Denied") {
                    err.message.push_str(" (the RT user needs CommentOnTicket or ReplyToTicket on the queue)");
                }
            }
            return Err(err);
        }
        let location = r.headers.get(reqwest::header::LOCATION).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let txn = location.rsplit_once("/transaction/").map(|(_, t)| t.trim_end_matches('/'));
        Ok(match txn.filter(|t| common::is_decimal(t)) {
            Some(t) => format!("ticket/{id}/transaction/{t}"),
            None => format!("ticket/{id}"),
        })
    }
}

#[async_trait]
impl TicketSink for RtSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let path = format!("/ticket/{id}/attachments");
        // Text parts only: a ticket's binary attachments are no note and may be large.
        let query = r#"[{"field":"ContentType","operator":"LIKE","value":"text/"}]"#;
        let extra = [("query", query), ("fields", "TransactionId,ContentType,Content")];
        let mut hits = Vec::new();
        for page in 1..=MAX_PAGES {
            let (items, more) = self.page(&path, &extra, page).await?;
            for a in &items {
                if attachment_text(a).is_some_and(|t| crate::marker::ends_with_marker(&t, marker)) {
                    hits.extend(common::id_text(&a["TransactionId"]));
                }
            }
            if !more {
                break;
            }
        }
        if hits.is_empty() {
            return Ok(None);
        }
        let me = self.api_user().await?;
        let own = self.own_messages(id, &hits, me).await?;
        // The newest of our own copies (the scan reads newest first).
        Ok(hits.into_iter().find(|h| own.contains(h)).map(|t| format!("ticket/{id}/transaction/{t}")))
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        // A comment is for agents (ShowTicketComments); a reply reaches the requestors.
        let kind = match note.visibility {
            Visibility::Internal => "comment",
            Visibility::Public => "correspond",
        };
        let body = json!({"Content": render(note, self.api.inline_limit), "ContentType": "text/plain"});
        self.post_message(ticket, kind, body).await
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    /// A time entry is a comment whose text ends with its marker: the same scan as a note's.
    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        self.find_marker(ticket, marker).await
    }

    /// A comment with `TimeTaken` (minutes, added to the ticket's TimeWorked by RT). RT
    /// records the time for the comment's author, the token's user: the comment says so when
    /// a technician is named.
    async fn post_time_entry(&self, ticket: &str, entry: &crate::TimeEntry) -> Result<RemoteRef, SinkError> {
        let body = json!({
            "Subject": "Time worked",
            "Content": entry.comment(entry.technician.is_some()),
            "ContentType": "text/plain",
            "TimeTaken": entry.minutes.to_string(),
        });
        self.post_message(ticket, "comment", body).await
    }

    async fn find_ticket_by_session_code(&self, code: &str) -> Result<Option<String>, SinkError> {
        let Some(field) = &self.session_field else { return Ok(None) };
        // TicketSQL string literal: a quote or backslash in vendor text must not end it.
        let value: String = code.chars().filter(|c| !matches!(c, '\'' | '"' | '\\')).collect();
        let query = format!("CF.{{{field}}} = '{value}'");
        let r = self.call(self.api.get("/tickets").query(&[("query", query.as_str()), ("per_page", "1")])).await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        Ok(v["items"].as_array().and_then(|a| a.first()).and_then(|t| common::id_text(&t["id"])))
    }

    async fn check(&self) -> Result<(), SinkError> {
        match &self.token_user {
            Some(_) => self.api_user().await.map(|_| ()),
            None => self.call(self.api.get("/rt")).await.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Attachment, Field, Link};

    #[test]
    fn token_owner_and_rest_base() {
        assert_eq!(token_user("1-14-4581abcdef").as_deref(), Some("14"));
        assert_eq!(token_user("wrong-token"), None);
        assert_eq!(token_user("1-x-abc"), None);
        assert_eq!(rest_base("https://rt.example.org/rt/"), "https://rt.example.org/rt/REST/2.0");
        assert_eq!(rest_base("https://rt.example.org/REST/2.0/"), "https://rt.example.org/REST/2.0");
    }

    #[test]
    fn plain_text_with_marker_last_and_no_forged_marker() {
        let note = Note {
            title: "Session <b>1</b>".into(),
            fields: vec![Field { label: "Technician".into(), value: "José ✓".into() }],
            links: vec![
                Link { label: "Report".into(), url: "https://x.test/r?a=1&b=2".into() },
                Link { label: "bad".into(), url: "javascript:alert(1)".into() },
            ],
            body: Some("fixed\nticketsync-marker: tsd:v1:x:y:report".into()),
            attachments: vec![Attachment {
                filename: "chat.txt".into(),
                content_type: "text/plain".into(),
                text: "hello".into(),
            }],
            visibility: Visibility::Internal,
            marker: "tsd:v1:t:1:report".into(),
        };
        let t = render(&note, 20_000);
        assert!(t.starts_with("Session <b>1</b>\n\nTechnician: José ✓\n"), "{t}");
        assert!(t.contains("Report: https://x.test/r?a=1&b=2") && !t.contains("javascript"), "{t}");
        assert!(t.contains("\nchat.txt:\nhello\n"), "{t}");
        assert_eq!(t.matches("ticketsync-marker").count(), 1, "{t}");
        assert!(t.ends_with("\nticketsync-marker: tsd:v1:t:1:report"), "{t}");
    }

    #[test]
    fn rt_errors_keep_rts_message() {
        assert_eq!(rt_error(r#"{"message":"Message could not be recorded"}"#), NOT_RECORDED);
        assert_eq!(rt_error("<html>proxy</html>"), "");
    }
}
