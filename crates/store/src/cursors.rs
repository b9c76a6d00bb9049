//! Source cursors, written in the same transaction as the page they describe. A row per
//! cursor key in the store handle's namespace (`Store::key`: the key itself for the default
//! tenant, `<tenant>/<key>` for another, `<tenant>/<account>/<key>` for a tenant's account), so two tenants' accounts of one vendor
//! keep their own cursors.

use super::{on_pool, on_tx, Result, Tx};

pub async fn load(store: &super::Store, source: &str) -> Result<Option<String>> {
    Ok(on_pool!(store, |ex, d| sqlx::query_scalar(&d.sql("SELECT cursor_json FROM source_cursors WHERE source = ?"))
        .bind(store.key(source))
        .fetch_optional(ex)
        .await?))
}

pub async fn save(tx: &mut Tx<'_>, source: &str, cursor_json: &str, success: bool) -> Result<()> {
    let now = super::now();
    let source = tx.key(source);
    on_tx!(tx, |ex, d| {
        sqlx::query(&d.sql(
        "INSERT INTO source_cursors (source, cursor_json, last_poll_at, last_success_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(source) DO UPDATE SET cursor_json = excluded.cursor_json, last_poll_at = excluded.last_poll_at,
           last_success_at = COALESCE(excluded.last_success_at, source_cursors.last_success_at),
           last_error = CASE WHEN excluded.last_success_at IS NOT NULL THEN NULL ELSE source_cursors.last_error END,
           updated_at = excluded.updated_at",
    ))
    .bind(&source)
    .bind(cursor_json)
    .bind(&now)
    .bind(if success { Some(now.clone()) } else { None })
    .bind(&now)
    .execute(ex)
    .await
    .map(|_| ())?
    });
    Ok(())
}

pub async fn record_error(store: &super::Store, source: &str, error: &str) -> Result<()> {
    let now = super::now();
    let error = crate::redact::scrubbed(error);
    let source = store.key(source);
    on_pool!(store, |ex, d| {
        sqlx::query(&d.sql(
        "INSERT INTO source_cursors (source, cursor_json, last_poll_at, last_error, updated_at) VALUES (?, '{}', ?, ?, ?)
         ON CONFLICT(source) DO UPDATE SET last_poll_at = excluded.last_poll_at, last_error = excluded.last_error, updated_at = excluded.updated_at",
    ))
    .bind(&source)
    .bind(&now)
    .bind(&error)
    .bind(&now)
    .execute(ex)
    .await
    .map(|_| ())?
    });
    Ok(())
}
