//! Shared test helpers.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ticketsync::store::Store;

pub async fn temp_store(dir: &Path) -> Store {
    Store::open(&dir.join("t.db"), Duration::from_secs(5)).await.expect("open store")
}

/// A database for one test: the SQLite file `t.db` in `dir`, or, with
/// `TICKETSYNC_TEST_STORE` set to a PostgreSQL server's URL
/// (`postgres://postgres@127.0.0.1/postgres`), a throwaway database `ts_test_<random>`
/// created there and dropped with this value. Tests that reach the store only through its
/// API or the CLI run on either backend this way.
pub struct TestDb {
    /// What `[store] url` names.
    pub url: String,
    /// (server URL, database name) of a throwaway PostgreSQL database.
    drop_pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(dir: &Path) -> TestDb {
        match std::env::var("TICKETSYNC_TEST_STORE").ok().filter(|u| !u.is_empty()) {
            None => TestDb { url: format!("sqlite://{}", dir.join("t.db").display()), drop_pg: None },
            Some(admin) => TestDb::postgres(&admin).await,
        }
    }

    /// The PostgreSQL server for tests that need one whatever the backend under test
    /// (`store copy`'s target): `TICKETSYNC_TEST_PG` (.ci/test sets it under CI), else
    /// `TICKETSYNC_TEST_STORE` when it names PostgreSQL.
    pub fn postgres_server() -> Option<String> {
        ["TICKETSYNC_TEST_PG", "TICKETSYNC_TEST_STORE"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|u| u.starts_with("postgres"))
    }

    /// A throwaway database on the PostgreSQL server `admin` (its URL).
    pub async fn postgres(admin: &str) -> TestDb {
        use sqlx::Connection;
        let hint = "start PostgreSQL (`bash .ci/postgres.sh start`) or unset TICKETSYNC_TEST_STORE to test SQLite";
        let mut c = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("TICKETSYNC_TEST_STORE: cannot connect ({e}): {hint}"));
        let name = format!("ts_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.expect("CREATE DATABASE");
        c.close().await.ok();
        // The server's URL with this database as its path.
        let (scheme, rest) = admin.split_once("://").expect("a postgres:// URL");
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
        TestDb { url: format!("{scheme}://{authority}/{name}{query}"), drop_pg: Some((admin.to_string(), name)) }
    }

    /// The `[store]` section of a configuration using this database.
    pub fn store_section(&self) -> String {
        format!("[store]\nurl = \"{}\"\n", self.url)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.drop_pg.take() else { return };
        // Drop runs inside the test's runtime: the DROP gets a thread and a runtime of its
        // own. FORCE ends the connections still open (a store not closed, a killed daemon's).
        let drop_sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&drop_sql).execute(&mut c).await?;
                c.close().await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop the test database {name}: {done:?}");
        }
    }
}

/// A store on a [`TestDb`], opened as the daemon opens its store.
pub struct TestStore {
    pub store: Store,
    pub db: TestDb,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

pub async fn test_store(dir: &Path) -> TestStore {
    let db = TestDb::new(dir).await;
    let store = Store::connect(&db.url, Duration::from_secs(5), None).await.expect("open the test store");
    // As `app::open_store` does for PostgreSQL: the token journal in the state directory.
    let store = match store.file() {
        Some(_) => store,
        None => store.with_journal_base(&dir.join("t.db")),
    };
    TestStore { store, db }
}

/// Redmine under CI is a requirement, never a skip; locally a missing one fails with the
/// command that starts it.
pub fn redmine_env() -> Option<(String, String)> {
    match (std::env::var("REDMINE_URL"), std::env::var("REDMINE_API_KEY")) {
        (Ok(u), Ok(k)) if !u.is_empty() && !k.is_empty() => Some((u, k)),
        _ => None,
    }
}

/// The real Redmine started by `bash .ci/redmine-ci.sh start` (its printed variables).
#[derive(Debug, Clone)]
pub struct RedmineCi {
    pub url: String,
    pub api_key: String,
    pub project: String,
    pub customer_api_key: String,
}

impl RedmineCi {
    /// A new issue in the test project, as the API user; its id.
    pub async fn new_issue(&self, subject: &str) -> u64 {
        let resp = reqwest::Client::new()
            .post(format!("{}/issues.json", self.url))
            .header("X-Redmine-API-Key", &self.api_key)
            .json(&serde_json::json!({"issue": {"project_id": self.project, "subject": subject}}))
            .send()
            .await
            .expect("create Redmine issue");
        assert_eq!(resp.status().as_u16(), 201, "creating an issue on the real Redmine");
        let v: serde_json::Value = resp.json().await.expect("issue JSON");
        v["issue"]["id"].as_u64().expect("issue id")
    }
}

/// A request whose answer the test reads as JSON, failing on a transport or parse error.
pub(crate) trait SendJson {
    async fn send_json(self) -> serde_json::Value;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json(self) -> serde_json::Value {
        self.send().await.expect("request sent").json().await.expect("JSON answer")
    }
}

/// The real Redmine's variables. Missing ones fail the test with the command that starts
/// Redmine; only an explicit `TICKETSYNC_SKIP_REDMINE=1` outside CI skips.
pub fn redmine_ci() -> Option<RedmineCi> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("REDMINE_URL"), var("REDMINE_API_KEY"), var("REDMINE_PROJECT"), var("REDMINE_CUSTOMER_API_KEY")) {
        (Some(url), Some(api_key), Some(project), Some(customer_api_key)) => {
            Some(RedmineCi { url, api_key, project, customer_api_key })
        }
        _ => {
            let msg = "no real Redmine: REDMINE_URL, REDMINE_API_KEY, REDMINE_PROJECT and REDMINE_CUSTOMER_API_KEY must be set; \
                       start one with `bash .ci/redmine-ci.sh start` and export the variables it prints";
            // A missing Redmine is a failure, never a silent pass; skipping needs an explicit opt-out.
            if std::env::var("TICKETSYNC_SKIP_REDMINE").as_deref() == Ok("1")
                && std::env::var("CI").as_deref() != Ok("true")
            {
                eprintln!("SKIPPED because TICKETSYNC_SKIP_REDMINE=1: {msg}");
                return None;
            }
            panic!("{msg} (or set TICKETSYNC_SKIP_REDMINE=1 to skip these tests outside CI)");
        }
    }
}

