//! Plumbing shared by the HTTP ticket sinks: one send that maps transport errors, and
//! the renderings each system displays (HTML for Zendesk, Freshservice and GLPI, Jira
//! wiki markup for JSM). Every rendering keeps the marker on a line of its own.

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

use super::SinkError;
use crate::http::SendError;
use crate::note::Note;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Send through the vendor client's one send ([`crate::http::send`]: the hold registry,
/// the body read under `max_response` bytes) without waiting out a hold: the outbox retries
/// at the hold's end. Only transport problems (a refused redirect, an oversized body, a
/// rate-limit hold on the system) are errors here.
pub async fn send(sink: &str, max_response: u64, req: RequestBuilder) -> Result<Reply, SinkError> {
    let a = crate::http::send(req, max_response, None).await.map_err(|e| send_error(sink, e))?;
    let status = StatusCode::from_u16(a.status).expect("reqwest answered a valid status");
    Ok(Reply { status, body: a.text(), headers: a.headers })
}

/// Send through the hold registry ([`crate::holds`]), leaving the body to the caller (a
/// webhook's 2xx is its whole answer): nothing goes to a system that asked to be left alone
/// (429/503 with `Retry-After`, a rate-limit 403) until its time is up, on any ticket; the
/// caller gets a retry at the hold's end instead. A hold an answer asks for is registered
/// before the answer is returned.
pub async fn send_held(sink: &str, req: RequestBuilder) -> Result<reqwest::Response, SinkError> {
    match crate::holds::send(req).await {
        Ok(crate::holds::Sent::Answered(resp)) => Ok(resp),
        Ok(crate::holds::Sent::Held { left, origin }) => Err(send_error(sink, SendError::Held { left, origin })),
        Err(e) => Err(send_error(sink, SendError::Transport(e))),
    }
}

/// A send that got no answer, as the sink's error.
fn send_error(sink: &str, e: SendError) -> SinkError {
    match e {
        SendError::Held { left, origin } => SinkError::new(
            sink,
            super::SinkErrorKind::Retry { retry_after: Some(left) },
            format!("not sent: {origin} asked us to wait (rate limit), {} ms left", left.as_millis()),
        ),
        SendError::Transport(e) => SinkError::from_transport(sink, &e),
        SendError::Body { error, .. } => SinkError::from_body(sink, error),
    }
}

/// What every HTTP sink holds to reach its system: the client, the base URL, the
/// credentials and the body cap.
pub struct SinkHttp {
    pub name: String,
    pub base: String,
    pub http: reqwest::Client,
    pub auth: crate::http::Auth,
    /// Cap on one answer's body (`max_response_bytes`).
    pub max_response: u64,
    /// `notes.inline_attachment_max_chars`: where inlined attachments are cut.
    pub inline_limit: usize,
}

/// The inline-attachment cut a sink uses until its section says otherwise.
pub const DEFAULT_INLINE_LIMIT: usize = 20_000;

/// The knobs every HTTP sink takes from the configuration, written once: a sink hands out
/// its [`SinkHttp`] and gets the builders.
pub trait HttpKnobs: Sized {
    fn http_mut(&mut self) -> &mut SinkHttp;

    /// `notes.inline_attachment_max_chars`: the cut of inlined attachments.
    fn with_inline_limit(mut self, chars: usize) -> Self {
        self.http_mut().inline_limit = chars;
        self
    }

    /// The component's `max_response_bytes`: answers are read up to this many bytes.
    fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.http_mut().max_response = bytes;
        self
    }
}

/// A ticket id that must be a positive decimal number (`#42` or `42`), or a permanent error
/// naming the system's own word for it (`what`: "a Redmine issue id").
pub fn numeric_ticket<'t>(sink: &str, ticket: &'t str, what: &str) -> Result<&'t str, SinkError> {
    let id = ticket.trim_start_matches('#');
    match is_decimal(id) {
        true => Ok(id),
        false => Err(not_a_ticket(sink, ticket, what)),
    }
}

