//! Create a remote session for a ticket and put its links on the ticket. The vendor's own
//! launcher (in its folder of the sources crate) talks to the vendor and writes the notes;
//! the pipeline records the link and queues the notes.

use anyhow::{bail, Context, Result};

use crate::app::App;
use crate::pipeline::ticket_links::CreatedSession;
use crate::sources::launch::LaunchRequest;

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
    let Some(vendor) = crate::sources::VENDORS.iter().find(|v| v.kind == provider) else {
        let known: Vec<&str> = crate::sources::VENDORS.iter().map(|v| v.kind).collect();
        bail!("--provider {provider:?}: unknown provider (available: {})", known.join(", "))
    };
    let section = app.config.vendors().into_iter().find(|v| v.kind() == vendor.kind);
    let section = section.with_context(|| format!("[{}] is not configured", vendor.section))?;
    let launcher =
        section.launcher().with_context(|| format!("{provider}: sessions cannot be created for a ticket"))?;
    let req = LaunchRequest { ticket, account, customer_name, customer_email };
    let l = launcher.launch(&app.store, &req).await?;
    let notes: Vec<_> = l.notes.iter().map(|(k, n)| (*k, n)).collect();
    let created = CreatedSession {
        vendor: vendor.kind,
        ticket,
        code: &l.code,
        also_known_as: l.also_known_as.as_deref(),
        details: &l.details,
        notes: &notes,
    };
    let deliveries = crate::pipeline::ticket_links::record_created(&app.store, &app.routes, &created).await?;
    Ok(Created {
        provider: vendor.kind.into(),
        code: l.code,
        ticket: ticket.into(),
        deliveries,
        truncated: l.truncated,
    })
}

/// `ticketsync link --session CODE --ticket ID`: a manual link, matched on the next pass;
/// its audit row names the OS user who ran the command.
pub async fn manual_link(app: &App, code: &str, ticket: &str) -> Result<i64> {
    manual_link_in(app, &app.store, code, ticket).await
}

/// [`manual_link`] through `store`, a tenant's handle (`link --tenant`): the link is that
/// tenant's.
pub async fn manual_link_in(_app: &App, store: &crate::store::Store, code: &str, ticket: &str) -> Result<i64> {
    if !crate::matcher::valid_ticket_id(ticket) {
        bail!("--ticket {ticket:?}: not a valid ticket id (letters, digits, '-', '_', '.')");
    }
    if crate::session::normalize_code(code).is_empty() {
        bail!("--session: empty session code");
    }
    let who = crate::operator::os_user();
    let actor = crate::store::audit::Actor { by: &who, via: "cli" };
    Ok(crate::operator::link_session(store, code, ticket, actor).await?)
}
