//! Sessions: upsert by (vendor, external id), quarantine, vanished detection.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::audit::{self, Event};
use super::{on_pool, on_tx, List, Result, Tx};
use chrono::{DateTime, Utc};

use crate::session::{normalize_code, parse_ts, ts, NewSession};

/// A time as the store keeps it (`session::ts`: milliseconds), read back.
fn as_stored(t: DateTime<Utc>) -> DateTime<Utc> {
    parse_ts(&ts(t)).unwrap_or(t)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Updated,
    Unchanged,
    /// Not stored: the vendor id is already a session of another tenant (issue 17). The
    /// record is quarantined with that reason; the other tenant's session is left alone, so
    /// no tenant's poll can change, match or deliver another's session.
    Refused,
}

/// Insert or update one session; every insert or change is an audit event.
pub async fn upsert(tx: &mut Tx<'_>, s: &NewSession, walk_id: Option<&str>) -> Result<(i64, Upsert)> {
    let mut out = upsert_many(tx, &[s], walk_id, false).await?;
    Ok(out.pop().expect("one result per session"))
}

/// Sessions per multi-row INSERT, largest first: 24 parameters each, the largest under
/// SQLite's 32 766 bound parameters. A page is split into chunks of these sizes only
/// (`audit::fixed_chunks`), so every statement it runs is one of five, prepared once per
/// connection and kept: a remainder chunk of any other size was prepared anew on every page.
const SESSIONS_PER_INSERT: [usize; 5] = [500, 100, 20, 5, 1];

/// First-seen sessions listed by one `sessions_seen` audit row, so a vendor page of 1 000
/// records (TeamViewer) gets 10 rows. The views read one session's entry out of its row, a
/// cost that grows with the row (a full scan of `v_session_events` at 100k sessions: 6 s
/// of CPU with rows of 1 000, measured with the sqlite3 CLI, BENCHMARKS.md session 7),
/// while a row's own cost, spread over its sessions, is ~3 bytes each at 100.
const SESSIONS_PER_PAGE_ROW: usize = 100;

/// One session's entry in a `sessions_seen` row (migration 0007):
/// `[id, external_id, session_code, ended, subject_sha256]`.
struct SeenEntry<'a> {
    id: i64,
    s: &'a NewSession,
    subject: audit::Subject,
}

