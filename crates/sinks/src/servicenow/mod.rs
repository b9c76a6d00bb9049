//! ServiceNow through the Table API. A ticket is a record addressed by its number
//! (`INC0010001` on `incident`, `RITM…` on `sc_req_item`, `SCTASK…` on `sc_task`, any other
//! number on the configured table) or its `sys_id` (on the configured table); a number is
//! resolved to its `sys_id` once (`GET /api/now/table/{table}?sysparm_query=number=…`) and
//! kept. The note is a `work_notes` journal entry (internal) or `comments` (seen by the
//! caller) by `PATCH /api/now/table/{table}/{sys_id}`; the marker scan reads the journal
//! directly (`GET /api/now/table/sys_journal_field?sysparm_query=element_id=…`), never a
//! search. Basic auth, or OAuth (password or client-credentials grant at
//! `/oauth_token.do`, refreshed as the instance issues tokens). Errors are
//! `{"error":{"message","detail"},"status":"failure"}`; a rate limit is 429 with
//! `X-RateLimit-Reset` (and `Retry-After` where the instance sends it). Details from
//! ServiceNow's documentation: `docs/vendors/servicenow.md`.
//!
//! Time entries (issue 20): a `task_time_worked` row (`POST /api/now/table/task_time_worked`
//! with `task` = the record's sys_id, `time_worked` as a glide duration `1970-01-01 HH:MM:SS`,
//! `comments` with the marker line last; the platform rolls it up into the task's
//! `time_worked`), one atomic insert; the scan lists the record's rows
//! (`sysparm_query=task=<sys_id>`) for one of the API user ending with the marker. Documents:
//! ServiceNow's Table API reference and the `task_time_worked` table (Time Worked); not
//! checked against a live instance.

pub mod config;
pub(crate) mod oauth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, SinkErrorKind, TicketSink};
use crate::http::Auth;
use crate::note::{Note, Visibility};
pub use oauth::{Grant, OAuthSettings};

/// Journal entries read per page of the marker scan.
const PAGE: usize = 100;
/// Pages read by one scan at most.
const MAX_PAGES: usize = 100;

/// How the sink authenticates.
pub enum ServiceNowAuth {
    /// `Authorization: Basic user:password`.
    Basic { user: String, password: SecretString },
    /// A Bearer token from the instance's OAuth endpoint.
    OAuth(OAuthSettings),
}

pub struct ServiceNowSink {
    /// Its credentials are Basic's; with OAuth none, the Bearer token is added per call.
    api: common::SinkHttp,
    oauth: Option<Arc<oauth::TokenSource>>,
    /// The table of a `sys_id` and of numbers with a prefix not listed in [`table_of`].
    table: String,
    /// The user name the notes are written as (`sys_created_by` of a journal entry), when
    /// known (Basic, OAuth password grant, or `user` configured for client credentials).
    user: Option<String>,
    /// A field of the table holding the session code (`u_session_code`), for lookups.
    session_field: Option<String>,
    /// Ticket (number or sys_id) → (table, sys_id), resolved once.
    resolved: Mutex<HashMap<String, (String, String)>>,
}

impl common::HttpKnobs for ServiceNowSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

/// The table a record number lives on, by its prefix; `None` for another prefix.
pub fn table_of(number: &str) -> Option<&'static str> {
    let upper = number.to_ascii_uppercase();
    let (prefix, digits) = upper.split_at(upper.find(|c: char| c.is_ascii_digit())?);
    if !common::is_decimal(digits) {
        return None;
    }
    match prefix {
        "INC" => Some("incident"),
        "RITM" => Some("sc_req_item"),
        "SCTASK" => Some("sc_task"),
        _ => None,
    }
}

/// A `sys_id`: 32 hex digits.
pub fn is_sys_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A record number: letters then digits (`INC0010001`, `CHG0030002`).
fn is_number(s: &str) -> bool {
    let letters = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    letters > 0 && letters <= 12 && common::is_decimal(&s[letters..])
}

