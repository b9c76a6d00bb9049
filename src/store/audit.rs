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
    let mut out = [0u8; 64];
    row_hash_hex(&mut out, prev, id, at, kind, vendor, session_id, ticket_id, delivery_id, detail);
    String::from_utf8_lossy(&out).into_owned()
}

/// The row hash as lower-case hex into `out`, without allocating (the verify walk runs it
/// a million times).
#[allow(clippy::too_many_arguments)]
fn row_hash_hex(
    out: &mut [u8; 64],
    prev: &str,
    id: i64,
    at: &str,
    kind: &str,
    vendor: Option<&str>,
    session_id: Option<i64>,
    ticket_id: Option<&str>,
    delivery_id: Option<i64>,
    detail: &str,
) {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different rows can produce the same byte stream.
    let mut put = |s: &[u8]| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s);
    };
    let mut num = itoa::Buffer::new();
    put(prev.as_bytes());
    put(num.format(id).as_bytes());
    put(at.as_bytes());
    put(kind.as_bytes());
    put(vendor.unwrap_or("\u{0}").as_bytes());
    match session_id {
        Some(v) => put(num.format(v).as_bytes()),
        None => put(b"\0"),
    }
    put(ticket_id.unwrap_or("\u{0}").as_bytes());
    match delivery_id {
        Some(v) => put(num.format(v).as_bytes()),
        None => put(b"\0"),
    }
    put(detail.as_bytes());
    hex::encode_to_slice(h.finalize(), out).expect("64 hex digits for 32 bytes");
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

type Row = (i64, String, String, Option<String>, Option<i64>, Option<String>, Option<i64>, String, String, String);

/// Rows per verification batch. Batches are checked on blocking threads while the next
/// one is read, and at most a few are in flight: memory stays bounded whatever the size.
const BATCH: usize = 8192;

/// Walk the chain in id order. Each row's link (`prev_hash` equals the stored hash of the
/// row before) and content hash depend only on stored values, so batches are verified in
/// parallel and their results taken in order: the first broken row is still the first.
pub async fn verify(pool: &sqlx::SqlitePool) -> Result<Verify> {
    use futures::TryStreamExt;
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash FROM audit_events ORDER BY id",
    )
    .fetch(pool);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
    let mut in_flight = std::collections::VecDeque::new();
    let mut prev = GENESIS.to_string();
    let mut expected_id = 1i64;
    let mut n = 0u64;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match rows.try_next().await? {
                Some(r) => batch.push(r),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        let (first_prev, first_id) = (std::mem::take(&mut prev), expected_id);
        prev = batch.last().map(|r| r.9.clone()).unwrap_or_default();
        expected_id = batch.last().map(|r| r.0 + 1).unwrap_or(expected_id);
        n += batch.len() as u64;
        let last = batch.len() < BATCH;
        in_flight.push_back(tokio::task::spawn_blocking(move || verify_batch(&batch, &first_prev, first_id)));
        if in_flight.len() >= workers {
            if let Some(broken) = in_flight.pop_front().expect("non-empty").await.expect("verify task") {
                return Ok(broken);
            }
        }
        if last {
            break;
        }
    }
    while let Some(t) = in_flight.pop_front() {
        if let Some(broken) = t.await.expect("verify task") {
            return Ok(broken);
        }
    }
    Ok(Verify::Ok { rows: n, head: prev })
}

/// The first broken row of a batch, given the stored hash and id of the row before it.
fn verify_batch(batch: &[Row], prev: &str, mut expected_id: i64) -> Option<Verify> {
    let mut prev = prev;
    let mut buf = [0u8; 64];
    for (id, at, kind, vendor, sid, tid, did, detail, prev_hash, hash) in batch {
        let id = *id;
        if id != expected_id {
            return Some(Verify::Broken {
                row_id: id,
                reason: format!("expected row {expected_id}: a row was deleted or renumbered"),
            });
        }
        if prev_hash != prev {
            return Some(Verify::Broken { row_id: id, reason: "prev_hash does not match the previous row".into() });
        }
        row_hash_hex(&mut buf, prev, id, at, kind, vendor.as_deref(), *sid, tid.as_deref(), *did, detail);
        if buf != hash.as_bytes() {
            return Some(Verify::Broken { row_id: id, reason: "content does not match its hash (row edited)".into() });
        }
        prev = hash;
        expected_id += 1;
    }
    None
}

/// Id and hash of the last row: the chain head an export records.
pub async fn head_in(conn: &mut sqlx::SqliteConnection) -> Result<Option<(i64, String)>> {
    Ok(sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1").fetch_optional(conn).await?)
}