/// The real Request Tracker started by `bash .ci/rt-ci.sh start` (its printed variables).
#[derive(Debug, Clone)]
pub struct RtCi {
    /// RT's web address (`RT_URL`); REST 2.0 is under `/REST/2.0`.
    pub url: String,
    pub token: String,
    pub queue: String,
    /// Another agent (Basic auth), who writes as a person would.
    pub person_user: String,
    pub person_password: String,
}

impl RtCi {
    pub fn rest(&self) -> String {
        format!("{}/REST/2.0", self.url)
    }

    /// A new ticket in the test queue, as the API user; its number.
    pub async fn new_ticket(&self, subject: &str) -> u64 {
        let resp = reqwest::Client::new()
            .post(format!("{}/ticket", self.rest()))
            .header("Authorization", format!("token {}", self.token))
            .json(&serde_json::json!({"Queue": self.queue, "Subject": subject}))
            .send()
            .await
            .expect("create RT ticket");
        assert_eq!(resp.status().as_u16(), 201, "creating a ticket on the real RT");
        let v: serde_json::Value = resp.json().await.expect("ticket JSON");
        v["id"].as_str().and_then(|i| i.parse().ok()).or_else(|| v["id"].as_u64()).expect("ticket id")
    }

    /// A comment on the ticket by the other agent: a person, not the API user.
    pub async fn person_comments(&self, ticket: &str, text: &str) {
        let resp = reqwest::Client::new()
            .post(format!("{}/ticket/{ticket}/comment", self.rest()))
            .basic_auth(&self.person_user, Some(&self.person_password))
            .json(&serde_json::json!({"Content": text, "ContentType": "text/plain"}))
            .send()
            .await
            .expect("person comments on RT");
        assert_eq!(resp.status().as_u16(), 201, "the person comments on the real RT");
    }

    /// Every comment and reply on the ticket: (transaction type, creator, text), oldest first.
    pub async fn messages(&self, ticket: &str) -> Vec<(String, String, String)> {
        let http = reqwest::Client::new();
        let get = |path: String, query: Vec<(&'static str, &'static str)>| {
            http.get(format!("{}{path}", self.rest()))
                .header("Authorization", format!("token {}", self.token))
                .query(&query)
                .send_json()
        };
        let history =
            get(format!("/ticket/{ticket}/history"), vec![("fields", "Type,Creator"), ("per_page", "100")]).await;
        let attachments = get(
            format!("/ticket/{ticket}/attachments"),
            vec![("fields", "TransactionId,Content"), ("per_page", "100")],
        )
        .await;
        let items = |v: &serde_json::Value| v["items"].as_array().cloned().unwrap_or_default();
        items(&history)
            .iter()
            .filter(|t| matches!(t["Type"].as_str(), Some("Comment" | "Correspond")))
            .map(|t| {
                let text = items(&attachments)
                    .iter()
                    .find(|a| a["TransactionId"] == t["id"])
                    .and_then(|a| a["Content"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let creator = t["Creator"]["id"].as_str().unwrap_or_default().to_string();
                (t["Type"].as_str().unwrap_or_default().to_string(), creator, text)
            })
            .collect()
    }
}

/// The real RT's variables. Missing ones fail the test with the command that starts RT;
/// only an explicit `TICKETSYNC_SKIP_RT=1` outside CI skips.
pub fn rt_ci() -> Option<RtCi> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("RT_URL"), var("RT_TOKEN"), var("RT_PERSON_USER"), var("RT_PERSON_PASSWORD")) {
        (Some(url), Some(token), Some(person_user), Some(person_password)) => Some(RtCi {
            url: url.trim_end_matches('/').to_string(),
            token,
            queue: var("RT_QUEUE").unwrap_or_else(|| "General".into()),
            person_user,
            person_password,
        }),
        _ => {
            let msg = "no real Request Tracker: RT_URL, RT_TOKEN, RT_PERSON_USER and RT_PERSON_PASSWORD must be set; \
                       start one with `bash .ci/rt-ci.sh start` (as root) and export the variables it prints";
            // A missing RT is a failure, never a silent pass; skipping needs an explicit opt-out.
            if std::env::var("TICKETSYNC_SKIP_RT").as_deref() == Ok("1") && std::env::var("CI").as_deref() != Ok("true")
            {
                eprintln!("SKIPPED because TICKETSYNC_SKIP_RT=1: {msg}");
                return None;
            }
            panic!("{msg} (or set TICKETSYNC_SKIP_RT=1 to skip these tests outside CI)");
        }
    }
}