/// ServiceNow's error bodies: `{"error":{"message":"No Record found","detail":"…"},
/// "status":"failure"}`; message and detail.
pub fn servicenow_error(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let parts: Vec<&str> = ["message", "detail"]
                .iter()
                .filter_map(|k| v["error"][*k].as_str())
                .filter(|s| !s.is_empty())
                .collect();
            match parts.is_empty() {
                true => crate::http::short_body(&v.to_string()),
                false => parts.join(": "),
            }
        }
        Err(_) if body.trim_start().starts_with('<') => String::new(),
        Err(_) => body.to_string(),
    }
}

/// Text that ServiceNow must not render: a journal entry is shown HTML-escaped, except what
/// `[code]…[/code]` encloses (rendered as HTML while `glide.ui.security.allow_codetag` is
/// true, its default). Every `[code` and `[/code` in vendor text is broken with a space.
fn no_code_tags(s: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"(?i)\[(\s*/?\s*code)").expect("valid regex"));
    re.replace_all(s, "[ $1").into_owned()
}

/// The note as a journal entry: plain text (title, fields, links, body, inlined attachment
/// text, the marker line last), vendor text [`Note::sanitized`] and without `[code]` tags.
/// ServiceNow escapes the rest itself.
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
    // Over the whole text, not piece by piece: a `[` ending one piece and `code]` starting
    // the next must not meet. Our own text has no `[`; the marker line has none either.
    let mut out = no_code_tags(&out);
    out.push('\n');
    out.push_str(&n.marker_line());
    out
}

/// Text inside an encoded query (`field=value`): a `^` would start another condition (and a
/// line break end the query), so they are dropped.
fn query_value(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '^' | '\r' | '\n')).collect()
}

