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
use ticketsync_model::{self as model, marker, session};
use ticketsync_redact as redact;

pub mod audit;
pub mod backup;
pub mod console;
pub mod copy;
pub mod cursors;
pub mod demo_db;
mod dialect;
pub mod history;
pub mod leases;
pub mod links;
pub mod outbox;
pub mod page;
pub mod reads;
pub mod secrets;
pub mod sessions;
pub mod time;
pub mod tokens;

pub use dialect::{Dialect, List};
pub use ticketsync_model::tenant::TenantName;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Postgres, Sqlite, SqlitePool, Transaction};

/// `$body` against the connection of a transaction (`&mut Tx`): `$ex` is the executor and
/// `$d` the [`Dialect`], and with a third name, that name is the sqlx database type (for a
/// `QueryBuilder`). The body is compiled once per backend, so each statement is written once.
macro_rules! on_tx {
    ($tx:expr, |$ex:ident, $d:ident| $body:expr) => {
        on_tx!($tx, |$ex, $d, _Db| $body)
    };
    ($tx:expr, |$ex:ident, $d:ident, $db:ident| $body:expr) => {
        match $tx.inner_mut() {
            $crate::TxInner::Sqlite(t) => {
                #[allow(unused_variables)]
                let $d = $crate::Dialect::Sqlite;
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                let $ex = &mut **t;
                $body
            }
            $crate::TxInner::Postgres(t) => {
                #[allow(unused_variables)]
                let $d = $crate::Dialect::Postgres;
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                let $ex = &mut **t;
                $body
            }
        }
    };
}

/// `$body` against the store's read pool (SQLite's readers, or PostgreSQL's pool), as
/// [`on_tx!`] does for a transaction: statements of their own, outside any write transaction.
macro_rules! on_pool {
    ($store:expr, |$ex:ident, $d:ident| $body:expr) => {
        match $store.backend() {
            $crate::Backend::Sqlite { pool, .. } => {
                #[allow(unused_variables)]
                let $d = $crate::Dialect::Sqlite;
                let $ex = pool;
                $body
            }
            $crate::Backend::Postgres { pool, .. } => {
                #[allow(unused_variables)]
                let $d = $crate::Dialect::Postgres;
                let $ex = pool;
                $body
            }
        }
    };
}

pub(crate) use {on_pool, on_tx};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The PostgreSQL schema: the same versions as [`MIGRATOR`], in PostgreSQL's types. sqlx's
/// own migration lock is an advisory lock, which breaks behind connection poolers (issue
/// 17): it is off, and [`Store::connect`] serialises migrations on a table lock instead.
pub static PG_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate::Migrator { locking: false, ..sqlx::migrate!("./migrations-postgres") };

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `path`: the SQLite file, or the PostgreSQL URL without its password.
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    /// A read-only open of a database ticketsync has not created yet: the SQLite file is
    /// missing, or the PostgreSQL database has no schema. The first start creates it.
    #[error("database {path} does not exist{why}")]
    NotCreated { path: String, why: &'static str },
    /// A SQLite-only feature (a file copy, `PRAGMA` checks) asked of a PostgreSQL store.
    #[error("{0} is not supported on PostgreSQL (use PostgreSQL's own tools)")]
    Unsupported(&'static str),
    /// A guarded write found its lease taken over by another instance (fencing token `token`
    /// no longer current): the write is rolled back, the new holder does the work.
    #[error("lease {name} (token {token}) is held by another instance now; this write is refused")]
    LeaseLost { name: String, token: i64 },
}

impl StoreError {
    /// A write the disk refused: full (SQLITE_FULL, which SQLite reports for ENOSPC;
    /// SQLSTATE class 53 on PostgreSQL) or an I/O error. Unlike a busy lock, it will not
    /// pass by itself.
    pub fn is_write_failure(&self) -> bool {
        let StoreError::Sql(sqlx::Error::Database(e)) = self else {
            return matches!(self, StoreError::Sql(sqlx::Error::Io(_)));
        };
        if let Some(pg) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            // 53: insufficient resources (disk full, out of memory); 58030: io_error.
            return pg.code().starts_with("53") || pg.code() == "58030";
        }
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

/// Where a store lives, as `[store] url` names it: `sqlite:///var/lib/ticketsync/ticketsync.db`
/// (a path after `sqlite://`: three slashes for an absolute one) or
/// `postgres://user@host[:port]/database` (`postgresql://` too).
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// Without a password: a URL that carries one is shown with `***` in its place.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Location::Postgres(u) => f.write_str(&scrub_url(u)),
        }
    }
}

