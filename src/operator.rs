//! What a person does to the pipeline by hand, the same from the CLI (`link`, `retry`) and
//! from the web console: each action's audit row names the person (issue 21).

use thiserror::Error;

use crate::store::audit::Actor;
use crate::store::{outbox, Store, StoreError};

/// The login name of whoever runs a CLI command (under sudo: the one who called sudo); the
/// numeric uid when the environment names nobody (a service manager's bare environment).
pub fn os_user() -> String {
    if let Some(u) =
        ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
    {
        return u;
    }
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| format!("uid {}", m.uid())).unwrap_or_else(|_| "unknown".into())
}

#[derive(Debug, Error)]
pub enum ActionError {
    #[error("delivery {0} does not exist")]
    NoSuchDelivery(i64),
    #[error("delivery {id} is {state}; only failed or dead deliveries can be requeued")]
    NotRequeueable { id: i64, state: String },
    #[error("delivery {id} is session {session}'s note for ticket {ticket}, but the session was relinked to ticket {now}: not requeued")]
    Relinked { id: i64, session: i64, ticket: String, now: String },
    #[error("ticket {0:?}: not a valid ticket id (letters, digits, '-', '_', '.')")]
    BadTicket(String),
    #[error("empty session code")]
    EmptyCode,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failed or dead delivery back to pending, by `actor`. Refused: a delivery in another
/// state, and a session's note for a ticket the session was moved away from (`relink`),
/// which must not reach that ticket now: the move queued the note for the right one.
pub async fn retry_delivery(store: &Store, id: i64, actor: Actor<'_>) -> Result<(), ActionError> {
    let existing = outbox::get(store, id).await?.ok_or(ActionError::NoSuchDelivery(id))?;
    if existing.state != "failed" && existing.state != "dead" {
        return Err(ActionError::NotRequeueable { id, state: existing.state.to_string() });
    }
    if let Some(sid) = existing.session_id.filter(|_| existing.kind == "session_report") {
        if let Some(m) = crate::store::links::match_for(store, sid).await?.filter(|m| m.ticket_id != existing.ticket_id)
        {
            return Err(ActionError::Relinked { id, session: sid, ticket: existing.ticket_id, now: m.ticket_id });
        }
    }
    match outbox::requeue_by(store, id, Some(actor)).await? {
        None => Err(ActionError::NoSuchDelivery(id)),
        Some(s) if s == "pending" => Ok(()),
        Some(state) => Err(ActionError::NotRequeueable { id, state }),
    }
}

/// A manual link of a session code (or a vendor's session id) to a ticket, by `actor`; the
/// next match pass matches the session and queues its notes through the normal pipeline.
pub async fn link_session(store: &Store, code: &str, ticket: &str, actor: Actor<'_>) -> Result<i64, ActionError> {
    if !crate::matcher::valid_ticket_id(ticket) {
        return Err(ActionError::BadTicket(ticket.to_string()));
    }
    if crate::session::normalize_code(code).is_empty() {
        return Err(ActionError::EmptyCode);
    }
    Ok(crate::pipeline::ticket_links::record_manual_by(store, code, ticket, Some(actor)).await?)
}
