//! All SQL lives here. SQLite through sqlx with runtime queries only, so the build needs
//! no database; `migrations/` is embedded and applied at open.
//!
//! The API the rest of the code uses is the public functions of these modules: they take
//! `&Store` (a statement of its own) or `&mut Tx` (part of the caller's unit of work) and
//! return typed rows; the pool is private to this module tree. `tests/it/store_conformance.rs`
//! exercises every one of them through that API only, so a second backend (PostgreSQL,
//! issue 17) is the same functions dispatching on the store's dialect, run against the same
//! suite.

// The domain and the redactor under the names the modules below use.
use ticketsync_model::{marker, session};
use ticketsync_redact as redact;

pub mod audit;
pub mod backup;
pub mod cursors;
pub mod history;
pub mod leases;
pub mod links;
pub mod outbox;
pub mod page;
pub mod reads;
pub mod secrets;
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
    /// A guarded write found its lease taken over by another instance (fencing token `token`
    /// no longer current): the write is rolled back, the new holder does the work.
    #[error("lease {name} (token {token}) is held by another instance now; this write is refused")]
    LeaseLost { name: String, token: i64 },
}

impl StoreError {
    /// A write the disk refused: full (SQLITE_FULL, which SQLite reports for ENOSPC) or an
    /// I/O error. Unlike a busy lock, it will not pass by itself.
    pub fn is_write_failure(&self) -> bool {
        let StoreError::Sql(sqlx::Error::Database(e)) = self else {
            return matches!(self, StoreError::Sql(sqlx::Error::Io(_)));
        };
        let code = e.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
        // Extended codes carry the primary one in the low byte (SQLITE_IOERR_WRITE = 778).
        matches!(code & 0xff, 10 | 13)
    }

