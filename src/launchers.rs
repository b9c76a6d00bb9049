//! Create a remote session for a ticket and put its links on the ticket.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::app::App;
use crate::note::{Field, Link, Note, Visibility};
use crate::report::marker;
use crate::sources::teamviewer::{self, TeamViewerApi};

pub struct Created {
    pub provider: String,
    pub code: String,
    pub ticket: String,
    pub deliveries: Vec<i64>,
    pub truncated: Vec<String>,
}

pub async fn create_session(
    app: &App,
    provider: &str,
    ticket: &str,
    customer_name: Option<&str>,
    customer_email: Option<&str>,
) -> Result<Created> {
    if !crate::matcher::valid_ticket_id(ticket) {
        bail!("--ticket {ticket:?}: not a valid ticket id (letters, digits, '-', '_', '.')");
    }
    match provider {
        "teamviewer" => teamviewer_case(app, ticket, customer_name, customer_email).await,
        other => bail!("--provider {other:?}: unknown provider (available: teamviewer)"),
    }
}

async fn teamviewer_case(
    app: &App,
    ticket: &str,
    customer_name: Option<&str>,
    customer_email: Option<&str>,
) -> Result<Created> {
    let cfg = app.config.sources.teamviewer.as_ref().context("[sources.teamviewer] is not configured")?;
    let api = TeamViewerApi::new(cfg, &app.store)?;
    let mut truncated = Vec::new();
    if customer_name.is_some_and(|n| n.chars().count() > 100) {
        truncated.push("customer name cut to 100 characters (TeamViewer limit)".to_string());
    }
    let body = teamviewer::session_request(cfg, ticket, customer_name, customer_email);
    let (created, _raw) = api.create_session(&body).await?;
    let details = json!({
        "supporter_link": created.supporter_link,
        "webclient_supporter_link": created.webclient_supporter_link,
        "end_customer_link": created.end_customer_link,
        "valid_until": created.valid_until,
    });
    let code = created.code.clone();
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
        marker: marker("teamviewer", &crate::session::normalize_code(&code), "session_links"),
    };
    let customer = created.end_customer_link.as_ref().map(|l| Note {
        title: "Remote support session".into(),
        fields: vec![Field { label: "Session code".into(), value: code.clone() }],
        links: vec![Link { label: "Join the remote support session".into(), url: l.clone() }],
        body: Some("Open the link above to let our technician connect to your computer.".into()),
        attachments: vec![],
        visibility: Visibility::Public,
        marker: marker("teamviewer", &crate::session::normalize_code(&code), "customer_link"),
    });
    // The link and the notes are committed together: a crash after the vendor call but
    // before this commit leaves a service case with no ticket link (recoverable with
    // `ticketsync link`), never a note pointing at an unrecorded session.
    let mut tx = app.store.begin().await?;
    let link_id =
        crate::store::links::insert(&mut tx, "teamviewer", &code, ticket, "created", Some(&details), Some("cli"))
            .await?;
    crate::pipeline::rematch_code(&mut tx, &crate::session::normalize_code(&code)).await?;
    let mut deliveries = Vec::new();
    for sink in app.routes.iter().filter(|r| r.accepts("teamviewer", ticket)).map(|r| &r.sink) {
        for (kind, note) in [("session_links", Some(&internal)), ("customer_link", customer.as_ref())] {
            let Some(note) = note else { continue };
            let j = serde_json::to_string(note)?;
            if let Some(id) =
                crate::store::outbox::enqueue(&mut tx, sink, ticket, None, Some(link_id), kind, &note.marker, &j)
                    .await?
            {
                deliveries.push(id);
            }
        }
    }
    tx.commit().await?;
    Ok(Created { provider: "teamviewer".into(), code, ticket: ticket.into(), deliveries, truncated })
}

/// `ticketsync link --session CODE --ticket ID`: a manual link, matched on the next pass.
pub async fn manual_link(app: &App, code: &str, ticket: &str) -> Result<i64> {
    if !crate::matcher::valid_ticket_id(ticket) {
        bail!("--ticket {ticket:?}: not a valid ticket id (letters, digits, '-', '_', '.')");
    }
    if crate::session::normalize_code(code).is_empty() {
        bail!("--session: empty session code");
    }
    let mut tx = app.store.begin().await?;
    let id = crate::store::links::insert(&mut tx, "*", code, ticket, "manual", None, Some("cli")).await?;
    crate::pipeline::rematch_code(&mut tx, &crate::session::normalize_code(code)).await?;
    tx.commit().await?;
    Ok(id)
}
