//! Billable time entries (issue 20, migration 0010): which sessions wait for an entry on
//! which sink (`time_sessions`), the entries decided (`time_entries`), each one queued as a
//! delivery of kind `time_entry` in the same transaction that records it.
//!
//! A session report queued for a sink opens its `time_sessions` row in the report's own
//! transaction ([`open_in`], called by the outbox's enqueue). The time pass
//! (`ticketsync_pipeline::time`) reads the open rows of the sinks that have a time policy,
//! groups reconnects, and closes a group in one transaction ([`enqueue_entry`]): the entry,
//! its delivery and every member moved from `open` to `entered`, or nothing (a member no
//! longer open means another instance decided it first).

use chrono::{DateTime, Utc};
use serde_json::json;

use super::audit::{self, Event};
use super::outbox::NoteKind;
use super::{on_pool, on_tx, Result, Store, Tx};

/// Open a `time_sessions` row for each session report just queued: (delivery id, sink,
/// ticket, session id). In the caller's transaction, with the report.
pub async fn open_in(tx: &mut Tx<'_>, reports: &[(i64, &str, &str, i64)]) -> Result<()> {
    if reports.is_empty() {
        return Ok(());
    }
    let now = super::now();
    for chunk in audit::fixed_chunks(reports, &[100, 20, 5, 1]) {
        on_tx!(tx, |ex, _d, Db| {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO time_sessions (report_id, sink, ticket_id, session_id, updated_at) ",
            );
            q.push_values(chunk, |mut b, (id, sink, ticket, session)| {
                b.push_bind(*id).push_bind(*sink).push_bind(*ticket).push_bind(*session).push_bind(&now);
            });
            q.push(" ON CONFLICT (report_id) DO NOTHING");
            q.build().persistent(true).execute(ex).await.map(|_| ())?
        });
    }
    Ok(())
}

/// [`open_in`] for one report that may follow an earlier one of the same session on the same
/// sink (a `relink` to another ticket): the session is billed once, where it is now. An
/// earlier row still open is skipped (moved); when an entry already counted the session, the
/// new row is skipped instead, with the reason.
pub async fn open_one_in(tx: &mut Tx<'_>, report: i64, sink: &str, ticket: &str, session: i64) -> Result<()> {
    let now = super::now();
    let earlier: Vec<(i64, String, String, Option<i64>)> = on_tx!(tx, |ex, d| {
        sqlx::query_as(&d.sql(
        "SELECT report_id, ticket_id, state, time_entry_id FROM time_sessions WHERE sink = ? AND session_id = ? AND report_id <> ?"
    ))
    .bind(sink)
    .bind(session)
    .bind(report)
    .fetch_all(ex)
    .await?
    });
    open_in(tx, &[(report, sink, ticket, session)]).await?;
    for (id, old_ticket, state, entry) in earlier {
        let (target, reason) = match state.as_str() {
            "open" => (id, format!("moved to ticket {ticket}: billed there")),
            "entered" => {
                (report, format!("already counted in time entry {} on ticket {old_ticket}", entry.unwrap_or(0)))
            }
            _ => continue,
        };
        on_tx!(tx, |ex, d| {
            sqlx::query(&d.sql(
            "UPDATE time_sessions SET state = 'skipped', reason = ?, updated_at = ? WHERE report_id = ? AND state = 'open'"
        ))
        .bind(&reason)
        .bind(&now)
        .bind(target)
        .execute(ex)
        .await
        .map(|_| ())?
        });
    }
    Ok(())
}

/// Open rows of the sinks not in `with_policy` become `off`: a sink without `time_entries`
/// bills nothing, and turning it on later bills the sessions matched from then on only.
pub async fn turn_off_others(store: &Store, with_policy: &[String]) -> Result<u64> {
    let mut tx = store.begin().await?;
    let sinks: Vec<String> =
        on_tx!(tx, |ex, d| sqlx::query_scalar(&d.sql("SELECT DISTINCT sink FROM time_sessions WHERE state = 'open'"))
            .fetch_all(ex)
            .await?);
    let now = super::now();
    let mut n = 0;
    for sink in sinks.iter().filter(|s| !with_policy.contains(s)) {
        n += on_tx!(tx, |ex, d| sqlx::query(
            &d.sql("UPDATE time_sessions SET state = 'off', updated_at = ? WHERE sink = ? AND state = 'open'")
        )
        .bind(&now)
        .bind(sink)
        .execute(ex)
        .await?
        .rows_affected());
    }
    tx.commit().await?;
    Ok(n)
}