/// The detail of a `sessions_seen` row, `{"sessions":[[id,"ext","code"|null,true,"hex"],…]}`,
/// written directly: a `serde_json::Value` tree per session was one of the larger
/// allocation sources of ingest (BENCHMARKS.md, session 6 profile).
fn page_detail(entries: &[SeenEntry<'_>]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(16 + entries.len() * 150);
    out.extend_from_slice(br#"{"sessions":["#);
    let mut num = itoa::Buffer::new();
    let mut hex = [0u8; 64];
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        out.extend_from_slice(num.format(e.id).as_bytes());
        out.push(b',');
        serde_json::to_writer(&mut out, &e.s.external_id).expect("a string serializes");
        out.push(b',');
        serde_json::to_writer(&mut out, &e.s.session_code).expect("a string serializes");
        out.extend_from_slice(if e.s.ended_at.is_some() { b",true,\"" } else { b",false,\"" });
        hex::encode_to_slice(e.subject.0, &mut hex).expect("64 hex digits for 32 bytes");
        out.extend_from_slice(&hex);
        out.extend_from_slice(b"\"]");
    }
    out.extend_from_slice(b"]}");
    String::from_utf8(out).expect("JSON written from UTF-8 strings and ASCII")
}

/// Insert or update a page of sessions, one result per session in order; every insert or
/// change is an audit event, as with [`upsert`].
///
/// A page costs a handful of statements rather than four per record (the round trip to
/// SQLite's worker thread, not SQLite itself, dominated ingest): one lookup of the page's
/// known ids, multi-row inserts of the new sessions, one touch of the unchanged ones, the
/// audit rows in multi-row inserts. Changed, reappearing or repeated records (rare) take
/// the row-by-row path.
///
/// The first-seen sessions of the page are recorded by one `sessions_seen` audit row (per
/// [`SESSIONS_PER_PAGE_ROW`]) listing each one's subject, not a row each: one chain link per
/// page (migration 0007). Each session's `seen_event_id` names that row.
///
/// `matched_here`: the caller matches the first-seen ended sessions in this same transaction
/// (the store's page hook), so they are inserted already marked examined at revision 1,
/// rather than inserted into the matching pass's index and marked with an update after.
pub async fn upsert_many(
    tx: &mut Tx<'_>,
    records: &[&NewSession],
    walk_id: Option<&str>,
    matched_here: bool,
) -> Result<Vec<(i64, Upsert)>> {
    let now = super::now();
    let hashes: Vec<String> = records.iter().map(|s| hex::encode(Sha256::digest(s.raw_json.as_bytes()))).collect();
    let mut known = known_in_page(tx, records).await?;
    let mut chain = audit::Chain::load(tx).await?;
    let mut out: Vec<Option<(i64, Upsert)>> = vec![None; records.len()];

    // First sightings go in together; a record already stored, or repeated later in the same
    // page, is compared with what is stored once the new ones are in.
    let mut fresh = Vec::new();
    let mut again = Vec::new();
    let mut refused = Vec::new();
    let mut in_page = HashSet::new();
    let tenant = tx.tenant().clone();
    for (i, &s) in records.iter().enumerate() {
        let key = (s.vendor.as_str(), s.external_id.as_str());
        if known.get(&key).is_some_and(|k| k.3 != tenant.as_str()) {
            refused.push(i);
            out[i] = Some((0, Upsert::Refused));
        } else if known.contains_key(&key) || !in_page.insert(key) {
            again.push(i);
        } else {
            fresh.push(i);
        }
    }
    // New rows get explicit ids, max(id) + 1, + 2, …: what SQLite would assign (no
    // AUTOINCREMENT, and this transaction holds the write lock), known here without a
    // RETURNING clause handing every row's key back to be matched up again.
    let mut next_session_id: i64 = if fresh.is_empty() {
        0
    } else {
        on_tx!(tx, |ex, _d| sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM sessions").fetch_one(ex).await?)
    };
    for group in fresh.chunks(SESSIONS_PER_PAGE_ROW) {
        // Nothing else is pushed onto the chain until this group's row: it gets this id.
        let page_event = chain.next_id();
        let mut entries = Vec::with_capacity(group.len());
        for chunk in audit::fixed_chunks(group, &SESSIONS_PER_INSERT) {
            let first_id = next_session_id;
            on_tx!(tx, |ex, _d, Db| {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO sessions (id, vendor, external_id, session_code, session_code_norm, technician, technician_id, device,
                 device_id, group_name, started_at, ended_at, duration_s, notes, description, custom_api, customer_name,
                 customer_email, raw_json, content_hash, first_seen_at, last_seen_at, last_walk_id, match_checked_rev,
                 seen_event_id, tenant) ",
            );
                q.push_values(chunk.iter().zip(first_id..), |mut b, (&i, id)| {
                    let s = records[i];
                    b.push_bind(id)
                        .push_bind(&s.vendor)
                        .push_bind(&s.external_id)
                        .push_bind(&s.session_code)
                        .push_bind(s.session_code.as_deref().map(normalize_code))
                        .push_bind(&s.technician)
                        .push_bind(&s.technician_id)
                        .push_bind(&s.device)
                        .push_bind(&s.device_id)
                        .push_bind(&s.group_name)
                        .push_bind(ts(s.started_at))
                        .push_bind(s.ended_at.map(ts))
                        .push_bind(s.duration_s())
                        .push_bind(&s.notes)
                        .push_bind(&s.description)
                        .push_bind(&s.custom_api)
                        .push_bind(&s.customer_name)
                        .push_bind(&s.customer_email)
                        .push_bind(&s.raw_json)
                        .push_bind(&hashes[i])
                        .push_bind(&now)
                        .push_bind(&now)
                        .push_bind(walk_id)
                        .push_bind((matched_here && s.ended_at.is_some()).then_some(1i64))
                        .push_bind(page_event)
                        .push_bind(tenant.as_str());
                });
                q.build().persistent(true).execute(ex).await?;
            });
            for (&i, id) in chunk.iter().zip(first_id..) {
                let s = records[i];
                // The row as inserted, so an edit of it later is found by `audit verify`.
                entries.push(SeenEntry { id, s, subject: audit::session_subject_of(s, &hashes[i]) });
                out[i] = Some((id, Upsert::Inserted));
                known.insert((&s.vendor, &s.external_id), (id, hashes[i].clone(), None, tenant.to_string()));
            }
            next_session_id += chunk.len() as i64;
        }
        let vendor = group.first().map(|&i| records[i].vendor.as_str());
        let single_vendor = group.iter().all(|&i| Some(records[i].vendor.as_str()) == vendor);
        let id = chain.push(Event {
            kind: "sessions_seen",
            // A page comes from one vendor; each entry's session row names its own anyway.
            vendor: vendor.filter(|_| single_vendor),
            detail_text: Some(page_detail(&entries)),
            ..Default::default()
        });
        if id != page_event {
            // Unreachable (nothing was pushed in between); the sessions would name a wrong row.
            return Err(super::StoreError::Invalid(format!("page audit row got id {id}, expected {page_event}")));
        }
    }

    let mut touched = Vec::new();
    for i in again {
        let s = records[i];
        let key = (s.vendor.as_str(), s.external_id.as_str());
        let (id, old_hash, vanished, _) = known.get(&key).cloned().expect("known or inserted above");
        if old_hash == hashes[i] || same_content(tx, id, &s.raw_json).await? {
            // Seen again unchanged: one update for all of them below; a session the vendor
            // had stopped returning is back, and that is an audit event.
            touched.push(id);
            if vanished.is_some() {
                chain.push(Event {
                    kind: "session_reappeared",
                    vendor: Some(&s.vendor),
                    session_id: Some(id),
                    ..Default::default()
                });
            }
            out[i] = Some((id, Upsert::Unchanged));
        } else {
            update_changed(tx, id, s, &hashes[i], &now, walk_id).await?;
            chain.push(Event {
                kind: "session_updated",
                vendor: Some(&s.vendor),
                session_id: Some(id),
                detail: Some(
                    json!({"external_id": s.external_id, "content_hash": hashes[i], "ended": s.ended_at.is_some()}),
                ),
                // The row as updated: `audit verify` compares the session with its latest record.
                subject: Some(audit::session_subject_of(s, &hashes[i])),
                ..Default::default()
            });
            out[i] = Some((id, Upsert::Updated));
        }
        known.insert(key, (id, hashes[i].clone(), None, tenant.to_string()));
    }
    if !touched.is_empty() {
        on_tx!(tx, |ex, d| sqlx::query(&d.sql(
            "UPDATE sessions SET last_seen_at = ?, last_walk_id = COALESCE(?, last_walk_id), vanished_at = NULL
             WHERE id IN (SELECT value FROM json_each(?))",
        ))
        .bind(&now)
        .bind(walk_id)
        .bind(List(&touched))
        .execute(ex)
        .await
        .map(|_| ())?);
    }
    chain.flush(tx).await?;
    for i in refused {
        let s = records[i];
        let reason = format!(
            "the vendor id {}/{} is already stored for another tenant; not stored for tenant {tenant}",
            s.vendor, s.external_id
        );
        quarantine(tx, &s.vendor, Some(&s.external_id), &reason, &s.raw_json).await?;
    }
    Ok(out.into_iter().map(|r| r.expect("every record handled")).collect())
}

/// A different hash with the same JSON content is the same record in another serialization,
/// not a vendor-side change: the stored text stays as it is (never rewritten) and no revision
/// is added. Databases written before TeamViewer records were kept as the vendor's text hold
/// them re-serialized with sorted keys; their next overlap read must not mark them changed.
async fn same_content(tx: &mut Tx<'_>, id: i64, raw: &str) -> Result<bool> {
    let stored: String = on_tx!(tx, |ex, d| sqlx::query_scalar(&d.sql("SELECT raw_json FROM sessions WHERE id = ?"))
        .bind(id)
        .fetch_one(ex)
        .await?);
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
    Ok(matches!((parse(&stored), parse(raw)), (Some(a), Some(b)) if a == b))
}

/// By (vendor, external id) as the page's records hold them: id, content hash, vanished_at,
/// tenant.
type Known<'a> = HashMap<(&'a str, &'a str), (i64, String, Option<String>, String)>;

/// The stored (id, content hash, vanished_at) of the page's records that are already known.
async fn known_in_page<'a>(tx: &mut Tx<'_>, records: &[&'a NewSession]) -> Result<Known<'a>> {
    let mut by_vendor: HashMap<&str, Vec<&str>> = HashMap::new();
    for &s in records {
        by_vendor.entry(s.vendor.as_str()).or_default().push(s.external_id.as_str());
    }
    let mut known = Known::new();
    for (vendor, ids) in by_vendor {
        let rows: Vec<(i64, String, String, Option<String>, String)> = on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(
            "SELECT id, external_id, content_hash, vanished_at, tenant FROM sessions
             WHERE vendor = ? AND external_id IN (SELECT value FROM json_each(?))",
        ))
        .bind(vendor)
        .bind(List(&ids))
        .fetch_all(ex)
        .await?);
        let page: HashSet<&str> = ids.iter().copied().collect();
        for (id, ext, hash, vanished, tenant) in rows {
            if let Some(&ext) = page.get(ext.as_str()) {
                known.insert((vendor, ext), (id, hash, vanished, tenant));
            }
        }
    }
    Ok(known)
}

