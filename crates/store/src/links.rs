//! Ticket links (sessions created for a ticket, manual links) and matches.

use std::collections::HashMap;

use serde_json::json;

use super::audit::{self, Event};
use super::{on_pool, on_tx, List, Result, Tx};
use crate::session::normalize_code;

#[derive(Debug, Clone, sqlx::FromRow, PartialEq, Eq)]
pub struct TicketLink {
    pub id: i64,
    pub vendor: String,
    pub session_code: String,
    pub session_code_norm: String,
    pub ticket_id: String,
    pub kind: String,
    pub created_at: String,
}

pub async fn insert(
    tx: &mut Tx<'_>,
    vendor: &str,
    code: &str,
    ticket: &str,
    kind: &str,
    details: Option<&serde_json::Value>,
    created_by: Option<&str>,
) -> Result<i64> {
    insert_by(tx, vendor, code, ticket, kind, details, created_by, None).await
}

/// [`insert`] by a person: the audit row names them (`by`, `via`).
#[allow(clippy::too_many_arguments)]
pub async fn insert_by(
    tx: &mut Tx<'_>,
    vendor: &str,
    code: &str,
    ticket: &str,
    kind: &str,
    details: Option<&serde_json::Value>,
    created_by: Option<&str>,
    actor: Option<audit::Actor<'_>>,
) -> Result<i64> {
    let tenant = tx.tenant().clone();
    let id: i64 = on_tx!(tx, |ex, d| {
        sqlx::query_scalar(&d.sql(
        "INSERT INTO ticket_links (vendor, session_code, session_code_norm, ticket_id, kind, details_json, created_at, created_by,
         tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    ))
    .bind(vendor)
    .bind(code)
    .bind(normalize_code(code))
    .bind(ticket)
    .bind(kind)
    .bind(details.map(|d| d.to_string()))
    .bind(super::now())
    .bind(created_by)
    .bind(tenant.as_str())
    .fetch_one(ex)
    .await?
    });
    audit::append(
        tx,
        Event {
            kind: "link_created",
            vendor: Some(vendor),
            ticket_id: Some(ticket),
            detail: Some({
                let d = json!({"link_id": id, "kind": kind, "session_code": code});
                match actor {
                    Some(a) => a.stamp(d),
                    None => d,
                }
            }),
            ..Default::default()
        },
    )
    .await?;
    Ok(id)
}

/// Links for a batch of sessions, by normalized code, each list in id order: the matcher
/// looks a session up by its code and by its external id (manual links may name either),
/// one query for the whole batch.
pub async fn for_codes(tx: &mut Tx<'_>, codes: &[&str]) -> Result<HashMap<String, Vec<TicketLink>>> {
    // The transaction's tenant's links only: a session is never matched by another tenant's.
    let tenant = tx.tenant().clone();
    let rows: Vec<TicketLink> = on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(
        "SELECT id, vendor, session_code, session_code_norm, ticket_id, kind, created_at FROM ticket_links
         WHERE session_code_norm IN (SELECT value FROM json_each(?)) AND tenant = ? ORDER BY id",
    ))
    .bind(List(codes))
    .bind(tenant.as_str())
    .fetch_all(ex)
    .await?);
    let mut by_code: HashMap<String, Vec<TicketLink>> = HashMap::new();
    for l in rows {
        by_code.entry(l.session_code_norm.clone()).or_default().push(l);
    }
    Ok(by_code)
}

pub async fn record_match(
    tx: &mut Tx<'_>,
    session_id: i64,
    vendor: &str,
    ticket: &str,
    rule: &str,
    detail: &str,
) -> Result<bool> {
    let mut chain = audit::Chain::load(tx).await?;
    let recorded = record_match_in(tx, &mut chain, session_id, vendor, ticket, rule, detail).await?;
    chain.flush(tx).await?;
    Ok(recorded)
}

/// [`record_match`] with the audit row pushed onto the caller's chain (flushed by the caller).
pub async fn record_match_in(
    tx: &mut Tx<'_>,
    chain: &mut audit::Chain,
    session_id: i64,
    vendor: &str,
    ticket: &str,
    rule: &str,
    detail: &str,
) -> Result<bool> {
    let tenant = tx.tenant().clone();
    let affected = on_tx!(tx, |ex, d| {
        sqlx::query(&d.sql(
        "INSERT OR IGNORE INTO matches (session_id, ticket_id, rule, rule_detail, matched_at, tenant) VALUES (?, ?, ?, ?, ?, ?)",
    ))
    .bind(session_id)
    .bind(ticket)
    .bind(rule)
    .bind(detail)
    .bind(super::now())
    .bind(tenant.as_str())
    .execute(ex)
    .await?
    .rows_affected()
    });
    if affected == 0 {
        return Ok(false);
    }
    chain.push(Event {
        kind: "session_matched",
        vendor: Some(vendor),
        session_id: Some(session_id),
        ticket_id: Some(ticket),
        detail: Some(json!({"rule": rule, "detail": detail})),
        ..Default::default()
    });
    Ok(true)
}

