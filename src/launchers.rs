//! Create a remote session for a ticket and put its links on the ticket.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::app::App;
use crate::note::{Field, Link, Note, Visibility};
use crate::pipeline::ticket_links::CreatedSession;
use crate::sources::teamviewer::{self, TeamViewerApi};

pub mod meetings;

#[derive(Debug)]
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
    create_session_on(app, provider, ticket, None, customer_name, customer_email).await
}

/// As [`create_session`], with the vendor account to use (Zoom: `--account`).
pub async fn create_session_on(
    app: &App,
    provider: &str,
    ticket: &str,
    account: Option<&str>,
    customer_name: Option<&str>,
    customer_email: Option<&str>,
) -> Result<Created> {
    if !crate::matcher::valid_ticket_id(ticket) {
        bail!("--ticket {ticket:?}: not a valid ticket id (letters, digits, '-', '_', '.')");
    }
    match provider {
        "teamviewer" => teamviewer_case(app, ticket, customer_name, customer_email).await,
        "splashtop" => splashtop_support_session(app, ticket, customer_name).await,
        "zoom" => crate::launchers::meetings::zoom_meeting(app, ticket, account).await,
        "visioconference" => crate::launchers::meetings::visio_room(app, ticket).await,
        other => {
            bail!("--provider {other:?}: unknown provider (available: teamviewer, splashtop, zoom, visioconference)")
        }
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
        marker: app.store.marker_key().marker("teamviewer", &crate::session::normalize_code(&code), "session_links"),
    };
    let customer = created.end_customer_link.as_ref().map(|l| Note {
        title: "Remote support session".into(),
        fields: vec![Field { label: "Session code".into(), value: code.clone() }],
        links: vec![Link { label: "Join the remote support session".into(), url: l.clone() }],
        body: Some("Open the link above to let our technician connect to your computer.".into()),
        attachments: vec![],
        visibility: Visibility::Public,
        marker: app.store.marker_key().marker("teamviewer", &crate::session::normalize_code(&code), "customer_link"),
    });
    let mut notes = vec![("session_links", &internal)];
    notes.extend(customer.as_ref().map(|c| ("customer_link", c)));
    let deliveries = crate::pipeline::ticket_links::record_created(
        &app.store,
        &app.routes,
        &CreatedSession {
            vendor: "teamviewer",
            ticket,
            code: &code,
            also_known_as: None,
            details: &details,
            notes: &notes,
        },
    )
    .await?;
    Ok(Created { provider: "teamviewer".into(), code, ticket: ticket.into(), deliveries, truncated })
}

/// The confirmed PSA flow: team id (config or `users/basic_info`), channel (config or
/// `psa/channel_list`), `POST …/psa/support_sessions`; the code and the session id are
/// both linked to the ticket, so the session log matches by either.
async fn splashtop_support_session(app: &App, ticket: &str, customer_name: Option<&str>) -> Result<Created> {
    use crate::sources::splashtop::{self, wire, SplashtopApi};
    let cfg = app.config.sources.splashtop.as_ref().context("[sources.splashtop] is not configured")?;
    let api = SplashtopApi::new(cfg, &app.store)?;
    let mut truncated = Vec::new();
    let wanted = customer_name.map(str::to_string).unwrap_or_else(|| format!("Ticket #{ticket}"));
    let (name, cut) = splashtop::customer_name(&wanted);
    if cut {
        truncated
            .push(format!("customer name cut to {} characters (Splashtop limit): {name:?}", wire::CUSTOMER_NAME_MAX));
    }
    let info = api.basic_info().await?;
    let team = match cfg.team_id {
        Some(t) => t,
        None => wire::team_id(&info).context(
            "users/basic_info has no PSA team id (token without the `psa` scope?); set sources.splashtop.team_id",
        )?,
    };
    let channel = match cfg.channel_id {
        Some(c) => c,
        None => api.default_channel(team).await?,
    };
    let body = wire::create_body(channel, &name, &splashtop::customer_issue(cfg, ticket));
    let created = api.create_support_session(team, &body).await?;
    let account = wire::account_email(&info);
    let end_user = wire::end_user_link(&created, &cfg.console_url());
    let tech = wire::technician_link(&created.code, account.as_deref());
    let details = json!({
        "support_session_id": created.id, "end_user_link": end_user, "technician_link": tech,
        "status": created.status, "expires_at": created.expires_at, "team_id": team, "channel_id": channel,
    });
    let code = created.code.clone();
    let code_norm = crate::session::normalize_code(&code);
    let internal = Note {
        title: format!("Splashtop support session {code} created for this ticket"),
        fields: vec![
            Field { label: "Session code".into(), value: code.clone() },
            Field { label: "Session id".into(), value: created.id.clone() },
            Field { label: "Customer name".into(), value: name.clone() },
            Field { label: "Expires".into(), value: created.expires_at.clone().unwrap_or_else(|| "-".into()) },
        ],
        links: vec![
            Link { label: "Connect (Splashtop Business app)".into(), url: tech },
            Link { label: "End-user link (send this to the customer)".into(), url: end_user.clone() },
        ],
        body: Some(format!(
            "Technician: send the end-user link (or the code {code}) to the customer. Once the customer runs the              Splashtop SOS app the session shows as ready in your Service Desk channel; connect with the link above              and request permission. The session log is added to this ticket when the session ends."
        )),
        attachments: vec![],
        visibility: Visibility::Internal,
        marker: app.store.marker_key().marker("splashtop", &code_norm, "session_links"),
    };
    let customer = Note {
        title: "Remote support session".into(),
        fields: vec![Field { label: "Session code".into(), value: code.clone() }],
        links: vec![Link { label: "Join the remote support session".into(), url: end_user }],
        body: Some(
            "Open the link above, run the Splashtop SOS app, and tell our technician when it shows the code.".into(),
        ),
        attachments: vec![],
        visibility: Visibility::Public,
        marker: app.store.marker_key().marker("splashtop", &code_norm, "customer_link"),
    };
    let deliveries = crate::pipeline::ticket_links::record_created(
        &app.store,
        &app.routes,
        &CreatedSession {
            vendor: "splashtop",
            ticket,
            code: &code,
            also_known_as: Some(&created.id),
            details: &details,
            notes: &[("session_links", &internal), ("customer_link", &customer)],
        },
    )
    .await?;
    Ok(Created { provider: "splashtop".into(), code, ticket: ticket.into(), deliveries, truncated })
}

/// `ticketsync link --session CODE --ticket ID`: a manual link, matched on the next pass.
pub async fn manual_link(app: &App, code: &str, ticket: &str) -> Result<i64> {
    if !crate::matcher::valid_ticket_id(ticket) {
        bail!("--ticket {ticket:?}: not a valid ticket id (letters, digits, '-', '_', '.')");
    }
    if crate::session::normalize_code(code).is_empty() {
        bail!("--session: empty session code");
    }
    Ok(crate::pipeline::ticket_links::record_manual(&app.store, code, ticket).await?)
}

/// The ticket link of a created session and its notes, committed together by the pipeline
/// (`pipeline::ticket_links::record_created`).
pub(crate) async fn record_created(
    app: &App,
    vendor: &str,
    code: &str,
    ticket: &str,
    details: &serde_json::Value,
    notes: &[(&str, &Note)],
) -> Result<Vec<i64>> {
    let created = CreatedSession { vendor, ticket, code, also_known_as: None, details, notes };
    Ok(crate::pipeline::ticket_links::record_created(&app.store, &app.routes, &created).await?)
}
