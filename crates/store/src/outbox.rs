//! The outbox: `pending → sending → delivered | failed | dead`, each move committed
//! before the network call that follows it.

use chrono::{DateTime, Utc};
use serde_json::json;

pub use crate::model::delivery::{DeliveryState, NoteKind};

use super::audit::{self, Event};
use super::{on_pool, on_tx, Dialect, Result, Tx};

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub sink: String,
    pub ticket_id: String,
    pub session_id: Option<i64>,
    pub kind: NoteKind,
    pub marker: String,
    pub note_json: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub remote_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The tenant whose ticket system `sink` is (issue 17): the delivery pass looks the sink
    /// up by (tenant, sink), never by the name alone.
    pub tenant: crate::TenantName,
}

/// Read from the stored text: the state and kind by their closed sets, the times by the
/// store's one format (`session::ts`), on either backend.
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for Delivery
where
    &'r str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Delivery> {
        Ok(Delivery {
            id: row.try_get("id")?,
            sink: row.try_get("sink")?,
            ticket_id: row.try_get("ticket_id")?,
            session_id: row.try_get("session_id")?,
            kind: super::text_as(row, "kind")?,
            marker: row.try_get("marker")?,
            note_json: row.try_get("note_json")?,
            state: super::text_as(row, "state")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: super::time(row, "next_attempt_at")?,
            last_error: row.try_get("last_error")?,
            remote_ref: row.try_get("remote_ref")?,
            created_at: super::time(row, "created_at")?,
            delivered_at: super::time_opt(row, "delivered_at")?,
            tenant: super::tenant_col(row, "tenant")?,
        })
    }
}

pub(crate) const COLS: &str = "id, sink, ticket_id, session_id, kind, marker, note_json, state, attempts, next_attempt_at, last_error, remote_ref, created_at, delivered_at, tenant";

#[allow(clippy::too_many_arguments)]
pub async fn enqueue(
    tx: &mut Tx<'_>,
    sink: &str,
    ticket: &str,
    session_id: Option<i64>,
    link_id: Option<i64>,
    kind: NoteKind,
    marker: &str,
    note_json: &str,
) -> Result<Option<i64>> {
    let mut chain = audit::Chain::load(tx).await?;
    let id = enqueue_in(tx, &mut chain, sink, ticket, session_id, link_id, kind, marker, note_json).await?;
    chain.flush(tx).await?;
    Ok(id)
}

/// [`enqueue`] with the audit row pushed onto the caller's chain (flushed by the caller).
#[allow(clippy::too_many_arguments)]
pub async fn enqueue_in(
    tx: &mut Tx<'_>,
    chain: &mut audit::Chain,
    sink: &str,
    ticket: &str,
    session_id: Option<i64>,
    link_id: Option<i64>,
    kind: NoteKind,
    marker: &str,
    note_json: &str,
) -> Result<Option<i64>> {
    let kind = kind.as_str();
    let now = super::now();
    let tenant = tx.tenant().clone();
    let id: Option<i64> = on_tx!(tx, |ex, d| {
        sqlx::query_scalar(&d.sql(
        "INSERT INTO deliveries (sink, ticket_id, session_id, link_id, kind, marker, note_json, next_attempt_at, created_at, updated_at,
         tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sink, marker) DO NOTHING RETURNING id",
    ))
    .bind(sink)
    .bind(ticket)
    .bind(session_id)
    .bind(link_id)
    .bind(kind)
    .bind(marker)
    .bind(note_json)
    .bind(&now)
    .bind(&now)
    .bind(&now)
    .bind(tenant.as_str())
    .fetch_optional(ex)
    .await?
    });
    if let (Some(id), Some(session), "session_report") = (id, session_id, kind) {
        // The session now waits for its time entry on this sink (migration 0010).
        super::time::open_in(tx, &[(id, sink, ticket, session)]).await?;
    }
    if let Some(id) = id {
        chain.push(Event {
            kind: "delivery_enqueued",
            session_id,
            ticket_id: Some(ticket),
            delivery_id: Some(id),
            detail: Some(json!({"sink": sink, "kind": kind, "marker": marker})),
            // The note as queued (fixed from here on), so an edit of it is found by `audit verify`.
            subject: Some(audit::delivery_subject(sink, ticket, session_id, link_id, kind, marker, note_json)),
            ..Default::default()
        });
    }
    Ok(id)
}

