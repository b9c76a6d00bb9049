//! `session create --provider teamviewer`: a service case for the ticket (`POST /sessions`).

use async_trait::async_trait;
use serde_json::json;

use super::config::TeamViewerConfig;
use super::TeamViewerApi;
use crate::launch::{LaunchRequest, Launched, Launcher, NoteKind};
use crate::note::{Field, Link, Note, Visibility};
use crate::session::normalize_code;
use crate::store::Store;
use crate::SourceError;

#[async_trait]
impl Launcher for TeamViewerConfig {
    async fn launch(&self, store: &Store, req: &LaunchRequest<'_>) -> Result<Launched, SourceError> {
        let api = TeamViewerApi::new(self, store)?;
        let mut truncated = Vec::new();
        if req.customer_name.is_some_and(|n| n.chars().count() > 100) {
            truncated.push("customer name cut to 100 characters (TeamViewer limit)".to_string());
        }
        let body = super::session_request(self, req.ticket, req.customer_name, req.customer_email);
        let (created, _raw) = api.create_session(&body).await?;
        let details = json!({
            "supporter_link": created.supporter_link,
            "webclient_supporter_link": created.webclient_supporter_link,
            "end_customer_link": created.end_customer_link,
            "valid_until": created.valid_until,
        });
        let code = created.code.clone();
        let marker = |kind: &str| store.marker_key().marker(super::wire::VENDOR, &normalize_code(&code), kind);
        let mut internal_links = Vec::new();
        if let Some(l) = &created.supporter_link {
            internal_links.push(Link { label: "Start the session (TeamViewer)".into(), url: l.clone() });
        }
        if let Some(l) = &created.webclient_supporter_link {
            internal_links.push(Link { label: "Start in the browser (web client)".into(), url: l.clone() });
        }
        let internal = Note {
            title: format!("TeamViewer session {code} created for this ticket"),
            fields: vec![
                Field { label: "Session code".into(), value: code.clone() },
                Field { label: "Valid until".into(), value: created.valid_until.clone().unwrap_or_else(|| "-".into()) },
            ],
            links: internal_links,
            body: Some(
                "Use the supporter link yourself; send the customer link to the customer (never the supporter link)."
                    .into(),
            ),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: marker(NoteKind::SessionLinks.as_str()),
        };
        let customer = created.end_customer_link.as_ref().map(|l| Note {
            title: "Remote support session".into(),
            fields: vec![Field { label: "Session code".into(), value: code.clone() }],
            links: vec![Link { label: "Join the remote support session".into(), url: l.clone() }],
            body: Some("Open the link above to let our technician connect to your computer.".into()),
            attachments: vec![],
            visibility: Visibility::Public,
            marker: marker(NoteKind::CustomerLink.as_str()),
        });
        let mut notes = vec![(NoteKind::SessionLinks, internal)];
        notes.extend(customer.map(|c| (NoteKind::CustomerLink, c)));
        Ok(Launched { code, also_known_as: None, details, notes, truncated })
    }
}