/// Non-empty and ASCII digits only.
pub fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The permanent error for a ticket reference the system cannot have.
pub fn not_a_ticket(sink: &str, ticket: &str, what: &str) -> SinkError {
    SinkError::new(sink, super::SinkErrorKind::Permanent, format!("ticket {ticket:?} is not {what}"))
}

impl SinkHttp {
    pub fn new(name: &str, base_url: &str, auth: crate::http::Auth, http: reqwest::Client) -> Self {
        SinkHttp {
            name: name.into(),
            base: base_url.trim_end_matches('/').to_string(),
            http,
            auth,
            max_response: crate::http::DEFAULT_MAX_RESPONSE_BYTES,
            inline_limit: DEFAULT_INLINE_LIMIT,
        }
    }

    /// `GET {base}{path}`, not yet authenticated.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    /// `POST {base}{path}`, not yet authenticated.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    /// `req` with the sink's credentials.
    pub fn authed(&self, req: RequestBuilder) -> RequestBuilder {
        self.auth.apply_static(req)
    }

    /// `PUT {base}{path}`, not yet authenticated.
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.http.put(format!("{}{path}", self.base))
    }

    /// [`send`] with the sink's credentials.
    pub async fn send(&self, req: RequestBuilder) -> Result<Reply, SinkError> {
        send(&self.name, self.max_response, self.authed(req)).await
    }

    /// A request to the system's base URL, built only to find its hold.
    pub fn hold_probe(&self) -> RequestBuilder {
        self.authed(self.http.get(&self.base))
    }
}

/// The value of the note's field with this label (e.g. "Session code").
pub fn field<'a>(note: &'a Note, label: &str) -> Option<&'a str> {
    note.fields.iter().find(|f| f.label == label).map(|f| f.value.as_str()).filter(|v| !v.is_empty() && *v != "-")
}

/// Entity-escape text for HTML content and attribute values: nothing from it survives as
/// a tag, an attribute or an entity.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// HTML as Zendesk (`html_body`), Freshservice (`body`) and GLPI (`content`) render it:
/// one paragraph per block, `<br>` per line, marker last. Every piece of vendor text is
/// entity-escaped and marker-neutralised ([`Note::sanitized`]); the only anchors are the
/// note's links, and only to http(s) targets.
pub fn to_html(note: &Note) -> String {
    let note = note.sanitized();
    let lines = |s: &str| s.trim_end().lines().map(escape_html).collect::<Vec<_>>().join("<br>\n");
    let mut out = format!("<p><strong>{}</strong></p>\n", lines(&note.title));
    if !note.fields.is_empty() {
        let ls: Vec<String> = note.fields.iter().map(|f| format!("{}: {}", lines(&f.label), lines(&f.value))).collect();
        out.push_str(&format!("<p>{}</p>\n", ls.join("<br>\n")));
    }
    if !note.links.is_empty() {
        let ls: Vec<String> = note
            .links
            .iter()
            .map(|l| {
                let u = escape_html(&l.url);
                format!("{}: <a href=\"{u}\">{u}</a>", lines(&l.label))
            })
            .collect();
        out.push_str(&format!("<p>{}</p>\n", ls.join("<br>\n")));
    }
    if let Some(body) = note.body.as_deref().filter(|b| !b.trim().is_empty()) {
        out.push_str(&format!("<p>{}</p>\n", lines(body)));
    }
    for a in &note.attachments {
        out.push_str(&format!("<p>{}:</p>\n<pre>{}</pre>\n", lines(&a.filename), escape_html(&a.text)));
    }
    out.push_str(&format!("<p>{}</p>", escape_html(&note.marker_line())));
    out
}

/// Several notes in one HTML comment (Zendesk batching), separated by a rule. Each note's
/// marker is the last line of its own part ([`html_note_parts`] splits them again).
pub fn to_html_many(notes: &[Note]) -> String {
    notes.iter().map(to_html).collect::<Vec<_>>().join("\n<hr>\n")
}