/// A note to queue for a matched session.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    pub sink: &'a str,
    pub ticket_id: &'a str,
    pub session_id: i64,
    pub kind: NoteKind,
    pub marker: &'a str,
    pub note_json: &'a str,
}

/// Rows per multi-row INSERT, largest first (9 parameters a row): only these sizes, so
/// each statement is prepared once per connection and kept (`audit::fixed_chunks`).
const DELIVERIES_PER_INSERT: [usize; 5] = [500, 100, 20, 5, 1];

/// The `delivery_enqueued` detail, `{"kind","marker","sink"}`: the same text the
/// `serde_json::Value` it replaces gave (keys in alphabetical order), without the tree.
#[derive(serde::Serialize)]
struct EnqueuedDetail<'a> {
    kind: &'a str,
    marker: &'a str,
    sink: &'a str,
}

/// [`enqueue_in`] for a batch in a few multi-row statements of fixed sizes: the new row's
/// id for each delivery, `None` where the same (sink, marker) is already queued; each one
/// audited.
pub async fn enqueue_many_in(
    tx: &mut Tx<'_>,
    chain: &mut audit::Chain,
    rows: &[NewDelivery<'_>],
) -> Result<Vec<Option<i64>>> {
    let now = super::now();
    let tenant = tx.tenant().clone();
    let mut ids = std::collections::HashMap::new();
    for chunk in audit::fixed_chunks(rows, &DELIVERIES_PER_INSERT) {
        let got: Vec<(i64, String, String)> = on_tx!(tx, |ex, _d, Db| {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO deliveries (sink, ticket_id, session_id, kind, marker, note_json, next_attempt_at, created_at, updated_at,
                 tenant) ",
            );
            q.push_values(chunk, |mut b, d| {
                b.push_bind(d.sink)
                    .push_bind(d.ticket_id)
                    .push_bind(d.session_id)
                    .push_bind(d.kind.as_str())
                    .push_bind(d.marker)
                    .push_bind(d.note_json)
                    .push_bind(&now)
                    .push_bind(&now)
                    .push_bind(&now)
                    .push_bind(tenant.as_str());
            });
            // RETURNING order is unspecified: the ids are mapped back by (sink, marker).
            q.push(" ON CONFLICT (sink, marker) DO NOTHING RETURNING id, sink, marker");
            q.build_query_as().persistent(true).fetch_all(ex).await?
        });
        ids.extend(got.into_iter().map(|(id, sink, marker)| ((sink, marker), id)));
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut reports = Vec::new();
    for d in rows {
        // A (sink, marker) twice in one batch is queued once: the first takes the id.
        let id = ids.remove(&(d.sink.to_string(), d.marker.to_string()));
        if let Some(id) = id {
            chain.push(Event {
                kind: "delivery_enqueued",
                session_id: Some(d.session_id),
                ticket_id: Some(d.ticket_id),
                delivery_id: Some(id),
                detail_text: Some(
                    serde_json::to_string(&EnqueuedDetail { kind: d.kind.as_str(), marker: d.marker, sink: d.sink })
                        .expect("strings serialize"),
                ),
                subject: Some(audit::delivery_subject(
                    d.sink,
                    d.ticket_id,
                    Some(d.session_id),
                    None,
                    d.kind.as_str(),
                    d.marker,
                    d.note_json,
                )),
                ..Default::default()
            });
        }
        if let (Some(id), NoteKind::SessionReport) = (id, d.kind) {
            reports.push((id, d.sink, d.ticket_id, d.session_id));
        }
        out.push(id);
    }
    // The sessions now wait for their time entries on these sinks (migration 0010).
    super::time::open_in(tx, &reports).await?;
    Ok(out)
}

/// A session's report queued for a ticket, and whether it may be on the ticket.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueuedReport {
    #[sqlx(flatten)]
    pub delivery: Delivery,
    /// Delivered, still to be sent (`pending`, `sending`), or an attempt that may have
    /// reached the ticket (delivered, found, ambiguous, interrupted, unfinished). False for a
    /// `failed` or `dead` one that the sink refused every time.
    pub may_be_on_ticket: bool,
}