impl Location {
    pub fn parse(url: &str) -> Result<Location> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err(StoreError::Invalid(
                    "a sqlite:// URL needs a file path (sqlite:///var/lib/ticketsync/ticketsync.db)".into(),
                ));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Checked here so that `check` reports a bad URL, without echoing a password.
            PgConnectOptions::from_str(url)
                .map_err(|_| StoreError::Invalid(format!("{}: not a valid PostgreSQL URL", scrub_url(url))))?;
            return Ok(Location::Postgres(url.to_string()));
        }
        Err(StoreError::Invalid(format!("{}: the store URL starts with sqlite:// or postgres://", scrub_url(url))))
    }

    /// The SQLite file at `path`.
    pub fn sqlite(path: &Path) -> Location {
        Location::Sqlite(path.to_path_buf())
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Location::Sqlite(_) => Dialect::Sqlite,
            Location::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// `url` without its password (`user:***@`) or a `password=` parameter: for messages and
/// logs, which never carry a secret.
pub fn scrub_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..].find(['/', '?', '#']).map(|e| rest_start + e).unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@').map(|a| rest_start + a) {
            if let Some(colon) = out[rest_start..at].find(':').map(|c| rest_start + c) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let scrubbed: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword") => {
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", scrubbed.join("&"));
    }
    out
}

/// The pools of one backend. SQLite: the readers, and the one connection every write
/// transaction goes through. PostgreSQL: one pool; write transactions serialise on the
/// write lock row instead ([`Store::begin`]).
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite {
        pool: SqlitePool,
        writer: SqlitePool,
    },
    /// `writers`: this process's turn at the write lock (one permit).
    Postgres {
        pool: PgPool,
        writers: Arc<tokio::sync::Semaphore>,
    },
}

/// A write transaction ([`Store::begin`]), or a read snapshot inside the store. Opaque: the
/// store's functions run their statements in it; the caller commits or rolls back.
pub struct Tx<'a> {
    inner: TxInner<'a>,
    /// The name the audit key is registered under ([`audit::use_key`]).
    db_id: Arc<str>,
    /// The tenant whose work this transaction reads and writes: the store handle's
    /// ([`Store::for_tenant`]), `default` for an unscoped one.
    tenant: crate::model::tenant::TenantName,
    /// The store handle's key namespace ([`Store::key`]).
    ns: Option<Arc<str>>,
    /// A PostgreSQL write transaction's turn among this process's writers, given back when
    /// the transaction ends (committed, rolled back or dropped).
    _writer: Option<tokio::sync::OwnedSemaphorePermit>,
}

pub(crate) enum TxInner<'a> {
    Sqlite(Transaction<'a, Sqlite>),
    Postgres(Transaction<'a, Postgres>),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tx({})", self.dialect().name())
    }
}

impl<'a> Tx<'a> {
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await?,
            TxInner::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// The tenant whose rows this transaction reads and writes.
    pub fn tenant(&self) -> &crate::model::tenant::TenantName {
        &self.tenant
    }

    /// `key` in the namespace of the handle that began this transaction ([`Store::key`]).
    pub fn key(&self, key: &str) -> String {
        match &self.ns {
            Some(ns) => format!("{ns}/{key}"),
            None => self.tenant.qualify(key),
        }
    }

