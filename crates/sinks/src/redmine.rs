//! Redmine: private note via `PUT /issues/{id}.json` (204), marker scan through
//! `GET /issues/{id}.json?include=journals` (only journals by the API user of
//! `/users/current.json` whose last line is the marker line).
//!
//! Vendor text is escaped for Textile, Markdown and CommonMark at once (see [`escape`]);
//! [`TextFormatting`] only picks how inlined attachments are fenced.
//!
//! Time entries (issue 20): `POST /time_entries.json` with `issue_id`, `hours`, `spent_on`,
//! `activity_id` (`time_activity_id`; Redmine answers 422 "Activity cannot be blank" without
//! one when no activity is the default), `comments` (the summary and the marker line;
//! Redmine keeps the line breaks, 1024 characters at most) and `user_id` for a mapped
//! technician ("Log time for other users"; 422 "User is invalid" for a user that is gone, then
//! posted as the API user and said so). The scan lists `GET /time_entries.json?issue_id=`
//! page by page (`offset`, `limit`, `total_count`). Redmine 5.0's time entry JSON names the
//! user the time is for, not its author: the marker's MAC is the proof there. Technicians by
//! e-mail: `GET /users.json?name=<mail>` (admin only; an exact `mail` match is required).
//! Documents: Redmine's REST API wiki pages Rest_TimeEntries and Rest_Users, and the wire
//! checked on Debian bookworm's Redmine 5.0.4 (`.ci/redmine-ci.sh`): a closed project answers
//! the time entry 422 `{"errors":["Issue is invalid"]}` (and a note 403); an unknown issue 422
//! "Project cannot be blank, Project is invalid, Issue is invalid"; time tracking off in the
//! project: 422 "Issue is invalid", and its entries are no longer listed.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderName;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Capabilities, RemoteRef, SinkError, TicketSink, TimeEntry};
use crate::http::Auth;
use crate::note::{Note, Visibility};
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, yes, BuildCtx, ConfigError, Errors, Outbound,
    RouteConfig, SecretUse, SinkSection,
};

pub struct RedmineSink {
    api: super::common::SinkHttp,
    private_notes: bool,
    /// `time_activity_id`: the activity of the time entries.
    time_activity: Option<u64>,
    text_formatting: TextFormatting,
    /// The id of the user the API key belongs to, for the marker scan's author check.
    api_user: super::common::ApiUser,
}

/// Redmine's global text formatting setting (not exposed by its REST API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextFormatting {
    #[default]
    Textile,
    Markdown,
    CommonMark,
}

/// Characters that start markup, a link, an image, a macro, a mention or an issue
/// reference in Textile, Redmine's Markdown or CommonMark. Written as numeric entities,
/// which all three render as the plain character (checked on a real Redmine).
fn is_special(c: char) -> bool {
    const SPECIAL: &str = "&<>\"![]{}|*_+^~@#\\`%=";
    SPECIAL.contains(c)
}