/// The `session_report` notes of `session_id` queued for `ticket`, in queue order, read in
/// the caller's transaction: what a relink corrects.
pub async fn session_reports_in(tx: &mut Tx<'_>, session_id: i64, ticket: &str) -> Result<Vec<QueuedReport>> {
    let sql = format!(
        "SELECT {COLS},
                (state IN ('pending', 'sending', 'delivered') OR EXISTS (
                    SELECT 1 FROM delivery_attempts a WHERE a.delivery_id = deliveries.id
                      AND (a.outcome IS NULL OR a.outcome IN ('delivered', 'found_existing', 'ambiguous', 'interrupted'))
                )) AS may_be_on_ticket
         FROM deliveries WHERE session_id = ? AND ticket_id = ? AND kind = 'session_report' ORDER BY id"
    );
    Ok(on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(session_id).bind(ticket).fetch_all(ex).await?))
}

/// Deliveries found in `sending` at start-up were interrupted: back to `pending`. Their
/// attempt count is already above zero, so the next attempt scans for the marker first.
pub async fn recover_sending(store: &super::Store) -> Result<u64> {
    recover_sending_claimed_before(store, None).await
}

/// [`recover_sending`] for the deliveries claimed before `cutoff` only: with several
/// instances on one store, a `sending` row claimed recently may be another instance's
/// request in flight; one claimed longer ago than any request may last (request timeout
/// plus the lease TTL) belongs to an instance that died, and is taken over the same way.
pub async fn recover_stale_sending(store: &super::Store, cutoff: &str) -> Result<u64> {
    recover_sending_claimed_before(store, Some(cutoff)).await
}