/// A match the matcher decided: session, ticket, rule, what decided.
#[derive(Debug, Clone, Copy)]
pub struct NewMatch<'a> {
    pub session_id: i64,
    pub vendor: &'a str,
    pub ticket_id: &'a str,
    pub rule: &'a str,
    pub detail: &'a str,
}

/// [`record_match_in`] for a batch in one statement: the session ids whose match this
/// recorded (a session matched meanwhile keeps its match and is left out), each audited.
pub async fn record_matches_in(
    tx: &mut Tx<'_>,
    chain: &mut audit::Chain,
    matches: &[NewMatch<'_>],
) -> Result<std::collections::HashSet<i64>> {
    let mut recorded = std::collections::HashSet::new();
    let now = super::now();
    let tenant = tx.tenant().clone();
    // 6 parameters a row. Fixed sizes only, so each statement stays prepared
    // (`audit::fixed_chunks`); a statement per batch length was prepared on every page.
    for chunk in audit::fixed_chunks(matches, &[500, 100, 20, 5, 1]) {
        let ids: Vec<i64> = on_tx!(tx, |ex, d, Db| {
            // The builder numbers PostgreSQL's placeholders itself; only the conflict clause
            // is the dialect's.
            let mut q = sqlx::QueryBuilder::<Db>::new(d.pick(
                "INSERT OR IGNORE INTO matches (session_id, ticket_id, rule, rule_detail, matched_at, tenant) ",
                "INSERT INTO matches (session_id, ticket_id, rule, rule_detail, matched_at, tenant) ",
            ));
            q.push_values(chunk, |mut b, m| {
                b.push_bind(m.session_id)
                    .push_bind(m.ticket_id)
                    .push_bind(m.rule)
                    .push_bind(m.detail)
                    .push_bind(&now)
                    .push_bind(tenant.as_str());
            });
            q.push(d.pick(" RETURNING session_id", " ON CONFLICT DO NOTHING RETURNING session_id"));
            q.build_query_scalar().persistent(true).fetch_all(ex).await?
        });
        recorded.extend(ids);
    }
    for m in matches.iter().filter(|m| recorded.contains(&m.session_id)) {
        chain.push(Event {
            kind: "session_matched",
            vendor: Some(m.vendor),
            session_id: Some(m.session_id),
            ticket_id: Some(m.ticket_id),
            detail: Some(json!({"rule": m.rule, "detail": m.detail})),
            ..Default::default()
        });
    }
    Ok(recorded)
}

/// A session created for a ticket whose vendor session has not ended in the store yet.
#[derive(Debug, Clone)]
pub struct OpenLink {
    pub id: i64,
    pub session_code: String,
    pub ticket_id: String,
    pub details: Option<serde_json::Value>,
}

/// `created` links of a vendor since `since` with no ended session of that code: what a
/// source that polls by link (meetings) still has to look at.
pub async fn open_created(store: &super::Store, vendor: &str, since: &str) -> Result<Vec<OpenLink>> {
    let rows: Vec<(i64, String, String, Option<String>)> = on_pool!(store, |ex, d| sqlx::query_as(&d.sql(
        "SELECT l.id, l.session_code, l.ticket_id, l.details_json FROM ticket_links l
         WHERE l.vendor = ? AND l.kind = 'created' AND l.created_at >= ? AND l.tenant = ?
           AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.vendor = l.vendor AND s.tenant = l.tenant
                           AND s.session_code_norm = l.session_code_norm AND s.ended_at IS NOT NULL)
         ORDER BY l.id",
    ))
    .bind(vendor)
    .bind(since)
    .bind(store.tenant().as_str())
    .fetch_all(ex)
    .await?);
    Ok(rows
        .into_iter()
        .map(|(id, session_code, ticket_id, d)| OpenLink {
            id,
            session_code,
            ticket_id,
            details: d.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect())
}

/// `created` links of a vendor made in [`from`, `to`), ended sessions or not, in id order:
/// what a source that reads by link (meetings) re-reads for `ticketsync backfill`.
pub async fn created_between(store: &super::Store, vendor: &str, from: &str, to: &str) -> Result<Vec<OpenLink>> {
    let rows: Vec<(i64, String, String, Option<String>)> = on_pool!(store, |ex, d| sqlx::query_as(&d.sql(
        "SELECT id, session_code, ticket_id, details_json FROM ticket_links
         WHERE vendor = ? AND kind = 'created' AND created_at >= ? AND created_at < ? AND tenant = ? ORDER BY id",
    ))
    .bind(vendor)
    .bind(from)
    .bind(to)
    .bind(store.tenant().as_str())
    .fetch_all(ex)
    .await?);
    Ok(rows
        .into_iter()
        .map(|(id, session_code, ticket_id, d)| OpenLink {
            id,
            session_code,
            ticket_id,
            details: d.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect())
}

/// Make sessions with this code eligible for matching again (after a new link): in the
/// link's transaction, so the next pass cannot miss a session the link now matches.
pub async fn rematch_code(tx: &mut Tx<'_>, code_norm: &str) -> Result<()> {
    let tenant = tx.tenant().clone();
    on_tx!(tx, |ex, d| {
        sqlx::query(&d.sql(
            "UPDATE sessions SET match_checked_rev = NULL
         WHERE (session_code_norm = ? OR lower(replace(external_id, '-', '')) = ?) AND tenant = ?",
        ))
        .bind(code_norm)
        .bind(code_norm)
        .bind(tenant.as_str())
        .execute(ex)
        .await
        .map(|_| ())?
    });
    Ok(())
}

/// A session's match: the ticket, the rule that decided it, what decided.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Match {
    pub session_id: i64,
    pub ticket_id: String,
    /// `relink` once an operator moved it (`ticketsync relink`).
    pub rule: String,
    pub rule_detail: Option<String>,
    pub matched_at: String,
}

const MATCH_SQL: &str = "SELECT session_id, ticket_id, rule, rule_detail, matched_at FROM matches WHERE session_id = ?";

/// The session's match, read in the caller's transaction (a relink decides on it there).
pub async fn match_of(tx: &mut Tx<'_>, session_id: i64) -> Result<Option<Match>> {
    Ok(on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(MATCH_SQL)).bind(session_id).fetch_optional(ex).await?))
}

/// [`match_of`] outside a transaction (`retry` asks whether a report is still the session's).
pub async fn match_for(store: &super::Store, session_id: i64) -> Result<Option<Match>> {
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(MATCH_SQL)).bind(session_id).fetch_optional(ex).await?))
}