/// A timestamp as the vendors write it (`2024-04-16T20:45:02Z`).
pub fn vdate(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An ended TeamViewer connection record (3 minutes from `start`) whose `custom_api` names
/// `ticket`, as the vendor sends it.
pub fn tv_connection(id: &str, code: &str, ticket: &str, start: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    serde_json::json!({
        "id": id, "userid": "u1", "username": "Jon Snow",
        "deviceid": "1234567890", "devicename": "ACME-LT-042", "groupid": "g1", "groupname": "Helpdesk",
        "start_date": vdate(start), "end_date": vdate(start + chrono::TimeDelta::minutes(3)), "billing_state": "Bill",
        "support_session_type": 2, "session_code": code,
        "custom_api": serde_json::json!({"ticket_id": ticket}).to_string()
    })
}

/// The database at `db` (open in `pool`) passes `PRAGMA integrity_check` and
/// `ticketsync audit verify`.
pub async fn assert_db_sound(pool: &sqlx::SqlitePool, db: &Path) {
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(pool).await.unwrap();
    assert_eq!(ok, "ok");
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
        .args(["audit", "verify", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(verify.status.success(), "audit verify: {}", String::from_utf8_lossy(&verify.stderr));
}

/// The binary with `--config cfg` and `args`, as an operator's shell would start it: a clean
/// environment (only `PATH`), stdin closed, stdout and stderr discarded unless the caller
/// pipes them, killed when dropped.
pub fn ticketsync(cfg: &Path, args: &[&str]) -> tokio::process::Command {
    use std::process::Stdio;
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    c.arg("--config")
        .arg(cfg)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    c
}

pub type Lines<R> = tokio::io::Lines<tokio::io::BufReader<R>>;

/// The listen address daemons under test use: the listener is on by default, and parallel
/// tests on the default port would collide (port 0 picks a free port; the daemon logs it).
pub const TEST_LISTEN: (&str, &str) = ("TICKETSYNC__HTTP__LISTEN", "127.0.0.1:0");

/// `ticketsync run` as [`ticketsync`] starts it, its listener on a free port ([`TEST_LISTEN`]).
pub fn daemon(cfg: &Path) -> tokio::process::Command {
    let mut c = ticketsync(cfg, &["run"]);
    c.env(TEST_LISTEN.0, TEST_LISTEN.1);
    c
}

/// `ticketsync run` logging JSON lines, with its stderr to read.
pub fn spawn_daemon(cfg: &Path) -> (tokio::process::Child, Lines<tokio::process::ChildStderr>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = daemon(cfg)
        .env("TICKETSYNC_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ticketsync run");
    let lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

/// Read lines until `f` finds what it looks for; every line read is kept in `seen`. Panics
/// naming `what` (and what was read) when the stream ends or after `secs` seconds.
pub async fn read_until<R, T>(
    lines: &mut Lines<R>,
    secs: u64,
    what: &str,
    seen: &mut Vec<String>,
    mut f: impl FnMut(&str) -> Option<T>,
) -> T
where
    R: tokio::io::AsyncRead + Unpin,
{
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let hit = f(&l);
            seen.push(l);
            if hit.is_some() {
                return hit;
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => t,
        Ok(None) => panic!("output ended before {what}: {seen:#?}"),
        Err(_) => panic!("no {what} within {secs} s: {seen:#?}"),
    }
}

/// The authorize URL an `auth … --listen` command prints (the line starting with `http`
/// that contains `path`).
pub fn authorize_url(line: &str, path: &str) -> Option<String> {
    line.trim().strip_prefix("http").filter(|u| u.contains(path)).map(|u| format!("http{u}"))
}

/// Send `sig` to a running child.
pub fn signal(child: &tokio::process::Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("child running") as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}