async fn update_changed(
    tx: &mut Tx<'_>,
    id: i64,
    s: &NewSession,
    hash: &str,
    now: &str,
    walk_id: Option<&str>,
) -> Result<()> {
    on_tx!(tx, |ex, d| sqlx::query(&d.sql(
        "UPDATE sessions SET session_code = ?, session_code_norm = ?, technician = ?, technician_id = ?, device = ?,
         device_id = ?, group_name = ?, started_at = ?, ended_at = ?, duration_s = ?, notes = ?, description = ?,
         custom_api = ?, customer_name = ?, customer_email = ?, raw_json = ?, content_hash = ?,
         revision = revision + 1, last_seen_at = ?, last_walk_id = COALESCE(?, last_walk_id), vanished_at = NULL,
         match_checked_rev = NULL
         WHERE id = ?",
    ))
    .bind(&s.session_code)
    .bind(s.session_code.as_deref().map(normalize_code))
    .bind(&s.technician)
    .bind(&s.technician_id)
    .bind(&s.device)
    .bind(&s.device_id)
    .bind(&s.group_name)
    .bind(ts(s.started_at))
    .bind(s.ended_at.map(ts))
    .bind(s.duration_s())
    .bind(&s.notes)
    .bind(&s.description)
    .bind(&s.custom_api)
    .bind(&s.customer_name)
    .bind(&s.customer_email)
    .bind(&s.raw_json)
    .bind(hash)
    .bind(now)
    .bind(walk_id)
    .bind(id)
    .execute(ex)
    .await
    .map(|_| ())?);
    Ok(())
}

