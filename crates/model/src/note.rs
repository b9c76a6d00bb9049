//! The vendor-neutral note a sink receives, and its rendering helpers.
//!
//! A note is built once, when its delivery is enqueued, and stored as JSON in the
//! outbox row so that a retry days later sends exactly what was decided then.

use serde::{Deserialize, Serialize};

/// Who may read the note on the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Private / internal note, visible to agents only.
    Internal,
    /// Public reply, visible to the requester.
    Public,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// A file to attach where the sink supports attachments (inline text otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// One line, e.g. "TeamViewer session s119-457-589 ended".
    pub title: String,
    pub fields: Vec<Field>,
    pub links: Vec<Link>,
    /// Free text shown under the fields (session notes, instructions).
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub visibility: Visibility,
    /// Stable marker, `tsd:v2:teamviewer:<id>:report:<mac>` (v1 without the MAC for notes
    /// queued before issue 14); the sink writes it as the note's last line so a later scan
    /// can prove the note already landed.
    pub marker: String,
}

impl Note {
    /// The footer line carrying the marker: the note's last line in every sink, where a
    /// scan accepts it ([`crate::marker::ends_with_marker`]).
    pub fn marker_line(&self) -> String {
        format!("{}{}", crate::marker::LINE_PREFIX, self.marker)
    }

    /// This note as every sink must render it (issue 14): each line of vendor-supplied text
    /// that mentions the marker prefix neutralised ([`crate::marker::neutralise`]), and only
    /// the links whose target is an absolute http(s) URL kept. The marker is ours and stays.
    pub fn sanitized(&self) -> Note {
        use crate::marker::{is_safe_url, mentions_marker, neutralise};
        let n = |s: &str| neutralise(s).into_owned();
        Note {
            title: n(&self.title),
            fields: self.fields.iter().map(|f| Field { label: n(&f.label), value: n(&f.value) }).collect(),
            links: self
                .links
                .iter()
                // A target that spells the marker prefix is no session link: dropped with the rest.
                .filter(|l| is_safe_url(l.url.trim()) && !mentions_marker(&l.url))
                .map(|l| Link { label: n(&l.label), url: l.url.trim().to_string() })
                .collect(),
            body: self.body.as_deref().map(n),
            attachments: self
                .attachments
                .iter()
                .map(|a| Attachment {
                    filename: n(&a.filename),
                    content_type: a.content_type.clone(),
                    text: n(&a.text),
                })
                .collect(),
            visibility: self.visibility,
            marker: self.marker.clone(),
        }
    }

    /// Plain-text rendering (the webhook's `text`): one field per line, bare URLs, vendor
    /// text [`Note::sanitized`], the marker line last. Not markup-escaped: sinks that render
    /// markup have their own renderer.
    pub fn to_plain_text(&self) -> String {
        let safe = self.sanitized();
        let s = &safe;
        let mut out = String::new();
        out.push_str(&s.title);
        out.push_str("\n\n");
        for f in &s.fields {
            out.push_str(&format!("{}: {}\n", f.label, f.value));
        }
        if !s.links.is_empty() {
            out.push('\n');
            for l in &s.links {
                out.push_str(&format!("{}: {}\n", l.label, l.url));
            }
        }
        if let Some(body) = s.body.as_deref().filter(|b| !b.trim().is_empty()) {
            out.push('\n');
            out.push_str(body.trim_end());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&s.marker_line());
        out
    }
}

impl Note {
    /// This note with each attachment's text as [`Attachment::inline_text`] cuts it, for the
    /// sinks that render attachments inline.
    pub fn with_inline_cut(&self, max_chars: usize) -> Note {
        let mut n = self.clone();
        for a in &mut n.attachments {
            a.text = a.inline_text(max_chars);
        }
        n
    }
}

impl Attachment {
    /// The text for sinks that put attachments inline: cut at `max_chars` characters, with
    /// a line saying so. The full text stays in the database (the outbox row's note and the
    /// session's raw record), so nothing is lost by the cut.
    pub fn inline_text(&self, max_chars: usize) -> String {
        let total = self.text.chars().count();
        if total <= max_chars {
            return self.text.clone();
        }
        let mut out: String = self.text.chars().take(max_chars).collect();
        out.push_str(&format!(
            "\n[… cut at {max_chars} of {total} characters; the full text is kept in the ticketsync database]"
        ));
        out
    }
}

/// "1h 02m 05s" style duration used in notes.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86400, (secs % 86400) / 3600, (secs % 3600) / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m:02}m {s:02}s")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> Note {
        Note {
            title: "TeamViewer session s119-457-589".into(),
            fields: vec![Field { label: "Technician".into(), value: "Jon Snow".into() }],
            links: vec![Link { label: "Report".into(), url: "https://example.test/r/1".into() }],
            body: Some("Printer driver reinstalled".into()),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: "tsd:v1:teamviewer:abc:report".into(),
        }
    }

    #[test]
    fn plain_text_carries_fields_links_body_and_marker_last() {
        let t = note().to_plain_text();
        assert!(t.starts_with("TeamViewer session s119-457-589\n"));
        assert!(t.contains("Technician: Jon Snow\n"));
        assert!(t.contains("Report: https://example.test/r/1\n"));
        assert!(t.contains("Printer driver reinstalled"));
        assert!(t.ends_with("ticketsync-marker: tsd:v1:teamviewer:abc:report"));
    }

    #[test]
    fn inline_attachments_are_cut_and_say_so() {
        let a = Attachment { filename: "c.txt".into(), content_type: "text/plain".into(), text: "abcdef".into() };
        assert_eq!(a.inline_text(6), "abcdef");
        let cut = a.inline_text(4);
        assert!(cut.starts_with("abcd\n[… cut at 4 of 6 characters"), "{cut}");
        let n = Note {
            title: "t".into(),
            fields: vec![],
            links: vec![],
            body: None,
            attachments: vec![a],
            visibility: Visibility::Internal,
            marker: "m".into(),
        };
        assert_eq!(n.with_inline_cut(4).attachments[0].text, cut);
        assert_eq!(n.attachments[0].text, "abcdef", "the stored note keeps the full text");
    }

    #[test]
    fn durations_are_readable() {
        assert_eq!(human_duration(0), "0m 00s");
        assert_eq!(human_duration(1125), "18m 45s");
        assert_eq!(human_duration(3725), "1h 02m 05s");
        assert_eq!(human_duration(90061), "1d 1h 01m 01s");
        assert_eq!(human_duration(-5), "0m 00s");
    }
}