/// Escape vendor text for a Redmine note, whatever the text formatting: every markup
/// character (see [`is_special`]) as a numeric entity, a dot that ends the first word of a
/// line (Textile `h1.`, `bq.`, `pre.`, `bc..`, `notextile.`, `fn1.`; Markdown `1.`) and that of
/// `www.` (auto-links), a `-` that starts a line (lists, rules), and a `:` followed by
/// anything but a space or a digit after a digit (so no `https://`, `mailto:` or Redmine
/// `attachment:`/`source:` link can form, while "Start: 22:45:02" stays readable); `@` and
/// `#` so no mention or issue link does.
pub fn escape(s: &str) -> String {
    let s = s.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut first_word = true;
        let mut seen_text = false;
        let chars: Vec<char> = line.chars().collect();
        for (j, &c) in chars.iter().enumerate() {
            if c.is_whitespace() {
                if seen_text {
                    first_word = false;
                }
                out.push(c);
                continue;
            }
            let www = c == '.' && j >= 3 && chars[j - 3..j].iter().collect::<String>().eq_ignore_ascii_case("www");
            let lead_dash = c == '-' && !seen_text;
            let next = chars.get(j + 1).copied();
            let colon = c == ':'
                && !next.is_none_or(char::is_whitespace)
                && !(j > 0 && chars[j - 1].is_ascii_digit() && next.is_some_and(|n| n.is_ascii_digit()));
            seen_text = true;
            // A block signature's dot ends its word (`h1. `, `bc.. `, `1. `); a file name's doesn't.
            let block_dot = c == '.' && first_word && next.is_none_or(|n| n.is_whitespace() || n == '.');
            if is_special(c) || block_dot || www || lead_dash || colon {
                out.push_str(&format!("&#{};", c as u32));
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// The note's free text, [`escape`]d line by line, except that a Markdown-style table
/// (`| a | b |` rows, e.g. Splashtop's file transfers) stays a table: its pipes are kept and
/// every cell escaped; the header row (one followed by a `|---|` line) becomes Textile's
/// `|_. ` header, or keeps its separator for Markdown and CommonMark. A vendor line shaped
/// like a row becomes a table row too; its cells are escaped like any text.
fn escape_body(body: &str, fmt: TextFormatting) -> String {
    let body = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = body.split('\n').collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let Some(cells) = table_row(lines[i]) else {
            out.push(escape(lines[i]));
            i += 1;
            continue;
        };
        let header = lines.get(i + 1).and_then(|l| table_row(l)).is_some_and(|r| is_separator(&r));
        let cells: Vec<String> = cells.iter().map(|c| escape(&c.replace("\\|", "|"))).collect();
        match (fmt, header) {
            (TextFormatting::Textile, true) => out.push(format!("|_. {} |", cells.join(" |_. "))),
            (_, true) => {
                out.push(format!("| {} |", cells.join(" | ")));
                out.push(format!("|{}|", vec!["---"; cells.len()].join("|")));
            }
            (_, false) => out.push(format!("| {} |", cells.join(" | "))),
        }
        i += if header { 2 } else { 1 };
    }
    out.join("\n")
}

/// The cells of a `| a | b |` line; a `\\|` inside a cell is a literal pipe (kept escaped).
fn table_row(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    let inner = t.strip_prefix('|')?.strip_suffix('|').filter(|_| t.len() >= 2 && !t.ends_with("\\|"))?;
    let mut cells = vec![String::new()];
    let mut prev = ' ';
    for c in inner.chars() {
        if c == '|' && prev != '\\' {
            cells.push(String::new());
        } else {
            cells.last_mut().expect("one cell at least").push(c);
        }
        prev = c;
    }
    Some(cells.into_iter().map(|c| c.trim().to_string()).collect())
}

fn is_separator(cells: &[String]) -> bool {
    cells.iter().all(|c| !c.is_empty() && c.trim_matches(':').chars().all(|ch| ch == '-') && c.contains('-'))
}

/// An http(s) link target as Redmine auto-links it: characters that could end the URL
/// early or start markup around it percent-encoded.
fn link_target(u: &str) -> String {
    u.chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || "-._~:/?#&=%+,;".contains(c) => c.to_string(),
            c => {
                let mut b = [0u8; 4];
                c.encode_utf8(&mut b).bytes().map(|x| format!("%{x:02X}")).collect()
            }
        })
        .collect()
}

/// An attachment inlined in the note, literal in the chosen text formatting: Textile's
/// `<pre>` (a `<pre` or `</pre` inside, any case, broken with a space) or a code fence longer
/// than any run of fence characters inside.
fn fenced(text: &str, fmt: TextFormatting) -> String {
    match fmt {
        TextFormatting::Textile => {
            static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
            let re = RE.get_or_init(|| regex::Regex::new(r"(?i)<(\s*/?\s*pre)").expect("valid regex"));
            format!("<pre>\n{}\n</pre>", re.replace_all(text, "< $1"))
        }
        TextFormatting::Markdown | TextFormatting::CommonMark => {
            let longest = text
                .lines()
                .map(|l| l.trim_start().chars().take_while(|c| *c == '~' || *c == '`').count())
                .max()
                .unwrap_or(0);
            let fence = "~".repeat(longest.max(2) + 1);
            format!("{fence}\n{text}\n{fence}")
        }
    }
}

