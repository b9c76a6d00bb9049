//! The auditors' reads of the history: the audit events of an export, streamed in one
//! snapshot with the chain head, and everything recorded about one ticket. The rendering
//! (CSV, JSON lines, text) is `crate::export`'s.

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{on_pool, on_tx, Result, Store};

/// One exported `audit_events` row, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ExportedEvent {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub vendor: Option<String>,
    pub session_id: Option<i64>,
    pub ticket_id: Option<String>,
    pub delivery_id: Option<i64>,
    pub detail_json: String,
    pub prev_hash: String,
    pub hash: String,
    /// The row's hashing scheme (1 before audit evidence, 2 unkeyed, 3 keyed).
    #[serde(default = "legacy_version")]
    pub chain_version: i64,
    /// The hash of the session or note the event recorded (schemes 2 and 3).
    #[serde(default)]
    pub subject_sha256: Option<String>,
}

fn legacy_version() -> i64 {
    1
}

/// The events an export takes: `at` in [`from`, `to`) (stored timestamp format), and with a
/// vendor, the events of that vendor or of its sessions (delivery events carry the
/// session, not the vendor).
#[derive(Debug, Clone, Copy)]
pub struct EventRange<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub vendor: Option<&'a str>,
}

/// What [`export_events`] hands its caller, in this order: the chain head once, then the
/// events.
#[derive(Debug)]
pub enum ExportItem<'a> {
    /// Id and hash of the last row of the whole chain (`None`: empty).
    Head(Option<(i64, String)>),
    Event(&'a ExportedEvent),
}

const SELECT: &str = "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash,
    chain_version, subject_sha256 FROM audit_events WHERE at >= ? AND at < ?";

/// Stream the events of `range` in id order to `each`, after the chain head. One read
/// transaction: the head and the rows come from the same snapshot even while the daemon
/// appends. Memory stays constant. An error from `each` ends the stream and is returned.
pub async fn export_events(
    store: &Store,
    range: EventRange<'_>,
    mut each: impl FnMut(ExportItem<'_>) -> Result<()>,
) -> Result<()> {
    let mut tx = store.snapshot().await?;
    each(ExportItem::Head(super::audit::head_in(&mut tx).await?))?;
    // A tenant-scoped handle (`--tenant`) exports that tenant's events only.
    let tenant = store.tenant_filter().map(|t| t.as_str().to_string());
    let by_tenant = if tenant.is_some() { " AND tenant = ?" } else { "" };
    let sql = match range.vendor {
        Some(_) => format!(
            "{SELECT}{by_tenant} AND (vendor = ? OR session_id IN (SELECT id FROM sessions WHERE vendor = ?)) ORDER BY id"
        ),
        None => format!("{SELECT}{by_tenant} ORDER BY id"),
    };
    on_tx!(tx, |ex, d| {
        let sql = d.sql(&sql);
        let mut q = sqlx::query_as::<_, ExportedEvent>(&sql).bind(range.from).bind(range.to);
        if let Some(t) = &tenant {
            q = q.bind(t.as_str());
        }
        if let Some(v) = range.vendor {
            q = q.bind(v).bind(v);
        }
        let mut rows = q.fetch(ex);
        while let Some(ev) = rows.try_next().await? {
            each(ExportItem::Event(&ev))?;
        }
    });
    tx.rollback().await?;
    Ok(())
}

/// A session matched to the ticket (view `v_sessions_by_ticket`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketSession {
    pub vendor: String,
    pub external_id: String,
    pub session_code: Option<String>,
    pub technician: Option<String>,
    pub device: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_s: Option<i64>,
    pub rule: String,
}

/// A note for the ticket (view `v_deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketDelivery {
    pub delivery_id: i64,
    pub sink: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub remote_ref: Option<String>,
    pub last_error: Option<String>,
}

/// One attempt at delivering a note (view `v_delivery_attempts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketAttempt {
    pub delivery_id: i64,
    pub attempt: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

/// An audit event about the ticket (view `v_ticket_history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketEvent {
    pub event_id: i64,
    pub at: String,
    pub kind: String,
    pub session_id: Option<i64>,
    pub delivery_id: Option<i64>,
    pub detail_json: String,
}

/// Everything recorded about one ticket, each part in the order `audit show` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketRecord {
    pub sessions: Vec<TicketSession>,
    pub deliveries: Vec<TicketDelivery>,
    pub attempts: Vec<TicketAttempt>,
    pub history: Vec<TicketEvent>,
}

impl TicketRecord {
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.deliveries.is_empty() && self.history.is_empty()
    }
}

pub async fn ticket_record(store: &Store, ticket: &str) -> Result<TicketRecord> {
    ticket_record_recent(store, ticket, None).await
}