async fn recover_sending_claimed_before(store: &super::Store, cutoff: Option<&str>) -> Result<u64> {
    let mut tx = store.begin().await?;
    // A claim sets `updated_at`, and nothing else touches a `sending` row until it finishes.
    let ids: Vec<(i64, String)> = on_tx!(tx, |ex, d| {
        sqlx::query_as(&d.sql(
        "SELECT id, ticket_id FROM deliveries WHERE state = 'sending' AND (? IS NULL OR updated_at < ?) ORDER BY id",
    ))
    .bind(cutoff)
    .bind(cutoff)
    .fetch_all(ex)
    .await?
    });
    let now = super::now();
    for (id, ticket) in &ids {
        on_tx!(tx, |ex, d| sqlx::query(&d.sql("UPDATE deliveries SET state = 'pending', updated_at = ? WHERE id = ?"))
            .bind(&now)
            .bind(id)
            .execute(ex)
            .await
            .map(|_| ())?);
        on_tx!(tx, |ex, d| {
            sqlx::query(&d.sql(
            "UPDATE delivery_attempts SET finished_at = ?, outcome = 'interrupted' WHERE delivery_id = ? AND finished_at IS NULL"
        ))
        .bind(&now)
        .bind(id)
        .execute(ex)
        .await
        .map(|_| ())?
        });
        audit::append(
            &mut tx,
            Event {
                kind: "delivery_interrupted",
                ticket_id: Some(ticket),
                delivery_id: Some(*id),
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// Claim up to `limit` due deliveries, at most one per (sink, ticket) and never one that
/// has an older undelivered sibling, so notes land on a ticket in the order they were queued.
pub async fn claim_due(store: &super::Store, limit: i64) -> Result<Vec<Delivery>> {
    Ok(claim_due_grouped(store, limit, &std::collections::HashMap::new()).await?.into_iter().flatten().collect())
}

/// [`claim_due_grouped`] with "due" fixed to `due_by` rather than now: a delivery pass
/// takes what was due when it began, so a retry it scheduled itself waits for the next pass.
pub async fn claim_due_grouped_by(
    store: &super::Store,
    limit: i64,
    batch: &std::collections::HashMap<String, usize>,
    due_by: &str,
) -> Result<Vec<Vec<Delivery>>> {
    claim_inner(store, limit, batch, Some(due_by)).await
}

/// Like [`claim_due`], but for a sink listed in `batch` (sink name → most notes per update)
/// each claimed delivery brings along the due deliveries queued after it for the same
/// ticket with the same visibility, in queue order, stopping at the first one that is not
/// due yet. Each group is written in one update.
pub async fn claim_due_grouped(
    store: &super::Store,
    limit: i64,
    batch: &std::collections::HashMap<String, usize>,
) -> Result<Vec<Vec<Delivery>>> {
    claim_inner(store, limit, batch, None).await
}

async fn claim_inner(
    store: &super::Store,
    limit: i64,
    batch: &std::collections::HashMap<String, usize>,
    due_by: Option<&str>,
) -> Result<Vec<Vec<Delivery>>> {
    let now = super::now();
    let due = due_by.map(str::to_string).unwrap_or_else(|| now.clone());
    let mut tx = store.begin().await?;
    let mut out = Vec::new();
    for sink in sinks_with_heads_in(&mut tx).await? {
        let room = limit - out.len() as i64;
        if room <= 0 {
            break;
        }
        let want = SinkClaim { sink: &sink, groups: room as usize, max_batch: batch.get(&sink).copied().unwrap_or(1) };
        out.extend(claim_sink_in(&mut tx, &want, &due, &now).await?);
    }
    tx.commit().await?;
    Ok(out)
}

/// The claim query: due heads of one sink's queues, in due order, read from the partial
/// index `deliveries_heads` (migration 0006) and nothing else. `INDEXED BY` makes SQLite
/// refuse the statement rather than silently fall back to a scan.
pub const CLAIM_SQL: &str = "SELECT id, sink, ticket_id, session_id, kind, marker, note_json, state, attempts, next_attempt_at, last_error, remote_ref, created_at, delivered_at, tenant
     FROM deliveries INDEXED BY deliveries_heads
     WHERE sink = ? AND state = 'pending' AND is_head = 1 AND next_attempt_at <= ? AND tenant = ?
     ORDER BY next_attempt_at, id LIMIT ?";

/// [`CLAIM_SQL`] as `dialect` runs it. PostgreSQL locks the heads it returns and skips
/// those another transaction holds, so two claimers never take the same note even when
/// they do not share the write lock.
fn claim_sql(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => CLAIM_SQL.to_string(),
        Dialect::Postgres => format!("{} FOR UPDATE SKIP LOCKED", dialect.sql(CLAIM_SQL)),
    }
}

/// The sinks that have a pending head, by a skip-scan of `deliveries_heads` (one index
/// seek per sink): a pass also drains the queues of a sink that is no longer configured.
pub async fn sinks_with_heads(store: &super::Store) -> Result<Vec<String>> {
    let mut tx = store.snapshot().await?;
    let sinks = sinks_with_heads_in(&mut tx).await?;
    tx.rollback().await?;
    Ok(sinks)
}

async fn sinks_with_heads_in(tx: &mut Tx<'_>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let tenant = tx.tenant().clone();
    loop {
        let after = out.last().map(String::as_str).unwrap_or("");
        // The transaction's tenant's sinks (a sink name belongs to one tenant: `[[tenants]]`).
        let next: Option<String> = on_tx!(tx, |ex, d| sqlx::query_scalar(&d.sql(
            "SELECT sink FROM deliveries INDEXED BY deliveries_heads
             WHERE state = 'pending' AND is_head = 1 AND sink > ? AND tenant = ? ORDER BY sink LIMIT 1",
        ))
        .bind(after)
        .bind(tenant.as_str())
        .fetch_optional(ex)
        .await?);
        match next {
            Some(s) => out.push(s),
            None => return Ok(out),
        }
    }
}

/// What a delivery pass asks of one sink: up to `groups` due queue heads, each with up to
/// `max_batch - 1` due followers of the same ticket and visibility (batching sinks).
#[derive(Debug, Clone, Copy)]
pub struct SinkClaim<'a> {
    pub sink: &'a str,
    pub groups: usize,
    pub max_batch: usize,
}

/// Claim in the caller's transaction: heads from `deliveries_heads`, followers from
/// `deliveries_queue` (both hold only undelivered rows), every claimed row moved to
/// `sending` with its attempt row and audit event. A head stays the head while `sending`,
/// so the next note of its ticket is not claimable until this one is delivered.
async fn claim_sink_in(tx: &mut Tx<'_>, want: &SinkClaim<'_>, due: &str, now: &str) -> Result<Vec<Vec<Delivery>>> {
    if want.groups == 0 {
        return Ok(Vec::new());
    }
    let sql = claim_sql(tx.dialect());
    // Only the transaction's tenant's deliveries: a tenant's pass never claims another's.
    let tenant = tx.tenant().clone();
    let heads: Vec<Delivery> = on_tx!(tx, |ex, _d| sqlx::query_as(&sql)
        .bind(want.sink)
        .bind(due)
        .bind(tenant.as_str())
        .bind(want.groups as i64)
        .fetch_all(ex)
        .await?);
    let mut out = Vec::with_capacity(heads.len());
    let mut chain = audit::Chain::load(tx).await?;
    for head in heads {
        let mut group = vec![head];
        // A time entry goes alone: batching is for notes written in one ticket update.
        if want.max_batch > 1 && group[0].kind != NoteKind::TimeEntry {
            let sql = format!(
                "SELECT {COLS} FROM deliveries INDEXED BY deliveries_queue
                 WHERE sink = ? AND ticket_id = ? AND state IN ('pending', 'sending') AND id > ? AND tenant = ?
                 ORDER BY id LIMIT ?"
            );
            let later: Vec<Delivery> = on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(&sql))
                .bind(&group[0].sink)
                .bind(&group[0].ticket_id)
                .bind(group[0].id)
                .bind(tenant.as_str())
                .bind((want.max_batch - 1) as i64)
                .fetch_all(ex)
                .await?);
            let vis = visibility(&group[0].note_json);
            let due_at = crate::session::parse_ts(due);
            for d in later {
                let not_due = due_at.is_none_or(|due| d.next_attempt_at > due);
                if d.state != DeliveryState::Pending
                    || not_due
                    || d.kind == NoteKind::TimeEntry
                    || visibility(&d.note_json) != vis
                {
                    break;
                }
                group.push(d);
            }
        }
        for d in &mut group {
            mark_claimed(tx, &mut chain, d, now).await?;
        }
        out.push(group);
    }
    chain.flush(tx).await?;
    Ok(out)
}