/// The note as Redmine receives it: title, fields, links, body and inlined attachments,
/// vendor text escaped ([`escape`]) and marker-neutralised, links only to http(s) targets
/// (auto-linked bare URLs), the marker line last.
pub fn render(note: &Note, fmt: TextFormatting, inline_limit: usize) -> String {
    let n = note.sanitized();
    let mut out = escape(&n.title);
    out.push_str("\n\n");
    for f in &n.fields {
        out.push_str(&format!("{}: {}\n", escape(&f.label), escape(&f.value)));
    }
    if !n.links.is_empty() {
        out.push('\n');
        for l in &n.links {
            out.push_str(&format!("{}: {}\n", escape(&l.label), link_target(&l.url)));
        }
    }
    if let Some(body) = n.body.as_deref().filter(|b| !b.trim().is_empty()) {
        out.push('\n');
        out.push_str(&escape_body(body.trim_end(), fmt));
        out.push('\n');
    }
    let mut text = out.trim_end().to_string();
    // Attachments go inline, inside this (private) note. A Redmine upload sent with a
    // private note is split off into a separate journal that is PUBLIC, and attachment
    // files have no visibility of their own: a chat transcript uploaded that way would
    // be readable by the customer (vendor-apis/sinks.md; shown against the real Redmine
    // by tests/it/splashtop.rs).
    for a in &n.attachments {
        let inline = a.inline_text(inline_limit);
        text.push_str(&format!("\n\n{}:\n{}", escape(&a.filename), fenced(inline.trim_end(), fmt)));
    }
    text.push_str("\n\n");
    text.push_str(&n.marker_line());
    text
}

impl super::common::HttpKnobs for RedmineSink {
    fn http_mut(&mut self) -> &mut super::common::SinkHttp {
        &mut self.api
    }
}

impl RedmineSink {
    pub fn new(name: &str, base_url: &str, api_key: SecretString, private_notes: bool, http: reqwest::Client) -> Self {
        Self {
            api: super::common::SinkHttp::new(
                name,
                base_url,
                Auth::Header { name: HeaderName::from_static("x-redmine-api-key"), value: api_key },
                http,
            ),
            private_notes,
            time_activity: None,
            text_formatting: TextFormatting::default(),
            api_user: Default::default(),
        }
    }

    /// `sinks.redmine.text_formatting`: how inlined attachments are fenced.
    pub fn with_text_formatting(mut self, fmt: TextFormatting) -> Self {
        self.text_formatting = fmt;
        self
    }

    /// The issue id as a number (time entries carry it as one).
    fn issue_number(&self, ticket: &str) -> Result<u64, SinkError> {
        let id = super::common::numeric_ticket(&self.api.name, ticket, "a Redmine issue id")?;
        id.parse().map_err(|_| {
            SinkError::new(
                &self.api.name,
                super::SinkErrorKind::Permanent,
                format!("{ticket:?} is not a Redmine issue id"),
            )
        })
    }

    /// `sinks.redmine.time_activity_id`: the activity of the time entries.
    pub fn with_time_activity(mut self, id: Option<u64>) -> Self {
        self.time_activity = id;
        self
    }

