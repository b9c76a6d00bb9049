//! `[rooms.visioconference]` as the binary sees it: a vendor with nothing to poll, whose
//! room creation (the ticket link and its audit event) is the record.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::config::{VisioConfig, SECRETS};
use crate::config::{Component, Described, Errors, InitKey, Outbound, Plain, SecretUse};
use crate::launch::{LaunchRequest, Launched, Launcher, NoteKind};
use crate::note::{Field, Link, Note, Visibility};
use crate::probe::{warn, Check, ProbeCtx};
use crate::section::{SourceSection, Vendor};
use crate::store::Store;
use crate::{Source, SourceError};

impl Described for VisioConfig {
    const COMPONENT: Component = Component {
        kind: super::VENDOR,
        section: "rooms.visioconference",
        secrets: SECRETS,
        setup: &Plain { keys: &[] as &[InitKey], secrets: &["token"] },
    };
}

impl Vendor for VisioConfig {
    const NOTES: &'static dyn crate::VendorNotes = &super::Notes;
}

impl From<super::VisioError> for SourceError {
    /// Worded as the room error itself ("visioconference.me: …").
    fn from(e: super::VisioError) -> SourceError {
        let message = match e {
            super::VisioError::Config(m) => m,
            super::VisioError::Http(m) => format!("POST /entreprise/visio: {m}"),
        };
        SourceError::Vendor { source_name: "visioconference.me".into(), message, transient: false }
    }
}

#[async_trait]
impl SourceSection for VisioConfig {
    crate::section::section_basics!();

    fn schedule(&self) -> Option<&str> {
        None
    }

    fn validate_into(&self, e: &mut Errors) {
        e.add(
            crate::config::check_url(&self.api_url)
                .map_err(|m| crate::config::key_err("rooms.visioconference.api_url", m)),
        );
    }

    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("rooms.visioconference.token", true, self.token_secret())]
    }

    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>) {
        crate::section::outbound_urls(self.outbound(), "rooms.visioconference", vec![("api_url", self.api_url.clone())])
    }

    fn build(&self, _store: &Store) -> Result<Option<Arc<dyn Source>>, SourceError> {
        Ok(None)
    }

    /// Its API only creates rooms: nothing harmless to try.
    async fn probe(&self, _ctx: &ProbeCtx<'_>) -> Vec<Check> {
        vec![warn(
            "rooms visioconference",
            "not checked (its API only creates rooms)",
            "create one room: `ticketsync session create --provider visioconference --ticket ID`",
        )]
    }

    fn launcher(&self) -> Option<&dyn Launcher> {
        Some(self)
    }
}

/// `session create --provider visioconference`: a room for the ticket; the moderator link
/// goes into an internal note, the plain room link into a public one.
#[async_trait]
impl Launcher for VisioConfig {
    async fn launch(&self, store: &Store, req: &LaunchRequest<'_>) -> Result<Launched, SourceError> {
        let room = super::create_room(self, req.ticket).await?;
        let details =
            json!({"room_url": room.url, "uniqid": room.uniqid, "moderator_link": room.moderator_token.is_some()});
        let mut links = Vec::new();
        let mut body = "Open the moderator link yourself; send the customer the plain room link.".to_string();
        match room.moderator_link(&self.agent_name) {
            Some(l) => links.push(Link { label: "Join as moderator".into(), url: l }),
            None => body = "visioconference.me returned no moderator token: join with the room link and ask the vendor for moderator rights.".into(),
        }
        links.push(Link { label: "Customer room link".into(), url: room.url.clone() });
        let internal = Note {
            title: format!("visioconference.me room {} created for this ticket", room.uniqid),
            fields: vec![Field { label: "Room".into(), value: room.uniqid.clone() }],
            links,
            body: Some(body),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: store.marker_key().marker(super::VENDOR, &room.uniqid, NoteKind::SessionLinks.as_str()),
        };
        let customer = Note {
            title: "Video call for your request".into(),
            fields: vec![],
            links: vec![Link { label: "Join the video call".into(), url: room.url.clone() }],
            body: Some("Open the link above in your browser at the agreed time.".into()),
            attachments: vec![],
            visibility: Visibility::Public,
            marker: store.marker_key().marker(super::VENDOR, &room.uniqid, NoteKind::CustomerLink.as_str()),
        };
        Ok(Launched {
            code: room.uniqid.clone(),
            also_known_as: None,
            details,
            notes: vec![(NoteKind::SessionLinks, internal), (NoteKind::CustomerLink, customer)],
            truncated: vec![],
        })
    }
}
