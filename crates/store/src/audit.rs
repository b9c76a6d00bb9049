//! The append-only audit history, hash-chained so that an edited, deleted or reordered row
//! is detectable, and carrying the hash of the record each event is about, so that an edit
//! of `sessions` or of a delivery's note is detectable too (see docs/security/audit.md).
//!
//! Three row schemes (`audit_events.chain_version`), in the order a chain may use them:
//! 1. SHA-256 over the row: rows written before the audit evidence migration.
//! 2. SHA-256 over the row and its `subject_sha256`: no audit key configured.
//! 3. HMAC-SHA256 under `store.audit_key` over the same bytes: anyone without the key can
//!    no longer recompute the chain after an edit.
//!
//! A chain never goes back to an earlier scheme: `verify` reports an unkeyed row after a
//! keyed one as tampering (a rewrite by someone who lacks the key).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::digest::Update;
use sha2::{Digest, Sha256};

use futures::TryStreamExt;

use super::{on_pool, on_tx, Result, StoreError, Tx};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hashing scheme of one row (`audit_events.chain_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChainVersion {
    /// SHA-256 over the row, before subjects existed.
    Legacy = 1,
    /// SHA-256 over the row and its subject hash (no audit key configured).
    Unkeyed = 2,
    /// HMAC-SHA256 under the audit key over the row and its subject hash.
    Keyed = 3,
}

impl ChainVersion {
    pub fn from_i64(v: i64) -> Option<ChainVersion> {
        match v {
            1 => Some(ChainVersion::Legacy),
            2 => Some(ChainVersion::Unkeyed),
            3 => Some(ChainVersion::Keyed),
            _ => None,
        }
    }
}

/// The HMAC key of the chain (`store.audit_key`). Kept with the other credentials and never
/// in the database: whoever can write the database file could otherwise read the key and
/// recompute the chain after an edit.
#[derive(Clone)]
pub struct AuditKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// The systemd credential name of the key (`store.audit_key`).
pub const CREDENTIAL: &str = "audit_key";

/// Fewer bytes than a SHA-256 block's worth of entropy make the HMAC guessable offline.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error(
        "store.audit_key: {0} bytes; at least {MIN_KEY_BYTES} are needed (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    TooShort(usize),
}

impl AuditKey {
    /// The key is the secret's bytes as configured (a line of base64 or hex is fine).
    pub fn new(secret: &[u8]) -> std::result::Result<AuditKey, AuditKeyError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(AuditKeyError::TooShort(secret.len()));
        }
        Ok(AuditKey { mac: <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length") })
    }
}

/// Audit keys by database (the file as SQLite names it; host, port and database on
/// PostgreSQL), for the writers: events are appended from deep inside write transactions
/// that only hold the transaction, and threading the key through every one of them would
/// touch every writer for a value fixed at start-up.
static KEYS: LazyLock<RwLock<HashMap<String, Arc<AuditKey>>>> = LazyLock::new(Default::default);

fn registered(file: &str) -> Option<Arc<AuditKey>> {
    KEYS.read().unwrap_or_else(|e| e.into_inner()).get(file).cloned()
}

/// What [`use_key`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The chain's head after the call: (id, hash), `(0, GENESIS)` for an empty chain.
    pub head: (i64, String),
    /// The row this call appended to mark the start of the keyed chain.
    pub started_keyed_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyUseError {
    #[error("the audit chain is keyed (HMAC) up to row {0}, and no store.audit_key is configured: configure the same key (store.audit_key_file or the credential \"audit_key\"); rows written without it would break the chain")]
    Missing(i64),
    #[error("store.audit_key does not produce the HMAC of audit row {0}, the last one: it is not the key that wrote the chain (or the row was edited); configure the original key and run `ticketsync audit verify`")]
    Wrong(i64),
}

/// Whether `key` (or no key) can append to the chain of the database of `store`:
/// `Ok(last keyed row)` when it can (`None`: the chain is not keyed yet, or predates audit
/// evidence), the reason when it cannot. Read-only (`ticketsync doctor` asks it too).
pub async fn key_fits(
    store: &super::Store,
    key: Option<&AuditKey>,
) -> Result<std::result::Result<Option<i64>, KeyUseError>> {
    // A SQLite database from before the audit evidence migration has no chain_version (a
    // read-only open does not migrate); PostgreSQL's schema always had it.
    if store.dialect() == super::Dialect::Sqlite {
        let evidence: bool = on_pool!(store, |ex, _d| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('audit_events') WHERE name = 'chain_version')",
        )
        .fetch_one(ex)
        .await?);
        if !evidence {
            return Ok(Ok(None));
        }
    }
    let tail: Option<TailRow> = on_pool!(store, |ex, _d| {
        sqlx::query_as(
        "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash, chain_version,
         subject_sha256 FROM audit_events ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(ex)
    .await?
    });
    let Some(t) = tail.filter(|t| t.chain_version == ChainVersion::Keyed as i64) else { return Ok(Ok(None)) };
    Ok(match key {
        None => Err(KeyUseError::Missing(t.id)),
        Some(k) if hash_row(ChainVersion::Keyed, Some(k), &t.fields()).as_deref() != Some(t.hash.as_str()) => {
            Err(KeyUseError::Wrong(t.id))
        }
        Some(_) => Ok(Some(t.id)),
    })
}

/// Make this process append to the chain of `store` under `key` (scheme 3), or unkeyed
/// (scheme 2) without one. With a key, a chain not yet keyed gets an `audit_key_enabled`
/// row now, so that a keyed database always has a keyed row: `verify` with the key then
/// reports a chain rewritten wholly without it. Refused: no key for a keyed chain, or a key
/// that does not match the chain's last row (appending would break the chain).
pub async fn use_key(store: &super::Store, key: Option<AuditKey>) -> Result<KeyStatus> {
    // Read first, without the write lock: read-only commands open the store this way too.
    let file = store.db_id.to_string();
    let tail_keyed = key_fits(store, key.as_ref()).await?.map_err(|e| StoreError::Invalid(e.to_string()))?.is_some();
    {
        let mut keys = KEYS.write().unwrap_or_else(|e| e.into_inner());
        match &key {
            Some(k) => keys.insert(file, Arc::new(k.clone())),
            None => keys.remove(&file),
        };
    }
    let mut started_keyed_at = None;
    let mut head = head_of(store).await?.unwrap_or((0, GENESIS.to_string()));
    if key.is_some() && !tail_keyed {
        let mut tx = store.begin().await?;
        let previous = head.0;
        let id = append(
            &mut tx,
            Event {
                kind: "audit_key_enabled",
                detail: Some(serde_json::json!({"previous_rows": previous})),
                ..Default::default()
            },
        )
        .await?;
        head = head_in(&mut tx).await?.unwrap_or(head);
        tx.commit().await?;
        started_keyed_at = Some(id);
    }
    Ok(KeyStatus { head, started_keyed_at })
}

#[derive(sqlx::FromRow)]
struct TailRow {
    id: i64,
    at: String,
    kind: String,
    vendor: Option<String>,
    session_id: Option<i64>,
    ticket_id: Option<String>,
    delivery_id: Option<i64>,
    detail_json: String,
    prev_hash: String,
    hash: String,
    chain_version: i64,
    subject_sha256: Option<String>,
}

impl TailRow {
    fn fields(&self) -> RowFields<'_> {
        RowFields {
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
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub vendor: Option<&'a str>,
    pub session_id: Option<i64>,
    pub ticket_id: Option<&'a str>,
    pub delivery_id: Option<i64>,
    pub detail: Option<Value>,
    /// The detail already serialized, used instead of `detail` (a page row's list of
    /// sessions is written directly, without a `Value` tree per session).
    pub detail_text: Option<String>,
    /// The hash of the record this event fixes ([`session_subject`], [`delivery_subject`]):
    /// `verify` compares it with the record as it is now.
    pub subject: Option<Subject>,
}

/// SHA-256 of a record's canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject(pub [u8; 32]);

impl Subject {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// One column of a subject record.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

/// Length-prefixed fields, each tagged with its type and presence: no two different
/// records give the same byte stream.
fn subject_of(domain: &str, fields: &[Field<'_>]) -> Subject {
    let mut h = Sha256::new();
    Digest::update(&mut h, (domain.len() as u64).to_be_bytes());
    Digest::update(&mut h, domain.as_bytes());
    let mut num = itoa::Buffer::new();
    for f in fields {
        let (tag, bytes): (u8, &[u8]) = match f {
            Field::Text(Some(s)) => (1, s.as_bytes()),
            Field::Int(Some(v)) => (2, num.format(*v).as_bytes()),
            Field::Text(None) | Field::Int(None) => (0, b""),
        };
        Digest::update(&mut h, [tag]);
        Digest::update(&mut h, (bytes.len() as u64).to_be_bytes());
        Digest::update(&mut h, bytes);
    }
    Subject(h.finalize().into())
}

/// The `sessions` columns a session's subject covers, in order: what the vendor said (the
/// raw record, through its SHA-256) and every column derived from it. Bookkeeping columns
/// (`last_seen_at`, `last_walk_id`, `vanished_at`, `match_checked_rev`, `revision`) change
/// without the record changing and are not covered; `vanished_at` has its own events.
pub const SESSION_SUBJECT_COLS: &str =
    "vendor, external_id, session_code, session_code_norm, technician, technician_id,
    device, device_id, group_name, started_at, ended_at, duration_s, notes, description, custom_api, customer_name,
    customer_email, raw_json";

/// The subject of a sessions row: its columns in [`SESSION_SUBJECT_COLS`] order, with
/// `raw_json` given as the lower-case hex SHA-256 of the text (ingest computes it anyway
/// for `content_hash`, so the raw record is hashed once, not twice).
pub fn session_subject(cols: &[Field<'_>; 18]) -> Subject {
    subject_of("ticketsync-session-v1", cols)
}

/// The subject of a stored session written from `s` (what `sessions::upsert_many` binds).
pub fn session_subject_of(s: &crate::session::NewSession, raw_sha256_hex: &str) -> Subject {
    let norm = s.session_code.as_deref().map(crate::session::normalize_code);
    let started = crate::session::ts(s.started_at);
    let ended = s.ended_at.map(crate::session::ts);
    session_subject(&[
        Field::Text(Some(&s.vendor)),
        Field::Text(Some(&s.external_id)),
        Field::Text(s.session_code.as_deref()),
        Field::Text(norm.as_deref()),
        Field::Text(s.technician.as_deref()),
        Field::Text(s.technician_id.as_deref()),
        Field::Text(s.device.as_deref()),
        Field::Text(s.device_id.as_deref()),
        Field::Text(s.group_name.as_deref()),
        Field::Text(Some(&started)),
        Field::Text(ended.as_deref()),
        Field::Int(s.duration_s()),
        Field::Text(s.notes.as_deref()),
        Field::Text(s.description.as_deref()),
        Field::Text(s.custom_api.as_deref()),
        Field::Text(s.customer_name.as_deref()),
        Field::Text(s.customer_email.as_deref()),
        Field::Text(Some(raw_sha256_hex)),
    ])
}

/// The `deliveries` columns a delivery's subject covers: all fixed at enqueue time.
pub const DELIVERY_SUBJECT_COLS: &str = "sink, ticket_id, session_id, link_id, kind, marker, note_json";

/// The subject of a deliveries row: the exact note text and where it goes.
pub fn delivery_subject(
    sink: &str,
    ticket_id: &str,
    session_id: Option<i64>,
    link_id: Option<i64>,
    kind: &str,
    marker: &str,
    note_json: &str,
) -> Subject {
    subject_of(
        "ticketsync-delivery-v1",
        &[
            Field::Text(Some(sink)),
            Field::Text(Some(ticket_id)),
            Field::Int(session_id),
            Field::Int(link_id),
            Field::Text(Some(kind)),
            Field::Text(Some(marker)),
            Field::Text(Some(note_json)),
        ],
    )
}

/// The hashed content of one row.
#[derive(Debug, Clone, Copy)]
pub struct RowFields<'a> {
    pub prev: &'a str,
    pub id: i64,
    pub at: &'a str,
    pub kind: &'a str,
    pub vendor: Option<&'a str>,
    pub session_id: Option<i64>,
    pub ticket_id: Option<&'a str>,
    pub delivery_id: Option<i64>,
    pub detail: &'a str,
    /// `subject_sha256` (schemes 2 and 3 only).
    pub subject: Option<&'a str>,
}

/// The scheme-1 row hash (rows written before the audit evidence migration).
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
    let f = RowFields { prev, id, at, kind, vendor, session_id, ticket_id, delivery_id, detail, subject: None };
    hash_row(ChainVersion::Legacy, None, &f).expect("scheme 1 needs no key")
}

/// The row hash under `version` as lower-case hex; `None` for a keyed row without a key.
pub fn hash_row(version: ChainVersion, key: Option<&AuditKey>, f: &RowFields<'_>) -> Option<String> {
    let mut out = [0u8; 64];
    hash_row_hex(&mut out, version, key, f).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Feed the row's fields, length-prefixed: no two different rows give the same stream.
fn feed<D: Update>(d: &mut D, version: ChainVersion, f: &RowFields<'_>) {
    let mut put = |s: &[u8]| {
        d.update(&(s.len() as u64).to_be_bytes());
        d.update(s);
    };
    let mut num = itoa::Buffer::new();
    // Schemes 2 and 3 start with their name, so a row cannot be re-labelled as another
    // scheme and keep its hash.
    match version {
        ChainVersion::Legacy => {}
        ChainVersion::Unkeyed => put(b"ticketsync-audit-v2"),
        ChainVersion::Keyed => put(b"ticketsync-audit-v3"),
    }
    put(f.prev.as_bytes());
    put(num.format(f.id).as_bytes());
    put(f.at.as_bytes());
    put(f.kind.as_bytes());
    put(f.vendor.unwrap_or("\u{0}").as_bytes());
    match f.session_id {
        Some(v) => put(num.format(v).as_bytes()),
        None => put(b"\0"),
    }
    put(f.ticket_id.unwrap_or("\u{0}").as_bytes());
    match f.delivery_id {
        Some(v) => put(num.format(v).as_bytes()),
        None => put(b"\0"),
    }
    put(f.detail.as_bytes());
    if version != ChainVersion::Legacy {
        put(f.subject.unwrap_or("\u{0}").as_bytes());
    }
}

/// The row hash as lower-case hex into `out`, without allocating (the verify walk runs it
/// a million times). False: a keyed row and no key.
fn hash_row_hex(out: &mut [u8; 64], version: ChainVersion, key: Option<&AuditKey>, f: &RowFields<'_>) -> bool {
    let digest: [u8; 32] = match version {
        ChainVersion::Legacy | ChainVersion::Unkeyed => {
            let mut h = Sha256::new();
            feed(&mut h, version, f);
            h.finalize().into()
        }
        ChainVersion::Keyed => {
            let Some(key) = key else { return false };
            let mut m = key.mac.clone();
            feed(&mut m, version, f);
            m.finalize().into_bytes().into()
        }
    };
    hex::encode_to_slice(digest, out).expect("64 hex digits for 32 bytes");
    true
}

/// The person behind an operator's action (issue 21): their name (the OS user for the CLI,
/// the console user) and the way they came. Written into the event's detail as `by` and
/// `via`, so it is part of the hashed (and, under `store.audit_key`, MAC'd) content.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub by: &'a str,
    /// `cli` or `console`.
    pub via: &'a str,
}

impl Actor<'_> {
    /// `detail` with `by` and `via` added (an object; anything else is wrapped).
    pub fn stamp(&self, detail: Value) -> Value {
        let mut d = match detail {
            Value::Object(m) => Value::Object(m),
            Value::Null => serde_json::json!({}),
            other => serde_json::json!({ "detail": other }),
        };
        d["by"] = Value::from(self.by);
        d["via"] = Value::from(self.via);
        d
    }
}

/// An operator's action that changes nothing else (an on-demand verify, an export), in a
/// transaction of its own: `kind` with `detail` stamped by the actor. Returns the row's id.
pub async fn record_action(store: &super::Store, kind: &str, actor: Actor<'_>, detail: Value) -> Result<i64> {
    let mut tx = store.begin().await?;
    let id = append(&mut tx, Event { kind, detail: Some(actor.stamp(detail)), ..Default::default() }).await?;
    tx.commit().await?;
    Ok(id)
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
    key: Option<Arc<AuditKey>>,
    pending: Vec<PendingRow>,
    /// The tenant of the transaction's work: every row pushed names it (issue 17).
    tenant: crate::TenantName,
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
    version: i64,
    subject: Option<String>,
}

/// `detail` (a JSON object's text) with `"tenant":"<name>"` first, for another tenant than
/// `default`: the row's tenant is then under its hash as well as in its `tenant` column. The
/// default tenant's details are unchanged, byte for byte.
fn with_tenant(detail: String, tenant: &crate::TenantName) -> String {
    if tenant.is_default() {
        return detail;
    }
    // A tenant name is lower-case letters, digits and '-': nothing to escape.
    match detail.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => format!("{{\"tenant\":\"{tenant}\"}}"),
        Some(rest) => format!("{{\"tenant\":\"{tenant}\",{rest}"),
        None => detail,
    }
}

/// Rows per INSERT, largest first: 12 parameters each, well under SQLite's 32 766 bound
/// parameters. Only these sizes are used ([`fixed_chunks`]), so each statement is prepared
/// once per connection and kept.
const ROWS_PER_INSERT: [usize; 5] = [500, 100, 20, 5, 1];

/// `items` split into chunks whose lengths are all taken from `sizes` (descending, ending in
/// 1), greedily, largest first. Multi-row statements are then of a few fixed shapes that
/// stay in the connection's statement cache; a statement per remainder length would be
/// prepared anew each time, or, kept, grow the cache (and the RSS) without bound.
pub(crate) fn fixed_chunks<'a, T>(items: &'a [T], sizes: &'static [usize]) -> impl Iterator<Item = &'a [T]> + 'a {
    debug_assert!(sizes.last() == Some(&1) && sizes.windows(2).all(|w| w[0] > w[1]));
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = sizes.iter().copied().find(|&n| n <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

impl Chain {
    /// Read the tail inside `tx`, which must hold the write lock (`Store::begin`). The
    /// transaction names the database, which selects the audit key ([`use_key`]).
    pub async fn load(tx: &mut Tx<'_>) -> Result<Chain> {
        let tail: Option<(i64, String, i64)> = on_tx!(tx, |ex, _d| sqlx::query_as(
            "SELECT id, hash, chain_version FROM audit_events ORDER BY id DESC LIMIT 1"
        )
        .fetch_optional(ex)
        .await?);
        let version = tail.as_ref().map(|t| t.2);
        let (next_id, prev_hash) = match tail {
            Some((id, h, _)) => (id + 1, h),
            None => (1, GENESIS.to_string()),
        };
        let key = registered(tx.db_id());
        // Never an unkeyed row after a keyed one (another process keyed the chain after this
        // one started without the key): the write fails instead of weakening the chain.
        if key.is_none() && version == Some(ChainVersion::Keyed as i64) {
            return Err(StoreError::Invalid(KeyUseError::Missing(next_id - 1).to_string()));
        }
        Ok(Chain { next_id, prev_hash, key, pending: Vec::new(), tenant: tx.tenant().clone() })
    }

    /// The id the next pushed event will get.
    pub fn next_id(&self) -> i64 {
        self.next_id
    }

    /// Hash the event onto the chain; returns the id its row will have.
    pub fn push(&mut self, ev: Event<'_>) -> i64 {
        let id = self.next_id;
        let at = super::now();
        let detail = match (ev.detail_text, &ev.detail) {
            (Some(text), _) => text,
            (None, Some(v)) => v.to_string(),
            (None, None) => "{}".into(),
        };
        // Vendor text (an error body) may echo a secret; scrubbed before it is hashed.
        let detail = match crate::redact::scrub(&detail) {
            std::borrow::Cow::Owned(s) => s,
            std::borrow::Cow::Borrowed(_) => detail,
        };
        let detail = with_tenant(detail, &self.tenant);
        let subject = ev.subject.map(|s| s.hex());
        let version = if self.key.is_some() { ChainVersion::Keyed } else { ChainVersion::Unkeyed };
        let fields = RowFields {
            prev: &self.prev_hash,
            id,
            at: &at,
            kind: ev.kind,
            vendor: ev.vendor,
            session_id: ev.session_id,
            ticket_id: ev.ticket_id,
            delivery_id: ev.delivery_id,
            detail: &detail,
            subject: subject.as_deref(),
        };
        let hash = hash_row(version, self.key.as_deref(), &fields).expect("the key is present for scheme 3");
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
            version: version as i64,
            subject,
        });
        self.next_id += 1;
        id
    }

    /// Write the pushed rows.
    pub async fn flush(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        for chunk in fixed_chunks(&self.pending, &ROWS_PER_INSERT) {
            on_tx!(tx, |ex, _d, Db| {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO audit_events (id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash,
                 chain_version, subject_sha256, tenant) ",
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
                        .push_bind(&r.hash)
                        .push_bind(r.version)
                        .push_bind(&r.subject)
                        .push_bind(self.tenant.as_str());
                });
                // Kept prepared: there are only `ROWS_PER_INSERT.len()` shapes (a cache holding a
                // statement per row count grew the RSS by tens of MB in the benchmark).
                q.build().persistent(true).execute(ex).await?;
            });
        }
        self.pending.clear();
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verify {
    Ok {
        rows: u64,
        head: String,
        /// The first keyed row (scheme 3), if the chain is keyed.
        keyed_from: Option<i64>,
        /// Sessions and deliveries whose current row matched the latest event about it.
        checked_sessions: u64,
        checked_deliveries: u64,
        /// Sessions and deliveries recorded only before the audit evidence migration: their
        /// content is not covered (their events are).
        uncovered: u64,
    },
    /// A chain row is wrong (edited, deleted, re-ordered, re-labelled) or missing.
    Broken { row_id: i64, reason: String },
    /// A session or delivery no longer matches what the chain recorded about it, or was
    /// never recorded. `row_id`: the audit row that recorded it.
    Evidence { subject: String, row_id: Option<i64>, reason: String },
}

/// What `verify` checks beyond the chain's own consistency.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Needed for keyed rows; with a key, a chain without any keyed row is a rewrite.
    pub key: Option<AuditKey>,
    /// `(id, hash)` recorded earlier (`ticketsync audit head`): row `id` must exist and
    /// have this hash, which finds rows deleted from the end.
    pub expect_head: Option<(i64, String)>,
}

/// Parse `ID:HASH` as `audit head` prints it.
pub fn parse_head(s: &str) -> std::result::Result<(i64, String), String> {
    let (id, hash) =
        s.split_once(':').ok_or_else(|| format!("{s:?}: expected ID:HASH (as `ticketsync audit head` prints)"))?;
    let id: i64 = id.trim().parse().map_err(|_| format!("{s:?}: the ID before ':' is not a number"))?;
    let hash = hash.trim().to_ascii_lowercase();
    if id < 0 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{s:?}: expected a row id and 64 hex digits"));
    }
    Ok((id, hash))
}

/// Walk the chain of the database of `store` (see [`verify_with`]), with the audit key
/// this process writes that database with, if any.
pub async fn verify(store: &super::Store) -> Result<Verify> {
    let key = registered(&store.db_id).map(|k| (*k).clone());
    verify_with(store, VerifyOptions { key, expect_head: None }).await
}

/// Walk the chain of `store` in id order, read-only, in constant memory (see
/// [`verify_path`] for what is checked). SQLite: through its file, as `verify_path`;
/// PostgreSQL: the same checks over one repeatable-read snapshot, the chain streamed and
/// the sessions and deliveries read in batches.
pub async fn verify_with(store: &super::Store, opts: VerifyOptions) -> Result<Verify> {
    match store.file() {
        Some(path) => verify_path(path, opts).await,
        None => verify_sql(store, &opts).await,
    }
}

/// Walk the chain in id order, read-only, in constant memory: ids without gaps, each
/// `prev_hash` equal to the previous row's `hash`, each `hash` recomputed from the content
/// under the row's scheme, schemes never going back. Then every session and delivery is
/// compared with the latest event that recorded it. All in one read snapshot. The first
/// problem is reported.
///
/// This walk reads through rusqlite rather than sqlx: sqlx hands every row from its worker
/// thread to the caller as owned values (several microseconds a row), while rusqlite lets
/// the hash read the column bytes in place, which makes a million rows take about a second.
pub async fn verify_path(path: &std::path::Path, opts: VerifyOptions) -> Result<Verify> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || verify_blocking(&path, &opts))
        .await
        .map_err(|e| StoreError::Invalid(format!("audit verify task: {e}")))?
}

fn verify_blocking(path: &std::path::Path, opts: &VerifyOptions) -> Result<Verify> {
    use rusqlite::{Connection, OpenFlags};
    let db_err = |e: rusqlite::Error| StoreError::Invalid(format!("database {}: {e}", path.display()));
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
    // One snapshot for the walk and the subject checks, while the daemon appends.
    conn.execute_batch("BEGIN").map_err(db_err)?;
    let has_evidence = conn
        .prepare("SELECT 1 FROM pragma_table_info('audit_events') WHERE name = 'subject_sha256'")
        .and_then(|mut s| s.exists([]))
        .map_err(db_err)?;
    let walk = walk_chain(&conn, has_evidence, opts).map_err(db_err)?;
    let (rows, head, keyed_from) = match walked(walk, opts)? {
        Ok(done) => done,
        Err(v) => return Ok(v),
    };
    if !has_evidence {
        return Ok(Verify::Ok { rows, head, keyed_from, checked_sessions: 0, checked_deliveries: 0, uncovered: 0 });
    }
    let mut stats = Stats::default();
    if let Some(v) = check_sessions(&conn, &mut stats).map_err(db_err)? {
        return Ok(v);
    }
    if let Some(v) = check_deliveries(&conn, &mut stats).map_err(db_err)? {
        return Ok(v);
    }
    Ok(stats.ok(rows, head, keyed_from))
}

/// Sessions and deliveries checked against the chain, and those recorded only before
/// audit evidence existed.
#[derive(Debug, Default)]
struct Stats {
    sessions: u64,
    deliveries: u64,
    uncovered: u64,
}

impl Stats {
    fn ok(self, rows: u64, head: String, keyed_from: Option<i64>) -> Verify {
        Verify::Ok {
            rows,
            head,
            keyed_from,
            checked_sessions: self.sessions,
            checked_deliveries: self.deliveries,
            uncovered: self.uncovered,
        }
    }
}

enum Walk {
    Done {
        rows: u64,
        head: String,
        keyed_from: Option<i64>,
    },
    Broken(Verify),
    /// The chain is keyed from this row and no key was given.
    NeedsKey(i64),
}

/// A chain walked to its end: rows, head, first keyed row.
type Walked = (u64, String, Option<i64>);

/// What a finished walk means: `Ok(walked)` to go on with the subject checks,
/// `Err(verdict)` when the chain alone decides.
fn walked(walk: Walk, opts: &VerifyOptions) -> Result<std::result::Result<Walked, Verify>> {
    let (rows, head, keyed_from) = match walk {
        Walk::Done { rows, head, keyed_from } => (rows, head, keyed_from),
        Walk::Broken(v) => return Ok(Err(v)),
        Walk::NeedsKey(id) => {
            return Err(StoreError::Invalid(format!(
                "the audit chain is keyed (HMAC) from row {id}: verifying it needs the audit key \
                 (store.audit_key_file in the configuration, or --key-file)"
            )))
        }
    };
    if opts.key.is_some() && keyed_from.is_none() && rows > 0 {
        return Ok(Err(Verify::Broken {
            row_id: rows as i64,
            reason: "no row is keyed although an audit key was given: the chain was rewritten without the key, \
                     or this database was never written with it (start ticketsync once with the key)"
                .into(),
        }));
    }
    Ok(Ok((rows, head, keyed_from)))
}

/// The chain walk, one row at a time, whatever reads the rows.
struct ChainWalk<'o> {
    opts: &'o VerifyOptions,
    prev: [u8; 64],
    buf: [u8; 64],
    expected_id: i64,
    scheme: ChainVersion,
    keyed_from: Option<i64>,
    expected_seen: bool,
}

impl<'o> ChainWalk<'o> {
    fn new(opts: &'o VerifyOptions) -> ChainWalk<'o> {
        let mut prev = [0u8; 64];
        prev.copy_from_slice(GENESIS.as_bytes());
        ChainWalk {
            opts,
            prev,
            buf: [0u8; 64],
            expected_id: 1,
            scheme: ChainVersion::Legacy,
            keyed_from: None,
            expected_seen: false,
        }
    }

    /// Check one row (`f.prev` is the row's stored `prev_hash`); `Some` ends the walk.
    fn step(&mut self, f: &RowFields<'_>, hash: &str, version: i64) -> Option<Walk> {
        let id = f.id;
        let broken = |reason: String| Some(Walk::Broken(Verify::Broken { row_id: id, reason }));
        if id != self.expected_id {
            return broken(format!("expected row {}: a row was deleted or renumbered", self.expected_id));
        }
        let Some(version) = ChainVersion::from_i64(version) else {
            return broken(format!("unknown chain_version {version}"));
        };
        if version < self.scheme {
            return broken(format!(
                "chain_version {} after rows of version {}: the chain never goes back to a weaker scheme (rewritten by someone without the audit key)",
                version as i64, self.scheme as i64
            ));
        }
        if version == ChainVersion::Legacy && f.subject.is_some() {
            return broken("a version 1 row carries a subject hash (re-labelled)".into());
        }
        self.scheme = version;
        if version == ChainVersion::Keyed {
            if self.opts.key.is_none() {
                // Not proof of tampering, but nothing from here on can be vouched for.
                return Some(Walk::NeedsKey(id));
            }
            self.keyed_from.get_or_insert(id);
        }
        if f.prev.as_bytes() != self.prev {
            return broken("prev_hash does not match the previous row".into());
        }
        hash_row_hex(&mut self.buf, version, self.opts.key.as_ref(), f);
        if self.buf != hash.as_bytes() {
            let why = if version == ChainVersion::Keyed {
                "content does not match its HMAC (row edited, or not the audit key that wrote it)"
            } else {
                "content does not match its hash (row edited)"
            };
            return broken(why.into());
        }
        if let Some((eid, ehash)) = &self.opts.expect_head {
            if *eid == id {
                if ehash.as_bytes() != self.buf {
                    return broken(format!("hash {} differs from the expected head {eid}:{ehash}", hash));
                }
                self.expected_seen = true;
            }
        }
        self.prev = self.buf;
        self.expected_id += 1;
        None
    }

    fn finish(self) -> Walk {
        let last = self.expected_id - 1;
        let head = std::str::from_utf8(&self.prev).expect("hex is ASCII").to_string();
        if let Some((eid, ehash)) = &self.opts.expect_head {
            let genesis_ok = *eid == 0 && ehash == GENESIS;
            if !self.expected_seen && !genesis_ok {
                return Walk::Broken(Verify::Broken {
                    row_id: *eid,
                    reason: format!(
                        "the expected head row {eid} is missing: the chain ends at row {last} (rows were deleted from the end)"
                    ),
                });
            }
        }
        Walk::Done { rows: last as u64, head, keyed_from: self.keyed_from }
    }
}

fn walk_chain(conn: &rusqlite::Connection, has_evidence: bool, opts: &VerifyOptions) -> rusqlite::Result<Walk> {
    let extra = if has_evidence { "chain_version, subject_sha256" } else { "1, NULL" };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash, {extra}
         FROM audit_events ORDER BY id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut walk = ChainWalk::new(opts);
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
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
                row.get::<_, i64>(10)?,
                row.get_ref(11)?.as_str_or_null()?,
            ))
        })();
        let (at, kind, vendor, sid, tid, did, detail, prev_hash, hash, version, subject) = match fields {
            Ok(f) => f,
            Err(e) if id == walk.expected_id => {
                return Ok(Walk::Broken(Verify::Broken { row_id: id, reason: format!("unreadable column ({e})") }))
            }
            // The id check comes first, as for any row.
            Err(_) => ("", "", None, None, None, None, "", "", "", 0, None),
        };
        let f = RowFields {
            prev: prev_hash,
            id,
            at,
            kind,
            vendor,
            session_id: sid,
            ticket_id: tid,
            delivery_id: did,
            detail,
            subject,
        };
        if let Some(end) = walk.step(&f, hash, version) {
            return Ok(end);
        }
    }
    Ok(walk.finish())
}

/// Which page row a session's subject is read from, kept across sessions: they come in id
/// order, and a page's sessions are consecutive, so each page row is parsed about once.
#[derive(Default)]
struct SessionCheck {
    page: Option<(i64, Option<HashMap<i64, String>>)>,
}

/// One session as the subject check reads it.
struct SessionSeen {
    sid: i64,
    /// The latest event of its own with a subject, and that subject.
    event: Option<i64>,
    recorded: Option<String>,
    /// Whether any event names it (asked only when nothing recorded its content).
    any_event: bool,
    /// `seen_event_id`: the page row that first recorded it.
    page_event: Option<i64>,
}

impl SessionCheck {
    /// Each session against the latest event that recorded its content: its own latest
    /// event with a subject (`session_updated`, or `session_seen` before migration 0007),
    /// else its entry in the `sessions_seen` page row that first recorded it. A page row
    /// always comes before any event of its own about the session, so the order is kept.
    /// `page_row(id)`: (kind, detail) of an audit row; `current()`: the subject of the row
    /// as it is now.
    fn check(
        &mut self,
        stats: &mut Stats,
        s: SessionSeen,
        page_row: impl FnOnce(i64) -> Option<(String, String)>,
        current: impl FnOnce() -> std::result::Result<Subject, String>,
    ) -> Option<Verify> {
        let subject = format!("sessions row {}", s.sid);
        let (mut event, mut recorded) = (s.event, s.recorded);
        if let (None, Some(pid)) = (&recorded, s.page_event) {
            if self.page.as_ref().map(|p| p.0) != Some(pid) {
                let entries = page_row(pid)
                    .filter(|(kind, _)| kind == "sessions_seen")
                    .and_then(|(_, detail)| page_entries(&detail));
                self.page = Some((pid, entries));
            }
            let listed = self.page.as_ref().and_then(|p| p.1.as_ref()).and_then(|m| m.get(&s.sid));
            let Some(listed) = listed else {
                return Some(Verify::Evidence {
                    subject,
                    row_id: Some(pid),
                    reason: "its seen_event_id names an audit row that is not a sessions_seen row listing it: \
                             inserted or re-pointed outside ticketsync"
                        .into(),
                });
            };
            event = Some(pid);
            recorded = Some(listed.clone());
        }
        let Some(recorded) = recorded else {
            if !s.any_event {
                return Some(Verify::Evidence {
                    subject,
                    row_id: None,
                    reason: "no audit event records this session: inserted outside ticketsync".into(),
                });
            }
            stats.uncovered += 1;
            return None;
        };
        let mismatch = match current() {
            Ok(c) => (c.hex() != recorded).then_some("its content (technician, raw record or another column) differs from what the audit chain recorded: edited after the fact".to_string()),
            Err(e) => Some(format!("unreadable column ({e})")),
        };
        if let Some(reason) = mismatch {
            return Some(Verify::Evidence { subject, row_id: event, reason });
        }
        stats.sessions += 1;
        None
    }
}

/// Each delivery against the `delivery_enqueued` event that recorded its note.
fn check_delivery(
    stats: &mut Stats,
    did: i64,
    event: Option<i64>,
    recorded: Option<String>,
    any_event: bool,
    current: impl FnOnce() -> std::result::Result<Subject, String>,
) -> Option<Verify> {
    let subject = format!("deliveries row {did}");
    let Some(recorded) = recorded else {
        if !any_event {
            return Some(Verify::Evidence {
                subject,
                row_id: None,
                reason: "no audit event records this delivery: inserted outside ticketsync".into(),
            });
        }
        stats.uncovered += 1;
        return None;
    };
    let mismatch = match current() {
        Ok(c) => (c.hex() != recorded).then_some(
            "its note (note_json) or destination differs from what the audit chain recorded: edited after the fact"
                .to_string(),
        ),
        Err(e) => Some(format!("unreadable column ({e})")),
    };
    if let Some(reason) = mismatch {
        return Some(Verify::Evidence { subject, row_id: event, reason });
    }
    stats.deliveries += 1;
    None
}

/// The latest event with a subject about each session: the join both backends use.
const SESSION_EVENT_JOIN: &str = "LEFT JOIN audit_events a ON a.id = (SELECT MAX(e.id) FROM audit_events e
              WHERE e.session_id = s.id AND e.delivery_id IS NULL AND e.subject_sha256 IS NOT NULL)";

/// The latest event with a subject about each delivery.
const DELIVERY_EVENT_JOIN: &str = "LEFT JOIN audit_events a ON a.id = (SELECT MAX(e.id) FROM audit_events e
              WHERE e.delivery_id = d.id AND e.subject_sha256 IS NOT NULL)";

fn prefixed(cols: &str, table: &str) -> String {
    cols.split(',').map(|c| format!("{table}.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

fn check_sessions(conn: &rusqlite::Connection, stats: &mut Stats) -> rusqlite::Result<Option<Verify>> {
    let has_pages = conn
        .prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'seen_event_id'")
        .and_then(|mut s| s.exists([]))?;
    let seen = if has_pages { "s.seen_event_id" } else { "NULL" };
    let mut stmt = conn.prepare(&format!(
        "SELECT s.id, a.id, a.subject_sha256,
                -- Only asked when nothing recorded the content (rare: rows from before 0005).
                CASE WHEN a.id IS NULL AND {seen} IS NULL THEN EXISTS (SELECT 1 FROM audit_events e WHERE e.session_id = s.id) END,
                {seen}, {cols}
         FROM sessions s {SESSION_EVENT_JOIN}
         ORDER BY s.id",
        cols = prefixed(SESSION_SUBJECT_COLS, "s")
    ))?;
    let mut page_stmt = conn.prepare("SELECT kind, detail_json FROM audit_events WHERE id = ?")?;
    let mut check = SessionCheck::default();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seen = SessionSeen {
            sid: row.get(0)?,
            event: row.get(1)?,
            recorded: row.get(2)?,
            any_event: row.get::<_, Option<bool>>(3)?.unwrap_or(true),
            page_event: row.get(4)?,
        };
        let page_row = |pid: i64| page_stmt.query_row([pid], |r| Ok((r.get(0)?, r.get(1)?))).ok();
        let current = || -> std::result::Result<Subject, String> {
            (|| -> rusqlite::Result<Subject> {
                let t = |i: usize| row.get_ref(i + 1).and_then(|v| v.as_str_or_null().map_err(Into::into));
                let raw = t(21)?.unwrap_or("");
                let raw_hex = hex::encode(Sha256::digest(raw.as_bytes()));
                Ok(session_subject(&[
                    Field::Text(t(4)?),
                    Field::Text(t(5)?),
                    Field::Text(t(6)?),
                    Field::Text(t(7)?),
                    Field::Text(t(8)?),
                    Field::Text(t(9)?),
                    Field::Text(t(10)?),
                    Field::Text(t(11)?),
                    Field::Text(t(12)?),
                    Field::Text(t(13)?),
                    Field::Text(t(14)?),
                    Field::Int(row.get(16)?),
                    Field::Text(t(16)?),
                    Field::Text(t(17)?),
                    Field::Text(t(18)?),
                    Field::Text(t(19)?),
                    Field::Text(t(20)?),
                    Field::Text(Some(&raw_hex)),
                ]))
            })()
            .map_err(|e| e.to_string())
        };
        if let Some(v) = check.check(stats, seen, page_row, current) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Session id → subject hex of a `sessions_seen` row's detail; `None` if it does not parse
/// (the chain walk has already checked the row's hash, so that is not tampering after the
/// fact, but it vouches for nothing either).
fn page_entries(detail: &str) -> Option<HashMap<i64, String>> {
    #[derive(serde::Deserialize)]
    struct Page {
        sessions: Vec<(i64, serde::de::IgnoredAny, serde::de::IgnoredAny, serde::de::IgnoredAny, String)>,
    }
    let page: Page = serde_json::from_str(detail).ok()?;
    Some(page.sessions.into_iter().map(|(id, _, _, _, subject)| (id, subject)).collect())
}

fn check_deliveries(conn: &rusqlite::Connection, stats: &mut Stats) -> rusqlite::Result<Option<Verify>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT d.id, a.id, a.subject_sha256,
                CASE WHEN a.id IS NULL THEN EXISTS (SELECT 1 FROM audit_events e WHERE e.delivery_id = d.id) END, {cols}
         FROM deliveries d {DELIVERY_EVENT_JOIN}
         ORDER BY d.id",
        cols = prefixed(DELIVERY_SUBJECT_COLS, "d")
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let current = || -> std::result::Result<Subject, String> {
            (|| -> rusqlite::Result<Subject> {
                let t = |i: usize| row.get_ref(i).and_then(|v| v.as_str().map_err(Into::into));
                Ok(delivery_subject(t(4)?, t(5)?, row.get(6)?, row.get(7)?, t(8)?, t(9)?, t(10)?))
            })()
            .map_err(|e| e.to_string())
        };
        let any_event = row.get::<_, Option<bool>>(3)?.unwrap_or(true);
        if let Some(v) = check_delivery(stats, row.get(0)?, row.get(1)?, row.get(2)?, any_event, current) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Sessions and deliveries read per statement by the PostgreSQL walk: a batch in memory,
/// then the page rows it names, all in the walk's snapshot.
const VERIFY_BATCH: i64 = 1000;

/// A session row as the PostgreSQL check reads it (the subject's columns by name).
#[derive(sqlx::FromRow)]
struct SessionRow {
    sid: i64,
    event_id: Option<i64>,
    recorded: Option<String>,
    any_event: Option<bool>,
    seen_event_id: Option<i64>,
    vendor: Option<String>,
    external_id: Option<String>,
    session_code: Option<String>,
    session_code_norm: Option<String>,
    technician: Option<String>,
    technician_id: Option<String>,
    device: Option<String>,
    device_id: Option<String>,
    group_name: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    duration_s: Option<i64>,
    notes: Option<String>,
    description: Option<String>,
    custom_api: Option<String>,
    customer_name: Option<String>,
    customer_email: Option<String>,
    raw_json: Option<String>,
}

impl SessionRow {
    fn subject(&self) -> Subject {
        let raw_hex = hex::encode(Sha256::digest(self.raw_json.as_deref().unwrap_or("").as_bytes()));
        fn t(v: &Option<String>) -> Field<'_> {
            Field::Text(v.as_deref())
        }
        session_subject(&[
            t(&self.vendor),
            t(&self.external_id),
            t(&self.session_code),
            t(&self.session_code_norm),
            t(&self.technician),
            t(&self.technician_id),
            t(&self.device),
            t(&self.device_id),
            t(&self.group_name),
            t(&self.started_at),
            t(&self.ended_at),
            Field::Int(self.duration_s),
            t(&self.notes),
            t(&self.description),
            t(&self.custom_api),
            t(&self.customer_name),
            t(&self.customer_email),
            Field::Text(Some(&raw_hex)),
        ])
    }
}

/// A delivery row as the PostgreSQL check reads it.
#[derive(sqlx::FromRow)]
struct DeliveryRow {
    did: i64,
    event_id: Option<i64>,
    recorded: Option<String>,
    any_event: Option<bool>,
    sink: String,
    ticket_id: String,
    session_id: Option<i64>,
    link_id: Option<i64>,
    kind: String,
    marker: String,
    note_json: String,
}

/// [`verify_path`]'s checks through sqlx, for PostgreSQL: one repeatable-read snapshot,
/// the chain streamed in id order, sessions and deliveries by keyset batches.
async fn verify_sql(store: &super::Store, opts: &VerifyOptions) -> Result<Verify> {
    let mut tx = store.snapshot().await?;
    let walk = on_tx!(tx, |ex, _d| {
        let mut walk = ChainWalk::new(opts);
        let mut rows = sqlx::query_as::<_, TailRow>(
            "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash, chain_version,
             subject_sha256 FROM audit_events ORDER BY id",
        )
        .fetch(ex);
        let mut end = None;
        while let Some(r) = rows.try_next().await? {
            if let Some(e) = walk.step(&r.fields(), &r.hash, r.chain_version) {
                end = Some(e);
                break;
            }
        }
        end.unwrap_or_else(|| walk.finish())
    });
    let (rows, head, keyed_from) = match walked(walk, opts)? {
        Ok(done) => done,
        Err(v) => return Ok(v),
    };
    let mut stats = Stats::default();
    let session_sql = format!(
        "SELECT s.id AS sid, a.id AS event_id, a.subject_sha256 AS recorded,
                CASE WHEN a.id IS NULL AND s.seen_event_id IS NULL
                     THEN EXISTS (SELECT 1 FROM audit_events e WHERE e.session_id = s.id) END AS any_event,
                s.seen_event_id, {cols}
         FROM sessions s {SESSION_EVENT_JOIN}
         WHERE s.id > ? ORDER BY s.id LIMIT ?",
        cols = prefixed(SESSION_SUBJECT_COLS, "s")
    );
    let mut check = SessionCheck::default();
    let mut after = 0i64;
    loop {
        let batch: Vec<SessionRow> = on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(&session_sql))
            .bind(after)
            .bind(VERIFY_BATCH)
            .fetch_all(ex)
            .await?);
        let Some(last) = batch.last() else { break };
        after = last.sid;
        let mut wanted: Vec<i64> =
            batch.iter().filter(|r| r.recorded.is_none()).filter_map(|r| r.seen_event_id).collect();
        wanted.dedup();
        let pages: HashMap<i64, (String, String)> = if wanted.is_empty() {
            HashMap::new()
        } else {
            let got: Vec<(i64, String, String)> = on_tx!(tx, |ex, d| sqlx::query_as(
                &d.sql("SELECT id, kind, detail_json FROM audit_events WHERE id IN (SELECT value FROM json_each(?))")
            )
            .bind(super::List(&wanted))
            .fetch_all(ex)
            .await?);
            got.into_iter().map(|(id, kind, detail)| (id, (kind, detail))).collect()
        };
        for r in &batch {
            let seen = SessionSeen {
                sid: r.sid,
                event: r.event_id,
                recorded: r.recorded.clone(),
                any_event: r.any_event.unwrap_or(true),
                page_event: r.seen_event_id,
            };
            if let Some(v) = check.check(&mut stats, seen, |pid| pages.get(&pid).cloned(), || Ok(r.subject())) {
                tx.rollback().await?;
                return Ok(v);
            }
        }
    }
    let delivery_sql = format!(
        "SELECT d.id AS did, a.id AS event_id, a.subject_sha256 AS recorded,
                CASE WHEN a.id IS NULL THEN EXISTS (SELECT 1 FROM audit_events e WHERE e.delivery_id = d.id) END AS any_event,
                {cols}
         FROM deliveries d {DELIVERY_EVENT_JOIN}
         WHERE d.id > ? ORDER BY d.id LIMIT ?",
        cols = prefixed(DELIVERY_SUBJECT_COLS, "d")
    );
    let mut after = 0i64;
    loop {
        let batch: Vec<DeliveryRow> = on_tx!(tx, |ex, d| sqlx::query_as(&d.sql(&delivery_sql))
            .bind(after)
            .bind(VERIFY_BATCH)
            .fetch_all(ex)
            .await?);
        let Some(last) = batch.last() else { break };
        after = last.did;
        for r in &batch {
            let current = || {
                Ok(delivery_subject(&r.sink, &r.ticket_id, r.session_id, r.link_id, &r.kind, &r.marker, &r.note_json))
            };
            let any = r.any_event.unwrap_or(true);
            if let Some(v) = check_delivery(&mut stats, r.did, r.event_id, r.recorded.clone(), any, current) {
                tx.rollback().await?;
                return Ok(v);
            }
        }
    }
    tx.rollback().await?;
    Ok(stats.ok(rows, head, keyed_from))
}

/// Id and hash of the last row: the chain head an export records.
pub async fn head_in(tx: &mut Tx<'_>) -> Result<Option<(i64, String)>> {
    Ok(on_tx!(tx, |ex, _d| sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
        .fetch_optional(ex)
        .await?))
}

async fn head_of(store: &super::Store) -> Result<Option<(i64, String)>> {
    Ok(on_pool!(store, |ex, _d| sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
        .fetch_optional(ex)
        .await?))
}

/// The head as `ID:HASH` (`0:<GENESIS>` for an empty chain), for an external anchor.
pub async fn head(store: &super::Store) -> Result<String> {
    let (id, hash) = head_of(store).await?.unwrap_or((0, GENESIS.to_string()));
    Ok(format!("{id}:{hash}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f<'a>(subject: Option<&'a str>) -> RowFields<'a> {
        RowFields {
            prev: GENESIS,
            id: 1,
            at: "2026-01-01T00:00:00.000Z",
            kind: "k",
            vendor: None,
            session_id: Some(3),
            ticket_id: Some("42"),
            delivery_id: None,
            detail: "{}",
            subject,
        }
    }

    #[test]
    fn schemes_differ_and_the_key_matters() {
        let k1 = AuditKey::new(&[1u8; 32]).unwrap();
        let k2 = AuditKey::new(&[2u8; 32]).unwrap();
        let v1 = hash_row(ChainVersion::Legacy, None, &f(None)).unwrap();
        let v2 = hash_row(ChainVersion::Unkeyed, None, &f(None)).unwrap();
        let v3a = hash_row(ChainVersion::Keyed, Some(&k1), &f(None)).unwrap();
        let v3b = hash_row(ChainVersion::Keyed, Some(&k2), &f(None)).unwrap();
        assert!(v1 != v2 && v2 != v3a && v3a != v3b && v1 != v3a);
        assert_eq!(hash_row(ChainVersion::Keyed, None, &f(None)), None);
        // The subject is part of schemes 2 and 3.
        assert_ne!(hash_row(ChainVersion::Unkeyed, None, &f(Some("ab"))).unwrap(), v2);
        assert_ne!(hash_row(ChainVersion::Keyed, Some(&k1), &f(Some("ab"))).unwrap(), v3a);
        // Scheme 1 is the hash the rows before the migration carry.
        assert_eq!(v1, row_hash(GENESIS, 1, "2026-01-01T00:00:00.000Z", "k", None, Some(3), Some("42"), None, "{}"));
        assert!(AuditKey::new(b"short").is_err());
    }

    #[test]
    fn subjects_separate_absent_empty_and_shifted_fields() {
        let a = delivery_subject("r", "1", None, None, "k", "m", "{}");
        assert_ne!(a, delivery_subject("r", "1", Some(0), None, "k", "m", "{}"));
        assert_ne!(a, delivery_subject("r", "1", None, None, "k", "m", "{} "));
        assert_ne!(
            delivery_subject("ab", "c", None, None, "", "", ""),
            delivery_subject("a", "bc", None, None, "", "", "")
        );
    }

    #[test]
    fn head_parses_as_printed() {
        let h = format!("12:{}", "A".repeat(64));
        assert_eq!(parse_head(&h).unwrap(), (12, "a".repeat(64)));
        assert!(parse_head("12").is_err() && parse_head("x:00").is_err() && parse_head("1:abc").is_err());
    }
}