/// One write transaction for a delivery loop step: record the outcomes of the attempts that
/// finished (each note's result committed after its network call), then claim for the
/// sinks that have free slots (each claimed note committed `sending` before its call).
/// One fsync instead of one per note each way; a kill -9 at any point leaves every note
/// `pending`, `sending` (scanned for its marker after restart) or finished, never lost.
pub async fn finish_and_claim(
    store: &super::Store,
    finished: &[(Delivery, Outcome)],
    claims: &[SinkClaim<'_>],
    due_by: &str,
) -> Result<Vec<Vec<Vec<Delivery>>>> {
    let now = super::now();
    let mut tx = store.begin().await?;
    if !finished.is_empty() {
        let mut chain = audit::Chain::load(&mut tx).await?;
        for (d, outcome) in finished {
            finish_in(&mut tx, &mut chain, d, outcome).await?;
        }
        chain.flush(&mut tx).await?;
    }
    let mut out = Vec::with_capacity(claims.len());
    for c in claims {
        out.push(claim_sink_in(&mut tx, c, due_by, &now).await?);
    }
    tx.commit().await?;
    Ok(out)
}

fn visibility(note_json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(note_json).ok()?["visibility"].as_str().map(str::to_string)
}

async fn mark_claimed(tx: &mut Tx<'_>, chain: &mut audit::Chain, d: &mut Delivery, now: &str) -> Result<()> {
    d.attempts += 1;
    d.state = DeliveryState::Sending;
    on_tx!(tx, |ex, q| sqlx::query(
        &q.sql("UPDATE deliveries SET state = 'sending', attempts = ?, updated_at = ? WHERE id = ?")
    )
    .bind(d.attempts)
    .bind(now)
    .bind(d.id)
    .execute(ex)
    .await
    .map(|_| ())?);
    on_tx!(tx, |ex, q| sqlx::query(
        &q.sql("INSERT INTO delivery_attempts (delivery_id, attempt, started_at) VALUES (?, ?, ?)")
    )
    .bind(d.id)
    .bind(d.attempts)
    .bind(now)
    .execute(ex)
    .await
    .map(|_| ())?);
    chain.push(Event {
        kind: "delivery_attempted",
        session_id: d.session_id,
        ticket_id: Some(&d.ticket_id),
        delivery_id: Some(d.id),
        detail: Some(json!({"sink": d.sink, "attempt": d.attempts})),
        ..Default::default()
    });
    Ok(())
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered { remote_ref: String, found_existing: bool },
    Retry { next_attempt_at: String, error: String, ambiguous: bool },
    Failed { error: String },
    Dead { error: String },
}

impl Outcome {
    /// The sink's error text, scrubbed: it lands in `last_error`, the attempt and the audit.
    pub fn redacted(&self) -> Outcome {
        let r = |e: &String| crate::redact::scrubbed(e);
        match self {
            Outcome::Retry { next_attempt_at, error, ambiguous } => {
                Outcome::Retry { next_attempt_at: next_attempt_at.clone(), error: r(error), ambiguous: *ambiguous }
            }
            Outcome::Failed { error } => Outcome::Failed { error: r(error) },
            Outcome::Dead { error } => Outcome::Dead { error: r(error) },
            other => other.clone(),
        }
    }
}

pub async fn finish(store: &super::Store, d: &Delivery, outcome: &Outcome) -> Result<()> {
    let mut tx = store.begin().await?;
    let mut chain = audit::Chain::load(&mut tx).await?;
    finish_in(&mut tx, &mut chain, d, outcome).await?;
    chain.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn finish_in(tx: &mut Tx<'_>, chain: &mut audit::Chain, d: &Delivery, outcome: &Outcome) -> Result<()> {
    // The claim's attempt number is its fencing token: a delivery still `sending` under this
    // attempt is ours to finish. Another instance that took it over after this one stopped
    // answering (`recover_stale_sending`) has put it back to pending or claimed it again
    // (attempt + 1), and its outcome is the one that counts: this late one is dropped, and
    // the take-over's marker scan finds the note if this attempt posted it. The no-op
    // update, not a read, so PostgreSQL locks the row until the commit.
    let ours = on_tx!(tx, |ex, q| {
        sqlx::query(
            &q.sql("UPDATE deliveries SET updated_at = updated_at WHERE id = ? AND state = 'sending' AND attempts = ?"),
        )
        .bind(d.id)
        .bind(d.attempts)
        .execute(ex)
        .await?
        .rows_affected()
    });
    if ours == 0 {
        tracing::warn!(delivery = d.id, attempt = d.attempts, sink = %d.sink,
            "delivery was taken over by another instance while this one was sending; its outcome here is dropped");
        return Ok(());
    }
    let outcome = &outcome.redacted();
    let now = super::now();
    let (state, kind, attempt_outcome, detail) = match outcome {
        Outcome::Delivered { remote_ref, found_existing } => {
            on_tx!(tx, |ex, q| {
                sqlx::query(&q.sql(
                "UPDATE deliveries SET state = 'delivered', remote_ref = ?, last_error = NULL, delivered_at = ?, updated_at = ? WHERE id = ?"
            ))
            .bind(remote_ref)
            .bind(&now)
            .bind(&now)
            .bind(d.id)
            .execute(ex)
            .await
            .map(|_| ())?
            });
            let o = if *found_existing { "found_existing" } else { "delivered" };
            (
                "delivered",
                "delivery_delivered",
                o,
                json!({"sink": d.sink, "remote_ref": remote_ref, "found_existing": found_existing}),
            )
        }
        Outcome::Retry { next_attempt_at, error, ambiguous } => {
            on_tx!(tx, |ex, q| {
                sqlx::query(&q.sql(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?"
            ))
            .bind(next_attempt_at)
            .bind(error)
            .bind(&now)
            .bind(d.id)
            .execute(ex)
            .await
            .map(|_| ())?
            });
            let o = if *ambiguous { "ambiguous" } else { "retry" };
            (
                "pending",
                "delivery_retry_scheduled",
                o,
                json!({"sink": d.sink, "error": error, "next_attempt_at": next_attempt_at}),
            )
        }
        Outcome::Failed { error } => {
            on_tx!(tx, |ex, q| sqlx::query(
                &q.sql("UPDATE deliveries SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ?")
            )
            .bind(error)
            .bind(&now)
            .bind(d.id)
            .execute(ex)
            .await
            .map(|_| ())?);
            ("failed", "delivery_failed", "failed", json!({"sink": d.sink, "error": error}))
        }
        Outcome::Dead { error } => {
            on_tx!(tx, |ex, q| sqlx::query(
                &q.sql("UPDATE deliveries SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ?")
            )
            .bind(error)
            .bind(&now)
            .bind(d.id)
            .execute(ex)
            .await
            .map(|_| ())?);
            ("dead", "delivery_dead", "dead", json!({"sink": d.sink, "error": error}))
        }
    };
    let _ = state;
    on_tx!(tx, |ex, q| sqlx::query(&q.sql(
        "UPDATE delivery_attempts SET finished_at = ?, outcome = ?, detail = ? WHERE delivery_id = ? AND attempt = ?",
    ))
    .bind(&now)
    .bind(attempt_outcome)
    .bind(detail.to_string())
    .bind(d.id)
    .bind(d.attempts)
    .execute(ex)
    .await
    .map(|_| ())?);
    chain.push(Event {
        kind,
        session_id: d.session_id,
        ticket_id: Some(&d.ticket_id),
        delivery_id: Some(d.id),
        detail: Some(detail),
        ..Default::default()
    });
    Ok(())
}

pub async fn list(store: &super::Store, state: Option<&str>) -> Result<Vec<Delivery>> {
    // A tenant-scoped handle (`--tenant`) lists that tenant's deliveries only.
    let sql = format!(
        "SELECT {COLS} FROM deliveries WHERE (? IS NULL OR state = ?) AND tenant = COALESCE(?, tenant) ORDER BY id"
    );
    let tenant = store.tenant_filter().map(|t| t.as_str());
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(state).bind(state).bind(tenant).fetch_all(ex).await?))
}