    /// One time entry, for `user` (a Redmine user id) or the API user.
    async fn post_entry(&self, ticket: &str, entry: &TimeEntry, user: Option<&str>) -> Result<RemoteRef, SinkError> {
        let issue = self.issue_number(ticket)?;
        // Redmine's comments column holds 1024 characters: the summary is cut, never the marker.
        let mut e = entry.clone();
        let room = 1024 - (entry.comment(true).chars().count() - entry.summary.chars().count()).min(1024);
        if e.summary.chars().count() > room {
            e.summary = e.summary.chars().take(room.saturating_sub(1)).collect::<String>() + "…";
        }
        let mut body = json!({"time_entry": {
            "issue_id": issue,
            "hours": (entry.hours() * 10_000.0).round() / 10_000.0,
            "spent_on": entry.spent_on.to_string(),
            "comments": e.comment(user.is_none()),
        }});
        if let Some(a) = self.time_activity {
            body["time_entry"]["activity_id"] = json!(a);
        }
        if let Some(u) = user {
            body["time_entry"]["user_id"] = u.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!(u));
        }
        let (_, answer) = self.send_time(self.api.post("/time_entries.json").json(&body)).await?;
        let v: Value = serde_json::from_str(&answer).unwrap_or_default();
        Ok(format!("issue:{issue}#time-entry-{}", v["time_entry"]["id"]))
    }

    /// [`RedmineSink::send`] for time entries: a 422 says why in Redmine's words, and what
    /// it usually means.
    async fn send_time(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String), SinkError> {
        self.send(req).await.map_err(|mut e| {
            if e.message.starts_with("Redmine rejected the note (HTTP 422)") {
                e.message = e.message.replacen("Redmine rejected the note", "Redmine refused the time entry", 1);
                if e.message.contains("Issue is invalid") {
                    e.message.push_str(
                        " (the issue's project is closed or archived, time tracking is off in it, or the issue does not exist)",
                    );
                }
            }
            e
        })
    }

    /// The id of the user the API key belongs to (`/users/current.json`), asked once.
    async fn api_user(&self) -> Result<Option<&str>, SinkError> {
        self.api_user
            .get(|| async {
                let (_, body) = self.send(self.api.get("/users/current.json")).await?;
                let v = super::common::parse_listing(&self.api.name, &body, "current user")?;
                Ok(super::common::id_text(&v["user"]["id"]))
            })
            .await
    }

    fn issue_url(&self, ticket: &str) -> Result<String, SinkError> {
        // Redmine issue ids are integers; anything else cannot be a Redmine ticket.
        let id = super::common::numeric_ticket(&self.api.name, ticket, "a Redmine issue id")?;
        Ok(format!("{}/issues/{id}.json", self.api.base))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String), SinkError> {
        let super::common::Reply { status, headers, body } = self.api.send(req).await?;
        if status.is_success() {
            return Ok((status, body));
        }
        let mut err = SinkError::from_status(&self.api.name, status, &headers, &redmine_errors(&body));
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
        &self.api.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { marker_scan: true, private_notes: true, attachments: false }
    }

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let url = self.issue_url(ticket)?;
        let (_, body) = self.send(self.api.http.get(&url).query(&[("include", "journals")])).await?;
        let v = super::common::parse_listing(&self.api.name, &body, "issue JSON")?;
        let me = self.api_user().await?;
        // Only a journal written by the API user whose last line is this marker line: a
        // marker quoted in a person's note, or inside another note, proves nothing.
        let found = v["issue"]["journals"].as_array().into_iter().flatten().find(|j| {
            j["notes"].as_str().is_some_and(|n| crate::marker::ends_with_marker(n, marker))
                && super::common::author_ok(me, super::common::id_text(&j["user"]["id"]))
        });
        Ok(found.map(|j| format!("issue:{}#journal-{}", ticket.trim_start_matches('#'), j["id"])))
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let url = self.issue_url(ticket)?;
        let private = note.visibility == Visibility::Internal && self.private_notes;
        let text = render(note, self.text_formatting, self.api.inline_limit);
        let body = json!({"issue": {"notes": text, "private_notes": private}});
        self.send(self.api.http.put(&url).json(&body)).await?;
        Ok(format!("issue:{}", ticket.trim_start_matches('#')))
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.send(self.api.get("/users/current.json")).await.map(|_| ())
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let issue = self.issue_number(ticket)?;
        let mut offset = 0u64;
        loop {
            let req = self.api.get("/time_entries.json").query(&[
                ("issue_id", issue.to_string()),
                ("limit", "100".to_string()),
                ("offset", offset.to_string()),
            ]);
            let (_, body) = self.send(req).await?;
            let v = super::common::parse_listing(&self.api.name, &body, "time entries")?;
            let page = v["time_entries"].as_array().cloned().unwrap_or_default();
            if let Some(t) = page.iter().find(|t| {
                t["comments"].as_str().is_some_and(|c| crate::time_entry::ends_with_marker(c, marker))
                    && t["issue"]["id"].as_u64() == Some(issue)
            }) {
                return Ok(Some(format!("issue:{issue}#time-entry-{}", t["id"])));
            }
            offset += page.len() as u64;
            if page.is_empty() || offset >= v["total_count"].as_u64().unwrap_or(0) {
                return Ok(None);
            }
        }
    }

    async fn post_time_entry(&self, ticket: &str, entry: &TimeEntry) -> Result<RemoteRef, SinkError> {
        let mut user = entry.user.clone();
        if user.is_none() {
            if let Some(mail) = entry.technician_email.as_deref() {
                user = self.user_by_email(mail).await?;
            }
        }
        match self.post_entry(ticket, entry, user.as_deref()).await {
            // A mapped user that is gone (or may not log time): nothing was written; the entry
            // goes in as the API user, and says so, rather than not at all. `doctor` reports
            // the mapping.
            Err(e) if user.is_some() && e.message.contains("User is invalid") => {
                tracing::warn!(sink = %self.api.name, ticket, user = ?user, "technician's Redmine user refused; time entry posted as the API user");
                self.post_entry(ticket, entry, None).await
            }
            r => r,
        }
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<String>, SinkError> {
        let req = self.api.get("/users.json").query(&[("name", email)]);
        match self.send(req).await {
            Ok((_, body)) => {
                let v = super::common::parse_listing(&self.api.name, &body, "users")?;
                let found = v["users"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|u| u["mail"].as_str().is_some_and(|m| m.trim().eq_ignore_ascii_case(email.trim())));
                Ok(found.and_then(|u| super::common::id_text(&u["id"])))
            }
            // Only an administrator may list users: without that right, nobody is found.
            Err(e) if e.message.contains("HTTP 403") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn user_exists(&self, user: &str) -> Result<Option<bool>, SinkError> {
        let Ok(id) = user.trim().parse::<u64>() else { return Ok(Some(false)) };
        match self.send(self.api.get(&format!("/users/{id}.json"))).await {
            Ok(_) => Ok(Some(true)),
            Err(e) if e.message.contains("HTTP 404") => Ok(Some(false)),
            Err(e) if e.message.contains("HTTP 403") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn hold_probe(&self) -> Option<reqwest::RequestBuilder> {
        Some(self.api.hold_probe())
    }
}

/// `[sinks.redmine]` before it is read: its name, its secret keys and what `init` asks.
impl crate::section::Described for RedmineConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "redmine",
        section: "sinks.redmine",
        secrets: &["sinks.redmine.api_key"],
        setup: &crate::section::Plain {
            keys: &[crate::section::InitKey::new("url", "Redmine URL (https://…)", None)],
            secrets: &["api_key"],
        },
    };
}

// Its section, `[sinks.redmine]`: keys, checks, secrets and how the sink is built.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedmineConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub url: String,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Session notes are private notes (visible to agents only).
    #[serde(default = "yes")]
    pub private_notes: bool,
    /// Redmine's text formatting (Administration > Settings > General): `textile` (default),
    /// `markdown` or `common_mark`. Vendor text is escaped for all three; this picks how
    /// inlined attachments are fenced (`<pre>` or a code fence).
    #[serde(default)]
    pub text_formatting: crate::redmine::TextFormatting,
    /// The activity (`/enumerations/time_entry_activities.json`) of the time entries;
    /// Redmine's default activity when not set.
    #[serde(default)]
    pub time_activity_id: Option<u64>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::section::OutboundConfig,
}

crate::section::outbound_section!(RedmineConfig, "sinks.redmine");

impl RedmineConfig {
    pub fn api_key_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.redmine.api_key", self.api_key.as_ref(), self.api_key_file.as_deref())
    }
}

