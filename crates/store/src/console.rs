//! The web console's reads (issue 21): the overview, the session search and a session's
//! page, the unmatched queue and the failed/dead deliveries. Lists are paginated by keyset
//! (`id < before`, newest first), so the 1000th page costs what the first does.

use super::outbox::Delivery;
use super::sessions::StoredSession;
use super::{on_pool, Result, Store};

/// A source's cursor row: when it last polled, last succeeded, and its last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    pub source: String,
    pub last_poll_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
}

pub async fn source_status(store: &Store) -> Result<Vec<SourceStatus>> {
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Row> = on_pool!(store, |ex, d| {
        sqlx::query_as(
            &d.sql("SELECT source, last_poll_at, last_success_at, last_error FROM source_cursors ORDER BY source"),
        )
        .fetch_all(ex)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|(source, last_poll_at, last_success_at, last_error)| SourceStatus {
            source,
            last_poll_at,
            last_success_at,
            last_error,
        })
        .collect())
}

/// A sink's outbox: waiting for a first attempt, waiting for a retry (pending or sending
/// after a failed attempt), failed, dead, and the creation time of the oldest waiting.
/// Delivered rows are not counted: they are nearly all rows, and counting them would read
/// the whole table on every overview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkOutbox {
    pub sink: String,
    pub pending: i64,
    pub retrying: i64,
    pub failed: i64,
    pub dead: i64,
    pub oldest_pending_at: Option<String>,
}

