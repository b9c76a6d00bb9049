//! Session → note, the vendor-neutral part. A vendor adds its own content through
//! [`VendorNotes`] (in the sources crate, each source implementing it in its own module);
//! the note stage (`report::session_note`) hands the session's vendor in, so rendering never
//! looks a vendor up by name.

use chrono::TimeZone;

use crate::note::{human_duration, Field, Note, Visibility};
use crate::session::parse_ts;
use crate::store::sessions::StoredSession;
// Kept here too: callers name the vendor hook from `render`.
pub use crate::sources::{NoteExtras, VendorNotes};

fn local(ts: &str, tz: chrono_tz::Tz) -> String {
    match parse_ts(ts) {
        Some(t) => tz.from_utc_datetime(&t.naive_utc()).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        None => ts.to_string(),
    }
}

/// The note for a finished session, its v2 marker MACed under `key`, with `vendor`'s own
/// content (`None`: a vendor without any; its stored name is then its title).
pub fn session_note_with(
    s: &StoredSession,
    tz: chrono_tz::Tz,
    key: &crate::marker::MarkerKey,
    vendor_notes: Option<&dyn VendorNotes>,
) -> Note {
    let vendor = vendor_notes.map(|v| v.display_name()).unwrap_or(s.vendor.as_str());
    let code = s.session_code.as_deref().unwrap_or("-");
    let mut fields = vec![
        Field { label: "Vendor".into(), value: vendor.to_string() },
        Field { label: "Session code".into(), value: code.to_string() },
        Field { label: "Technician".into(), value: s.technician.clone().unwrap_or_else(|| "-".into()) },
    ];
    let device = match (&s.device, &s.device_id) {
        (Some(n), Some(id)) => format!("{n} ({id})"),
        (Some(n), None) => n.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => "-".into(),
    };
    fields.push(Field { label: "Device".into(), value: device });
    if let Some(g) = s.group_name.as_deref().filter(|g| !g.is_empty()) {
        fields.push(Field { label: "Group".into(), value: g.to_string() });
    }
    if let Some(c) = s.customer_name.as_deref().filter(|c| !c.is_empty()) {
        fields.push(Field { label: "Customer".into(), value: c.to_string() });
    }
    fields.push(Field { label: "Start".into(), value: local(&s.started_at, tz) });
    fields.push(Field {
        label: "End".into(),
        value: s.ended_at.as_deref().map(|e| local(e, tz)).unwrap_or_else(|| "running".into()),
    });
    fields.push(Field {
        label: "Duration".into(),
        value: s.duration_s.map(human_duration).unwrap_or_else(|| "-".into()),
    });
    let mut body = String::new();
    if let Some(d) = s.description.as_deref().filter(|d| !d.trim().is_empty()) {
        body.push_str(&format!("Session description: {}\n", d.trim()));
    }
    if let Some(n) = s.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        body.push_str(&format!("Technician notes: {}\n", n.trim()));
    }
    let extras = vendor_notes.map(|v| v.extras(s)).unwrap_or_default();
    fields.extend(extras.fields);
    if let Some(b) = extras.body.as_deref().filter(|b| !b.trim().is_empty()) {
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(b);
    }
    let duration = s.duration_s.map(human_duration).unwrap_or_else(|| "running".into());
    let title = match (&s.session_code, &s.device) {
        (Some(c), _) => format!("{vendor} session {c} ({duration})"),
        (None, Some(d)) => format!("{vendor} connection to {d} ({duration})"),
        (None, None) => format!("{vendor} connection ({duration})"),
    };
    Note {
        title,
        fields,
        links: vendor_notes.map(|v| v.links(s)).unwrap_or_default(),
        body: (!body.is_empty()).then_some(body),
        attachments: extras.attachments,
        visibility: Visibility::Internal,
        marker: key.marker(&s.vendor, &s.external_id, "report"),
    }
}