    /// The message without this type's "database error: " prefix, for a message that
    /// says "database error" itself (readiness, `doctor`).
    pub fn cause(&self) -> String {
        match self {
            StoreError::Sql(e) => e.to_string(),
            other => other.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
pub type Tx<'a> = Transaction<'a, Sqlite>;

#[derive(Clone, Debug)]
pub struct Store {
    /// Reads, and single statements. Private to the store: every statement lives in this
    /// module tree, so a second backend has one place to implement (issue 16, point 5).
    pool: SqlitePool,
    /// The one connection of the write transactions ([`Store::begin`]).
    writer: SqlitePool,
    /// The last write the disk refused, until a write succeeds again (`/readyz`, metrics).
    writes: std::sync::Arc<WriteHealth>,
    /// Work done in the transaction of each page of new sessions (see [`PageHook`]).
    page_hook: Option<std::sync::Arc<dyn PageHook>>,
    /// How long a writer waits for the write lock before its work fails (and is retried).
    busy_timeout: Duration,
    /// The key of the notes' marker MAC: the store's own (`store_secrets`) unless the
    /// configuration sets one ([`Store::with_marker_key`]).
    marker_key: crate::marker::MarkerKey,
    /// The leases this instance's guarded writes are fenced with ([`leases::Fences`]).
    fences: std::sync::Arc<leases::Fences>,
}

/// Work that belongs in the same transaction as a page of first-seen sessions. `App` wires
/// the matcher here, so that a page is matched and its notes queued in the transaction that
/// stores it: the matcher does not read each new session back, nor mark it examined with an
/// update of its own, and a crash can still only lose the whole page (which is re-fetched
/// from the saved cursor).
///
/// The contract: a hook examines every fresh session that has ended. When a store has a
/// hook, [`page::upsert_page`] inserts those sessions already marked examined, so one the
/// hook skipped would never reach the matching pass: `upsert_page` fails the page when the
/// hook's [`page::HookOutcome::examined`] falls short. Running sessions, and sessions the
/// vendor changes later, go to the pass.
#[async_trait::async_trait]
pub trait PageHook: Send + Sync + std::fmt::Debug {
    /// `fresh`: the sessions this page inserted, with their new ids.
    async fn fresh_sessions(
        &self,
        tx: &mut Tx<'_>,
        fresh: &[(i64, &crate::session::NewSession)],
    ) -> Result<page::HookOutcome>;
}

#[derive(Debug, Default)]
struct WriteHealth {
    path: String,
    /// (since, error) of the first refused write of the current run of failures.
    failing: std::sync::Mutex<Option<(String, String)>>,
}

fn pool_options(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new().max_connections(max).after_release(|conn, _| {
        Box::pin(async move {
            use sqlx::{Connection, Database, TransactionManager};
            // SQLite rolls a transaction back by itself when a write hits a full disk
            // or an I/O error; sqlx's own ROLLBACK then fails and its transaction depth
            // stays at 1, so every later `BEGIN IMMEDIATE` on this connection would fail
            // with "non-zero transaction depth", even once space is back. Such a
            // connection is closed instead of pooled. A dropped transaction's rollback
            // may still be queued: the ping lets it run before the depth is judged
            // (only then: a ping on every release is a round trip per query).
            let depth =
                |c: &mut sqlx::SqliteConnection| <Sqlite as Database>::TransactionManager::get_transaction_depth(c);
            if depth(conn) == 0 {
                return Ok(true);
            }
            conn.ping().await?;
            Ok(depth(conn) == 0)
        })
    })
}

/// Page size of a database this store creates. 16 KiB against SQLite's 4 KiB: ingest
/// 15-18 % faster at 10k and 100k records and the same at 1M, same memory (the page cache
/// is sized in KiB), measured back to back (BENCHMARKS.md, round 5). SQLite ignores it for
/// an existing database in WAL mode, which keeps the size it was created with.
pub const PAGE_SIZE: u32 = 16384;

/// Page cache of the writer connection, in pages (`PRAGMA cache_size` > 0) rather than
/// SQLite's default of 2 000 KiB (125 pages of 16 KiB). Ingest of 100k records, by writer
/// cache (BENCHMARKS.md, session 7): 128 pages 164k pread64, peak RSS 35 MB; 384 pages
/// (6 MiB) 95k, 37 MB; 512 pages 76k, 40.1 MB (over the 40 MB target); 1 024 pages 31k,
/// 47 MB. `TICKETSYNC_WRITER_CACHE_PAGES` overrides it, for the benchmark only (bench/
/// measures the cache against the RSS without a rebuild).
pub const WRITER_CACHE_PAGES: u32 = 384;

fn writer_cache_pages() -> u32 {
    std::env::var("TICKETSYNC_WRITER_CACHE_PAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(WRITER_CACHE_PAGES)
}

impl Store {
    /// Open (creating if missing) and migrate. WAL, foreign keys, busy timeout, and
    /// `synchronous=FULL`: the outbox and cursors are worth an fsync per commit.
    pub async fn open(path: &Path, busy_timeout: Duration) -> Result<Store> {
        let io_err = |e| StoreError::Open { path: path.display().to_string(), source: sqlx::Error::Io(e) };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_files::create_dir(dir).map_err(io_err)?;
        }
        private_files::create_file(path).map_err(io_err)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?
            .filename(path)
            .create_if_missing(true)
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Statement journals and sorter spills in memory, not in deleted /var/tmp files:
            // they only undo a failing statement inside its transaction (durability is the
            // WAL's), and on disk they were ~1.6 MB of writes per delivery transaction
            // (session 8, strace of a 10k drain: 1.97 GB to 1,253 temp files vs 367 MB WAL).
            .pragma("temp_store", "memory")
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let open_err = |e| StoreError::Open { path: path.display().to_string(), source: e };
        // Every write transaction goes through one connection (`begin`), so writers queue in
        // the pool rather than spin on SQLite's lock. Its page cache is
        // `WRITER_CACHE_PAGES`; the readers keep SQLite's default.
        // Reads, and the odd single-statement write, use the other pool.
        let writer = pool_options(1)
            .acquire_timeout(busy_timeout.max(Duration::from_secs(1)))
            .connect_with(opts.clone().pragma("cache_size", writer_cache_pages().to_string()))
            .await
            .map_err(open_err)?;
        let pool = pool_options(4).connect_with(opts).await.map_err(open_err)?;
        MIGRATOR.run(&writer).await?;
        // SQLite made the -wal and -shm files at the first write, with the database's mode
        // (0600 above); an existing database from an older version may have 0644 ones.
        private_files::restrict(path).map_err(io_err)?;
        let marker_key = secrets::marker_key(&mut *writer.acquire().await?).await?;
        Ok(Store {
            pool,
            writer,
            writes: std::sync::Arc::new(WriteHealth { path: path.display().to_string(), ..Default::default() }),
            page_hook: None,
            busy_timeout,
            marker_key,
            fences: Default::default(),
        })
    }

    /// Read-only open for auditors' commands: never migrates, never writes.
    pub async fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::Invalid(format!("database {} does not exist", path.display())));
        }
        let busy_timeout = Duration::from_secs(5);
        // No slow-statement warnings: an export streams millions of rows through one statement.
        let opts = sqlx::ConnectOptions::disable_statement_logging(
            SqliteConnectOptions::new().filename(path).read_only(true).busy_timeout(busy_timeout),
        );
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open { path: path.display().to_string(), source: e })?;
        // Read-only commands queue no notes; a store without a key gets a throw-away one.
        let marker_key = secrets::get(&pool, secrets::MARKER_KEY)
            .await
            .and_then(|b| crate::marker::MarkerKey::new(&b).ok())
            .unwrap_or_else(crate::marker::MarkerKey::generate);
        Ok(Store {
            writer: pool.clone(),
            pool,
            writes: std::sync::Arc::new(WriteHealth { path: path.display().to_string(), ..Default::default() }),
            page_hook: None,
            busy_timeout,
            marker_key,
            fences: Default::default(),
        })
    }

    /// How long a writer waits for the write lock (`[store] busy_timeout_ms`).
    pub fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// Note how a unit of work that writes went. A write the disk refused (full, I/O error)
    /// is logged once naming the database, counted, and reported by `/readyz` and the
    /// `ticketsync_store_writes_failing` gauge until a write succeeds again. Nothing half
    /// written stays behind: each page, match batch and delivery step is one transaction.
    pub fn note_write(&self, result: std::result::Result<(), &StoreError>) {
        let mut failing = self.writes.failing.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if let Some((since, _)) = failing.take() {
                    tracing::warn!(database = %self.writes.path, failing_since = %since, "database writes succeed again; resuming");
                    metrics::gauge!("ticketsync_store_writes_failing").set(0.0);
                }
            }
            Err(e) if e.is_write_failure() => {
                let kind = if e.to_string().contains("full") { "disk_full" } else { "io" };
                metrics::counter!("ticketsync_errors_total", "component" => "store", "kind" => kind).increment(1);
                if failing.is_none() {
                    tracing::error!(database = %self.writes.path, error = %e,
                        "database write refused ({kind}): polling and delivery stop writing and retry; free space on the state directory's volume");
                    metrics::gauge!("ticketsync_store_writes_failing").set(1.0);
                    *failing = Some((now(), e.to_string()));
                }
            }
            Err(_) => {}
        }
    }

    /// `(since, error)` while writes are refused.
    pub fn write_failure(&self) -> Option<(String, String)> {
        self.writes.failing.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This store with `hook` run in the transaction of every page of new sessions.
    pub fn with_page_hook(mut self, hook: std::sync::Arc<dyn PageHook>) -> Store {
        self.page_hook = Some(hook);
        self
    }

    /// The key every new note's marker is MACed with.
    pub fn marker_key(&self) -> &crate::marker::MarkerKey {
        &self.marker_key
    }

    /// This store with a configured marker key (`notes.marker_key`) instead of its own.
    pub fn with_marker_key(mut self, key: crate::marker::MarkerKey) -> Store {
        self.marker_key = key;
        self
    }

    /// The leases this instance's cursor writes are fenced with: the daemon registers a
    /// source's lease here when it acquires it.
    pub fn fences(&self) -> &leases::Fences {
        &self.fences
    }

    pub fn page_hook(&self) -> Option<&dyn PageHook> {
        self.page_hook.as_deref()
    }

    pub fn path(&self) -> &str {
        &self.writes.path
    }

    /// A write transaction that takes the write lock up front, so two writers never
    /// deadlock on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx<'static>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn integrity_check(&self) -> Result<String> {
        let (s,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&self.pool).await?;
        Ok(s)
    }

    /// Close the read pool, waiting for its connections to finish (the writer is left to
    /// drop with the store, as before: its last commit is already durable).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The schema version the database is at (`None`: never migrated).
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&self.pool).await?)
    }

    /// The read pool itself, for the integration tests' own SQL (seeding, tampering,
    /// assertions on raw rows) and their fault injection. Only with the `test-support`
    /// feature, which only the tests enable (the dev-dependency on this crate): product
    /// code that reached for it would not build.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn sqlite_pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The newest schema version this build knows (the migrations it embeds).