pub async fn sink_outboxes(store: &Store) -> Result<Vec<SinkOutbox>> {
    type Row = (String, String, i64, i64, Option<String>);
    // Through the `(state, next_attempt_at)` index: only the rows not delivered are read.
    let rows: Vec<Row> = on_pool!(store, |ex, d| {
        sqlx::query_as(&d.sql(
        "SELECT sink, state, CAST(CASE WHEN attempts > 0 THEN 1 ELSE 0 END AS BIGINT), COUNT(*), MIN(created_at) FROM deliveries
         WHERE state IN ('pending', 'sending', 'failed', 'dead')
         GROUP BY sink, state, CASE WHEN attempts > 0 THEN 1 ELSE 0 END ORDER BY sink"
    ))
    .fetch_all(ex)
    .await?
    });
    let mut out: Vec<SinkOutbox> = Vec::new();
    for (sink, state, tried, count, oldest) in rows {
        if out.last().is_none_or(|o| o.sink != sink) {
            out.push(SinkOutbox { sink: sink.clone(), ..Default::default() });
        }
        let o = out.last_mut().expect("pushed above");
        match (state.as_str(), tried) {
            ("failed", _) => o.failed += count,
            ("dead", _) => o.dead += count,
            (_, 0) => o.pending += count,
            _ => o.retrying += count,
        }
        if state == "pending" || state == "sending" {
            o.oldest_pending_at = match (o.oldest_pending_at.take(), oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(out)
}

/// What the sessions page searches by; every field optional, all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// A session code as typed (normalized here: `s119-457-589` finds `S119457589`).
    pub code: Option<String>,
    /// Sessions matched to this ticket.
    pub ticket: Option<String>,
    /// The technician's name, exactly as the vendor wrote it.
    pub technician: Option<String>,
    pub vendor: Option<String>,
    /// Started at or after / before (stored timestamp text, `2026-01-02T00:00:00.000Z`).
    pub from: Option<String>,
    pub to: Option<String>,
    /// Keyset: only sessions with an id below this.
    pub before: Option<i64>,
    /// Every vendor there is: a code is also looked up as a vendor's session id in each.
    pub vendors: Vec<String>,
    /// One tenant's sessions (`[[tenants]]`, or `default`).
    pub tenant: Option<String>,
}

/// A session as the lists show it, with its tenant and its match if it has one.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub session: StoredSession,
    pub tenant: String,
    pub ticket_id: Option<String>,
    pub rule: Option<String>,
}

enum Bind {
    Text(String),
    Int(i64),
}

const COLS: &str = "s.id, s.vendor, s.external_id, s.session_code, s.session_code_norm, s.technician, s.device, s.device_id,
    s.group_name, s.started_at, s.ended_at, s.duration_s, s.notes, s.description, s.custom_api, s.customer_name, s.revision, s.raw_json";

/// One page of the search, newest id first; `limit` rows at most.
pub async fn search_sessions(store: &Store, f: &SessionFilter, limit: i64) -> Result<Vec<SessionRow>> {
    let mut cond = Vec::new();
    let mut binds = Vec::new();
    let mut code_cond = String::new();
    if let Some(code) = f.code.as_deref().map(crate::session::normalize_code).filter(|c| !c.is_empty()) {
        // A manual link may name the vendor's id instead of a code: both are looked for. The
        // id through the `(vendor, external_id)` key, one seek per vendor (an index of its own
        // would cost every ingest a write).
        binds.push(Bind::Text(code));
        if f.vendors.is_empty() {
            code_cond.push_str("s.session_code_norm = ?");
        } else {
            let marks = vec!["?"; f.vendors.len()].join(", ");
            // As typed, and lower-cased (TeamViewer's GUIDs are stored so; Zoom's ids are
            // case-sensitive).
            code_cond = format!("(s.session_code_norm = ? OR (s.vendor IN ({marks}) AND s.external_id IN (?, ?)))");
            binds.extend(f.vendors.iter().map(|v| Bind::Text(v.clone())));
            let typed = f.code.clone().unwrap_or_default().trim().to_string();
            binds.push(Bind::Text(typed.to_lowercase()));
            binds.push(Bind::Text(typed));
        }
        cond.push(code_cond.as_str());
    }
    if let Some(t) = &f.ticket {
        cond.push("s.id IN (SELECT session_id FROM matches WHERE ticket_id = ?)");
        binds.push(Bind::Text(t.clone()));
    }
    if let Some(t) = &f.technician {
        cond.push("s.technician = ?");
        binds.push(Bind::Text(t.clone()));
    }
    if let Some(t) = &f.tenant {
        cond.push("s.tenant = ?");
        binds.push(Bind::Text(t.clone()));
    }
    if let Some(v) = &f.vendor {
        cond.push("s.vendor = ?");
        binds.push(Bind::Text(v.clone()));
    }
    if let Some(t) = &f.from {
        cond.push("s.started_at >= ?");
        binds.push(Bind::Text(t.clone()));
    }
    if let Some(t) = &f.to {
        cond.push("s.started_at < ?");
        binds.push(Bind::Text(t.clone()));
    }
    if let Some(b) = f.before {
        cond.push("s.id < ?");
        binds.push(Bind::Int(b));
    }
    let wh = if cond.is_empty() { String::new() } else { format!("WHERE {}", cond.join(" AND ")) };
    let sql = format!("SELECT {COLS} FROM sessions s {wh} ORDER BY s.id DESC LIMIT ?");
    binds.push(Bind::Int(limit));
    let sessions: Vec<StoredSession> = on_pool!(store, |ex, d| {
        let sql = d.sql(&sql);
        let mut q = sqlx::query_as(&sql);
        for b in &binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        q.fetch_all(ex).await?
    });
    with_matches(store, sessions).await
}

/// The sessions with their matches: one query for the page, by the ids shown (a range
/// would read every match between a page's first and last id: all of them for a search
/// whose hits are spread over the table).
async fn with_matches(store: &Store, sessions: Vec<StoredSession>) -> Result<Vec<SessionRow>> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; sessions.len()].join(", ");
    let sql = format!("SELECT session_id, ticket_id, rule FROM matches WHERE session_id IN ({marks})");
    let matched: Vec<(i64, String, String)> = on_pool!(store, |ex, d| {
        let sql = d.sql(&sql);
        let mut q = sqlx::query_as(&sql);
        for s in &sessions {
            q = q.bind(s.id);
        }
        q.fetch_all(ex).await?
    });
    let tsql = format!("SELECT id, tenant FROM sessions WHERE id IN ({marks})");
    let tenants: Vec<(i64, String)> = on_pool!(store, |ex, d| {
        let sql = d.sql(&tsql);
        let mut q = sqlx::query_as(&sql);
        for s in &sessions {
            q = q.bind(s.id);
        }
        q.fetch_all(ex).await?
    });
    let tenants: std::collections::HashMap<i64, String> = tenants.into_iter().collect();
    let by_id: std::collections::HashMap<i64, (String, String)> =
        matched.into_iter().map(|(id, t, r)| (id, (t, r))).collect();
    Ok(sessions
        .into_iter()
        .map(|s| {
            let m = by_id.get(&s.id).cloned();
            SessionRow {
                tenant: tenants.get(&s.id).cloned().unwrap_or_else(|| "default".into()),
                ticket_id: m.as_ref().map(|m| m.0.clone()),
                rule: m.map(|m| m.1),
                session: s,
            }
        })
        .collect())
}

/// Unmatched sessions (running ones included, vanished ones not), newest first, by keyset.
pub async fn unmatched_page(store: &Store, before: Option<i64>, limit: i64) -> Result<Vec<SessionRow>> {
    let sql = format!(
        "SELECT {COLS} FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM matches m WHERE m.session_id = s.id)
         AND s.vanished_at IS NULL AND s.id < ? ORDER BY s.id DESC LIMIT ?"
    );
    let sessions: Vec<StoredSession> = on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(ex)
        .await?);
    with_matches(store, sessions).await
}

/// One attempt at a delivery, as `delivery_attempts` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: i64,
    pub attempt: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