/// Quarantine a record once: the overlap re-read meets the same bad record on every poll,
/// and an identical (source, raw) row already says everything.
pub async fn quarantine(
    tx: &mut Tx<'_>,
    source: &str,
    external_id: Option<&str>,
    reason: &str,
    raw: &str,
) -> Result<i64> {
    let tenant = tx.tenant().clone();
    let seen: Option<i64> = on_tx!(tx, |ex, d| sqlx::query_scalar(
        &d.sql("SELECT id FROM quarantine WHERE source = ? AND raw = ? AND tenant = ? LIMIT 1")
    )
    .bind(source)
    .bind(raw)
    .bind(tenant.as_str())
    .fetch_optional(ex)
    .await?);
    if let Some(id) = seen {
        return Ok(id);
    }
    let id: i64 = on_tx!(tx, |ex, d| {
        sqlx::query_scalar(&d.sql(
        "INSERT INTO quarantine (source, external_id, reason, raw, received_at, tenant) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    ))
    .bind(source)
    .bind(external_id)
    .bind(crate::redact::scrubbed(reason))
    .bind(raw)
    .bind(super::now())
    .bind(tenant.as_str())
    .fetch_one(ex)
    .await?
    });
    audit::append(
        tx,
        Event {
            kind: "record_quarantined",
            vendor: Some(source),
            detail: Some(json!({"quarantine_id": id, "external_id": external_id, "reason": reason})),
            ..Default::default()
        },
    )
    .await?;
    Ok(id)
}

/// After a complete walk from `from`: sessions the vendor no longer returns are marked
/// vanished (never deleted: the audit history keeps what was seen).
pub async fn mark_vanished(tx: &mut Tx<'_>, vendor: &str, from: &str, to: &str, walk_id: &str) -> Result<u64> {
    // Only the walking tenant's sessions: another tenant's account of the same vendor was not walked.
    let tenant = tx.tenant().clone();
    let ids: Vec<(i64, String)> = on_tx!(tx, |ex, d| {
        sqlx::query_as(&d.sql(
        "SELECT id, external_id FROM sessions WHERE tenant = ? AND vendor = ? AND started_at >= ? AND started_at < ?
         AND vanished_at IS NULL AND (last_walk_id IS NULL OR last_walk_id != ?)",
    ))
    .bind(tenant.as_str())
    .bind(vendor)
    .bind(from)
    .bind(to)
    .bind(walk_id)
    .fetch_all(ex)
    .await?
    });
    let now = super::now();
    for (id, ext) in &ids {
        on_tx!(tx, |ex, d| sqlx::query(&d.sql("UPDATE sessions SET vanished_at = ? WHERE id = ?"))
            .bind(&now)
            .bind(id)
            .execute(ex)
            .await
            .map(|_| ())?);
        audit::append(
            tx,
            Event {
                kind: "session_vanished",
                vendor: Some(vendor),
                session_id: Some(*id),
                detail: Some(json!({"external_id": ext})),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(ids.len() as u64)
}

/// The earliest start of a still-running session younger than `min_start`, so the next
/// poll window reaches back to it (TeamViewer filters on start_date only).
pub async fn earliest_open_start(store: &super::Store, vendor: &str, min_start: &str) -> Result<Option<String>> {
    Ok(on_pool!(store, |ex, d| {
        sqlx::query_scalar(&d.sql(
        "SELECT MIN(started_at) FROM sessions WHERE tenant = ? AND vendor = ? AND ended_at IS NULL AND vanished_at IS NULL
         AND started_at >= ?",
    ))
    .bind(store.tenant().as_str())
    .bind(vendor)
    .bind(min_start)
    .fetch_one(ex)
    .await?
    }))
}

/// A stored session as the matcher and the note renderer see it.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub id: i64,
    pub vendor: String,
    pub external_id: String,
    pub session_code: Option<String>,
    pub session_code_norm: Option<String>,
    pub technician: Option<String>,
    pub device: Option<String>,
    pub device_id: Option<String>,
    pub group_name: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_s: Option<i64>,
    pub notes: Option<String>,
    pub description: Option<String>,
    pub custom_api: Option<String>,
    pub customer_name: Option<String>,
    pub revision: i64,
    /// The vendor's record, for vendor-specific note content (`sources::note_extras_for`).
    pub raw_json: String,
}

/// Read as stored; the times from their RFC 3339 text (`session::ts`), on either backend.
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for StoredSession
where
    &'r str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<StoredSession> {
        Ok(StoredSession {
            id: row.try_get("id")?,
            vendor: row.try_get("vendor")?,
            external_id: row.try_get("external_id")?,
            session_code: row.try_get("session_code")?,
            session_code_norm: row.try_get("session_code_norm")?,
            technician: row.try_get("technician")?,
            device: row.try_get("device")?,
            device_id: row.try_get("device_id")?,
            group_name: row.try_get("group_name")?,
            started_at: super::time(row, "started_at")?,
            ended_at: super::time_opt(row, "ended_at")?,
            duration_s: row.try_get("duration_s")?,
            notes: row.try_get("notes")?,
            description: row.try_get("description")?,
            custom_api: row.try_get("custom_api")?,
            customer_name: row.try_get("customer_name")?,
            revision: row.try_get("revision")?,
            raw_json: row.try_get("raw_json")?,
        })
    }
}

const SESSION_COLS: &str = "s.id, s.vendor, s.external_id, s.session_code, s.session_code_norm, s.technician, s.device, s.device_id,
    s.group_name, s.started_at, s.ended_at, s.duration_s, s.notes, s.description, s.custom_api, s.customer_name, s.revision, s.raw_json";

/// Ended sessions without a match, oldest first.
pub async fn unmatched_ended(store: &super::Store, after_id: i64, limit: i64) -> Result<Vec<StoredSession>> {
    let sql = format!(
        "SELECT {SESSION_COLS} FROM sessions s LEFT JOIN matches m ON m.session_id = s.id
         WHERE m.session_id IS NULL AND s.ended_at IS NOT NULL AND s.vanished_at IS NULL AND s.id > ?
         ORDER BY s.id LIMIT ?"
    );
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(after_id).bind(limit).fetch_all(ex).await?))
}

