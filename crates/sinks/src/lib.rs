//! Ticket systems behind one trait. A sink knows nothing of vendors: it receives a
//! [`Note`] and a ticket id, and must be safe to call again for the same marker.

// The layers below, under the names the sinks' files use.
use ticketsync_http::{self as http, holds};
use ticketsync_model::{marker, note, time_entry};
use ticketsync_redact as redact;

pub mod autotask;
pub mod common;
pub mod config;
pub mod connectwise;
#[cfg(feature = "fake-sink")]
pub mod fake;
pub mod freshservice;
pub mod glpi;
pub mod halopsa;
pub mod jsm;
pub mod redmine;
pub mod render_check;
pub mod routing;
pub mod rt;
pub mod section;
pub mod servicenow;
pub mod webhook;
pub mod zammad;
pub mod zendesk;

use std::time::Duration;

use async_trait::async_trait;

use crate::note::Note;
pub use crate::time_entry::TimeEntry;

/// What the sink returned for a note that landed (journal id, comment id, "webhook:200").
pub type RemoteRef = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The ticket's notes can be listed and searched for a marker.
    pub marker_scan: bool,
    pub private_notes: bool,
    pub attachments: bool,
}

/// How the outbox must treat a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// Try again later (5xx, 429, connection refused). `retry_after` is the server's word.
    Retry { retry_after: Option<Duration> },
    /// The request may have reached the system (timeout after send, connection reset while
    /// waiting for the answer): scan for the marker before sending again.
    Ambiguous,
    /// Credentials rejected: stays `failed` until an operator fixes them and requeues.
    Auth,
    /// Will never succeed (ticket not found, forbidden, rejected payload): `dead`.
    Permanent,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{sink}: {message}")]
pub struct SinkError {
    pub sink: String,
    pub kind: SinkErrorKind,
    /// Never contains a secret: sinks build it from status codes and the system's error body.
    pub message: String,
}

impl SinkError {
    pub fn new(sink: &str, kind: SinkErrorKind, message: impl Into<String>) -> Self {
        Self { sink: sink.to_string(), kind, message: message.into() }
    }

    /// Classify a transport error from reqwest. A timeout or a broken connection after the
    /// request was written is ambiguous; a refused connection never reached the system.
    pub fn from_transport(sink: &str, err: &reqwest::Error) -> Self {
        let msg = crate::http::describe_transport_error(err);
        // A refused redirect was answered before any body was accepted: nothing landed,
        // and the next attempt (after the operator configured the final URL) may succeed.
        if err.is_connect() || err.is_redirect() {
            Self::new(sink, SinkErrorKind::Retry { retry_after: None }, msg)
        } else {
            Self::new(sink, SinkErrorKind::Ambiguous, msg)
        }
    }

    /// Reading the answer failed: the request was sent, so whether it took effect is
    /// unknown (an oversized answer included).
    pub fn from_body(sink: &str, err: crate::http::BodyError) -> Self {
        match err {
            crate::http::BodyError::Transport(e) => Self::from_transport(sink, &e),
            too_large => Self::new(sink, SinkErrorKind::Ambiguous, too_large.to_string()),
        }
    }

    /// Classify an HTTP status the generic way; sinks override for their own quirks.
    pub fn from_status(
        sink: &str,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) -> Self {
        let body = crate::http::short_body(body);
        let kind = match status.as_u16() {
            // A rate limit (a 403 can be one) waits for the time the system gave.
            _ if crate::holds::hold_signal(status, headers).is_some() => {
                SinkErrorKind::Retry { retry_after: crate::holds::hold_signal(status, headers) }
            }
            401 => SinkErrorKind::Auth,
            408 | 425 | 429 => SinkErrorKind::Retry { retry_after: crate::http::retry_after(headers) },
            500..=599 => SinkErrorKind::Retry { retry_after: crate::http::retry_after(headers) },
            _ => SinkErrorKind::Permanent,
        };
        let what = match status.as_u16() {
            401 => "credentials rejected (HTTP 401)".to_string(),
            403 => "forbidden (HTTP 403): the API user lacks a permission".to_string(),
            404 => "ticket not found (HTTP 404)".to_string(),
            s => format!("HTTP {s}"),
        };
        let message = if body.is_empty() { what } else { format!("{what}: {body}") };
        Self::new(sink, kind, message)
    }
}