/// [`ticket_record`] with, given a `limit`, only the `limit` most recent sessions (by
/// start), deliveries (with their attempts) and events of each part, each part still
/// oldest first: what `audit show --limit` prints, read with LIMIT.
pub async fn ticket_record_recent(store: &Store, ticket: &str, limit: Option<u32>) -> Result<TicketRecord> {
    // No limit is the largest one, so one statement serves both.
    let limit = limit.map_or(i64::MAX, i64::from);
    // `--tenant`: only that tenant's sessions, deliveries and events of the ticket (the
    // views have no tenant column; the base tables do). Without it: every tenant's.
    let tenant = store.tenant_filter().map(|t| t.as_str());
    // Two placeholders, both bound to the tenant or to NULL (no filter).
    let only =
        |col: &str, table: &str| format!(" AND (? IS NULL OR {col} IN (SELECT id FROM {table} WHERE tenant = ?))");
    let s_only = " AND (? IS NULL OR external_id IN (SELECT s.external_id FROM sessions s
                   WHERE s.tenant = ? AND s.vendor = v_sessions_by_ticket.vendor))";
    let (d_only, h_only) = (only("delivery_id", "deliveries"), only("event_id", "audit_events"));
    type S =
        (String, String, Option<String>, Option<String>, Option<String>, String, Option<String>, Option<i64>, String);
    let mut sessions: Vec<S> = on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&format!(
        "SELECT vendor, external_id, session_code, technician, device, started_at, ended_at, duration_s, rule
         FROM v_sessions_by_ticket WHERE ticket_id = ?{s_only} ORDER BY started_at DESC, external_id DESC LIMIT ?"
    )))
    .bind(ticket)
    .bind(tenant)
    .bind(tenant)
    .bind(limit)
    .fetch_all(ex)
    .await?);
    sessions.reverse();
    type D = (i64, String, String, String, i64, Option<String>, Option<String>);
    let mut deliveries: Vec<D> = on_pool!(store, |ex, d| {
        sqlx::query_as(&d.sql(&format!(
        "SELECT delivery_id, sink, kind, state, attempts, remote_ref, last_error FROM v_deliveries WHERE ticket_id = ?{d_only}
         ORDER BY delivery_id DESC LIMIT ?"
    )))
    .bind(ticket)
    .bind(tenant)
    .bind(tenant)
    .bind(limit)
    .fetch_all(ex)
    .await?
    });
    deliveries.reverse();
    // The attempts of the deliveries shown: theirs are the ids from the first one shown on.
    let first_shown = deliveries.first().map_or(i64::MAX, |d| d.0);
    type A = (i64, i64, String, Option<String>, Option<String>, Option<String>);
    let attempts: Vec<A> = on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&format!(
        "SELECT delivery_id, attempt, started_at, finished_at, outcome, detail FROM v_delivery_attempts
         WHERE ticket_id = ? AND delivery_id >= ?{d_only} ORDER BY delivery_id, attempt"
    )))
    .bind(ticket)
    .bind(first_shown)
    .bind(tenant)
    .bind(tenant)
    .fetch_all(ex)
    .await?);
    type H = (i64, String, String, Option<i64>, Option<i64>, String);
    let mut history: Vec<H> = on_pool!(store, |ex, d| {
        sqlx::query_as(&d.sql(&format!(
        "SELECT event_id, at, kind, session_id, delivery_id, detail_json FROM v_ticket_history WHERE ticket_id = ?{h_only}
         ORDER BY event_id DESC LIMIT ?"
    )))
    .bind(ticket)
    .bind(tenant)
    .bind(tenant)
    .bind(limit)
    .fetch_all(ex)
    .await?
    });
    history.reverse();
    Ok(TicketRecord {
        sessions: sessions
            .into_iter()
            .map(|(vendor, external_id, session_code, technician, device, started_at, ended_at, duration_s, rule)| {
                TicketSession {
                    vendor,
                    external_id,
                    session_code,
                    technician,
                    device,
                    started_at,
                    ended_at,
                    duration_s,
                    rule,
                }
            })
            .collect(),
        deliveries: deliveries
            .into_iter()
            .map(|(delivery_id, sink, kind, state, attempts, remote_ref, last_error)| TicketDelivery {
                delivery_id,
                sink,
                kind,
                state,
                attempts,
                remote_ref,
                last_error,
            })
            .collect(),
        attempts: attempts
            .into_iter()
            .map(|(delivery_id, attempt, started_at, finished_at, outcome, detail)| TicketAttempt {
                delivery_id,
                attempt,
                started_at,
                finished_at,
                outcome,
                detail,
            })
            .collect(),
        history: history
            .into_iter()
            .map(|(event_id, at, kind, session_id, delivery_id, detail_json)| TicketEvent {
                event_id,
                at,
                kind,
                session_id,
                delivery_id,
                detail_json,
            })
            .collect(),
    })
}

impl ExportedEvent {
    /// True when the row's content still produces its hash (a keyed row: never, without
    /// the key; see [`ExportedEvent::hash_ok_with`]).
    pub fn hash_ok(&self) -> bool {
        self.hash_ok_with(None)
    }

    /// True when the row's content still produces its hash, under `key` for a keyed row.
    pub fn hash_ok_with(&self, key: Option<&crate::audit::AuditKey>) -> bool {
        use crate::audit::{hash_row, ChainVersion, RowFields};
        let Some(version) = ChainVersion::from_i64(self.chain_version) else { return false };
        let f = RowFields {
            prev: &self.prev_hash,
            id: self.id,
            at: &self.at,
            kind: &self.kind,
            vendor: self.vendor.as_deref(),
            session_id: self.session_id,
            ticket_id: self.ticket_id.as_deref(),
            delivery_id: self.delivery_id,
            detail: &self.detail_json,
            subject: self.subject_sha256.as_deref(),
        };
        hash_row(version, key, &f).as_deref() == Some(self.hash.as_str())
    }
}