/// Every session without a match (running ones included), for `ticketsync unmatched`.
pub async fn unmatched_all(store: &super::Store) -> Result<Vec<StoredSession>> {
    let sql = format!(
        "SELECT {SESSION_COLS} FROM sessions s LEFT JOIN matches m ON m.session_id = s.id
         WHERE m.session_id IS NULL AND s.vanished_at IS NULL AND s.tenant = COALESCE(?, s.tenant) ORDER BY s.started_at"
    );
    let tenant = store.tenant_filter().map(|t| t.as_str());
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(tenant).fetch_all(ex).await?))
}

/// The `limit` most recently started sessions without a match, oldest first, for
/// `ticketsync unmatched --limit`: read with LIMIT, not by listing them all.
pub async fn unmatched_recent(store: &super::Store, limit: i64) -> Result<Vec<StoredSession>> {
    let sql = format!(
        "SELECT * FROM (SELECT {SESSION_COLS} FROM sessions s LEFT JOIN matches m ON m.session_id = s.id
         WHERE m.session_id IS NULL AND s.vanished_at IS NULL AND s.tenant = COALESCE(?, s.tenant)
         ORDER BY s.started_at DESC, s.id DESC LIMIT ?) AS recent
         ORDER BY started_at, id"
    );
    let tenant = store.tenant_filter().map(|t| t.as_str());
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(tenant).bind(limit).fetch_all(ex).await?))
}