    /// Whether the handle that began this transaction works for one account of a tenant.
    pub fn is_account(&self) -> bool {
        self.ns.is_some()
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection of this transaction, for the tests' own SQL (seeding inside a
    /// store transaction). Only with the `test-support` feature; a SQLite test's accessor.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn sqlite_conn(&mut self) -> &mut sqlx::SqliteConnection {
        match &mut self.inner {
            TxInner::Sqlite(t) => t,
            TxInner::Postgres(_) => panic!("sqlite_conn() of a PostgreSQL transaction: this test is a SQLite test"),
        }
    }

    pub(crate) fn inner_mut(&mut self) -> &mut TxInner<'a> {
        &mut self.inner
    }

    pub(crate) fn db_id(&self) -> &str {
        &self.db_id
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    /// The pools. Private to the store: every statement lives in this module tree, so a
    /// backend has one place to implement (issue 16, point 5).
    backend: Backend,
    /// The last write the disk refused, until a write succeeds again (`/readyz`, metrics).
    writes: std::sync::Arc<WriteHealth>,
    /// Work done in the transaction of each page of new sessions (see [`PageHook`]).
    page_hook: Option<std::sync::Arc<dyn PageHook>>,
    /// How long a writer waits for the write lock before its work fails (and is retried).
    busy_timeout: Duration,
    /// The key of the notes' marker MAC: the store's own (`store_secrets`) unless the
    /// configuration sets one ([`Store::with_marker_key`]).
    marker_key: crate::marker::MarkerKey,
    /// Names this database for the audit keys' registry: SQLite's name of the main file,
    /// or host, port and database on PostgreSQL.
    db_id: Arc<str>,
    /// The SQLite file (`None` on PostgreSQL): the OAuth journal and the backup live beside it.
    file: Option<PathBuf>,
    /// Where the OAuth token journal's files go (`<base>.oauth-<hash>`): beside the SQLite
    /// file; on PostgreSQL wherever [`Store::with_journal_base`] says (none: no journal).
    journal_base: Option<String>,
    /// The leases this instance's guarded writes are fenced with ([`leases::Fences`]).
    fences: std::sync::Arc<leases::Fences>,
    /// The tenant this handle works for ([`Store::for_tenant`]); `None`: unscoped, which
    /// writes and works as the tenant `default` and lets the operator's views see all.
    tenant: Option<crate::model::tenant::TenantName>,
    /// The namespace of the keys by name (cursors) of one account of a tenant
    /// (`<tenant>/<account>`, [`Store::for_account`]); `None`: the tenant's own.
    ns: Option<Arc<str>>,
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
    /// The database as messages name it: the file, or the URL without its password.
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

/// Connections of a PostgreSQL store: the daemon's concurrent work (sources, the delivery
/// lanes, the listener's reads) with room to spare, small against PostgreSQL's default 100.
const PG_MAX_CONNECTIONS: u32 = 8;

impl Store {
    /// Open the store at `url` ([`Location`]), creating and migrating it as needed.
    /// `password`: PostgreSQL's, from `store.password_file` or the credential (never in the
    /// URL of a configuration file, though one there is accepted).
    pub async fn connect(url: &str, busy_timeout: Duration, password: Option<&SecretString>) -> Result<Store> {
        match Location::parse(url)? {
            Location::Sqlite(path) => Store::open(&path, busy_timeout).await,
            Location::Postgres(url) => Store::connect_postgres(&url, busy_timeout, password, false).await,
        }
    }

    /// Read-only open for auditors' commands: never migrates, never writes.
    pub async fn connect_read_only(url: &str, password: Option<&SecretString>) -> Result<Store> {
        match Location::parse(url)? {
            Location::Sqlite(path) => Store::open_read_only(&path).await,
            Location::Postgres(url) => Store::connect_postgres(&url, Duration::from_secs(5), password, true).await,
        }
    }

    async fn connect_postgres(
        url: &str,
        busy_timeout: Duration,
        password: Option<&SecretString>,
        read_only: bool,
    ) -> Result<Store> {
        let shown = scrub_url(url);
        let open_err = |e| StoreError::Open { path: shown.clone(), source: e };
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Invalid(format!("{shown}: not a valid PostgreSQL URL")))?
            .application_name("ticketsync");
        if let Some(p) = password {
            opts = opts.password(p.expose_secret());
        }
        // A writer waits for the write lock as long as a SQLite writer waits for its
        // connection; past that its work fails and is retried, as on SQLite.
        let lock_ms = busy_timeout.max(Duration::from_secs(1)).as_millis().to_string();
        let mut settings = vec![("lock_timeout", lock_ms)];
        if read_only {
            settings.push(("default_transaction_read_only", "on".to_string()));
            opts = sqlx::ConnectOptions::disable_statement_logging(opts);
        }
        let opts = opts.options(settings);
        let db_id = format!("postgres://{}:{}/{}", opts.get_host(), opts.get_port(), opts.get_database().unwrap_or(""));
        let pool = match PgPoolOptions::new()
            .max_connections(if read_only { 2 } else { PG_MAX_CONNECTIONS })
            .acquire_timeout(busy_timeout.max(Duration::from_secs(5)))
            .connect_with(opts.clone())
            .await
        {
            Ok(pool) => pool,
            // The pool retries a refused or failed connection until its timeout and then
            // says only that it timed out: one direct attempt tells the operator why.
            Err(e @ sqlx::Error::PoolTimedOut) => {
                use sqlx::Connection;
                return Err(open_err(sqlx::PgConnection::connect_with(&opts).await.err().unwrap_or(e)));
            }
            Err(e) => return Err(open_err(e)),
        };
        if read_only {
            // Read-only commands never migrate: a database without the schema is one the
            // daemon has not started on yet, said as a missing SQLite file is.
            let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .map_err(open_err)?;
            if !migrated {
                pool.close().await;
                let why = " yet: it has no ticketsync schema (created at the first start, or by `ticketsync migrate`)";
                return Err(StoreError::NotCreated { path: shown, why });
            }
        } else {
            migrate_postgres(&pool).await?;
        }
        let writes = std::sync::Arc::new(WriteHealth { path: shown, ..Default::default() });
        let mut store = Store {
            backend: Backend::Postgres { pool, writers: Arc::new(tokio::sync::Semaphore::new(1)) },
            writes,
            page_hook: None,
            busy_timeout,
            marker_key: crate::marker::MarkerKey::generate(),
            db_id: db_id.into(),
            file: None,
            journal_base: None,
            fences: Default::default(),
            tenant: None,
            ns: None,
        };
        store.marker_key = if read_only {
            // Read-only commands queue no notes; a store without a key gets a throw-away one.
            secrets::get(&store, secrets::MARKER_KEY)
                .await
                .and_then(|b| crate::marker::MarkerKey::new(&b).ok())
                .unwrap_or_else(crate::marker::MarkerKey::generate)
        } else {
            secrets::store_marker_key(&store).await?
        };
        Ok(store)
    }

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
        let db_id = sqlite_main_file(&pool).await?;
        let mut store = Store {
            backend: Backend::Sqlite { pool, writer },
            writes: std::sync::Arc::new(WriteHealth { path: path.display().to_string(), ..Default::default() }),
            page_hook: None,
            busy_timeout,
            marker_key: crate::marker::MarkerKey::generate(),
            db_id: db_id.into(),
            file: Some(path.to_path_buf()),
            journal_base: Some(path.display().to_string()),
            fences: Default::default(),
            tenant: None,
            ns: None,
        };
        store.marker_key = secrets::store_marker_key(&store).await?;
        Ok(store)
    }

    /// Read-only open for auditors' commands: never migrates, never writes.
    pub async fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::NotCreated { path: path.display().to_string(), why: "" });
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
        let db_id = sqlite_main_file(&pool).await?;
        let mut store = Store {
            backend: Backend::Sqlite { writer: pool.clone(), pool },
            writes: std::sync::Arc::new(WriteHealth { path: path.display().to_string(), ..Default::default() }),
            page_hook: None,
            busy_timeout,
            marker_key: crate::marker::MarkerKey::generate(),
            db_id: db_id.into(),
            file: Some(path.to_path_buf()),
            journal_base: Some(path.display().to_string()),
            fences: Default::default(),
            tenant: None,
            ns: None,
        };
        // Read-only commands queue no notes; a store without a key gets a throw-away one.
        if let Some(k) =
            secrets::get(&store, secrets::MARKER_KEY).await.and_then(|b| crate::marker::MarkerKey::new(&b).ok())
        {
            store.marker_key = k;
        }
        Ok(store)
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// The SQLite database file; `None` on PostgreSQL.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where the OAuth token journal's files go: `<base>.oauth-<hash>` (see
    /// `tokens::journal_path`). The SQLite file's path; on PostgreSQL, what
    /// [`Store::with_journal_base`] set, else `None` (tokens are then committed to the
    /// database alone).
    pub fn journal_base(&self) -> Option<&str> {
        self.journal_base.as_deref()
    }

    /// This store with the token journal at `base` (a local file path whose directory the
    /// service may write: the state directory). For PostgreSQL, which has no file of its
    /// own: the journal protects a refresh answer while the commit waits for the write lock,
    /// as it does on SQLite.
    pub fn with_journal_base(mut self, base: &Path) -> Store {
        self.journal_base = Some(base.display().to_string());
        self
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

    /// This store handle working for `tenant` only (issue 17): its transactions and the
    /// pipeline's reads and writes through it see and write that tenant's rows, and the keys
    /// by name (cursors, OAuth tokens) are the tenant's ([`TenantName::qualify`]). Same pools,
    /// same fences, same hook.
    ///
    /// [`TenantName::qualify`]: crate::model::tenant::TenantName::qualify
    pub fn for_tenant(&self, tenant: &crate::model::tenant::TenantName) -> Store {
        Store { tenant: Some(tenant.clone()), ns: None, ..self.clone() }
    }

    /// [`Store::for_tenant`] for one of the tenant's vendor accounts (`[[tenants.sources]]`
    /// `name`): a tenant may poll several accounts of one vendor, each with its own cursor
    /// rows, keyed `<tenant>/<account>/<key>`.
    pub fn for_account(&self, tenant: &crate::model::tenant::TenantName, account: &str) -> Store {
        Store { tenant: Some(tenant.clone()), ns: Some(Arc::from(format!("{tenant}/{account}"))), ..self.clone() }
    }

    /// `key` (a cursor key) in this handle's namespace: unchanged on an unscoped or default
    /// handle, `<tenant>/<key>` for a tenant, `<tenant>/<account>/<key>` for an account.
    pub fn key(&self, key: &str) -> String {
        match &self.ns {
            Some(ns) => format!("{ns}/{key}"),
            None => self.tenant().qualify(key),
        }
    }

    /// Whether this handle works for one account of a tenant ([`Store::for_account`]).
    pub fn is_account(&self) -> bool {
        self.ns.is_some()
    }

    /// The tenant this handle works for: `default` when unscoped.
    pub fn tenant(&self) -> crate::model::tenant::TenantName {
        self.tenant.clone().unwrap_or_default()
    }

    /// The tenant an operator's view is narrowed to (`--tenant`): `None` on an unscoped handle,
    /// which shows every tenant.
    pub fn tenant_filter(&self) -> Option<&crate::model::tenant::TenantName> {
        self.tenant.as_ref()
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

    /// The database as messages name it: the SQLite file, or the PostgreSQL URL without
    /// its password.
    pub fn path(&self) -> &str {
        &self.writes.path
    }

    /// A write transaction that takes the write lock up front, so two writers never
    /// deadlock on a lock upgrade, and writers run one at a time, as they did on SQLite:
    /// `BEGIN IMMEDIATE` there, the one row of `write_lock` `FOR UPDATE` on PostgreSQL (a
    /// row lock, which a connection pooler passes through; never an advisory lock). Every
    /// audit append happens in such a transaction, so the chain is appended to by one
    /// writer at a time and cannot fork.
    pub async fn begin(&self) -> Result<Tx<'static>> {
        let inner = match &self.backend {
            Backend::Sqlite { writer, .. } => TxInner::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres { pool, writers } => {
                // This process's writers queue here first, holding no connection, as
                // SQLite's queue for their one writer connection: a waiting writer never
                // holds a pooled connection that the lock's holder may need for a read.
                let wait = self.busy_timeout.max(Duration::from_secs(1));
                let permit = tokio::time::timeout(wait, writers.clone().acquire_owned())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?
                    .expect("the writers' semaphore is never closed");
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT id FROM write_lock WHERE id = 1 FOR UPDATE").execute(&mut *tx).await?;
                return Ok(Tx {
                    inner: TxInner::Postgres(tx),
                    db_id: self.db_id.clone(),
                    tenant: self.tenant(),
                    ns: self.ns.clone(),
                    _writer: Some(permit),
                });
            }
        };
        Ok(Tx { inner, db_id: self.db_id.clone(), tenant: self.tenant(), ns: self.ns.clone(), _writer: None })
    }

    /// A read-only snapshot: the statements of one export or verify see one state of the
    /// database while the daemon writes.
    pub(crate) async fn snapshot(&self) -> Result<Tx<'static>> {
        let inner = match &self.backend {
            Backend::Sqlite { pool, .. } => TxInner::Sqlite(pool.begin().await?),
            Backend::Postgres { pool, .. } => {
                TxInner::Postgres(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?)
            }
        };
        Ok(Tx { inner, db_id: self.db_id.clone(), tenant: self.tenant(), ns: self.ns.clone(), _writer: None })
    }

    /// `PRAGMA integrity_check` ("ok", else the problems); `None` on PostgreSQL, which
    /// has no such check (its pages carry checksums when the cluster enables them).
    pub async fn integrity_check(&self) -> Result<Option<String>> {
        match &self.backend {
            Backend::Sqlite { pool, .. } => {
                let (s,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(pool).await?;
                Ok(Some(s))
            }
            Backend::Postgres { .. } => Ok(None),
        }
    }

    /// Close the pools, waiting for their connections to finish (SQLite's writer is left
    /// to drop with the store, as before: its last commit is already durable).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { pool, .. } => pool.close().await,
            Backend::Postgres { pool, .. } => pool.close().await,
        }
    }

    /// The schema version the database is at (`None`: never migrated).
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        Ok(on_pool!(self, |ex, _d| sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(ex)
            .await?))
    }

    /// The read pool itself, for the integration tests' own SQL (seeding, tampering,
    /// assertions on raw rows) and their fault injection. Only with the `test-support`
    /// feature, which only the tests enable (the dev-dependency on this crate): product
    /// code that reached for it would not build. Those tests are SQLite tests: a
    /// PostgreSQL store has no such pool, and asking for it is a bug in the test.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn sqlite_pool(&self) -> &SqlitePool {
        match &self.backend {
            Backend::Sqlite { pool, .. } => pool,
            Backend::Postgres { .. } => panic!("sqlite_pool() of a PostgreSQL store: this test is a SQLite test"),
        }
    }
}