/// A session waiting for its time entry on one sink.
#[derive(Debug, Clone)]
pub struct OpenSession {
    pub report_id: i64,
    pub sink: String,
    pub ticket_id: String,
    pub session_id: i64,
    pub vendor: String,
    pub external_id: String,
    pub session_code: Option<String>,
    pub session_code_norm: Option<String>,
    pub technician: Option<String>,
    pub technician_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub raw_json: String,
}

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for OpenSession
where
    &'r str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<OpenSession> {
        Ok(OpenSession {
            report_id: row.try_get("report_id")?,
            sink: row.try_get("sink")?,
            ticket_id: row.try_get("ticket_id")?,
            session_id: row.try_get("session_id")?,
            vendor: row.try_get("vendor")?,
            external_id: row.try_get("external_id")?,
            session_code: row.try_get("session_code")?,
            session_code_norm: row.try_get("session_code_norm")?,
            technician: row.try_get("technician")?,
            technician_id: row.try_get("technician_id")?,
            started_at: super::time(row, "started_at")?,
            ended_at: super::time(row, "ended_at")?,
            raw_json: row.try_get("raw_json")?,
        })
    }
}

/// The open sessions of `sink`, by ticket, vendor, session code and start: the order the
/// time pass groups them in.
pub async fn open_sessions(store: &Store, sink: &str) -> Result<Vec<OpenSession>> {
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(
        "SELECT t.report_id, t.sink, t.ticket_id, t.session_id, s.vendor, s.external_id, s.session_code,
                s.session_code_norm, s.technician, s.technician_id, s.started_at, s.ended_at, s.raw_json
         FROM time_sessions t JOIN sessions s ON s.id = t.session_id
         WHERE t.sink = ? AND t.state = 'open' AND s.ended_at IS NOT NULL
         ORDER BY t.ticket_id, s.vendor, s.session_code_norm, s.started_at, s.id"
    ))
    .bind(sink)
    .fetch_all(ex)
    .await?))
}

/// Whether a session of `vendor` with this code is still running and started before
/// `by`: a reconnect in progress keeps its group open.
pub async fn running_with_code(store: &Store, vendor: &str, code_norm: &str, by: &str) -> Result<bool> {
    let n: i64 = on_pool!(store, |ex, d| sqlx::query_scalar(&d.sql(
        "SELECT COUNT(*) FROM sessions
         WHERE vendor = ? AND session_code_norm = ? AND ended_at IS NULL AND started_at <= ? AND vanished_at IS NULL"
    ))
    .bind(vendor)
    .bind(code_norm)
    .bind(by)
    .fetch_one(ex)
    .await?);
    Ok(n > 0)
}

/// A closed group's entry, as the time pass decided it.
#[derive(Debug, Clone)]
pub struct NewTimeEntry<'a> {
    pub sink: &'a str,
    pub ticket_id: &'a str,
    pub vendor: &'a str,
    pub session_code: Option<&'a str>,
    /// The members' `time_sessions` rows (their report deliveries).
    pub report_ids: &'a [i64],
    pub first_session_id: i64,
    pub started_at: &'a str,
    pub ended_at: &'a str,
    pub raw_seconds: i64,
    pub minutes: i64,
    pub billable: bool,
    pub technician: Option<&'a str>,
    pub ticket_user: Option<&'a str>,
    pub marker: &'a str,
    /// The `TimeEntry` as JSON: the delivery's `note_json`.
    pub entry_json: &'a str,
}