/// The sessions an operator may mean by `key`, at most `limit`, by id: those whose vendor
/// report id is `key` (exactly, or its lower case: TeamViewer's GUIDs are stored lower-cased),
/// else the session whose id is `key`, else those whose session code is `key` once normalized.
/// The first of the three that finds any is the answer, so a report id or an id is never
/// ambiguous with a code.
pub async fn named(store: &super::Store, key: &str, limit: i64) -> Result<Vec<StoredSession>> {
    let sql = format!(
        "SELECT {SESSION_COLS} FROM sessions s WHERE s.external_id = ? OR s.external_id = ? ORDER BY s.id LIMIT ?"
    );
    let lower = key.to_lowercase();
    let by_external: Vec<StoredSession> =
        on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(key).bind(&lower).bind(limit).fetch_all(ex).await?);
    if !by_external.is_empty() {
        return Ok(by_external);
    }
    if let Ok(id) = key.trim().parse::<i64>() {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions s WHERE s.id = ?");
        let by_id: Vec<StoredSession> =
            on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(id).fetch_all(ex).await?);
        if !by_id.is_empty() {
            return Ok(by_id);
        }
    }
    let code = normalize_code(key);
    if code.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT {SESSION_COLS} FROM sessions s WHERE s.session_code_norm = ? ORDER BY s.id LIMIT ?");
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql)).bind(&code).bind(limit).fetch_all(ex).await?))
}