/// Jira wiki markup (the JSM request comment body). Vendor text (title, fields, body,
/// attachments) goes inside `{noformat}` blocks, where Jira renders no markup, link, image
/// or macro; a `{noformat` inside it is broken up so it cannot close the block. The links
/// are `[label|url]` with an http(s) target and an escaped label; the marker line is last.
pub fn to_jira_wiki(note: &Note) -> String {
    let note = note.sanitized();
    let mut vendor = String::new();
    vendor.push_str(note.title.trim_end());
    vendor.push_str("\n\n");
    for f in &note.fields {
        vendor.push_str(&format!("{}: {}\n", f.label, f.value));
    }
    if let Some(body) = note.body.as_deref().filter(|b| !b.trim().is_empty()) {
        vendor.push('\n');
        vendor.push_str(body.trim_end());
        vendor.push('\n');
    }
    let mut out = String::from("*Remote support note*\n");
    out.push_str(&noformat(&vendor));
    if !note.links.is_empty() {
        out.push('\n');
        for l in &note.links {
            out.push_str(&format!("[{}|{}]\n", wiki_text(&l.label), wiki_url(&l.url)));
        }
    }
    for a in &note.attachments {
        out.push_str(&format!("\n{}:\n{}", wiki_text(&a.filename), noformat(&a.text)));
    }
    out.push('\n');
    out.push_str(&note.marker_line());
    out
}

/// A `{noformat}` block around `text`; a `{noformat` (any case) inside is broken with a space.
fn noformat(text: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"(?i)\{(\s*)noformat").expect("valid regex"));
    let inner = re.replace_all(text.trim_end(), "{ ${1}noformat");
    format!("{{noformat}}\n{inner}\n{{noformat}}\n")
}