impl Store {
    /// One statement of a test's own (tampering with a row, checking a trigger), on either
    /// backend: the rows it changed. Only with the `test-support` feature.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        Ok(on_pool!(self, |ex, _d| sqlx::query(sql).execute(ex).await?.rows_affected()))
    }

    /// One integer a test's own query returns (a count), on either backend. Only with the
    /// `test-support` feature.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub async fn query_i64(&self, sql: &str) -> Result<i64> {
        Ok(on_pool!(self, |ex, _d| sqlx::query_scalar(sql).fetch_one(ex).await?))
    }
}

/// The name SQLite gives the main database file (absolute), which registers its audit key.
async fn sqlite_main_file(pool: &SqlitePool) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'").fetch_one(pool).await?)
}

/// Apply [`PG_MIGRATOR`], one instance at a time: a second connection holds an exclusive
/// lock on `ticketsync_migrations_lock` in an open transaction while the first runs the
/// migrations (each in its own transaction), so two instances starting together do not
/// both apply the same migration. The lock table is created first, outside any
/// transaction; two first starts racing on that `CREATE` retry.
async fn migrate_postgres(pool: &PgPool) -> Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let created = sqlx::query("CREATE TABLE IF NOT EXISTS ticketsync_migrations_lock (id INTEGER PRIMARY KEY)")
            .execute(pool)
            .await;
        match created {
            Ok(_) => break,
            Err(_) if attempt < 3 => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(e.into()),
        }
    }
    let mut lock = pool.begin().await?;
    // Longer than the writers' `lock_timeout`: another instance may be migrating.
    sqlx::query("SET LOCAL lock_timeout = '120s'").execute(&mut *lock).await?;
    sqlx::query("LOCK TABLE ticketsync_migrations_lock IN EXCLUSIVE MODE").execute(&mut *lock).await?;
    let mut conn = pool.acquire().await?;
    let ran = PG_MIGRATOR.run_direct(&mut *conn).await;
    drop(conn);
    lock.commit().await?;
    Ok(ran?)
}

