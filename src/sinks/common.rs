//! Plumbing shared by the HTTP ticket sinks: one send that maps transport errors, and
//! the renderings each system displays (HTML for Zendesk, Freshservice and GLPI, Jira
//! wiki markup for JSM). Every rendering keeps the marker on a line of its own.

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

use super::SinkError;
use crate::note::Note;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Send through the hold registry ([`send_held`]) and read the whole answer (at most
/// `max_response` bytes); only transport problems (a refused redirect, an oversized body,
/// a rate-limit hold on the system) are errors here.
pub async fn send(sink: &str, max_response: u64, req: RequestBuilder) -> Result<Reply, SinkError> {
    let resp = send_held(sink, req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = crate::http::read_text(resp, max_response).await.map_err(|e| SinkError::from_body(sink, e))?;
    Ok(Reply { status, headers, body })
}

/// Send through the hold registry ([`crate::holds`]): nothing goes to a system that asked
/// to be left alone (429/503 with `Retry-After`, a rate-limit 403) until its time is up, on
/// any ticket; the caller gets a retry at the hold's end instead. A hold an answer asks for
/// is registered before the answer is returned.
pub async fn send_held(sink: &str, req: RequestBuilder) -> Result<reqwest::Response, SinkError> {
    match crate::holds::send(req).await {
        Ok(crate::holds::Sent::Answered(resp)) => Ok(resp),
        Ok(crate::holds::Sent::Held { left, origin }) => Err(SinkError::new(
            sink,
            super::SinkErrorKind::Retry { retry_after: Some(left) },
            format!("not sent: {origin} asked us to wait (rate limit), {} ms left", left.as_millis()),
        )),
        Err(e) => Err(SinkError::from_transport(sink, &e)),
    }
}

/// The value of the note's field with this label (e.g. "Session code").
pub fn field<'a>(note: &'a Note, label: &str) -> Option<&'a str> {
    note.fields.iter().find(|f| f.label == label).map(|f| f.value.as_str()).filter(|v| !v.is_empty() && *v != "-")
}

pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// HTML as Zendesk (`html_body`), Freshservice (`body`) and GLPI (`content`) render it:
/// one paragraph per block, `<br>` per line, clickable `<a href>` links, marker last.
pub fn to_html(note: &Note) -> String {
    let mut out = format!("<p><strong>{}</strong></p>\n", escape_html(&note.title));
    if !note.fields.is_empty() {
        let lines: Vec<String> =
            note.fields.iter().map(|f| format!("{}: {}", escape_html(&f.label), escape_html(&f.value))).collect();
        out.push_str(&format!("<p>{}</p>\n", lines.join("<br>\n")));
    }
    if !note.links.is_empty() {
        let lines: Vec<String> = note
            .links
            .iter()
            .map(|l| {
                let u = escape_html(&l.url);
                format!("{}: <a href=\"{u}\">{u}</a>", escape_html(&l.label))
            })
            .collect();
        out.push_str(&format!("<p>{}</p>\n", lines.join("<br>\n")));
    }
    if let Some(body) = note.body.as_deref().filter(|b| !b.trim().is_empty()) {
        let lines: Vec<String> = body.trim_end().lines().map(escape_html).collect();
        out.push_str(&format!("<p>{}</p>\n", lines.join("<br>\n")));
    }
    for a in &note.attachments {
        out.push_str(&format!("<p>{}:</p>\n<pre>{}</pre>\n", escape_html(&a.filename), escape_html(&a.text)));
    }
    out.push_str(&format!("<p>{}</p>", escape_html(&note.marker_line())));
    out
}

/// Several notes in one HTML comment (Zendesk batching), separated by a rule.
pub fn to_html_many(notes: &[Note]) -> String {
    notes.iter().map(to_html).collect::<Vec<_>>().join("\n<hr>\n")
}

/// Jira wiki markup (the JSM request comment body): `[label|url]` links are clickable.
pub fn to_jira_wiki(note: &Note) -> String {
    // Characters that start wiki markup are escaped so field values render literally.
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\").replace('[', "\\[").replace(']', "\\]").replace('{', "\\{").replace('|', "\\|")
    }
    let mut out = format!("*{}*\n\n", esc(&note.title));
    for f in &note.fields {
        out.push_str(&format!("{}: {}\n", esc(&f.label), esc(&f.value)));
    }
    if !note.links.is_empty() {
        out.push('\n');
        for l in &note.links {
            out.push_str(&format!("{}: [{}|{}]\n", esc(&l.label), l.url, l.url));
        }
    }
    if let Some(body) = note.body.as_deref().filter(|b| !b.trim().is_empty()) {
        out.push('\n');
        let lines: Vec<&str> = body.trim_end().lines().collect();
        let mut i = 0;
        while i < lines.len() {
            // A Markdown-style table in a body (e.g. Splashtop's file transfers) becomes a Jira
            // table: its first row the header when a |---| line follows, cells escaped.
            if let Some(cells) = table_row(lines[i]) {
                let header = lines.get(i + 1).and_then(|l| table_row(l)).is_some_and(|r| is_separator(&r));
                let cells: Vec<String> = cells.iter().map(|c| esc(&c.replace("\\|", "|"))).collect();
                let sep = if header { "||" } else { "|" };
                out.push_str(&format!("{sep} {} {sep}\n", cells.join(&format!(" {sep} "))));
                i += if header { 2 } else { 1 };
                continue;
            }
            out.push_str(&esc(lines[i]));
            out.push('\n');
            i += 1;
        }
    }
    for a in &note.attachments {
        out.push_str(&format!(
            "\n{}:\n{{noformat}}\n{}\n{{noformat}}\n",
            esc(&a.filename),
            // A transcript line must not close the block and turn the rest into markup.
            a.text.replace("{noformat}", "\\{noformat\\}")
        ));
    }
    out.push('\n');
    out.push_str(&note.marker_line());
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Field, Link, Visibility};

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

    #[test]
    fn html_escapes_and_links_are_anchors() {
        let h = to_html(&note());
        assert!(h.contains("<strong>Session &lt;1&gt;</strong>"), "{h}");
        assert!(h.contains("<a href=\"https://x.test/r?a=1&amp;b=2\">"), "{h}");
        assert!(h.ends_with("<p>ticketsync-marker: tsd:v1:t:1:report</p>"), "{h}");
        assert_eq!(field(&note(), "Session code"), Some("s1-2"));
    }

    #[test]
    fn wiki_links_are_clickable_and_marker_is_last_line() {
        let w = to_jira_wiki(&note());
        assert!(w.contains("Report: [https://x.test/r?a=1&b=2|https://x.test/r?a=1&b=2]"), "{w}");
        assert_eq!(w.lines().last(), Some("ticketsync-marker: tsd:v1:t:1:report"));
    }

    #[test]
    fn wiki_body_tables_become_jira_tables() {
        let mut n = note();
        n.body = Some("Files:\n| Time | File |\n|---|---|\n| 09:10 | fix\\|it [1].reg |\n".into());
        let w = to_jira_wiki(&n);
        assert!(w.contains("Files:\n|| Time || File ||\n| 09:10 | fix\\|it \\[1\\].reg |\n"), "{w}");
        assert!(!w.contains("---"), "{w}");
    }
}
