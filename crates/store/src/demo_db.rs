//! The PostgreSQL database of `ticketsync demo --store postgres://…` (issue 17 point 5):
//! each demo run starts from an empty history, as it does with its SQLite file, so that
//! the fresh simulators and the database agree.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::{scrub_url, Result, StoreError};

/// The comment a database the demo created carries: the next run may drop and recreate it.
pub const DEMO_DB_COMMENT: &str = "ticketsync demo: replaced by every demo run";

/// Make the database of `url` an empty one: created if missing (the user needs CREATEDB),
/// dropped and recreated if an earlier demo created it, used as it is while it holds no
/// ticketsync history, refused otherwise (never someone else's data).
pub async fn fresh(url: &str) -> Result<()> {
    let shown = scrub_url(url);
    let opts = PgConnectOptions::from_str(url)
        .map_err(|_| StoreError::Invalid(format!("{shown}: not a valid PostgreSQL URL")))?;
    let name = opts.get_database().unwrap_or_default().to_string();
    // Quoted below as an identifier; a plain name keeps the quoting trivial.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::Invalid("name a database of letters, digits and _ (ticketsync_demo)".into()));
    }
    let mut admin = opts
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(|e| StoreError::Open { path: format!("{shown} (its server's `postgres` database)"), source: e })?;
    let found: Option<(Option<String>,)> =
        sqlx::query_as("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&mut admin)
            .await?;
    let create = match found {
        None => true,
        Some((Some(c),)) if c == DEMO_DB_COMMENT => {
            sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).execute(&mut admin).await?;
            true
        }
        Some(_) => {
            let mut c = opts.connect().await.map_err(|e| StoreError::Open { path: shown.clone(), source: e })?;
            let history = has_sessions(&mut c).await?;
            c.close().await.ok();
            if history {
                return Err(StoreError::Invalid(
                    "that database holds a ticketsync history the demo did not write; name a new one \
                     (the demo creates it)"
                        .into(),
                ));
            }
            false
        }
    };
    if create {
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await.map_err(|e| {
            StoreError::Invalid(format!("cannot create the database ({e}): createdb {name}, or a user with CREATEDB"))
        })?;
        sqlx::query(&format!("COMMENT ON DATABASE \"{name}\" IS '{DEMO_DB_COMMENT}'")).execute(&mut admin).await?;
    }
    admin.close().await.ok();
    Ok(())
}

/// Whether `sessions` exists and has a row.
async fn has_sessions(c: &mut PgConnection) -> Result<bool> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('sessions') IS NOT NULL").fetch_one(&mut *c).await?;
    if !exists {
        return Ok(false);
    }
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sessions)").fetch_one(&mut *c).await?)
}