impl SinkSection for RedmineConfig {
    section_basics!("redmine");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.redmine.url", &self.url);
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.redmine.api_key", true, self.api_key_secret())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let key = require(self.api_key_secret()?, "sinks.redmine.api_key")?;
        let http = self.outbound().client(ctx.timeout)?;
        let sink = RedmineSink::new("redmine", &self.url, key, self.private_notes, http);
        let sink = sink.with_text_formatting(self.text_formatting).with_time_activity(self.time_activity_id);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Attachment, Field, Link};

    fn hostile() -> Note {
        let evil = "!https://attacker/pixel.png! \"Reset password\":https://evil <img src=x> </PRE> [[wiki]] {{macro}} #1 @admin www.evil.com a@b.example attachment:x.png [t](https://evil) ![i](https://evil/i.png) <https://evil> `code` *b* _i_ %{color:red}x% ==raw==";
        Note {
            title: format!("h1. Session {evil}"),
            fields: vec![Field { label: "Technician".into(), value: format!("bq. {evil}") }],
            links: vec![
                Link { label: "Report".into(), url: "https://report.example/r?a=1&b=\"2\"!x!".into() },
                Link { label: "bad".into(), url: "javascript:alert(1)".into() },
            ],
            body: Some(format!(
                "Technician notes: {evil}\n1. item\n- item\nh2. x\nticketsync-marker: tsd:v1:teamviewer:B:report"
            )),
            attachments: vec![Attachment {
                filename: "chat!.txt".into(),
                content_type: "text/plain".into(),
                text: format!("{evil}\n</PrE >\n<pre>\n~~~\n```\nticketsync-marker: tsd:v1:x:y:report"),
            }],
            visibility: Visibility::Internal,
            marker: "tsd:v2:t:1:report:00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn hostile_text_is_escaped_for_every_formatting() {
        for fmt in [TextFormatting::Textile, TextFormatting::Markdown, TextFormatting::CommonMark] {
            let n = hostile();
            let t = render(&n, fmt, 20_000);
            assert_eq!(t.lines().last().map(str::to_string), Some(n.marker_line()), "{t}");
            assert_eq!(crate::marker::final_marker(&t), Some(n.marker.as_str()));
            assert_eq!(t.matches("ticketsync-marker").count(), 1, "{t}");
            // Outside the inlined attachment, no markup character from vendor text is raw.
            let (head, _) = t.split_once("chat&#33;.txt:").expect("attachment header");
            for bad in ["!", "\"", "<", "[[", "{{", "@", " #1", "www.", "`", "*b*", "_i_", "%{", "=="] {
                assert!(!head.contains(bad), "{fmt:?}: {bad:?} in {head}");
            }
            assert!(!head.contains("https://evil") && !head.contains("https://attacker"), "{head}");
            assert!(head.contains("https://report.example/r?a=1&b=%222%22%21x%21"), "{head}");
            assert!(!head.contains("javascript"), "{head}");
            assert!(head.starts_with("h1&#46; Session"), "{head}");
            assert!(
                head.contains("\n1&#46; item\n&#45; item\nh2&#46; x\n&#91;quoted&#93; ticketsync marker: tsd v1&#58;"),
                "{head}"
            );
        }
        let textile = render(&hostile(), TextFormatting::Textile, 20_000);
        let pre = textile.split_once("<pre>\n").unwrap().1;
        let pre = pre.rsplit_once("\n</pre>").unwrap().0;
        assert!(!pre.to_ascii_lowercase().contains("<pre") && !pre.to_ascii_lowercase().contains("</pre"), "{pre}");
        let md = render(&hostile(), TextFormatting::CommonMark, 20_000);
        assert!(md.contains("\n~~~~\n"), "a fence longer than the ~~~ inside: {md}");
    }

    #[test]
    fn body_tables_stay_tables_with_escaped_cells() {
        let body = "Files:\n| Time | File |\n|---|---|\n| 09:10 | fix\\|it [1]!x!.reg |\n| a | b";
        let t = escape_body(body, TextFormatting::Textile);
        assert_eq!(
            t,
            "Files:\n|_. Time |_. File |\n| 09:10 | fix&#124;it &#91;1&#93;&#33;x&#33;.reg |\n&#124; a &#124; b"
        );
        let m = escape_body(body, TextFormatting::CommonMark);
        assert!(m.starts_with("Files:\n| Time | File |\n|---|---|\n| 09:10 | fix&#124;it"), "{m}");
    }

    #[test]
    fn plain_values_stay_readable() {
        assert_eq!(escape("Jon Snow"), "Jon Snow");
        assert_eq!(escape("ACME-LT-042 (1234567890)"), "ACME-LT-042 (1234567890)");
        assert_eq!(escape("Start: 2024-04-16 22:45:02 CEST"), "Start: 2024-04-16 22:45:02 CEST");
        assert_eq!(escape("h1. x https://e mailto:a"), "h1&#46; x https&#58;//e mailto&#58;a");
        assert_eq!(escape("printer 10.0.0.1 rebooted."), "printer 10.0.0.1 rebooted.");
    }
}
