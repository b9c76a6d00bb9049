//! Video meetings for a ticket: a Zoom meeting or a visioconference.me room. The host
//! (moderator) link goes into an internal note, the customer's link into a public one.

use anyhow::{Context, Result};
use serde_json::json;

use super::Created;
use crate::app::App;
use crate::note::{Field, Link, Note, Visibility};
use crate::sources::{visio, zoom};

pub async fn zoom_meeting(app: &App, ticket: &str, account: Option<&str>) -> Result<Created> {
    let cfg = app.config.sources.zoom.as_ref().context("[sources.zoom] is not configured")?;
    let (index, acct) = cfg.account(account).map_err(anyhow::Error::msg).context("--account")?;
    let api = zoom::ZoomApi::new(cfg, index, &app.store)?;
    let (m, _raw) = api.create_meeting(&zoom::meeting_request(cfg, ticket)).await?;
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
        marker: app.store.marker_key().marker("zoom", &code, "session_links"),
    };
    let customer = Note {
        title: "Video call for your request".into(),
        fields,
        links: vec![Link { label: "Join the Zoom meeting".into(), url: m.join_url.clone() }],
        body: Some("Open the link above at the agreed time; our technician will let you in.".into()),
        attachments: vec![],
        visibility: Visibility::Public,
        marker: app.store.marker_key().marker("zoom", &code, "customer_link"),
    };
    super::record_created(
        app,
        "zoom",
        &code,
        ticket,
        &details,
        &[("session_links", &internal), ("customer_link", &customer)],
    )
    .await
    .map(|deliveries| Created {
        provider: "zoom".into(),
        code,
        ticket: ticket.into(),
        deliveries,
        truncated: vec![],
    })
}

pub async fn visio_room(app: &App, ticket: &str) -> Result<Created> {
    let cfg = app.config.rooms.visioconference.as_ref().context("[rooms.visioconference] is not configured")?;
    let room = visio::create_room(cfg, ticket).await?;
    let details =
        json!({"room_url": room.url, "uniqid": room.uniqid, "moderator_link": room.moderator_token.is_some()});
    let mut links = Vec::new();
    let mut body = "Open the moderator link yourself; send the customer the plain room link.".to_string();
    match room.moderator_link(&cfg.agent_name) {
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
        marker: app.store.marker_key().marker(visio::VENDOR, &room.uniqid, "session_links"),
    };
    let customer = Note {
        title: "Video call for your request".into(),
        fields: vec![],
        links: vec![Link { label: "Join the video call".into(), url: room.url.clone() }],
        body: Some("Open the link above in your browser at the agreed time.".into()),
        attachments: vec![],
        visibility: Visibility::Public,
        marker: app.store.marker_key().marker(visio::VENDOR, &room.uniqid, "customer_link"),
    };
    let code = room.uniqid.clone();
    super::record_created(
        app,
        visio::VENDOR,
        &code,
        ticket,
        &details,
        &[("session_links", &internal), ("customer_link", &customer)],
    )
    .await
    .map(|deliveries| Created {
        provider: visio::VENDOR.into(),
        code,
        ticket: ticket.into(),
        deliveries,
        truncated: vec![],
    })
}