/// The newest schema version this build knows (the migrations it embeds).
pub fn latest_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// A column's stored text as a closed set's value (`DeliveryState`, `NoteKind`).
fn text_as<'r, R, T>(row: &'r R, col: &'r str) -> sqlx::Result<T>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    T: std::str::FromStr<Err = model::delivery::Unknown>,
{
    let text: String = row.try_get(col)?;
    text.parse()
        .map_err(|e: model::delivery::Unknown| sqlx::Error::ColumnDecode { index: col.into(), source: e.into() })
}

/// A column's stored tenant name (`tenant`, migration 0009).
fn tenant_col<'r, R>(row: &'r R, col: &'r str) -> sqlx::Result<TenantName>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text: String = row.try_get(col)?;
    TenantName::new(&text).map_err(|e| sqlx::Error::ColumnDecode { index: col.into(), source: e.into() })
}

/// A column's stored time (RFC 3339 text, `session::ts`) as a `DateTime<Utc>`.
fn time<'r, R>(row: &'r R, col: &'r str) -> sqlx::Result<chrono::DateTime<chrono::Utc>>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text: String = row.try_get(col)?;
    parse_time(col, &text)
}

/// [`time`] of a column that may be NULL.
fn time_opt<'r, R>(row: &'r R, col: &'r str) -> sqlx::Result<Option<chrono::DateTime<chrono::Utc>>>
where
    R: sqlx::Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| parse_time(col, &t)).transpose()
}