#[async_trait]
pub trait TicketSink: Send + Sync {
    /// The configured name of this sink (`redmine`, `webhook`), used in the outbox.
    fn name(&self) -> &str;

    fn capabilities(&self) -> Capabilities;

    /// Look through the ticket's own notes (direct listing, never search) for a note whose
    /// last line is `marker`'s line and, where the system names authors, that the API user
    /// wrote (issue 14: a marker quoted anywhere else proves nothing).
    /// Sinks without `marker_scan` return `Ok(None)` and rely on their idempotency key.
    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError>;

    /// Write the note onto the ticket.
    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError>;

    /// A harmless call proving the sink is reachable and the credentials work.
    async fn check(&self) -> Result<(), SinkError>;

    /// How many due notes for one ticket this sink can write in a single update. Above 1,
    /// the outbox hands it consecutive deliveries of one ticket together (Zendesk limits
    /// updates per ticket).
    fn max_batch(&self) -> usize {
        1
    }

    /// Write several notes onto one ticket in one update. Only called with more than one
    /// note when [`TicketSink::max_batch`] allows it.
    async fn post_notes(&self, ticket: &str, notes: &[Note]) -> Result<RemoteRef, SinkError> {
        match notes {
            [one] => self.post_note(ticket, one).await,
            _ => Err(SinkError::new(self.name(), SinkErrorKind::Permanent, "this sink cannot batch notes")),
        }
    }

    /// The ticket whose configured custom field holds this session code, where the system
    /// and the configuration support it.
    async fn find_ticket_by_session_code(&self, _code: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }

    // Time entries (issue 20). A time entry is a delivery like a note: claimed, fenced and
    // finished the same way, and scanned for before any re-send. A system without time
    // tracking keeps these defaults: `supports_time_entries` false (a `time_entries = true`
    // on its section is a configuration error), and the two calls refuse permanently.

    /// Whether this sink writes time entries ([`TicketSink::post_time_entry`]).
    fn supports_time_entries(&self) -> bool {
        false
    }

    /// Look through the ticket's own time entries (direct listing, never search) for one
    /// whose comment ends with `marker`'s line ([`crate::time_entry::ends_with_marker`]) and,
    /// where the system names authors, that the API user wrote: its reference if found.
    async fn find_time_entry(&self, _ticket: &str, _marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        Err(SinkError::new(self.name(), SinkErrorKind::Permanent, "this ticket system has no time entries"))
    }

    /// Write the time entry onto the ticket, for `entry.user` when set (else for the user
    /// [`TicketSink::user_by_email`] finds for `entry.technician_email`, else as the API
    /// user, and the comment says so: [`TimeEntry::comment`]).
    async fn post_time_entry(&self, _ticket: &str, _entry: &TimeEntry) -> Result<RemoteRef, SinkError> {
        Err(SinkError::new(self.name(), SinkErrorKind::Permanent, "this ticket system has no time entries"))
    }

    /// The system's user id for a technician's e-mail address, where the system can look
    /// users up by e-mail: `Ok(None)` when it cannot or finds nobody.
    async fn user_by_email(&self, _email: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }

    /// Whether the user a technician is mapped to (`time_technicians`) still exists:
    /// `Ok(None)` where the system cannot tell (`doctor` reports `Some(false)`).
    async fn user_exists(&self, _user: &str) -> Result<Option<bool>, SinkError> {
        Ok(None)
    }

    /// Release server-side state (GLPI's session) at shutdown.
    async fn close(&self) {}

    /// A request (built, never sent) carrying this sink's origin and credentials: the key of
    /// its system in the rate-limit hold registry ([`crate::holds`]).
    fn hold_probe(&self) -> Option<reqwest::RequestBuilder> {
        None
    }

    /// How long this sink's system is still held after a rate-limit answer: the delivery
    /// loop dispatches nothing to it meanwhile.
    fn held(&self) -> Option<Duration> {
        crate::holds::held(self.hold_probe()?)
    }
}
