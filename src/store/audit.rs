//! The append-only audit history, hash-chained (SHA-256 over the previous hash and the
//! row's content) so that an edited, deleted or reordered row is detectable.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Result, StoreError, Tx};

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
    let mut chain = Chain::load(tx).await?;
    let id = chain.push(ev);
    chain.flush(tx).await?;
    Ok(id)
}

/// The chain's tail held in memory for the length of one write transaction, so a writer that
/// records many events (a page of sessions, a batch of matches) reads the tail once and
/// inserts its rows in a few multi-row statements instead of two round trips per event.
///
/// Rows are hashed as they are pushed and written by [`Chain::flush`], which must run before
/// the transaction commits (and before anything else in it appends: a second writer would
/// reuse the same ids and fail on the primary key rather than fork the chain).
#[derive(Debug)]
pub struct Chain {
    next_id: i64,
    prev_hash: String,
    pending: Vec<PendingRow>,
}

#[derive(Debug)]
struct PendingRow {
    id: i64,
    at: String,
    kind: String,
    vendor: Option<String>,
    session_id: Option<i64>,
    ticket_id: Option<String>,
    delivery_id: Option<i64>,
    detail: String,
    prev_hash: String,
    hash: String,
}

/// Rows per INSERT: 10 parameters each, well under SQLite's 32 766 bound parameters.
const ROWS_PER_INSERT: usize = 500;

impl Chain {
    /// Read the tail inside `tx`, which must hold the write lock (`Store::begin`).
    pub async fn load(tx: &mut Tx<'_>) -> Result<Chain> {
        let tail: Option<(i64, String)> = sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
        let (next_id, prev_hash) = match tail {
            Some((id, h)) => (id + 1, h),
            None => (1, GENESIS.to_string()),
        };
        Ok(Chain { next_id, prev_hash, pending: Vec::new() })
    }

    /// Hash the event onto the chain; returns the id its row will have.
    pub fn push(&mut self, ev: Event<'_>) -> i64 {
        let id = self.next_id;
        let at = super::now();
        let detail = ev.detail.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "{}".into());
        // Vendor text (an error body) may echo a secret; scrubbed before it is hashed.
        let scrubbed = match crate::redact::scrub(&detail) {
            std::borrow::Cow::Owned(s) => Some(s),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let detail = scrubbed.unwrap_or(detail);
        let hash = row_hash(
            &self.prev_hash,
            id,
            &at,
            ev.kind,
            ev.vendor,
            ev.session_id,
            ev.ticket_id,
            ev.delivery_id,
            &detail,
        );
        let prev_hash = std::mem::replace(&mut self.prev_hash, hash.clone());
        self.pending.push(PendingRow {
            id,
            at,
            kind: ev.kind.to_string(),
            vendor: ev.vendor.map(str::to_string),
            session_id: ev.session_id,
            ticket_id: ev.ticket_id.map(str::to_string),
            delivery_id: ev.delivery_id,
            detail,
            prev_hash,
            hash,
        });
        self.next_id += 1;
        id
    }

    /// Write the pushed rows.
    pub async fn flush(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        for chunk in self.pending.chunks(ROWS_PER_INSERT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO audit_events (id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(&r.at)
                    .push_bind(&r.kind)
                    .push_bind(&r.vendor)
                    .push_bind(r.session_id)
                    .push_bind(&r.ticket_id)
                    .push_bind(r.delivery_id)
                    .push_bind(&r.detail)
                    .push_bind(&r.prev_hash)
                    .push_bind(&r.hash);
            });
            // Only the full-size statement is kept prepared: every other row count would be
            // another cached statement, and a cache of multi-row statements grew the RSS by
            // tens of MB in the benchmark.
            q.build().persistent(chunk.len() == ROWS_PER_INSERT).execute(&mut **tx).await?;
        }
        self.pending.clear();
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verify {
    Ok { rows: u64, head: String },
    Broken { row_id: i64, reason: String },
}

/// Walk the chain of the database behind `pool` (see [`verify_path`]).
pub async fn verify(pool: &sqlx::SqlitePool) -> Result<Verify> {
    let path = pool.connect_options().get_filename().to_path_buf();
    verify_path(&path).await
}

/// Walk the chain in id order, read-only, in constant memory: ids without gaps, each
/// `prev_hash` equal to the previous row's `hash`, each `hash` recomputed from the content.
/// The first broken row is reported.
///
/// This walk reads through rusqlite rather than sqlx: sqlx hands every row from its worker
/// thread to the caller as owned values (several microseconds a row), while rusqlite lets
/// the hash read the column bytes in place, which makes a million rows take about a second.
pub async fn verify_path(path: &std::path::Path) -> Result<Verify> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || verify_blocking(&path))
        .await
        .map_err(|e| StoreError::Invalid(format!("audit verify task: {e}")))?
}

fn verify_blocking(path: &std::path::Path) -> Result<Verify> {
    use rusqlite::{Connection, OpenFlags};
    let db_err = |e: rusqlite::Error| StoreError::Invalid(format!("database {}: {e}", path.display()));
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
    let mut stmt = conn
        .prepare(
            "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash
             FROM audit_events ORDER BY id",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    let mut prev = [0u8; 64];
    prev.copy_from_slice(GENESIS.as_bytes());
    let mut buf = [0u8; 64];
    let mut expected_id = 1i64;
    while let Some(row) = rows.next().map_err(db_err)? {
        let id: i64 = row.get(0).map_err(db_err)?;
        let broken = |reason: String| Ok(Verify::Broken { row_id: id, reason });
        if id != expected_id {
            return broken(format!("expected row {expected_id}: a row was deleted or renumbered"));
        }
        // A column whose type was changed behind SQLite's back is tampering too.
        let fields = (|| -> rusqlite::Result<_> {
            Ok((
                row.get_ref(1)?.as_str()?,
                row.get_ref(2)?.as_str()?,
                row.get_ref(3)?.as_str_or_null()?,
                row.get::<_, Option<i64>>(4)?,
                row.get_ref(5)?.as_str_or_null()?,
                row.get::<_, Option<i64>>(6)?,
                row.get_ref(7)?.as_str()?,
                row.get_ref(8)?.as_str()?,
                row.get_ref(9)?.as_str()?,
            ))
        })();
        let (at, kind, vendor, sid, tid, did, detail, prev_hash, hash) = match fields {
            Ok(f) => f,
            Err(e) => return broken(format!("unreadable column ({e})")),
        };
        if prev_hash.as_bytes() != prev {
            return broken("prev_hash does not match the previous row".into());
        }
        let prev_str = std::str::from_utf8(&prev).expect("hex is ASCII");
        row_hash_hex(&mut buf, prev_str, id, at, kind, vendor, sid, tid, did, detail);
        if buf != hash.as_bytes() {
            return broken("content does not match its hash (row edited)".into());
        }
        prev = buf;
        expected_id += 1;
    }
    let head = std::str::from_utf8(&prev).expect("hex is ASCII").to_string();
    Ok(Verify::Ok { rows: (expected_id - 1) as u64, head })
}

/// Id and hash of the last row: the chain head an export records.
pub async fn head_in(conn: &mut sqlx::SqliteConnection) -> Result<Option<(i64, String)>> {
    Ok(sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1").fetch_optional(conn).await?)
}