/// The `limit` most recent deliveries (by id), optionally in one state, oldest first: what
/// `deliveries --limit` prints, without reading a backlog of 100k rows to show the last 20.
pub async fn list_recent(store: &super::Store, state: Option<&str>, limit: i64) -> Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT * FROM (SELECT {COLS} FROM deliveries WHERE (? IS NULL OR state = ?) AND tenant = COALESCE(?, tenant)
         ORDER BY id DESC LIMIT ?) AS recent ORDER BY id"
    );
    let tenant = store.tenant_filter().map(|t| t.as_str());
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql))
        .bind(state)
        .bind(state)
        .bind(tenant)
        .bind(limit)
        .fetch_all(ex)
        .await?))
}

pub async fn get(store: &super::Store, id: i64) -> Result<Option<Delivery>> {
    let sql = format!("SELECT {COLS} FROM deliveries WHERE id = ?");
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(id).fetch_optional(ex).await?))
}

/// Operator requeue of a failed or dead delivery. Its attempt count stays, so the next
/// attempt scans for the marker before posting.
pub async fn requeue(store: &super::Store, id: i64) -> Result<Option<String>> {
    requeue_by(store, id, None).await
}

/// [`requeue`] by a person: the audit row names them (`by`, `via`).
pub async fn requeue_by(store: &super::Store, id: i64, actor: Option<audit::Actor<'_>>) -> Result<Option<String>> {
    let mut tx = store.begin().await?;
    let row: Option<(String, String)> =
        on_tx!(tx, |ex, d| sqlx::query_as(&d.sql("SELECT state, ticket_id FROM deliveries WHERE id = ?"))
            .bind(id)
            .fetch_optional(ex)
            .await?);
    let Some((state, ticket)) = row else { return Ok(None) };
    if state != "failed" && state != "dead" {
        return Ok(Some(state));
    }
    let now = super::now();
    on_tx!(tx, |ex, d| sqlx::query(
        &d.sql("UPDATE deliveries SET state = 'pending', next_attempt_at = ?, updated_at = ? WHERE id = ?")
    )
    .bind(&now)
    .bind(&now)
    .bind(id)
    .execute(ex)
    .await
    .map(|_| ())?);
    audit::append(
        &mut tx,
        Event {
            kind: "delivery_requeued",
            ticket_id: Some(&ticket),
            delivery_id: Some(id),
            detail: Some(match actor {
                Some(a) => a.stamp(json!({"from": state})),
                None => json!({"from": state}),
            }),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some("pending".into()))
}

/// Oldest pending delivery's creation time (for health and the demo).
pub async fn counts_by_state(store: &super::Store) -> Result<Vec<(String, i64)>> {
    Ok(on_pool!(store, |ex, _d| sqlx::query_as("SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state")
        .fetch_all(ex)
        .await?))
}

pub async fn next_due_at(store: &super::Store) -> Result<Option<String>> {
    Ok(on_pool!(store, |ex, _d| sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'"
    )
    .fetch_one(ex)
    .await?))
}
