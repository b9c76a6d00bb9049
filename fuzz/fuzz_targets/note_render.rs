//! The note renderers on arbitrary vendor text (issue 14): for every sink's format, the
//! marker is the last line and the only marker line, and nothing from vendor text survives
//! as markup. The checks live in `ticketsync::sinks::render_check` (shared with a unit test).
//!
//! The input is split at 0x1F into title, field label, field value, link label, link URL,
//! body, attachment file name, attachment text and the session id.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ticketsync::note::{Attachment, Field, Link, Note, Visibility};

fuzz_target!(|data: &[u8]| {
    let text = common::body(data);
    let mut parts = text.split('\u{1f}').map(str::to_string);
    let mut next = || parts.next().unwrap_or_default();
    let (title, label, value, link_label, url, body, filename, attachment, id) =
        (next(), next(), next(), next(), next(), next(), next(), next(), next());
    let key = common::marker_key();
    let note = Note {
        title,
        fields: vec![Field { label, value }],
        links: vec![
            Link { label: link_label.clone(), url },
            Link { label: link_label, url: "https://report.example/r?a=1&b=2".into() },
        ],
        body: Some(body),
        attachments: vec![Attachment { filename, content_type: "text/plain".into(), text: attachment }],
        visibility: Visibility::Internal,
        marker: key.marker("teamviewer", &id, "report"),
    };
    ticketsync::sinks::render_check::assert_safe_renderings(&note, &key);
});