/// Text outside `{noformat}` (link labels, file names): every character that starts wiki
/// markup (`*_-+^~?!#|[]{}()@:\\` and friends) backslash-escaped, line breaks flattened.
fn wiki_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_ascii_punctuation()
                && !matches!(c, '.' | ',' | '/' | '\'' | '"' | ';' | '=' | '%' | '&' | '$') =>
            {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A link target for `[label|url]`: already an http(s) URL ([`Note::sanitized`]); the
/// characters that would end the link or start markup are percent-encoded.
fn wiki_url(u: &str) -> String {
    u.chars()
        .map(|c| match c {
            '|' | ']' | '[' | '{' | '}' | '!' | ' ' | '\\' | '^' | '~' | '*' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// The text of HTML as a reader sees it: block ends and `<br>` become line breaks, tags
/// go, entities are decoded. For marker scans of Zendesk, Freshservice and GLPI notes.
pub fn html_to_text(html: &str) -> String {
    static BREAKS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = BREAKS.get_or_init(|| {
        regex::Regex::new(r"(?i)<\s*br\s*/?\s*>|<\s*/\s*(p|div|pre|li|h[1-6]|tr|blockquote)\s*>|<\s*hr\s*/?\s*>")
            .expect("valid regex")
    });
    let s = re.replace_all(html, "\n");
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode_entities(&out)
}

/// Decode named entities HTML editors produce and numeric ones (`&#39;`, `&#x27;`).
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &tail[1..e];
            let c = match ent {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse::<u32>().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The notes in one HTML comment: [`to_html_many`] separates batched notes with `<hr>`,
/// which vendor text cannot produce (it is escaped). Each part is reduced to its text.
pub fn html_note_parts(html: &str) -> Vec<String> {
    static HR: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = HR.get_or_init(|| regex::Regex::new(r"(?i)<\s*hr\s*/?\s*>").expect("valid regex"));
    re.split(html).map(html_to_text).collect()
}

/// Whether one HTML note (or one of the notes batched in it) ends with `marker`'s line.
pub fn html_ends_with_marker(html: &str, marker: &str) -> bool {
    html_note_parts(html).iter().any(|t| crate::marker::ends_with_marker(t, marker))
}

/// The id of the API user a sink writes as, asked once and kept ("where the ticket system
/// exposes the author, only notes written by the API user" count in a marker scan).
#[derive(Default)]
pub struct ApiUser(tokio::sync::OnceCell<Option<String>>);

impl ApiUser {
    /// `fetch` answers the id (or `None` when the system does not say); an error is not
    /// kept, so the next scan asks again.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Option<&str>, SinkError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, SinkError>>,
    {
        Ok(self.0.get_or_try_init(fetch).await?.as_deref())
    }
}

/// A JSON id (number or string) as text.
pub fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The author check of a scan: a note counts when its author is the API user. Where the
/// listing names no author, or the system did not say who the API user is, only the final
/// marker line (and the MAC) decide.
pub fn author_ok(own: Option<&str>, author: Option<String>) -> bool {
    match (own, author) {
        (Some(me), Some(a)) => me == a,
        _ => true,
    }
}

/// Decode the few entities our HTML and GLPI's stored content use, for marker scans.
pub fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#039;", "'").replace("&amp;", "&")
}

/// A listing the marker scan reads. An unreadable one is retried: a proxy's error page or
/// a cut-off body says nothing about whether the note is there.
pub fn parse_listing(sink: &str, body: &str, what: &str) -> Result<serde_json::Value, super::SinkError> {
    serde_json::from_str(body).map_err(|e| {
        super::SinkError::new(
            sink,
            super::SinkErrorKind::Retry { retry_after: None },
            format!("unreadable {what}: {e}"),
        )
    })
}

/// Plain text as the PSAs (ConnectWise, Autotask) store a note: title, fields, links, body,
/// attachments inlined (cut at `inline_limit`), vendor text [`Note::sanitized`], the marker
/// line last. No markup: these systems show the text as typed.
pub fn to_plain(note: &Note, inline_limit: usize) -> String {
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

/// The `TicketSink` methods every HTTP sink that keeps its client in `self.api` and scans the
/// ticket for markers says the same way: its name, the request its host's hold is probed
/// with, and what it can do (private notes, the marker scan, no attachments).
macro_rules! scanning_http_sink {
    () => {
        fn name(&self) -> &str {
            &self.api.name
        }

        fn hold_probe(&self) -> Option<reqwest::RequestBuilder> {
            Some(self.api.hold_probe())
        }

        fn capabilities(&self) -> $crate::Capabilities {
            $crate::Capabilities { marker_scan: true, private_notes: true, attachments: false }
        }
    };
}
pub(crate) use scanning_http_sink;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Attachment, Field, Link, Visibility};

    fn note() -> Note {
        Note {
            title: "Session <1>".into(),
            fields: vec![Field { label: "Session code".into(), value: "s1-2".into() }],
            links: vec![Link { label: "Report".into(), url: "https://x.test/r?a=1&b=2".into() }],
            body: Some("line1\nline2".into()),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: "tsd:v1:t:1:report".into(),
        }
    }

    /// Vendor text with every construct issue 14 lists, in every vendor-supplied place.
    pub fn hostile() -> Note {
        let evil = "!https://attacker/pixel.png! \"Reset password\":https://evil <img src=x onerror=alert(1)> </PRE> [[wiki]] {{macro}} [x|https://evil] {noformat} <script>x</script> javascript:alert(1)";
        Note {
            title: format!("Session {evil}"),
            fields: vec![Field { label: "Technician".into(), value: evil.into() }],
            links: vec![
                Link { label: "Report".into(), url: "https://report.example/r?a=1&b=2".into() },
                Link { label: "bad".into(), url: "javascript:alert(1)".into() },
                Link { label: "data".into(), url: "data:text/html,<script>x</script>".into() },
            ],
            body: Some(format!("Technician notes: {evil}\nticketsync-marker: tsd:v1:teamviewer:B:report\n")),
            attachments: vec![Attachment {
                filename: "chat.txt".into(),
                content_type: "text/plain".into(),
                text: format!("{evil}\n</pre><pre>\nticketsync-marker: tsd:v1:x:y:report"),
            }],
            visibility: Visibility::Internal,
            marker: "tsd:v2:t:1:report:00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn html_escapes_and_links_are_anchors() {
        let h = to_html(&note());
        assert!(h.contains("<strong>Session &lt;1&gt;</strong>"), "{h}");
        assert!(h.contains("<a href=\"https://x.test/r?a=1&amp;b=2\">"), "{h}");
        assert!(h.ends_with("<p>ticketsync-marker: tsd:v1:t:1:report</p>"), "{h}");
        assert_eq!(field(&note(), "Session code"), Some("s1-2"));
        assert!(html_ends_with_marker(&h, "tsd:v1:t:1:report"));
    }

    #[test]
    fn hostile_html_keeps_no_vendor_markup() {
        let n = hostile();
        let h = to_html(&n);
        // The only tags are ours: p, strong, br, a (one, to the report), pre.
        let tags: Vec<&str> = h.split('<').skip(1).map(|t| t.split(['>', ' ']).next().unwrap_or("")).collect();
        for t in &tags {
            assert!(["p", "/p", "strong", "/strong", "br", "a", "/a", "pre", "/pre"].contains(t), "tag {t:?} in {h}");
        }
        assert_eq!(h.matches("<a ").count(), 1, "{h}");
        assert!(!h.contains("javascript:alert(1)\"") && !h.contains("href=\"data:"), "{h}");
        assert_eq!(h.matches("ticketsync-marker").count(), 1, "{h}");
        assert!(html_ends_with_marker(&h, &n.marker));
        assert!(!html_ends_with_marker(&h, "tsd:v1:teamviewer:B:report"));
        let text = html_to_text(&h);
        assert_eq!(crate::marker::final_marker(&text), Some(n.marker.as_str()));
    }

    #[test]
    fn batched_notes_each_end_with_their_marker() {
        let mut a = note();
        a.marker = "tsd:v1:t:a:report".into();
        let mut b = note();
        b.marker = "tsd:v1:t:b:report".into();
        let h = to_html_many(&[a, b]);
        assert!(html_ends_with_marker(&h, "tsd:v1:t:a:report"));
        assert!(html_ends_with_marker(&h, "tsd:v1:t:b:report"));
        assert!(!html_ends_with_marker(&h, "tsd:v1:t:c:report"));
    }

    #[test]
    fn html_text_decodes_entities_and_breaks() {
        assert_eq!(html_to_text("<div>a<BR/>b &amp;lt; &#39;c&#x27;</div><p>d</p>"), "a\nb &lt; 'c'\nd\n");
        assert_eq!(decode_entities("&bogus; & &#xZZ; &#128512;"), "&bogus; & &#xZZ; 😀");
    }

    #[test]
    fn wiki_links_are_clickable_and_marker_is_last_line() {
        let w = to_jira_wiki(&note());
        assert!(w.contains("[Report|https://x.test/r?a=1&b=2]"), "{w}");
        assert_eq!(w.lines().last(), Some("ticketsync-marker: tsd:v1:t:1:report"));
        assert!(w.contains("{noformat}\nSession <1>\n\nSession code: s1-2\n\nline1\nline2\n{noformat}"), "{w}");
    }

    #[test]
    fn hostile_wiki_keeps_vendor_text_inside_noformat() {
        let n = hostile();
        let w = to_jira_wiki(&n);
        assert_eq!(w.lines().last().map(str::to_string), Some(n.marker_line()));
        assert_eq!(w.matches("ticketsync-marker").count(), 1, "{w}");
        // Outside the noformat blocks: only our heading, link lines and file names.
        let mut inside = false;
        for line in w.lines() {
            if line == "{noformat}" {
                inside = !inside;
                continue;
            }
            if inside {
                assert!(!line.to_ascii_lowercase().contains("{noformat}"), "{line}");
                continue;
            }
            assert!(!line.contains("https://evil") && !line.contains("!https") && !line.contains("{{"), "{line}");
        }
        assert!(!inside, "blocks balanced: {w}");
        assert!(w.contains("[Report|https://report.example/r?a=1&b=2]"), "{w}");
        assert!(!w.contains("javascript:alert(1)]") && !w.contains("|data:"), "{w}");
    }
}
