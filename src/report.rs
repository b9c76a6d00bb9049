//! Session → note: what a helpdesk agent reads on the ticket.

use crate::note::Note;
use crate::store::sessions::StoredSession;

/// The marker version 1 (no MAC) that releases before issue 14 wrote; new notes use
/// [`crate::marker::MarkerKey::marker`].
pub fn marker(vendor: &str, external_id: &str, kind: &str) -> String {
    crate::marker::v1(vendor, external_id, kind)
}

/// The note for a finished session, its v2 marker MACed under `key`: the vendor-neutral
/// rendering with the content of the session's vendor, as that vendor's source defines it.
pub fn session_note(s: &StoredSession, tz: chrono_tz::Tz, key: &crate::marker::MarkerKey) -> Note {
    crate::render::session_note_with(s, tz, key, crate::sources::vendor_notes(&s.vendor))
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
            started_at: "2024-04-16T20:45:02.000Z".into(),
            ended_at: Some("2024-04-16T21:03:47.000Z".into()),
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