/// Record a closed group's entry and queue its delivery, in one transaction. `None` when a
/// member was no longer open (another instance closed the group first) or the marker is
/// already queued for the sink: nothing is written then.
pub async fn enqueue_entry(store: &Store, e: &NewTimeEntry<'_>) -> Result<Option<i64>> {
    let mut tx = store.begin().await?;
    let now = super::now();
    // The members first: the conditional update is the fence that makes an entry's
    // sessions counted once, whoever closes the group.
    let mut moved = 0;
    for id in e.report_ids {
        moved += on_tx!(tx, |ex, d| sqlx::query(
            &d.sql("UPDATE time_sessions SET state = 'entered', updated_at = ? WHERE report_id = ? AND state = 'open'")
        )
        .bind(&now)
        .bind(id)
        .execute(ex)
        .await?
        .rows_affected());
    }
    if moved != e.report_ids.len() as u64 {
        tx.rollback().await?;
        return Ok(None);
    }
    let mut chain = audit::Chain::load(&mut tx).await?;
    let Some(delivery) = super::outbox::enqueue_in(
        &mut tx,
        &mut chain,
        e.sink,
        e.ticket_id,
        Some(e.first_session_id),
        None,
        NoteKind::TimeEntry,
        e.marker,
        e.entry_json,
    )
    .await?
    else {
        tx.rollback().await?;
        return Ok(None);
    };
    let entry_id: i64 = on_tx!(tx, |ex, d| {
        sqlx::query_scalar(&d.sql(
        "INSERT INTO time_entries (delivery_id, sink, ticket_id, vendor, session_code, first_session_id, sessions,
                                   started_at, ended_at, raw_seconds, minutes, billable, technician, ticket_user, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
    ))
    .bind(delivery)
    .bind(e.sink)
    .bind(e.ticket_id)
    .bind(e.vendor)
    .bind(e.session_code)
    .bind(e.first_session_id)
    .bind(e.report_ids.len() as i64)
    .bind(e.started_at)
    .bind(e.ended_at)
    .bind(e.raw_seconds)
    .bind(e.minutes)
    .bind(e.billable as i64)
    .bind(e.technician)
    .bind(e.ticket_user)
    .bind(&now)
    .fetch_one(ex)
    .await?
    });
    for id in e.report_ids {
        on_tx!(tx, |ex, d| sqlx::query(&d.sql("UPDATE time_sessions SET time_entry_id = ? WHERE report_id = ?"))
            .bind(entry_id)
            .bind(id)
            .execute(ex)
            .await
            .map(|_| ())?);
    }
    chain.push(Event {
        kind: "time_entry_decided",
        session_id: Some(e.first_session_id),
        ticket_id: Some(e.ticket_id),
        delivery_id: Some(delivery),
        detail: Some(json!({
            "sink": e.sink, "sessions": e.report_ids.len(), "raw_seconds": e.raw_seconds,
            "minutes": e.minutes, "billable": e.billable,
        })),
        ..Default::default()
    });
    chain.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(Some(delivery))
}

/// Sessions that get no entry by policy: `skipped` with the reason, unless no longer open.
pub async fn skip(store: &Store, report_ids: &[i64], reason: &str) -> Result<u64> {
    let mut tx = store.begin().await?;
    let now = super::now();
    let mut n = 0;
    for id in report_ids {
        n += on_tx!(tx, |ex, d| {
            sqlx::query(&d.sql(
            "UPDATE time_sessions SET state = 'skipped', reason = ?, updated_at = ? WHERE report_id = ? AND state = 'open'"
        ))
        .bind(reason)
        .bind(&now)
        .bind(id)
        .execute(ex)
        .await?
        .rows_affected()
        });
    }
    tx.commit().await?;
    Ok(n)
}

/// One row of `v_time_entries`, what a billing clerk reconciles.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TimeEntryRow {
    pub time_entry_id: i64,
    pub delivery_id: i64,
    pub sink: String,
    pub ticket_id: String,
    pub vendor: String,
    pub session_code: Option<String>,
    pub external_id: String,
    pub sessions: i64,
    pub started_at: String,
    pub ended_at: String,
    pub raw_seconds: i64,
    pub minutes_billed: i64,
    pub billable: i64,
    pub technician: Option<String>,
    pub ticket_user: Option<String>,
    pub state: String,
    pub last_error: Option<String>,
    pub remote_ref: Option<String>,
    pub delivered_at: Option<String>,
}

/// The entries whose work started in `[from, to)` (RFC 3339 text, either bound open), by start.
pub async fn list(store: &Store, from: Option<&str>, to: Option<&str>) -> Result<Vec<TimeEntryRow>> {
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(
        "SELECT time_entry_id, delivery_id, sink, ticket_id, vendor, session_code, external_id, sessions,
                started_at, ended_at, raw_seconds, minutes_billed, billable, technician, ticket_user,
                state, last_error, remote_ref, delivered_at
         FROM v_time_entries
         WHERE (? IS NULL OR started_at >= ?) AND (? IS NULL OR started_at < ?)
         ORDER BY started_at, time_entry_id"
    ))
    .bind(from)
    .bind(from)
    .bind(to)
    .bind(to)
    .fetch_all(ex)
    .await?))
}

/// Each session's standing on each sink: (sink, session id, state, time entry id).
pub async fn session_states(store: &Store) -> Result<Vec<(String, i64, String, Option<i64>)>> {
    Ok(on_pool!(store, |ex, _d| sqlx::query_as(
        "SELECT sink, session_id, state, time_entry_id FROM time_sessions ORDER BY sink, session_id"
    )
    .fetch_all(ex)
    .await?))
}
