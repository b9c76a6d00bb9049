//! The append-only audit history, hash-chained (SHA-256 over the previous hash and the
//! row's content) so that an edited, deleted or reordered row is detectable.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Result, Tx};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Default, Clone)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub vendor: Option<&'a str>,
    pub session_id: Option<i64>,
    pub ticket_id: Option<&'a str>,
    pub delivery_id: Option<i64>,
    pub detail: Option<Value>,
}

#[allow(clippy::too_many_arguments)]
pub fn row_hash(
    prev: &str,
    id: i64,
    at: &str,
    kind: &str,
    vendor: Option<&str>,
    session_id: Option<i64>,
    ticket_id: Option<&str>,
    delivery_id: Option<i64>,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different rows can produce the same byte stream.
    let mut put = |s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    put(prev);
    put(&id.to_string());
    put(at);
    put(kind);
    put(vendor.unwrap_or("\u{0}"));
    put(&session_id.map(|v| v.to_string()).unwrap_or_else(|| "\u{0}".into()));
    put(ticket_id.unwrap_or("\u{0}"));
    put(&delivery_id.map(|v| v.to_string()).unwrap_or_else(|| "\u{0}".into()));
    put(detail);
    hex::encode(h.finalize())
}

/// Append one event inside the caller's transaction (which holds the write lock, so the
/// chain cannot fork).
pub async fn append(tx: &mut Tx<'_>, ev: Event<'_>) -> Result<i64> {
    let prev: Option<(i64, String)> =
        sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    let (id, prev_hash) = match prev {
        Some((id, h)) => (id + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let at = super::now();
    let detail = ev.detail.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "{}".into());
    let hash = row_hash(&prev_hash, id, &at, ev.kind, ev.vendor, ev.session_id, ev.ticket_id, ev.delivery_id, &detail);
    sqlx::query(
        "INSERT INTO audit_events (id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(&at)
    .bind(ev.kind)
    .bind(ev.vendor)
    .bind(ev.session_id)
    .bind(ev.ticket_id)
    .bind(ev.delivery_id)
    .bind(&detail)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verify {
    Ok { rows: u64, head: String },
    Broken { row_id: i64, reason: String },
}

/// Walk the chain in id order, streaming (constant memory).
pub async fn verify(pool: &sqlx::SqlitePool) -> Result<Verify> {
    use futures::TryStreamExt;
    type Row = (i64, String, String, Option<String>, Option<i64>, Option<String>, Option<i64>, String, String, String);
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash FROM audit_events ORDER BY id",
    )
    .fetch(pool);
    let mut prev = GENESIS.to_string();
    let mut expected_id = 1i64;
    let mut n = 0u64;
    while let Some((id, at, kind, vendor, sid, tid, did, detail, prev_hash, hash)) = rows.try_next().await? {
        if id != expected_id {
            return Ok(Verify::Broken {
                row_id: id,
                reason: format!("expected row {expected_id}: a row was deleted or renumbered"),
            });
        }
        if prev_hash != prev {
            return Ok(Verify::Broken { row_id: id, reason: "prev_hash does not match the previous row".into() });
        }
        let h = row_hash(&prev, id, &at, &kind, vendor.as_deref(), sid, tid.as_deref(), did, &detail);
        if h != hash {
            return Ok(Verify::Broken { row_id: id, reason: "content does not match its hash (row edited)".into() });
        }
        prev = hash;
        expected_id += 1;
        n += 1;
    }
    Ok(Verify::Ok { rows: n, head: prev })
}
