//! `session create --provider zoom`: a meeting for the ticket. The host (moderator) link goes
//! into an internal note, the customer's link into a public one.

use async_trait::async_trait;
use serde_json::json;

use super::config::ZoomConfig;
use super::ZoomApi;
use crate::launch::{launch_err, LaunchRequest, Launched, Launcher, NoteKind};
use crate::note::{Field, Link, Note, Visibility};
use crate::store::Store;
use crate::SourceError;

#[async_trait]
impl Launcher for ZoomConfig {
    async fn launch(&self, store: &Store, req: &LaunchRequest<'_>) -> Result<Launched, SourceError> {
        let (index, acct) = self.account(req.account).map_err(|e| launch_err("--account", e))?;
        let api = ZoomApi::new(self, index, store)?;
        let (m, _raw) = api.create_meeting(&super::meeting_request(self, req.ticket)).await?;
        let code = m.id.to_string();
        // The start URL carries the host's ZAK token: it goes onto the ticket (internal) but
        // not into the database's link details.
        let details = json!({
            "account": acct.name, "meeting_id": m.id, "uuid": m.uuid, "topic": m.topic,
            "start_time": m.start_time, "host_email": m.host_email,
        });
        let mut fields = vec![Field { label: "Meeting ID".into(), value: code.clone() }];
        if let Some(p) = m.password.as_deref().filter(|p| !p.is_empty()) {
            fields.push(Field { label: "Passcode".into(), value: p.to_string() });
        }
        let internal = Note {
            title: format!("Zoom meeting {code} created for this ticket"),
            fields: fields.clone(),
            links: vec![
                Link { label: "Start the meeting as host (valid about 2 hours)".into(), url: m.start_url.clone() },
                Link { label: "Customer join link".into(), url: m.join_url.clone() },
            ],
            body: Some("Start the meeting with the host link; never send it to the customer.".into()),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: store.marker_key().marker(super::wire::VENDOR, &code, NoteKind::SessionLinks.as_str()),
        };
        let customer = Note {
            title: "Video call for your request".into(),
            fields,
            links: vec![Link { label: "Join the Zoom meeting".into(), url: m.join_url.clone() }],
            body: Some("Open the link above at the agreed time; our technician will let you in.".into()),
            attachments: vec![],
            visibility: Visibility::Public,
            marker: store.marker_key().marker(super::wire::VENDOR, &code, NoteKind::CustomerLink.as_str()),
        };
        Ok(Launched {
            code,
            also_known_as: None,
            details,
            notes: vec![(NoteKind::SessionLinks, internal), (NoteKind::CustomerLink, customer)],
            truncated: vec![],
        })
    }
}
