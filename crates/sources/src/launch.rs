//! `ticketsync session create`: a vendor creates a session (a service case, a support
//! session, a meeting, a room) for a ticket. A launcher only talks to its vendor and returns
//! what it created with the notes that announce it; the pipeline records the link and queues
//! the notes (`pipeline::ticket_links::record_created`), as a match queues its note.

use async_trait::async_trait;

use crate::note::Note;
use crate::store::Store;
use crate::SourceError;
pub use ticketsync_model::delivery::NoteKind;

/// What the operator asked for.
#[derive(Debug, Clone, Copy)]
pub struct LaunchRequest<'a> {
    pub ticket: &'a str,
    /// The vendor account to use (Zoom's `--account`).
    pub account: Option<&'a str>,
    pub customer_name: Option<&'a str>,
    pub customer_email: Option<&'a str>,
}

/// What the vendor created, and the notes to put on the ticket.
#[derive(Debug)]
pub struct Launched {
    /// The code the vendor's session log will show; the notes hang on its link.
    pub code: String,
    /// Another id of the same session the log may show instead (Splashtop's session id).
    pub also_known_as: Option<String>,
    /// The vendor's answer as kept on the link (never a host's secret link).
    pub details: serde_json::Value,
    /// (kind, note): `SessionLinks` (internal) and `CustomerLink` (public).
    pub notes: Vec<(NoteKind, Note)>,
    /// What was cut to fit the vendor's limits, said to the operator.
    pub truncated: Vec<String>,
}

/// A vendor that can create a session for a ticket.
#[async_trait]
pub trait Launcher: Send + Sync {
    /// `store`: for the vendor's OAuth tokens and the notes' marker key; nothing is written
    /// but a refreshed token.
    async fn launch(&self, store: &Store, req: &LaunchRequest<'_>) -> Result<Launched, SourceError>;
}

/// A launcher's error that is not the vendor's answer (a missing setting, a bad `--account`).
pub(crate) fn launch_err(source: &str, message: impl Into<String>) -> SourceError {
    SourceError::Vendor { source_name: source.to_string(), message: message.into(), transient: false }
}