/// An audit row about the session (or one of its deliveries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub ticket_id: Option<String>,
    pub delivery_id: Option<i64>,
    pub detail_json: String,
}

/// Everything a session's page shows.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session: StoredSession,
    pub tenant: String,
    pub vanished_at: Option<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub match_checked_rev: Option<i64>,
    pub ticket_id: Option<String>,
    pub rule: Option<String>,
    pub matched_at: Option<String>,
    pub deliveries: Vec<Delivery>,
    pub attempts: Vec<Attempt>,
    pub audit: Vec<AuditRow>,
}

/// At most this many audit rows on a session's page (the newest).
pub const SESSION_AUDIT_ROWS: i64 = 200;

pub async fn session_record(store: &Store, id: i64) -> Result<Option<SessionRecord>> {
    let sql = format!("SELECT {COLS} FROM sessions s WHERE s.id = ?");
    let session: Option<StoredSession> =
        on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(id).fetch_optional(ex).await?);
    let Some(session) = session else { return Ok(None) };
    type Extra = (Option<String>, String, String, Option<i64>, String);
    let extra: Extra = on_pool!(store, |ex, d| sqlx::query_as(
        &d.sql("SELECT vanished_at, first_seen_at, last_seen_at, match_checked_rev, tenant FROM sessions WHERE id = ?")
    )
    .bind(id)
    .fetch_one(ex)
    .await?);
    let m: Option<(String, String, String)> = on_pool!(store, |ex, d| sqlx::query_as(
        &d.sql("SELECT ticket_id, rule, matched_at FROM matches WHERE session_id = ?")
    )
    .bind(id)
    .fetch_optional(ex)
    .await?);
    let dsql = format!("SELECT {} FROM deliveries WHERE session_id = ? ORDER BY id", crate::outbox::COLS);
    let deliveries: Vec<Delivery> =
        on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&dsql)).bind(id).fetch_all(ex).await?);
    type A = (i64, i64, String, Option<String>, Option<String>, Option<String>);
    let attempts: Vec<A> = on_pool!(store, |ex, d| sqlx::query_as(&d.sql(
        "SELECT a.delivery_id, a.attempt, a.started_at, a.finished_at, a.outcome, a.detail
             FROM delivery_attempts a JOIN deliveries dl ON dl.id = a.delivery_id
             WHERE dl.session_id = ? ORDER BY a.delivery_id, a.attempt"
    ))
    .bind(id)
    .fetch_all(ex)
    .await?);
    type E = (i64, String, String, Option<String>, Option<i64>, String);
    let mut audit: Vec<E> = on_pool!(store, |ex, d| sqlx::query_as(&d.sql(
        "SELECT id, at, kind, ticket_id, delivery_id, detail_json FROM audit_events
             WHERE session_id = ? ORDER BY id DESC LIMIT ?"
    ))
    .bind(id)
    .bind(SESSION_AUDIT_ROWS)
    .fetch_all(ex)
    .await?);
    audit.reverse();
    Ok(Some(SessionRecord {
        session,
        tenant: extra.4,
        vanished_at: extra.0,
        first_seen_at: extra.1,
        last_seen_at: extra.2,
        match_checked_rev: extra.3,
        ticket_id: m.as_ref().map(|m| m.0.clone()),
        rule: m.as_ref().map(|m| m.1.clone()),
        matched_at: m.map(|m| m.2),
        deliveries,
        attempts: attempts
            .into_iter()
            .map(|(delivery_id, attempt, started_at, finished_at, outcome, detail)| Attempt {
                delivery_id,
                attempt,
                started_at,
                finished_at,
                outcome,
                detail,
            })
            .collect(),
        audit: audit
            .into_iter()
            .map(|(id, at, kind, ticket_id, delivery_id, detail_json)| AuditRow {
                id,
                at,
                kind,
                ticket_id,
                delivery_id,
                detail_json,
            })
            .collect(),
    }))
}

/// Which deliveries the deliveries page lists and a bulk retry requeues.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// `failed` or `dead`; `None`: both.
    pub state: Option<String>,
    pub sink: Option<String>,
    pub before: Option<i64>,
}

/// Failed and dead deliveries, newest first, by keyset.
pub async fn failed_deliveries(store: &Store, f: &DeliveryFilter, limit: i64) -> Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {} FROM deliveries WHERE state IN ('failed', 'dead') AND (? IS NULL OR state = ?) AND (? IS NULL OR sink = ?)
         AND id < ? ORDER BY id DESC LIMIT ?",
        crate::outbox::COLS
    );
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql))
        .bind(f.state.as_deref())
        .bind(f.state.as_deref())
        .bind(f.sink.as_deref())
        .bind(f.sink.as_deref())
        .bind(f.before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(ex)
        .await?))
}
