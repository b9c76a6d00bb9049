//! Session → note: what a helpdesk agent reads on the ticket. The vendor-neutral part is
//! here; a vendor adds its own content through [`VendorNotes`] (in the sources crate, each
//! source implementing it in its own module), and [`session_note`] hands the session's
//! vendor in, so rendering never looks a vendor up by name.

use chrono::TimeZone;

use crate::note::{human_duration, Field, Note, Visibility};
use crate::store::sessions::StoredSession;
// Kept here too: callers name the vendor hook from `render`.
pub use crate::sources::{NoteExtras, VendorNotes};

fn local(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    tz.from_utc_datetime(&t.naive_utc()).format("%Y-%m-%d %H:%M:%S %Z").to_string()
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
    fields.push(Field { label: "Start".into(), value: local(s.started_at, tz) });
    fields.push(Field {
        label: "End".into(),
        value: s.ended_at.map(|e| local(e, tz)).unwrap_or_else(|| "running".into()),
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

/// The marker version 1 (no MAC) that releases before issue 14 wrote; new notes use
/// [`crate::marker::MarkerKey::marker`].
pub fn marker(vendor: &str, external_id: &str, kind: &str) -> String {
    crate::marker::v1(vendor, external_id, kind)
}

/// The note for a finished session, its v2 marker MACed under `key`: the vendor-neutral
/// rendering with the content of the session's vendor, as that vendor's source defines it.
pub fn session_note(s: &StoredSession, tz: chrono_tz::Tz, key: &crate::marker::MarkerKey) -> Note {
    session_note_with(s, tz, key, crate::sources::vendor_notes(&s.vendor))
}

/// [`session_note`] for a session of `tenant`: its marker names the tenant
/// ([`crate::marker::MarkerKey::marker_for`]; the default tenant's is unchanged).
pub fn session_note_for(
    s: &StoredSession,
    tz: chrono_tz::Tz,
    key: &crate::marker::MarkerKey,
    tenant: &crate::store::TenantName,
) -> Note {
    let mut note = session_note(s, tz, key);
    note.marker = key.marker_for(tenant, &s.vendor, &s.external_id, "report");
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_shows_fields_in_local_time() {
        let s = StoredSession {
            id: 1,
            vendor: "teamviewer".into(),
            external_id: "abc".into(),
            session_code: Some("s119-457-589".into()),
            session_code_norm: Some("s119457589".into()),
            technician: Some("Jon Snow".into()),
            device: Some("ACME-LT-042".into()),
            device_id: Some("1234567890".into()),
            group_name: Some("Helpdesk".into()),
            started_at: "2024-04-16T20:45:02.000Z".parse().unwrap(),
            ended_at: Some("2024-04-16T21:03:47.000Z".parse().unwrap()),
            duration_s: Some(1125),
            notes: Some("Printer driver reinstalled".into()),
            description: None,
            custom_api: None,
            customer_name: None,
            revision: 1,
            raw_json: "{}".into(),
        };
        let key = crate::marker::MarkerKey::new(b"a test key of 16+ bytes").unwrap();
        let n = session_note(&s, chrono_tz::Europe::Paris, &key);
        let t = n.to_plain_text();
        assert!(t.starts_with("TeamViewer session s119-457-589 (18m 45s)"), "{t}");
        assert!(t.contains("Start: 2024-04-16 22:45:02 CEST"), "{t}");
        assert!(t.contains("Device: ACME-LT-042 (1234567890)"), "{t}");
        assert!(t.contains("https://start.teamviewer.com/1234567890"), "{t}");
        assert!(t.contains("Technician notes: Printer driver reinstalled"), "{t}");
        assert!(n.marker.starts_with("tsd:v2:teamviewer:abc:report:"), "{}", n.marker);
        assert!(key.verify(&n.marker));
    }
}