/// How often the session was relinked before: each relink's notes carry the next number
/// in their markers, so moving a session back to a ticket it left queues a fresh note.
pub async fn relinks_of(tx: &mut Tx<'_>, session_id: i64) -> Result<i64> {
    Ok(on_tx!(tx, |ex, d| sqlx::query_scalar(
        &d.sql("SELECT COUNT(*) FROM audit_events WHERE session_id = ? AND kind = 'session_relinked'")
    )
    .bind(session_id)
    .fetch_one(ex)
    .await?))
}

/// An operator's move of a matched session to another ticket (`ticketsync relink`).
#[derive(Debug, Clone, Copy)]
pub struct Relink<'a> {
    pub session_id: i64,
    pub vendor: &'a str,
    /// The ticket the session is matched to now (the move happens only if it still is).
    pub from_ticket: &'a str,
    pub to_ticket: &'a str,
    /// This relink's number for the session (1 for the first), from [`relinks_of`].
    pub number: i64,
    /// Who asked (the login name), when known.
    pub by: Option<&'a str>,
    /// Why, as the operator wrote it.
    pub reason: Option<&'a str>,
}

/// Move the match of `r.session_id` from `r.from_ticket` to `r.to_ticket` (rule `relink`,
/// detail `from <ticket>`) with two audit events on the caller's chain: `session_unlinked`
/// (the old ticket) and `session_relinked` (the new one). False, and nothing written, when
/// the session is not matched to `from_ticket` any more (another relink came first).
pub async fn move_match_in(tx: &mut Tx<'_>, chain: &mut audit::Chain, r: &Relink<'_>) -> Result<bool> {
    let old: Option<(String, Option<String>)> = on_tx!(tx, |ex, d| sqlx::query_as(
        &d.sql("SELECT rule, rule_detail FROM matches WHERE session_id = ? AND ticket_id = ?")
    )
    .bind(r.session_id)
    .bind(r.from_ticket)
    .fetch_optional(ex)
    .await?);
    let Some((old_rule, old_detail)) = old else { return Ok(false) };
    on_tx!(tx, |ex, d| {
        sqlx::query(&d.sql(
        "UPDATE matches SET ticket_id = ?, rule = 'relink', rule_detail = ?, matched_at = ? WHERE session_id = ? AND ticket_id = ?"
    ))
    .bind(r.to_ticket)
    .bind(format!("from {}", r.from_ticket))
    .bind(super::now())
    .bind(r.session_id)
    .bind(r.from_ticket)
    .execute(ex)
    .await
    .map(|_| ())?
    });
    let who = |mut d: serde_json::Value| {
        if let Some(by) = r.by {
            d["by"] = json!(by);
        }
        if let Some(reason) = r.reason {
            d["reason"] = json!(reason);
        }
        d
    };
    chain.push(Event {
        kind: "session_unlinked",
        vendor: Some(r.vendor),
        session_id: Some(r.session_id),
        ticket_id: Some(r.from_ticket),
        detail: Some(who(json!({"to": r.to_ticket, "rule": old_rule, "detail": old_detail}))),
        ..Default::default()
    });
    chain.push(Event {
        kind: "session_relinked",
        vendor: Some(r.vendor),
        session_id: Some(r.session_id),
        ticket_id: Some(r.to_ticket),
        detail: Some(who(json!({"from": r.from_ticket, "relink": r.number}))),
        ..Default::default()
    });
    Ok(true)
}