fn parse_time(col: &str, text: &str) -> sqlx::Result<chrono::DateTime<chrono::Utc>> {
    session::parse_ts(text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: col.into(),
        source: format!("not an RFC 3339 time: {text:?}").into(),
    })
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

#[cfg(test)]
mod tests {
    /// Both dialects count their schema the same way: a migration added to one directory has
    /// its twin, same version and name, in the other.
    #[test]
    fn the_dialects_have_the_same_migrations() {
        let list = |m: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            m.iter().map(|m| (m.version, m.description.to_string())).collect()
        };
        assert_eq!(list(&super::MIGRATOR), list(&super::PG_MIGRATOR));
    }

    #[test]
    fn urls_parse_and_never_show_a_password() {
        use super::{scrub_url, Location};
        assert_eq!(Location::parse("sqlite:///var/x.db").unwrap(), Location::Sqlite("/var/x.db".into()));
        assert_eq!(Location::parse("sqlite://x.db").unwrap(), Location::Sqlite("x.db".into()));
        assert!(matches!(Location::parse("postgres://u@h/db").unwrap(), Location::Postgres(_)));
        assert!(Location::parse("sqlite://").is_err());
        let err = Location::parse("mysql://u:hunter22@h/db").unwrap_err().to_string();
        assert!(!err.contains("hunter22") && err.contains("sqlite://"), "{err}");
        assert_eq!(scrub_url("postgres://u:hunter22@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(
            scrub_url("postgres://h/db?password=hunter22&sslmode=require"),
            "postgres://h/db?password=***&sslmode=require"
        );
        assert_eq!(Location::parse("postgres://u:hunter22@h/db").unwrap().to_string(), "postgres://u:***@h/db");
    }
}