pub fn latest_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The database holds sessions, customers' names and e-mails, and (encrypted) OAuth tokens:
/// readable by the service's user only, whatever the umask, also outside systemd (whose
/// `StateDirectoryMode=` and `UMask=` cover only the packaged unit).
mod private_files {
    use std::path::{Path, PathBuf};

    /// A state directory this process creates is 0700 (every level it creates). An existing
    /// one is left as it is: it may be shared (`/tmp`, the working directory).
    pub fn create_dir(dir: &Path) -> std::io::Result<()> {
        if dir.exists() {
            return Ok(());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
        }
        #[cfg(not(unix))]
        std::fs::create_dir_all(dir)
    }

    /// Create the database file 0600 before SQLite does (it would use 0644 minus the umask);
    /// SQLite then gives the -wal and -shm files the database file's mode.
    pub fn create_file(path: &Path) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            if !path.exists() {
                std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
            }
        }
        restrict(path)
    }

    /// chmod 0600 the database, its -wal and -shm (those that exist).
    pub fn restrict(path: &Path) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let p = PathBuf::from(p);
                match std::fs::metadata(&p) {
                    Ok(m) if m.is_file() && m.permissions().mode() & 0o077 != 0 => {
                        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                            // Another user's database (an operator reading the service's):
                            // not ours to change; say so rather than refuse to open it.
                            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                                tracing::warn!(file = %p.display(), "database file readable by others and not ours to chmod 0600")
                            }
                            r => r?,
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

pub fn now() -> String {
    crate::session::ts(chrono::Utc::now())
}
