//! Session → note, the vendor-neutral part, and the trait through which a vendor adds its
//! own content. It sits below the sources: each source implements [`VendorNotes`] in its
//! own module, and the note stage above (`report::session_note`) hands the session's vendor
//! in, so rendering never looks a vendor up by name.

use chrono::TimeZone;

use crate::note::{human_duration, Attachment, Field, Link, Note, Visibility};
use crate::session::parse_ts;
use crate::store::sessions::StoredSession;

/// Vendor content for a session's note beyond the normalized columns: extra fields, a
/// body section (e.g. a file-transfer table, a participant list) and attachments (e.g. a
/// chat transcript).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoteExtras {
    pub fields: Vec<Field>,
    pub body: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// What a vendor contributes to its sessions' notes. The one hook every vendor fills in
/// for its notes, from the stored session (its raw record included).
pub trait VendorNotes: Send + Sync {
    /// The vendor name its sessions are stored under (`sessions.vendor`).
    fn vendor(&self) -> &'static str;
    /// Human name of the vendor, for note titles.
    fn display_name(&self) -> &'static str;
    /// Vendor links worth putting on a note (reconnect to the device, the vendor's report).
    fn links(&self, _s: &StoredSession) -> Vec<Link> {
        Vec::new()
    }
    /// Extra fields, body and attachments, read from the stored raw record.
    fn extras(&self, _s: &StoredSession) -> NoteExtras {
        NoteExtras::default()
    }
}

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
