//! All SQL lives here. SQLite through sqlx with runtime queries only, so the build needs
//! no database; `migrations/` is embedded and applied at open.

pub mod audit;
pub mod cursors;
pub mod links;
pub mod outbox;
pub mod sessions;
pub mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;
pub type Tx<'a> = Transaction<'a, Sqlite>;

#[derive(Clone, Debug)]
pub struct Store {
    pub pool: SqlitePool,
}

impl Store {
    /// Open (creating if missing) and migrate. WAL, foreign keys, busy timeout, and
    /// `synchronous=FULL`: the outbox and cursors are worth an fsync per commit.
    pub async fn open(path: &Path, busy_timeout: Duration) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open { path: path.display().to_string(), source: sqlx::Error::Io(e) })?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    /// Read-only open for auditors' commands: never migrates, never writes.
    pub async fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::Invalid(format!("database {} does not exist", path.display())));
        }
        // No slow-statement warnings: an export streams millions of rows through one statement.
        let opts = sqlx::ConnectOptions::disable_statement_logging(
            SqliteConnectOptions::new().filename(path).read_only(true).busy_timeout(Duration::from_secs(5)),
        );
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?;
        Ok(Store { pool })
    }

    /// A write transaction that takes the write lock up front, so two writers never
    /// deadlock on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx<'static>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn integrity_check(&self) -> Result<String> {
        let (s,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&self.pool).await?;
        Ok(s)
    }
}

pub fn now() -> String {
    crate::session::ts(chrono::Utc::now())
}
