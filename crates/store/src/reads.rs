//! Reads for the operators' views: the metrics gauges, readiness, `doctor`, the demo's
//! summary and backfill's dry run. Each returns typed rows, so that the views hold no SQL
//! and a second backend answers them with its own statements.

use super::{on_pool, Backend, Result, Store};

/// Deliveries of one sink in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStateCount {
    pub sink: String,
    pub state: String,
    pub count: i64,
}

pub async fn deliveries_by_sink_state(store: &Store) -> Result<Vec<SinkStateCount>> {
    let rows: Vec<(String, String, i64)> = on_pool!(store, |ex, d| sqlx::query_as(
        &d.sql("SELECT sink, state, COUNT(*) FROM deliveries GROUP BY sink, state")
    )
    .fetch_all(ex)
    .await?);
    Ok(rows.into_iter().map(|(sink, state, count)| SinkStateCount { sink, state, count }).collect())
}

/// A sink with deliveries, and the creation time of its oldest one still pending or
/// sending (`None`: nothing waiting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkBacklog {
    pub sink: String,
    pub oldest_waiting_at: Option<String>,
}

pub async fn oldest_waiting_by_sink(store: &Store) -> Result<Vec<SinkBacklog>> {
    let rows: Vec<(String, Option<String>)> = on_pool!(store, |ex, d| {
        sqlx::query_as(&d.sql(
        "SELECT sink, MIN(CASE WHEN state IN ('pending', 'sending') THEN created_at END) FROM deliveries GROUP BY sink"
    ))
    .fetch_all(ex)
    .await?
    });
    Ok(rows.into_iter().map(|(sink, oldest_waiting_at)| SinkBacklog { sink, oldest_waiting_at }).collect())
}

/// A source's last successful poll (`None`: polled, never successfully).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePoll {
    pub source: String,
    pub last_success_at: Option<String>,
}

pub async fn source_polls(store: &Store) -> Result<Vec<SourcePoll>> {
    let rows: Vec<(String, Option<String>)> =
        on_pool!(store, |ex, d| sqlx::query_as(&d.sql("SELECT source, last_success_at FROM source_cursors"))
            .fetch_all(ex)
            .await?);
    Ok(rows.into_iter().map(|(source, last_success_at)| SourcePoll { source, last_success_at }).collect())
}

/// When a provider's stored OAuth tokens expire (stored in clear; the tokens are not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExpiry {
    pub provider: String,
    pub access_expires_at: Option<String>,
    pub refresh_expires_at: Option<String>,
}

/// Every stored provider: teamviewer, splashtop, zoom:<account>.
pub async fn token_expiries(store: &Store) -> Result<Vec<TokenExpiry>> {
    let rows: Vec<(String, Option<String>, Option<String>)> = on_pool!(store, |ex, d| sqlx::query_as(
        &d.sql("SELECT provider, access_expires_at, refresh_expires_at FROM oauth_tokens")
    )
    .fetch_all(ex)
    .await?);
    Ok(rows
        .into_iter()
        .map(|(provider, access_expires_at, refresh_expires_at)| TokenExpiry {
            provider,
            access_expires_at,
            refresh_expires_at,
        })
        .collect())
}

pub async fn token_expiry(store: &Store, provider: &str) -> Result<Option<TokenExpiry>> {
    let row: Option<(Option<String>, Option<String>)> = on_pool!(store, |ex, d| sqlx::query_as(
        &d.sql("SELECT access_expires_at, refresh_expires_at FROM oauth_tokens WHERE provider = ?")
    )
    .bind(provider)
    .fetch_optional(ex)
    .await?);
    Ok(row.map(|(access_expires_at, refresh_expires_at)| TokenExpiry {
        provider: provider.to_string(),
        access_expires_at,
        refresh_expires_at,
    }))
}

/// The id of the last audit row (0 for an empty chain): how many rows the chain has.
pub async fn audit_rows(store: &Store) -> Result<i64> {
    Ok(on_pool!(store, |ex, d| sqlx::query_scalar(&d.sql("SELECT COALESCE(MAX(id), 0) FROM audit_events"))
        .fetch_one(ex)
        .await?))
}

/// One matched session as the view `v_sessions_by_ticket` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketMatch {
    pub ticket_id: String,
    pub vendor: String,
    /// The session code, else the vendor's id.
    pub code: String,
    pub rule: String,
}

/// Every match, by ticket.
pub async fn matches_by_ticket(store: &Store) -> Result<Vec<TicketMatch>> {
    let rows: Vec<(String, String, String, String)> = on_pool!(store, |ex, d| {
        sqlx::query_as(&d.sql("SELECT ticket_id, vendor, COALESCE(session_code, external_id), rule FROM v_sessions_by_ticket ORDER BY ticket_id"))
    .fetch_all(ex).await?
    });
    Ok(rows.into_iter().map(|(ticket_id, vendor, code, rule)| TicketMatch { ticket_id, vendor, code, rule }).collect())
}

/// Why each quarantined record was refused, in table order.
pub async fn quarantine_reasons(store: &Store) -> Result<Vec<String>> {
    Ok(on_pool!(store, |ex, d| sqlx::query_scalar(&d.sql("SELECT reason FROM quarantine ORDER BY id"))
        .fetch_all(ex)
        .await?))
}

/// The content hash of a stored session (`None`: not stored), to tell what a page would
/// insert, update or leave unchanged without writing it.
pub async fn content_hash(store: &Store, vendor: &str, external_id: &str) -> Result<Option<String>> {
    Ok(on_pool!(store, |ex, d| sqlx::query_scalar(
        &d.sql("SELECT content_hash FROM sessions WHERE vendor = ? AND external_id = ?")
    )
    .bind(vendor)
    .bind(external_id)
    .fetch_optional(ex)
    .await?))
}

/// What `doctor` says of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseHealth {
    /// `PRAGMA quick_check`: "ok", else the problems found. `None` on PostgreSQL, which has
    /// no such check.
    pub quick_check: Option<String>,
    /// `None`: never migrated, or the migrations table is unreadable.
    pub schema_version: Option<i64>,
    /// 0 when the table is unreadable: the quick check already speaks for the file.
    pub audit_rows: i64,
}

/// Fails only when the database cannot be read (not a database, unreadable, unreachable).
pub async fn database_health(store: &Store) -> Result<DatabaseHealth> {
    let quick_check = match store.backend() {
        Backend::Sqlite { pool, .. } => Some(sqlx::query_scalar("PRAGMA quick_check").fetch_one(pool).await?),
        // A round trip instead: the server answers and the database exists.
        Backend::Postgres { pool, .. } => {
            sqlx::query("SELECT 1").execute(pool).await?;
            None
        }
    };
    let schema_version = store.schema_version().await.unwrap_or(None);
    let audit_rows: i64 =
        on_pool!(store, |ex, _d| sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(ex).await)
            .unwrap_or(0);
    Ok(DatabaseHealth { quick_check, schema_version, audit_rows })
}
