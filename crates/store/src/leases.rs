//! Leases with fencing tokens (issue 17): the work only one instance may do at a time when
//! several share one database, such as polling one source account. Written as plain rows
//! and conditional upserts, the same on SQLite and PostgreSQL: no advisory locks (they do
//! not survive a connection pooler) and no consensus of our own. See migration 0008.
//!
//! A holder's guarded writes go through [`Store::fence`] (registered by the daemon when it
//! acquires a lease): the source cursor's save checks and extends the lease in the page's
//! own transaction ([`check_in`]), so a page can only be committed by the current holder.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use super::{on_pool, on_tx, Result, StoreError, Tx};

/// A lease as granted: its name, holder, fencing token and expiry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub token: i64,
    pub acquired_at: String,
    pub expires_at_ms: i64,
}

/// Milliseconds since the Unix epoch on this instance's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Take `name` for `holder` for `ttl`: granted when it is free, expired, or already held by
/// `holder` (then renewed, keeping its token). A lease that changes hands, or is taken again
/// after it expired, gets the next token. `None`: another instance holds it.
pub async fn acquire(store: &super::Store, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    // The SET expressions read the row as it was: `leases.*` is the old holder and expiry.
    let lease: Option<Lease> = on_tx!(tx, |ex, d| {
        sqlx::query_as(&d.sql(
        "INSERT INTO leases (name, holder, token, acquired_at, expires_at_ms) VALUES (?, ?, 1, ?, ?)
         ON CONFLICT (name) DO UPDATE SET
           token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at_ms >= ? THEN leases.token ELSE leases.token + 1 END,
           acquired_at = CASE WHEN leases.holder = excluded.holder AND leases.expires_at_ms >= ? THEN leases.acquired_at ELSE excluded.acquired_at END,
           holder = excluded.holder,
           expires_at_ms = excluded.expires_at_ms
         WHERE leases.holder = excluded.holder OR leases.expires_at_ms < ?
         RETURNING name, holder, token, acquired_at, expires_at_ms",
    ))
    .bind(name)
    .bind(holder)
    .bind(super::now())
    .bind(now + ttl_ms(ttl))
    .bind(now)
    .bind(now)
    .bind(now)
    .fetch_optional(ex)
    .await?
    });
    tx.commit().await?;
    Ok(lease)
}

/// Give `lease` up (graceful shutdown): it expires now, so another instance takes it at its
/// next try instead of after the TTL. A lease that already changed hands is left alone.
pub async fn release(store: &super::Store, lease: &Lease) -> Result<()> {
    let mut tx = store.begin().await?;
    on_tx!(tx, |ex, d| sqlx::query(
        &d.sql("UPDATE leases SET expires_at_ms = ? WHERE name = ? AND holder = ? AND token = ?")
    )
    .bind(now_ms() - 1)
    .bind(&lease.name)
    .bind(&lease.holder)
    .bind(lease.token)
    .execute(ex)
    .await
    .map(|_| ())?);
    tx.commit().await?;
    Ok(())
}

/// Inside the transaction of a guarded write: `lease` is still held with its token, and is
/// extended by `ttl`; else [`StoreError::LeaseLost`] and the caller's transaction rolls
/// back. On PostgreSQL the update also locks the lease row until the commit, so a takeover
/// waits for this write and then sees the extended expiry.
pub async fn check_in(tx: &mut Tx<'_>, lease: &Lease, ttl: Duration) -> Result<()> {
    let done = on_tx!(tx, |ex, d| sqlx::query(
        &d.sql("UPDATE leases SET expires_at_ms = ? WHERE name = ? AND holder = ? AND token = ?")
    )
    .bind(now_ms() + ttl_ms(ttl))
    .bind(&lease.name)
    .bind(&lease.holder)
    .bind(lease.token)
    .execute(ex)
    .await?
    .rows_affected());
    match done {
        1 => Ok(()),
        _ => Err(StoreError::LeaseLost { name: lease.name.clone(), token: lease.token }),
    }
}

/// Every lease, by name: who holds what, for `/readyz` and `/metrics`.
pub async fn list(store: &super::Store) -> Result<Vec<Lease>> {
    Ok(on_pool!(store, |ex, _d| sqlx::query_as(
        "SELECT name, holder, token, acquired_at, expires_at_ms FROM leases ORDER BY name"
    )
    .fetch_all(ex)
    .await?))
}

/// The leases this instance holds for the writes it guards, by the cursor key they guard
/// (a source's name; `source:account` keys are guarded by their source's lease).
#[derive(Debug, Default)]
pub struct Fences {
    held: RwLock<HashMap<String, (Lease, Duration)>>,
}

impl Fences {
    /// Guard the cursor writes of `key` with `lease`, extended by `ttl` at each write.
    pub fn hold(&self, key: &str, lease: Lease, ttl: Duration) {
        self.held.write().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), (lease, ttl));
    }

    /// Stop guarding `key`; the lease it was guarded with.
    pub fn drop_key(&self, key: &str) -> Option<Lease> {
        self.held.write().unwrap_or_else(|e| e.into_inner()).remove(key).map(|(l, _)| l)
    }

    /// The lease guarding `cursor_key`, by the key itself or its source (before a `:`).
    pub fn for_cursor(&self, cursor_key: &str) -> Option<(Lease, Duration)> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        let source = cursor_key.split(':').next().unwrap_or(cursor_key);
        held.get(cursor_key).or_else(|| held.get(source)).cloned()
    }

    /// Every lease held, for a graceful release.
    pub fn all(&self) -> Vec<Lease> {
        self.held.read().unwrap_or_else(|e| e.into_inner()).values().map(|(l, _)| l.clone()).collect()
    }
}