pub async fn count(store: &super::Store) -> Result<i64> {
    Ok(on_pool!(store, |ex, _d| sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(ex).await?))
}

/// Ended, unmatched sessions the matcher has not examined since they last changed, with an
/// id above `after`, in id order. A pass walks them with `after` = the last id it saw, so
/// each batch starts where the last one ended. The conditions are those of the partial
/// index `sessions_to_match`: a pass reads only the sessions waiting for it, not the table
/// (a change or a new link clears `match_checked_rev`; see `update_changed`).
pub async fn to_match(tx: &mut Tx<'_>, after: i64, limit: i64) -> Result<Vec<StoredSession>> {
    let sql = to_match_sql();
    let tenant = tx.tenant().clone();
    Ok(on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(&sql))
        .bind(after)
        .bind(tenant.as_str())
        .bind(limit)
        .fetch_all(ex)
        .await?))
}

fn to_match_sql() -> String {
    format!(
        "SELECT {SESSION_COLS} FROM sessions s LEFT JOIN matches m ON m.session_id = s.id
         WHERE s.id > ? AND s.ended_at IS NOT NULL AND s.match_checked_rev IS NULL AND m.session_id IS NULL
           AND s.vanished_at IS NULL AND s.tenant = ?
         ORDER BY s.id LIMIT ?"
    )
}

/// [`to_match`] outside a write transaction: for work that must not hold one (the
/// ticket-field lookup calls sinks over HTTP).
pub async fn to_match_read(store: &super::Store, after: i64, limit: i64) -> Result<Vec<StoredSession>> {
    let sql = to_match_sql();
    Ok(on_pool!(store, |ex, d| sqlx::query_as(&d.sql(&sql))
        .bind(after)
        .bind(store.tenant().as_str())
        .bind(limit)
        .fetch_all(ex)
        .await?))
}

/// Mark sessions the matcher examined, matched or not, as checked at their current revision
/// (inside the transaction that read them, so a concurrent update cannot be skipped).
pub async fn mark_match_checked(tx: &mut Tx<'_>, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    on_tx!(tx, |ex, d| sqlx::query(
        &d.sql("UPDATE sessions SET match_checked_rev = revision WHERE id IN (SELECT value FROM json_each(?))")
    )
    .bind(List(ids))
    .execute(ex)
    .await
    .map(|_| ())?);
    Ok(())
}

impl StoredSession {
    /// The row `upsert_many` inserts for `s` with this id, as the matcher reads it back.
    pub fn from_new(id: i64, s: &NewSession) -> StoredSession {
        StoredSession {
            id,
            vendor: s.vendor.clone(),
            external_id: s.external_id.clone(),
            session_code: s.session_code.clone(),
            session_code_norm: s.session_code.as_deref().map(normalize_code),
            technician: s.technician.clone(),
            device: s.device.clone(),
            device_id: s.device_id.clone(),
            group_name: s.group_name.clone(),
            // As stored: to the millisecond.
            started_at: as_stored(s.started_at),
            ended_at: s.ended_at.map(as_stored),
            duration_s: s.duration_s(),
            notes: s.notes.clone(),
            description: s.description.clone(),
            custom_api: s.custom_api.clone(),
            customer_name: s.customer_name.clone(),
            revision: 1,
            raw_json: s.raw_json.clone(),
        }
    }
}
