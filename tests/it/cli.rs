//! The real `ticketsync` binary with temp config files, against simulators served from the
//! test's own runtime (so they keep answering while the child process runs).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;

use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;

const TOKEN: &str = "54213-2YotnFZFEjr1zCsicMWp";

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub(crate) fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    pub(crate) fn failed(self) -> Run {
        assert_ne!(self.code, 0, "expected failure\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    /// The error line(s), without log lines.
    pub(crate) fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("error")).collect()
    }
}

/// Run the binary with a clean environment plus `env`, stdin not a terminal.
pub(crate) async fn ticketsync(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.arg("--config").arg(config).args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(15), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ticketsync {args:?} did not finish in 15 s"));
    Run::from(out.expect("spawn ticketsync"))
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn minimal(db: &Path, tv_extra: &str) -> String {
    format!(
        "[store]\npath = \"{}\"\n\n[sources.teamviewer]\nbase_url = \"http://127.0.0.1:9\"\n{tv_extra}\n",
        db.display()
    )
}

fn db_bytes(db: &Path) -> Vec<u8> {
    let mut all = std::fs::read(db).expect("database file");
    for ext in ["-wal", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(ext);
        if let Ok(b) = std::fs::read(PathBuf::from(p)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Under systemd (JOURNAL_STREAM set) journald stamps each line itself: the log lines carry
/// no timestamp of their own, elsewhere they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_no_timestamp_for_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &format!("[store]\npath = \"{}\"\n", dir.path().join("db").display()));
    let stamped = |l: &str| l.len() > 20 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b'T';
    let plain = ticketsync(&cfg, &["sync-once"], &[("TICKETSYNC_LOG", "debug")]).await.ok();
    assert!(plain.stderr.lines().next().is_some_and(stamped), "a timestamp elsewhere:\n{}", plain.stderr);
    let journal =
        ticketsync(&cfg, &["sync-once"], &[("TICKETSYNC_LOG", "debug"), ("JOURNAL_STREAM", "8:12345")]).await.ok();
    assert!(journal.stderr.lines().count() > 0, "log lines were written");
    assert!(!journal.stderr.lines().any(stamped), "no timestamp for journald:\n{}", journal.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_bad_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");

    let bad = write(dir.path(), "bad.toml", &format!("[store]\npath = \"{}\"\nbusy_timeot_ms = 3\n", db.display()));
    let r = ticketsync(&bad, &["check"], &[]).await.failed();
    let lines = r.error_lines();
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    assert!(lines[0].contains("busy_timeot_ms") && lines[0].contains("line 3"), "{}", r.stderr);
    assert!(lines[0].contains("bad.toml"), "{}", r.stderr);

    let cron = write(
        dir.path(),
        "cron.toml",
        &minimal(&db, &format!("token = \"{TOKEN}\"\nschedule = \"every five minutes\"")),
    );
    let r = ticketsync(&cron, &["check"], &[]).await.failed();
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("sources.teamviewer.schedule"), "{}", r.stderr);

    let nosecret = write(dir.path(), "nosecret.toml", &minimal(&db, ""));
    let r = ticketsync(&nosecret, &["check"], &[]).await.failed();
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("sources.teamviewer.token") && r.stderr.contains("teamviewer_token"), "{}", r.stderr);

    let missing_file = write(
        dir.path(),
        "nofile.toml",
        &minimal(&db, &format!("token_file = \"{}\"", dir.path().join("absent").display())),
    );
    let r = ticketsync(&missing_file, &["check"], &[]).await.failed();
    assert!(r.stderr.contains("sources.teamviewer.token_file"), "{}", r.stderr);

    let good = write(dir.path(), "good.toml", &minimal(&db, &format!("token = \"{TOKEN}\"")));
    let r = ticketsync(&good, &["check"], &[]).await.ok();
    assert!(r.stdout.contains("OK") && r.stdout.contains("teamviewer"), "{}", r.stdout);
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));

    let r = ticketsync(&dir.path().join("nope.toml"), &["check"], &[]).await.failed();
    assert!(r.stderr.contains("nope.toml"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_override_moves_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let in_file = dir.path().join("file.db");
    let in_env = dir.path().join("sub").join("env.db");
    let cfg = write(dir.path(), "c.toml", &format!("[store]\npath = \"{}\"\n", in_file.display()));
    let r = ticketsync(&cfg, &["migrate"], &[("TICKETSYNC__STORE__PATH", in_env.to_str().unwrap())]).await.ok();
    assert!(r.stdout.contains(in_env.to_str().unwrap()), "{}", r.stdout);
    assert!(in_env.exists(), "database created at the overridden path");
    assert!(!in_file.exists(), "not at the file's path");
    // Migrating again is a no-op that still succeeds.
    ticketsync(&cfg, &["migrate"], &[("TICKETSYNC__STORE__PATH", in_env.to_str().unwrap())]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_directory_provides_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("teamviewer_token"), format!("{TOKEN}\n")).unwrap();
    let cfg = write(dir.path(), "c.toml", &minimal(&dir.path().join("t.db"), ""));
    ticketsync(&cfg, &["check"], &[]).await.failed();
    let r = ticketsync(&cfg, &["check"], &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())]).await.ok();
    assert!(r.stdout.contains("OK"), "{}", r.stdout);
}