impl ServiceNowSink {
    pub fn new(
        name: &str,
        base_url: &str,
        auth: ServiceNowAuth,
        table: &str,
        session_field: Option<String>,
        http: reqwest::Client,
    ) -> Self {
        let (api_auth, oauth, user) = match auth {
            ServiceNowAuth::Basic { user, password } => {
                (Auth::Basic { user: SecretString::from(user.clone()), password: Some(password) }, None, Some(user))
            }
            ServiceNowAuth::OAuth(settings) => {
                let user = settings.user().map(str::to_string);
                let source = oauth::TokenSource::new(name, base_url, settings, http.clone());
                (Auth::None, Some(Arc::new(source)), user)
            }
        };
        Self {
            api: common::SinkHttp::new(name, base_url, api_auth, http),
            oauth,
            table: table.to_string(),
            user,
            session_field,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    fn error(&self, r: &Reply) -> SinkError {
        let detail = servicenow_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        match r.status.as_u16() {
            401 => err.message = format!("credentials rejected (HTTP 401): {detail}"),
            403 => {
                err.message = format!(
                    "forbidden (HTTP 403): the ServiceNow user lacks a role (itil, or write on work_notes): {detail}"
                )
            }
            _ => {}
        }
        err
    }

    /// One call with the credentials; with OAuth, once more with a new token when the
    /// instance refuses the one it issued (revoked, or expired earlier than it said).
    async fn call(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let Some(oauth) = &self.oauth else {
            let r = self.api.send(build()).await?;
            return if r.status.is_success() { Ok(r) } else { Err(self.error(&r)) };
        };
        for fresh in [false, true] {
            let (token, generation) = oauth.token(fresh).await?;
            let r = self.api.send(build().bearer_auth(secrecy::ExposeSecret::expose_secret(&token))).await?;
            if r.status.is_success() {
                return Ok(r);
            }
            if r.status.as_u16() == 401 && !fresh {
                oauth.rejected(generation).await;
                continue;
            }
            return Err(self.error(&r));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// The table and sys_id of a ticket: a sys_id as is (on the configured table), a number
    /// resolved once; a number the instance does not have is a 404.
    async fn record(&self, ticket: &str) -> Result<(String, String), SinkError> {
        // One spelling per record: numbers in capitals (`inc0010001` is `INC0010001`).
        let raw = ticket.trim().trim_start_matches('#');
        let key = &match is_sys_id(raw) {
            true => raw.to_ascii_lowercase(),
            false => raw.to_ascii_uppercase(),
        };
        if let Some(hit) = self.resolved.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(hit.clone());
        }
        if is_sys_id(key) {
            return Ok((self.table.clone(), key.clone()));
        }
        if !is_number(key) {
            return Err(common::not_a_ticket(&self.api.name, ticket, "a ServiceNow record number or sys_id"));
        }
        let table = table_of(key).unwrap_or(&self.table).to_string();
        let path = format!("/api/now/table/{table}");
        let number = key.clone();
        let query = format!("number={number}");
        let r = self
            .call(|| {
                self.api.get(&path).query(&[
                    ("sysparm_query", query.as_str()),
                    ("sysparm_fields", "sys_id,number"),
                    ("sysparm_limit", "1"),
                ])
            })
            .await?;
        let v = common::parse_listing(&self.api.name, &r.body, "record lookup")?;
        let sys_id = v["result"].as_array().and_then(|a| a.first()).and_then(|rec| rec["sys_id"].as_str());
        let Some(sys_id) = sys_id.filter(|s| is_sys_id(s)) else {
            return Err(SinkError::new(
                &self.api.name,
                SinkErrorKind::Permanent,
                format!("ticket not found (HTTP 404): no {table} record numbered {number}"),
            ));
        };
        let hit = (table, sys_id.to_ascii_lowercase());
        self.resolved.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), hit.clone());
        Ok(hit)
    }
}

#[async_trait]
impl TicketSink for ServiceNowSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let (table, sys_id) = self.record(ticket).await?;
        // The journal table itself, narrowed to this record's work notes and comments that
        // contain the marker (a person's quote too: the author and the last line decide).
        let query = format!("element_id={sys_id}^elementINwork_notes,comments^valueLIKE{}", query_value(marker));
        let limit = PAGE.to_string();
        for page in 0..MAX_PAGES {
            let offset = (page * PAGE).to_string();
            let r = self
                .call(|| {
                    self.api.get("/api/now/table/sys_journal_field").query(&[
                        ("sysparm_query", query.as_str()),
                        ("sysparm_fields", "sys_id,element,value,sys_created_by"),
                        ("sysparm_limit", limit.as_str()),
                        ("sysparm_offset", offset.as_str()),
                    ])
                })
                .await?;
            let v = common::parse_listing(&self.api.name, &r.body, "journal")?;
            let entries = v["result"].as_array().cloned().unwrap_or_default();
            let found = entries.iter().find(|e| {
                e["value"].as_str().is_some_and(|t| crate::marker::ends_with_marker(t, marker))
                    && common::author_ok(self.user.as_deref(), common::id_text(&e["sys_created_by"]))
            });
            if let Some(e) = found {
                return Ok(Some(format!("{table}/{sys_id}#journal-{}", e["sys_id"].as_str().unwrap_or_default())));
            }
            if entries.len() < PAGE {
                break;
            }
        }
        Ok(None)
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let (table, sys_id) = self.record(ticket).await?;
        // Work notes are for the fulfillers; comments are seen by the caller.
        let field = match note.visibility {
            Visibility::Internal => "work_notes",
            Visibility::Public => "comments",
        };
        let body = json!({ field: render(note, self.api.inline_limit) });
        let path = format!("/api/now/table/{table}/{sys_id}");
        let fields = [("sysparm_fields", "sys_id,number")];
        let reply = self.call(|| self.api.http.patch(format!("{}{path}", self.api.base)).query(&fields).json(&body));
        reply.await?;
        Ok(format!("{table}/{sys_id}#{field}"))
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let (table, sys_id) = self.record(ticket).await?;
        let query = format!("task={sys_id}");
        let limit = PAGE.to_string();
        for page in 0..MAX_PAGES {
            let offset = (page * PAGE).to_string();
            let r = self
                .call(|| {
                    self.api.get("/api/now/table/task_time_worked").query(&[
                        ("sysparm_query", query.as_str()),
                        ("sysparm_fields", "sys_id,comments,sys_created_by"),
                        ("sysparm_limit", limit.as_str()),
                        ("sysparm_offset", offset.as_str()),
                    ])
                })
                .await?;
            let v = common::parse_listing(&self.api.name, &r.body, "time worked")?;
            let rows = v["result"].as_array().cloned().unwrap_or_default();
            if let Some(t) = rows.iter().find(|t| {
                t["comments"].as_str().is_some_and(|c| crate::time_entry::ends_with_marker(c, marker))
                    && common::author_ok(self.user.as_deref(), common::id_text(&t["sys_created_by"]))
            }) {
                return Ok(Some(format!("{table}/{sys_id}#time-worked-{}", t["sys_id"].as_str().unwrap_or_default())));
            }
            if rows.len() < PAGE {
                break;
            }
        }
        Ok(None)
    }

    async fn post_time_entry(&self, ticket: &str, entry: &crate::TimeEntry) -> Result<RemoteRef, SinkError> {
        let (table, sys_id) = self.record(ticket).await?;
        let (h, m) = (entry.minutes / 60, entry.minutes % 60);
        let mut body = json!({
            "task": sys_id,
            "time_worked": format!("1970-01-01 {h:02}:{m:02}:00"),
            "comments": entry.comment(entry.user.is_none()),
        });
        if let Some(u) = &entry.user {
            body["user"] = json!(u);
        }
        let r = self.call(|| self.api.post("/api/now/table/task_time_worked").json(&body)).await?;
        let id = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v["result"]["sys_id"].as_str().map(str::to_string));
        Ok(format!("{table}/{sys_id}#time-worked-{}", id.unwrap_or_default()))
    }

    async fn find_ticket_by_session_code(&self, code: &str) -> Result<Option<String>, SinkError> {
        let Some(field) = &self.session_field else { return Ok(None) };
        let path = format!("/api/now/table/{}", self.table);
        let query = format!("{field}={}", query_value(code));
        let r = self
            .call(|| {
                self.api.get(&path).query(&[
                    ("sysparm_query", query.as_str()),
                    ("sysparm_fields", "sys_id,number"),
                    ("sysparm_limit", "1"),
                ])
            })
            .await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let rec = v["result"].as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
        // The number is what people and routes know; the sys_id is kept for the first note.
        let (number, sys_id) = (rec["number"].as_str(), rec["sys_id"].as_str().filter(|s| is_sys_id(s)));
        if let (Some(n), Some(s)) = (number, sys_id) {
            let hit = (self.table.clone(), s.to_ascii_lowercase());
            self.resolved.lock().unwrap_or_else(|e| e.into_inner()).insert(n.to_ascii_uppercase(), hit);
        }
        Ok(number.map(str::to_string).or(sys_id.map(str::to_string)))
    }

    async fn check(&self) -> Result<(), SinkError> {
        let path = format!("/api/now/table/{}", self.table);
        self.call(|| self.api.get(&path).query(&[("sysparm_limit", "1"), ("sysparm_fields", "sys_id")]))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Field, Link};

    #[test]
    fn numbers_pick_their_table() {
        assert_eq!(table_of("INC0010001"), Some("incident"));
        assert_eq!(table_of("ritm0010001"), Some("sc_req_item"));
        assert_eq!(table_of("SCTASK0010001"), Some("sc_task"));
        assert_eq!(table_of("CHG0030002"), None);
        assert!(is_number("CHG0030002") && !is_number("INC") && !is_number("0010001") && !is_number("INC12a"));
        assert!(is_sys_id("9d385017c611228701d22104cc95c371") && !is_sys_id("INC0010001"));
    }

    #[test]
    fn code_tags_in_vendor_text_are_broken() {
        let note = Note {
            title: "[code]<img src=x onerror=alert(1)>[/code]".into(),
            fields: vec![Field { label: "Technician".into(), value: "[ CODE ]<b>x</b>[/Code]".into() }],
            links: vec![Link { label: "Report".into(), url: "https://x.test/r?a=1".into() }],
            body: Some("ticketsync-marker: tsd:v1:x:y:report".into()),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: "tsd:v1:t:1:report".into(),
        };
        let t = render(&note, 20_000);
        assert!(!t.to_ascii_lowercase().contains("[code") && !t.to_ascii_lowercase().contains("[/code"), "{t}");
        assert!(t.contains("[ code]<img src=x onerror=alert(1)>[ /code]"), "{t}");
        assert_eq!(t.matches("ticketsync-marker").count(), 1, "{t}");
        assert!(t.ends_with("\nticketsync-marker: tsd:v1:t:1:report"), "{t}");
    }

    #[test]
    fn errors_and_query_values() {
        let body = r#"{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}"#;
        assert_eq!(
            servicenow_error(body),
            "No Record found: Record doesn't exist or ACL restricts the record retrieval"
        );
        assert_eq!(query_value("s1-2^ORactive=true\n"), "s1-2ORactive=true");
    }
}
