//! `store_secrets`: keys kept in the database so that every instance sharing the store uses
//! the same one (the marker key of issue 14). Created once, never rotated by the daemon.

use sqlx::{SqliteConnection, SqliteExecutor};

use super::Result;
use crate::marker::MarkerKey;

/// The name of the notes' marker key in `store_secrets`.
pub const MARKER_KEY: &str = "marker";

/// The secret `name`, creating it with `generate()` if the store has none. Two instances
/// starting at once both insert-or-ignore, then read the one that won.
pub async fn get_or_create(
    db: &mut SqliteConnection,
    name: &str,
    generate: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>> {
    sqlx::query("INSERT OR IGNORE INTO store_secrets (name, value, created_at) VALUES (?, ?, ?)")
        .bind(name)
        .bind(generate())
        .bind(super::now())
        .execute(&mut *db)
        .await?;
    let (v,): (Vec<u8>,) =
        sqlx::query_as("SELECT value FROM store_secrets WHERE name = ?").bind(name).fetch_one(&mut *db).await?;
    Ok(v)
}

/// The secret `name` if the store has it (read-only opens; a store from before migration
/// 0004 has no table).
pub async fn get<'e, E: SqliteExecutor<'e>>(db: E, name: &str) -> Option<Vec<u8>> {
    sqlx::query_as::<_, (Vec<u8>,)>("SELECT value FROM store_secrets WHERE name = ?")
        .bind(name)
        .fetch_optional(db)
        .await
        .ok()
        .flatten()
        .map(|(v,)| v)
}

/// The store's marker key, generated (32 random bytes) on first use.
pub async fn marker_key(db: &mut SqliteConnection) -> Result<MarkerKey> {
    let bytes = get_or_create(db, MARKER_KEY, || MarkerKey::generate().bytes().to_vec()).await?;
    MarkerKey::new(&bytes).map_err(|e| super::StoreError::Invalid(format!("store_secrets.{MARKER_KEY}: {e}")))
}