fn oauth_config(db: &Path, sim: &TeamViewerSim, client_secret: &str) -> String {
    format!(
        "[store]\npath = \"{db}\"\n\n[sources.teamviewer]\nbase_url = \"{tv}\"\nauthorize_url = \"{tv}/oauth2/authorize\"\nauth = \"oauth\"\n\
         client_id = \"12333-133Ea4Hdf3e9ec0543fX\"\nclient_secret = \"{client_secret}\"\nredirect_uri = \"http://127.0.0.1:8765/callback\"\n",
        db = db.display(),
        tv = sim.base_url,
    )
}

/// `ticketsync auth teamviewer` without a terminal: print the URL and stop.
async fn authorize_url(cfg: &Path) -> String {
    let r = ticketsync(cfg, &["auth", "teamviewer"], &[]).await.ok();
    assert!(r.stdout.contains("--code"), "tells how to finish: {}", r.stdout);
    r.stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no URL in {}", r.stdout))
        .to_string()
}

/// Approve at the simulator; returns the redirect (Location) it answers with.
async fn follow(url: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    resp.headers()["location"].to_str().unwrap().to_string()
}

fn query(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_flow_prints_url_and_exchanges_the_redirect() {
    let secret = "cs-auth-flow-secret";
    let sim = TeamViewerSim::start(SimOptions {
        oauth_client: Some(("12333-133Ea4Hdf3e9ec0543fX".into(), secret.into())),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let cfg = write(dir.path(), "c.toml", &oauth_config(&db, &sim, secret));

    let url = authorize_url(&cfg).await;
    assert!(url.starts_with(&format!("{}/oauth2/authorize?", sim.base_url)), "{url}");
    assert_eq!(query(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&url, "client_id").as_deref(), Some("12333-133Ea4Hdf3e9ec0543fX"));
    assert_eq!(query(&url, "redirect_uri").as_deref(), Some("http://127.0.0.1:8765/callback"));
    let state = query(&url, "state").expect("state in the URL");
    assert!(state.len() >= 16);

    // A wrong state is refused before the code is spent.
    let redirect = follow(&url).await;
    let forged = redirect.replace(&state, "0123456789abcdef0123456789abcdef");
    let r = ticketsync(&cfg, &["auth", "teamviewer", "--code", &forged], &[]).await.failed();
    assert!(r.stderr.contains("state") && r.stderr.contains("not issued"), "{}", r.stderr);
    assert_eq!(sim.refresh_count(), 0);
    let store = ticketsync::store::Store::open(&db, Duration::from_secs(5)).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oauth_tokens").fetch_one(store.sqlite_pool()).await.unwrap();
    assert_eq!(n, 0);

    // The whole redirect URL, as the browser shows it.
    let url = authorize_url(&cfg).await;
    let redirect = follow(&url).await;
    assert_eq!(query(&redirect, "state"), query(&url, "state"));
    assert!(query(&redirect, "code").is_some());
    let r = ticketsync(&cfg, &["auth", "teamviewer", "--code", &redirect], &[]).await.ok();
    assert!(r.stdout.contains("authorized"), "{}", r.stdout);
    let (generation, enc): (i64, String) =
        sqlx::query_as("SELECT generation, access_token_enc FROM oauth_tokens WHERE provider = 'teamviewer'")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!(generation, 1);
    assert!(enc.starts_with("v1:"));
    let posts = sim.requests().into_iter().filter(|r| r.path == "/api/v1/oauth2/token" && r.status == 200).count();
    assert_eq!(posts, 1);

    // The same redirect again: its state was consumed.
    let r = ticketsync(&cfg, &["auth", "teamviewer", "--code", &redirect], &[]).await.failed();
    assert!(r.stderr.contains("not issued"), "{}", r.stderr);

    // The stored tokens work for a sync.
    sim.add_connection(json!({"id": "dddddddd-0000-4000-8000-000000000001", "start_date": (Utc::now() - TimeDelta::minutes(9)).format("%Y-%m-%dT%H:%M:%SZ").to_string()}));
    let r = ticketsync(&cfg, &["sync-once"], &[]).await.ok();
    assert!(r.stdout.contains("teamviewer: 1 records"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_never_reach_logs_or_the_database() {
    const TV: &str = "CANARY-tv-token-3f9a1c";
    const TV_WRONG: &str = "CANARY-tv-wrong-77b2e0";
    const RM: &str = "CANARY-redmine-key-5d0c2b";
    const RM_WRONG: &str = "CANARY-redmine-wrong-a1e9f4";
    const WH: &str = "CANARY-webhook-secret-9e4d7a";
    const WH_WRONG: &str = "CANARY-webhook-wrong-0c3b8d";
    const CS: &str = "CANARY-client-secret-6b1f05";
    const CS_WRONG: &str = "CANARY-client-wrong-e82a4c";
    let canaries = [TV, TV_WRONG, RM, RM_WRONG, WH, WH_WRONG, CS, CS_WRONG];

    let sim =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TV.into()], ..SimOptions::default() }).await.unwrap();
    let redmine = RedmineSim::start(RM, &[101]).await.unwrap();
    let hook = WebhookSim::start(WH, "X-Ticketsync-Signature").await.unwrap();
    let now = Utc::now();
    for (i, ticket) in ["101", "102"].iter().enumerate() {
        let t = now - TimeDelta::minutes(40 - i as i64 * 10);
        sim.add_connection(json!({
            "id": format!("eeeeeeee-0000-4000-8000-00000000000{i}"), "username": "Jon Snow", "deviceid": "1234567890",
            "start_date": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(), "end_date": (t + TimeDelta::minutes(5)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "session_code": format!("s100-200-30{i}"), "custom_api": json!({"ticket_id": ticket}).to_string()
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let config = |tv: &str, rm: &str, wh: &str, cs: &str| {
        format!(
            "[store]\npath = \"{db}\"\n\n[sources.teamviewer]\nbase_url = \"{tv_url}\"\ntoken = \"{tv}\"\nclient_id = \"12333-x\"\nclient_secret = \"{cs}\"\n\n\
             [sinks.redmine]\nurl = \"{rm_url}\"\napi_key = \"{rm}\"\n\n[sinks.webhook]\nurl = \"{wh_url}\"\nsecret = \"{wh}\"\n",
            db = db.display(),
            tv_url = sim.base_url,
            rm_url = redmine.base_url,
            wh_url = hook.url,
        )
    };
    let trace = [("TICKETSYNC_LOG", "trace")];
    let mut runs = Vec::new();

    // Wrong TeamViewer token: 401 from the simulator, a clear error, no secret.
    let wrong = write(dir.path(), "wrong.toml", &config(TV_WRONG, RM, WH, CS));
    let r = ticketsync(&wrong, &["sync-once"], &trace).await.failed();
    assert!(r.stderr.contains("401") && r.stderr.contains("invalid_token"), "{}", r.error_lines().join("\n"));
    runs.push(r);

    // Good source, wrong sink credentials: deliveries fail, the cycle completes.
    let bad_sinks = write(dir.path(), "badsinks.toml", &config(TV, RM_WRONG, WH_WRONG, CS));
    let r = ticketsync(&bad_sinks, &["sync-once"], &trace).await.ok();
    assert!(r.stdout.contains("teamviewer: 2 records"), "{}", r.stdout);
    assert!(redmine.journals(101).is_empty());
    assert!(hook.bad_signatures() > 0);
    runs.push(r);
    runs.push(ticketsync(&bad_sinks, &["deliveries"], &trace).await.ok());

    // All good: requeue the failed ones and deliver.
    let good = write(dir.path(), "good.toml", &config(TV, RM, WH, CS));
    let store = ticketsync::store::Store::open(&db, Duration::from_secs(5)).await.unwrap();
    let failed: Vec<i64> = sqlx::query_scalar("SELECT id FROM deliveries WHERE state = 'failed'")
        .fetch_all(store.sqlite_pool())
        .await
        .unwrap();
    assert!(!failed.is_empty());
    for id in failed {
        runs.push(ticketsync(&good, &["retry", &id.to_string()], &trace).await.ok());
    }
    let r = ticketsync(&good, &["sync-once"], &trace).await.ok();
    runs.push(r);
    assert_eq!(redmine.journals(101).len(), 1);
    assert_eq!(hook.accepted().len(), 2);

    // OAuth with a canary client secret: the auth flow and a refused exchange.
    let oauth_sim = TeamViewerSim::start(SimOptions {
        oauth_client: Some(("12333-133Ea4Hdf3e9ec0543fX".into(), CS.into())),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let odb = dir.path().join("oauth.db");
    let ocfg = write(dir.path(), "oauth.toml", &oauth_config(&odb, &oauth_sim, CS));
    let owrong = write(dir.path(), "oauth-wrong.toml", &oauth_config(&odb, &oauth_sim, CS_WRONG));
    let url = authorize_url(&owrong).await;
    let redirect = follow(&url).await;
    let r = ticketsync(&owrong, &["auth", "teamviewer", "--code", &redirect], &trace).await.failed();
    assert!(r.stderr.contains("invalid_client"), "{}", r.error_lines().join("\n"));
    runs.push(r);
    let url = authorize_url(&ocfg).await;
    let redirect = follow(&url).await;
    runs.push(ticketsync(&ocfg, &["auth", "teamviewer", "--code", &redirect], &trace).await.ok());
    oauth_sim.expire_access_tokens();
    runs.push(ticketsync(&ocfg, &["sync-once"], &trace).await.ok());
    assert_eq!(oauth_sim.refresh_count(), 1);

    assert!(runs.iter().any(|r| r.stderr.contains("TRACE")), "trace logging was on");
    for (i, r) in runs.iter().enumerate() {
        for c in canaries {
            assert!(!r.stdout.contains(c), "run {i}: {c} in stdout");
            assert!(!r.stderr.contains(c), "run {i}: {c} in stderr");
        }
    }
    store.close().await;
    for path in [&db, &odb] {
        let bytes = db_bytes(path);
        for c in canaries {
            assert!(!contains(&bytes, c), "{c} in {}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_unmatched_deliveries_and_retry() {
    let sim =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..SimOptions::default() }).await.unwrap();
    let redmine = RedmineSim::start("rm-key", &[77]).await.unwrap();
    let now = Utc::now();
    let d = |m: i64| (now - TimeDelta::minutes(m)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let unlinked = "ffffffff-0000-4000-8000-000000000001";
    sim.add_connection(json!({"id": unlinked, "username": "Jon Snow", "start_date": d(50), "end_date": d(45), "session_code": "s111-222-333"}));
    sim.add_connection(json!({"id": "ffffffff-0000-4000-8000-000000000002", "start_date": d(40), "end_date": d(35), "custom_api": "{\"ticket_id\":\"999\"}"}));
    let dir = tempfile::tempdir().unwrap();
    // SQLite, or PostgreSQL with TICKETSYNC_TEST_STORE: the test reads the store through the CLI only.
    let db = crate::support::TestDb::new(dir.path()).await;
    let cfg = write(
        dir.path(),
        "c.toml",
        &format!(
            "{}\n[sources.teamviewer]\nbase_url = \"{}\"\ntoken = \"{TOKEN}\"\n\n[sinks.redmine]\nurl = \"{}\"\napi_key = \"rm-key\"\n",
            db.store_section(),
            sim.base_url,
            redmine.base_url
        ),
    );

    let r = ticketsync(&cfg, &["sync-once"], &[]).await.ok();
    assert!(r.stdout.contains("matched 1 sessions") && r.stdout.contains("1 dead"), "{}", r.stdout);

    let r = ticketsync(&cfg, &["unmatched"], &[]).await.ok();
    assert!(r.stdout.contains(unlinked) && r.stdout.contains("s111-222-333"), "{}", r.stdout);
    assert!(r.stdout.contains("1 unmatched session(s)"), "{}", r.stdout);
    let r = ticketsync(&cfg, &["unmatched", "--json", "--limit", "5"], &[]).await.ok();
    let rows: Vec<serde_json::Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{}", r.stdout);
    assert_eq!(rows[0]["external_id"], unlinked);
    assert_eq!(rows[0]["session_code"], "s111-222-333");

    // Ticket 999 does not exist in Redmine: dead, listed with its error.
    let r = ticketsync(&cfg, &["deliveries", "--state", "dead"], &[]).await.ok();
    assert!(r.stdout.contains("999") && r.stdout.contains("404") && r.stdout.contains("1 deliveries"), "{}", r.stdout);
    let dead_id: String = r.stdout.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    ticketsync(&cfg, &["deliveries", "--state", "bogus"], &[]).await.failed();

    let r = ticketsync(&cfg, &["link", "--session", "S111 222 333", "--ticket", "77"], &[]).await.ok();
    assert!(r.stdout.contains("1 session(s) matched now"), "{}", r.stdout);
    let r = ticketsync(&cfg, &["unmatched"], &[]).await.ok();
    assert!(r.stdout.contains("0 unmatched session(s)"), "{}", r.stdout);
    let r = ticketsync(&cfg, &["link", "--session", "s1", "--ticket", "../77"], &[]).await.failed();
    assert!(r.stderr.contains("not a valid ticket id"), "{}", r.stderr);

    let r = ticketsync(&cfg, &["sync-once"], &[]).await.ok();
    assert!(r.stdout.contains("delivered 1 notes"), "{}", r.stdout);
    assert_eq!(redmine.journals(77).len(), 1);
    assert!(redmine.journals(77)[0].notes.contains("s111-222-333"));
    let r = ticketsync(&cfg, &["deliveries", "--state", "delivered"], &[]).await.ok();
    assert!(r.stdout.contains("77") && r.stdout.contains("1 deliveries"), "{}", r.stdout);
    let delivered_id: String = r.stdout.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();

    let r = ticketsync(&cfg, &["retry", &dead_id], &[]).await.ok();
    assert!(r.stdout.contains("requeued"), "{}", r.stdout);
    let r = ticketsync(&cfg, &["retry", &dead_id], &[]).await.failed();
    assert!(r.stderr.contains("pending"), "{}", r.stderr);
    let r = ticketsync(&cfg, &["retry", &delivered_id], &[]).await.failed();
    assert!(r.stderr.contains("delivered"), "{}", r.stderr);
    let r = ticketsync(&cfg, &["retry", "9999"], &[]).await.failed();
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    let r = ticketsync(&cfg, &["deliveries", "--state", "pending"], &[]).await.ok();
    assert!(r.stdout.contains("999") && r.stdout.contains("1 deliveries"), "{}", r.stdout);

    // --limit keeps the most recent; --json is one object per line, for scripts.
    let r = ticketsync(&cfg, &["deliveries", "--limit", "1"], &[]).await.ok();
    let ids: Vec<&str> = r.stdout.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(ids, [delivered_id.as_str(), "1"], "one row, the newest, then the count line: {}", r.stdout);
    assert!(r.stdout.contains("1 deliveries (the 1 most recent at most)"), "{}", r.stdout);
    let r = ticketsync(&cfg, &["deliveries", "--json"], &[]).await.ok();
    let rows: Vec<serde_json::Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    assert_eq!(rows[0]["id"].to_string(), dead_id);
    assert_eq!(rows[0]["ticket_id"], "999");
    assert_eq!(rows[0]["state"], "pending");
    assert!(rows[0]["last_error"].as_str().is_some_and(|e| e.contains("404")), "{}", r.stdout);
    assert_eq!(rows[1]["id"].to_string(), delivered_id);
    assert_eq!(rows[1]["state"], "delivered");
}

/// Before the first start there is no database (no SQLite file; a PostgreSQL database without
/// the schema): `check` passes, the auditors' commands say it does not exist yet, and once
/// `migrate` made it they read an empty chain. Either backend (TICKETSYNC_TEST_STORE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_first_start_the_store_is_missing_not_broken() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::TestDb::new(dir.path()).await;
    let cfg = write(
        dir.path(),
        "c.toml",
        &format!(
            "{}\n[sources.teamviewer]\nbase_url = \"http://127.0.0.1:9\"\ntoken = \"{TOKEN}\"\n",
            db.store_section()
        ),
    );
    ticketsync(&cfg, &["check"], &[]).await.ok();
    let r = ticketsync(&cfg, &["audit", "head"], &[]).await.failed();
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    ticketsync(&cfg, &["migrate"], &[]).await.ok();
    let r = ticketsync(&cfg, &["audit", "head"], &[]).await.ok();
    assert_eq!(r.stdout.trim(), format!("0:{}", ticketsync::store::audit::GENESIS));
    let r = ticketsync(&cfg, &["audit", "verify"], &[]).await.ok();
    assert!(r.stdout.contains("audit chain OK: 0 rows"), "{}", r.stdout);
}
