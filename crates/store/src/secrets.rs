//! `store_secrets`: keys kept in the database so that every instance sharing the store uses
//! the same one (the marker key of issue 14). Created once, never rotated by the daemon.

use super::{on_tx, Backend, Result, Store, Tx};
use crate::marker::MarkerKey;

/// The name of the notes' marker key in `store_secrets`.
pub const MARKER_KEY: &str = "marker";

/// The secret `name`, creating it with `generate()` if the store has none. Two instances
/// starting at once both insert-or-ignore, then read the one that won.
pub async fn get_or_create(store: &Store, name: &str, generate: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>> {
    let (value, now) = (generate(), super::now());
    let insert = "INSERT OR IGNORE INTO store_secrets (name, value, created_at) VALUES (?, ?, ?)";
    let select = "SELECT value FROM store_secrets WHERE name = ?";
    // SQLite: on the writer, which every write goes through.
    let (v,): (Vec<u8>,) = match store.backend() {
        Backend::Sqlite { writer, .. } => {
            let mut db = writer.acquire().await?;
            sqlx::query(insert).bind(name).bind(value).bind(now).execute(&mut *db).await?;
            sqlx::query_as(select).bind(name).fetch_one(&mut *db).await?
        }
        Backend::Postgres { pool, .. } => {
            let d = store.dialect();
            sqlx::query(&d.sql(insert)).bind(name).bind(value).bind(now).execute(pool).await?;
            sqlx::query_as(&d.sql(select)).bind(name).fetch_one(pool).await?
        }
    };
    Ok(v)
}

/// The secret `name` if the store has it (read-only opens; a store from before migration
/// 0004 has no table).
pub async fn get(store: &Store, name: &str) -> Option<Vec<u8>> {
    let row: std::result::Result<Option<(Vec<u8>,)>, sqlx::Error> =
        super::on_pool!(store, |ex, d| sqlx::query_as(&d.sql("SELECT value FROM store_secrets WHERE name = ?"))
            .bind(name)
            .fetch_optional(ex)
            .await);
    row.ok().flatten().map(|(v,)| v)
}

/// The store's marker key, generated (32 random bytes) on first use.
pub(crate) async fn store_marker_key(store: &Store) -> Result<MarkerKey> {
    let bytes = get_or_create(store, MARKER_KEY, || MarkerKey::generate().bytes().to_vec()).await?;
    MarkerKey::new(&bytes).map_err(|e| super::StoreError::Invalid(format!("store_secrets.{MARKER_KEY}: {e}")))
}

/// The store's marker key read (or created) inside a write transaction: a page hook needs
/// it where only the transaction is at hand.
pub async fn marker_key(tx: &mut Tx<'_>) -> Result<MarkerKey> {
    let (value, now) = (MarkerKey::generate().bytes().to_vec(), super::now());
    let (bytes,): (Vec<u8>,) = on_tx!(tx, |ex, d| {
        sqlx::query(&d.sql("INSERT OR IGNORE INTO store_secrets (name, value, created_at) VALUES (?, ?, ?)"))
            .bind(MARKER_KEY)
            .bind(value)
            .bind(now)
            .execute(&mut *ex)
            .await?;
        sqlx::query_as(&d.sql("SELECT value FROM store_secrets WHERE name = ?")).bind(MARKER_KEY).fetch_one(ex).await?
    });
    MarkerKey::new(&bytes).map_err(|e| super::StoreError::Invalid(format!("store_secrets.{MARKER_KEY}: {e}")))
}
