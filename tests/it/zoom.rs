//! Zoom and visioconference.me over real HTTP against `ticketsync::sim::{zoom, visio}`:
//! OAuth (loopback redirect, pasted code, Basic client auth, rotating refresh tokens, a
//! SIGKILL between commit and use, Server-to-Server), meetings and rooms for tickets,
//! and the source (participants, late recordings, paging, expiring page tokens,
//! double-encoded UUIDs, 429s, the daily create limit, several accounts).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use ticketsync::app::App;
use ticketsync::config::Config;
use ticketsync::launchers::create_session_on;
use ticketsync::pipeline::deliver_due;
use ticketsync::sim::visio::{VisioShape, VisioSim};
use ticketsync::sim::webhook::WebhookSim;
use ticketsync::sim::zoom::{participant, ZoomFault, ZoomSim, ZoomSimOptions};
use ticketsync::store::tokens::{self, TokenKey};

const SECRET: &str = "zoom-secret";
const VISIO_TOKEN: &str = "visio-key-123";

struct Env {
    dir: tempfile::TempDir,
    zoom: ZoomSim,
    visio: VisioSim,
    hook: WebhookSim,
    cfg_path: PathBuf,
    app: App,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn setup(opts: ZoomSimOptions, extra_zoom: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let zoom = ZoomSim::start(opts).await.unwrap();
    let visio = VisioSim::start(VISIO_TOKEN, VisioShape::Current).await.unwrap();
    let hook = WebhookSim::start("hook-secret", "X-Ticketsync-Signature").await.unwrap();
    let w = |name: &str, v: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, v).unwrap();
        p
    };
    let zs = w("zoom_secret", SECRET);
    let vt = w("visio_token", VISIO_TOKEN);
    let hs = w("hook_secret", "hook-secret");
    let extra_zoom = if extra_zoom.contains("recording_deadline_minutes") {
        extra_zoom.to_string()
    } else {
        format!("recording_deadline_minutes = 60\n{extra_zoom}")
    };
    let cfg = format!(
        r#"[store]
path = "{db}"

[outbox]
base_backoff_secs = 1

[sources.zoom]
api_url = "{api}"
oauth_url = "{oauth}"
page_size = 2
request_timeout_secs = 10
{extra_zoom}

[[sources.zoom.accounts]]
name = "helpdesk"
auth = "oauth"
client_id = "zoom-client"
client_secret_file = "{zs}"
redirect_uri = "http://127.0.0.1:{port}/callback"

[[sources.zoom.accounts]]
name = "s2s"
auth = "server_to_server"
client_id = "zoom-client"
client_secret_file = "{zs}"
account_id = "Cx3wERazSgup7ZWRHQM8-w"
user_id = "tech@example.com"

[rooms.visioconference]
api_url = "{visio}"
token_file = "{vt}"
agent_name = "Jon Snow"

[sinks.webhook]
url = "{hook}"
secret_file = "{hs}"
"#,
        db = dir.path().join("t.db").display(),
        api = zoom.api_url(),
        oauth = zoom.base_url,
        zs = zs.display(),
        port = free_port(),
        visio = visio.api_url,
        vt = vt.display(),
        hook = hook.url,
        hs = hs.display(),
    );
    let cfg_path = w("ticketsync.toml", &cfg);
    let app = App::build(Config::load(&cfg_path).unwrap()).await.unwrap();
    Env { dir, zoom, visio, hook, cfg_path, app }
}

fn zoom_cfg(env: &Env) -> &ticketsync::sources::zoom::config::ZoomConfig {
    env.app.config.sources.zoom.as_ref().unwrap()
}

/// The browser's part: open the authorize URL, approve, and return where Zoom redirects.
async fn approve(authorize_url: &str) -> String {
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c.get(authorize_url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "authorize page");
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Authorize the user-managed account in-process (the CLI paths are tested separately).
async fn authorize(env: &Env) {
    let o = ticketsync::sources::zoom::oauth_client(zoom_cfg(env), 0, &env.app.store, reqwest::Client::new()).unwrap();
    let (url, state) = o.authorize_url().await.unwrap();
    let redirect = approve(&url).await;
    let cb = ticketsync::oauth::parse_callback(&redirect, Some(&state)).unwrap();
    o.complete_authorization(&cb.code, &state).await.unwrap();
}

/// The stored access token is due for a refresh (as once its refresh point has passed; the
/// client refreshes shortly before the vendor's own expiry, see `oauth::refresh_due_at`).
async fn expire_stored(env: &Env) {
    sqlx::query("UPDATE oauth_tokens SET access_expires_at = '2000-01-01T00:00:00Z' WHERE provider = 'zoom:helpdesk'")
        .execute(env.app.store.sqlite_pool())
        .await
        .unwrap();
}

async fn stored_refresh(env: &Env) -> String {
    let key = TokenKey::derive("zoom:helpdesk", &SecretString::from(SECRET.to_string()));
    let t = tokens::load(&env.app.store, "zoom:helpdesk", &key).await.unwrap().unwrap();
    t.refresh.unwrap().expose_secret().to_string()
}

async fn meeting_for(env: &Env, ticket: &str, account: Option<&str>) -> i64 {
    let c = create_session_on(&env.app, "zoom", ticket, account, None, None).await.unwrap();
    c.code.parse().unwrap()
}

fn now_s() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn people(n: usize, start: DateTime<Utc>) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let join = start + chrono::Duration::minutes(i as i64);
            participant(
                &format!("Person {i}"),
                &format!("p{i}@acme.example"),
                join,
                join + chrono::Duration::minutes(20),
            )
        })
        .collect()
}

fn texts(hook: &WebhookSim) -> Vec<String> {
    hook.accepted().iter().map(|v| v["text"].as_str().unwrap_or_default().to_string()).collect()
}

fn count(env: &Env, path_contains: &str, status: u16) -> usize {
    env.zoom.log().iter().filter(|r| r.path.contains(path_contains) && r.status == status).count()
}

async fn run_bin(config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.arg("--config").arg(config).args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(15), cmd.output()).await.expect("finishes").expect("spawn")
}

#[tokio::test]
async fn auth_zoom_receives_the_redirect_on_loopback_or_takes_the_pasted_url() {
    let env = setup(ZoomSimOptions::default(), "").await;
    // --listen: the command prints the URL and waits for the browser's redirect.
    let mut child = crate::support::ticketsync(&env.cfg_path, &["auth", "zoom", "--account", "helpdesk", "--listen"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = crate::support::read_until(&mut lines, 10, "an authorize URL", &mut Vec::new(), |l| {
        crate::support::authorize_url(l, "/oauth/authorize")
    })
    .await;
    assert!(url.contains("client_id=zoom-client") && url.contains("state="), "{url}");
    // The browser follows the redirect to the loopback listener; the listener may need a moment to bind.
    let browser = reqwest::Client::new();
    let mut landed = None;
    for _ in 0..50 {
        match browser.get(&url).send().await {
            Ok(r) => {
                landed = Some(r.status().as_u16());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(landed, Some(200));
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    let rest: Vec<String> = {
        let mut v = vec![];
        while let Ok(Some(l)) = lines.next_line().await {
            v.push(l);
        }
        v
    };
    assert!(status.success(), "auth --listen failed: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("zoom account helpdesk: authorized")), "{rest:?}");

    // Pasted: without a terminal the command prints the URL and how to pass the code.
    let out = run_bin(&env.cfg_path, &["auth", "zoom", "--account", "helpdesk"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let url = stdout.lines().map(str::trim).find(|l| l.starts_with("http")).unwrap().to_string();
    let redirect = approve(&url).await;
    let out = run_bin(&env.cfg_path, &["auth", "zoom", "--account", "helpdesk", "--code", &redirect]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The same redirect again: its state was consumed (and the code is single-use).
    let out = run_bin(&env.cfg_path, &["auth", "zoom", "--account", "helpdesk", "--code", &redirect]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was not issued"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.zoom.grants(), vec!["authorization_code", "authorization_code"]);
    // Tokens are stored encrypted, never in clear.
    let raw: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT refresh_token_enc FROM oauth_tokens WHERE provider = 'zoom:helpdesk'")
            .fetch_all(env.app.store.sqlite_pool())
            .await
            .unwrap();
    let valid = env.zoom.valid_refresh_tokens();
    assert!(raw[0].0.as_deref().is_some_and(|r| !valid.iter().any(|v| r.contains(v.as_str()))));
}

#[tokio::test]
async fn rotating_refresh_token_is_committed_and_the_old_one_is_dead() {
    // Each call finds the stored access token due: it refreshes first.
    let env = setup(ZoomSimOptions { access_ttl_secs: 60, ..Default::default() }, "").await;
    authorize(&env).await;
    let first = stored_refresh(&env).await;
    expire_stored(&env).await;
    meeting_for(&env, "100", None).await;
    let second = stored_refresh(&env).await;
    assert_ne!(first, second);
    assert_eq!(env.zoom.valid_refresh_tokens(), vec![second.clone()], "the store holds the only working refresh token");
    expire_stored(&env).await;
    meeting_for(&env, "101", None).await;
    assert_eq!(env.zoom.valid_refresh_tokens(), vec![stored_refresh(&env).await]);
    assert_eq!(env.zoom.grants(), vec!["authorization_code", "refresh_token", "refresh_token"]);
    // The stored token's expiry is on /metrics (docs/monitoring/alerts.yml alerts on it).
    let handle = ticketsync::metrics::install();
    ticketsync::metrics::refresh_from_store(&env.app.store, &[]).await.unwrap();
    let text = handle.render();
    assert!(
        text.lines().any(|l| l.starts_with("ticketsync_token_expiry_timestamp_seconds{")
            && l.contains("provider=\"zoom:helpdesk\"")
            && l.contains("token=\"access\"")),
        "{text}"
    );
}

#[tokio::test]
async fn sigkill_between_refresh_commit_and_token_use_does_not_lock_the_account_out() {
    let env = setup(ZoomSimOptions { access_ttl_secs: 60, ..Default::default() }, "").await;
    authorize(&env).await;
    meeting_for(&env, "200", None).await;
    expire_stored(&env).await;
    let grants_before = env.zoom.grants().len();
    // The API holds its answers: the daemon refreshes, then hangs on the first call.
    env.zoom.set_api_delay(Some(Duration::from_secs(30)));
    let mut child = crate::support::ticketsync(&env.cfg_path, &["sync-once"]).spawn().unwrap();
    let before = env.zoom.log().len();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !env.zoom.log()[before..].iter().any(|r| r.status == 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the daemon reached the API with a fresh token");
    assert_eq!(env.zoom.grants().len(), grants_before + 1, "one refresh happened");
    crate::support::signal(&child, nix::sys::signal::Signal::SIGKILL);
    child.wait().await.unwrap();
    // The rotated refresh token reached the database before the access token was used.
    assert_eq!(env.zoom.valid_refresh_tokens(), vec![stored_refresh(&env).await]);
    env.zoom.set_api_delay(None);
    let out = run_bin(&env.cfg_path, &["sync-once"]).await;
    assert!(out.status.success(), "after the crash: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.zoom.grants().last().map(String::as_str), Some("refresh_token"));
    assert_eq!(env.zoom.valid_refresh_tokens(), vec![stored_refresh(&env).await]);
}

/// `doctor` calls each Zoom account harmlessly (one recording of today): the
/// server-to-server one with a token of its own, the user-managed one only while its stored
/// access token is valid. A wrong secret is a FAIL with the fix, and never printed; tokens
/// stored under another secret are reported unreadable, not OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_each_zoom_account_once_and_creates_nothing() {
    let env = setup(ZoomSimOptions::default(), "").await;
    let doctor = || async {
        let out = run_bin(&env.cfg_path, &["doctor"]).await;
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let row = |out: &str, name: &str| {
        out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} row: {out}")).to_string()
    };
    let reads =
        || env.zoom.log().iter().filter(|r| r.path.ends_with("/recordings") && r.query.contains("page_size=1")).count();

    let (_, out) = doctor().await;
    let s2s = row(&out, "source zoom:s2s");
    assert!(s2s.contains("OK") && s2s.contains("/users/tech%40example.com/recordings"), "{out}");
    let oauth = row(&out, "source zoom:helpdesk");
    assert!(oauth.contains("WARN") && oauth.contains("not checked"), "{out}");
    assert!(row(&out, "token zoom:helpdesk").contains("FAIL"), "{out}");
    assert_eq!(reads(), 1, "one read for the server-to-server account");

    authorize(&env).await;
    let (code, out) = doctor().await;
    assert!(row(&out, "source zoom:helpdesk").contains("OK"), "{out}");
    assert!(row(&out, "token zoom:helpdesk").contains("OK"), "{out}");
    assert_eq!(reads(), 3);
    assert!(env.zoom.log().iter().all(|r| r.method == "GET" || r.path.contains("oauth")), "doctor creates nothing");
    assert!(!out.contains("FAIL"), "{out}");
    assert_eq!(code, Some(0), "{out}");

    // A wrong client secret: the server-to-server token is refused.
    std::fs::write(env.dir.path().join("zoom_secret"), "not-the-zoom-secret").unwrap();
    let (code, out) = doctor().await;
    let s2s = row(&out, "source zoom:s2s");
    assert!(s2s.contains("FAIL") && s2s.contains("check the app's client_id, client_secret and account_id"), "{out}");
    assert!(!s2s.contains("ticketsync auth"), "no authorization fixes a server-to-server app: {out}");
    // The user-managed account's tokens were sealed with the old secret: unreadable, so no call.
    let token = row(&out, "token zoom:helpdesk");
    assert!(token.contains("FAIL") && token.contains("cannot be decrypted"), "{out}");
    assert!(out.contains("fix: run `ticketsync auth zoom --account helpdesk`"), "{out}");
    assert!(row(&out, "source zoom:helpdesk").contains("not checked"), "{out}");
    assert!(out.contains("client_secret, account_id, user_id"), "the fix names the keys: {out}");
    assert!(!out.contains("not-the-zoom-secret") && !out.contains(SECRET), "no secret in the table: {out}");
    assert_eq!(code, Some(3), "{out}");
}

#[tokio::test]
async fn server_to_server_token_is_fetched_once_and_again_after_a_401() {
    let env = setup(ZoomSimOptions::default(), "").await;
    meeting_for(&env, "300", Some("s2s")).await;
    meeting_for(&env, "301", Some("s2s")).await;
    assert_eq!(env.zoom.grants(), vec!["account_credentials"]);
    assert_eq!(env.zoom.meetings_of("tech@example.com"), 2);
    env.zoom.revoke_access_tokens();
    meeting_for(&env, "302", Some("s2s")).await;
    assert_eq!(env.zoom.grants(), vec!["account_credentials", "account_credentials"]);
    assert_eq!(count(&env, "/meetings", 401), 1);
}

#[tokio::test]
async fn zoom_meeting_for_a_ticket_start_url_internal_join_url_public() {
    let env = setup(ZoomSimOptions::default(), "").await;
    authorize(&env).await;
    let id = meeting_for(&env, "4711", None).await;
    let created = env.zoom.created_meetings();
    assert_eq!(created[0]["topic"], "Ticket #4711");
    assert_eq!(created[0]["id"], id);
    let d = deliver_due(&env.app.store, &env.app.sinks, &env.app.policy).await.unwrap();
    assert_eq!(d.delivered, 2);
    let notes = env.hook.accepted();
    let internal = notes.iter().find(|n| n["visibility"] == "internal").unwrap();
    let public = notes.iter().find(|n| n["visibility"] == "public").unwrap();
    let (start_url, join_url) = (created[0]["start_url"].as_str().unwrap(), created[0]["join_url"].as_str().unwrap());
    assert!(internal["text"].as_str().unwrap().contains(start_url));
    assert!(public["text"].as_str().unwrap().contains(join_url) && join_url.contains("?pwd="));
    assert!(public["text"]
        .as_str()
        .unwrap()
        .contains(&format!("Passcode: {}", created[0]["password"].as_str().unwrap())));
    assert!(!public["text"].as_str().unwrap().contains("zak="), "the host link never reaches the customer");
    assert_eq!(internal["ticket_id"], "4711");
    // The host's ZAK is not kept in the database.
    let details: String = sqlx::query_scalar("SELECT details_json FROM ticket_links WHERE vendor = 'zoom'")
        .fetch_one(env.app.store.sqlite_pool())
        .await
        .unwrap();
    assert!(!details.contains("zak") && details.contains("\"account\":\"helpdesk\""), "{details}");
}

#[tokio::test]
async fn daily_meeting_create_limit_is_a_clear_error_and_not_retried() {
    let env = setup(ZoomSimOptions { daily_create_limit: 1, ..Default::default() }, "").await;
    authorize(&env).await;
    meeting_for(&env, "1", None).await;
    let err = create_session_on(&env.app, "zoom", "2", None, None, None).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("daily limit of meeting create/update requests") && msg.contains("00:00 UTC"), "{msg}");
    assert_eq!(count(&env, "/meetings", 429), 1, "not retried");
    let links: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ticket_links").fetch_one(env.app.store.sqlite_pool()).await.unwrap();
    assert_eq!(links, 1);
}

#[tokio::test]
async fn participants_and_late_recordings_land_on_the_ticket() {
    let env = setup(ZoomSimOptions::default(), "").await;
    authorize(&env).await;
    let id = meeting_for(&env, "4711", None).await;
    // Not held yet: Zoom answers 3001; nothing is stored.
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.polled[0].1.inserted, 0);
    let start = now_s() - chrono::Duration::minutes(40);
    env.zoom.end_meeting(id, None, start, start + chrono::Duration::minutes(25), people(5, start));
    env.zoom.add_recording(id, false);
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.polled[0].1.inserted, 1);
    assert_eq!(r.matched.matched, 0, "held back until the recordings are in");
    let ended: Option<String> = sqlx::query_scalar("SELECT ended_at FROM sessions WHERE vendor = 'zoom'")
        .fetch_one(env.app.store.sqlite_pool())
        .await
        .unwrap();
    assert!(ended.is_none());
    env.zoom.publish_recording(id);
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.matched.matched, 1);
    let (ticket, rule): (String, String) =
        sqlx::query_as("SELECT ticket_id, rule FROM v_sessions_by_ticket WHERE vendor = 'zoom'")
            .fetch_one(env.app.store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!((ticket.as_str(), rule.as_str()), ("4711", "session_code"));
    let report = texts(&env.hook).into_iter().find(|t| t.starts_with("Zoom session")).expect("report note");
    for i in 0..5 {
        assert!(report.contains(&format!("Person {i} <p{i}@acme.example>")), "{report}");
    }
    assert!(report.contains("Participants (5)") && report.contains("us05web.zoom.us/rec/share/"), "{report}");
    assert!(report.contains("Play MP4 recording") && report.contains("/rec/play/"), "{report}");
    assert!(report.contains("Duration: 25m 00s"), "{report}");
    // 5 participants at page_size 2: three pages, chained by next_page_token.
    let pages: Vec<_> = env.zoom.log().into_iter().filter(|r| r.path.ends_with("/participants")).collect();
    assert!(pages.iter().all(|r| r.query.contains("page_size=2")));
    assert_eq!(pages.iter().filter(|r| r.query.contains("next_page_token")).count() * 3, pages.len() * 2);
    // A later poll leaves the finished meeting alone.
    let before = env.zoom.log().len();
    env.app.cycle().await.unwrap();
    assert_eq!(env.zoom.log().len(), before);
    // Each poll counted as a successful one for the account: readiness and the staleness
    // metric see it (issue 18).
    let health = ticketsync::health::Health::from_app(&env.app, Utc::now() - chrono::Duration::hours(1)).unwrap();
    let checks = health.readiness(Utc::now()).await;
    let c = checks.iter().find(|c| c.0 == "source:zoom:helpdesk").unwrap_or_else(|| panic!("{checks:?}"));
    assert!(c.1 && c.2.contains("last successful poll 20"), "{c:?}");
}

/// `backfill --source zoom`: the meetings created for tickets in a time range, read again
/// as a poll reads them, even beyond `lookback_days` (a daemon down for longer) and more than
/// a month back (their recordings are asked for in their own month); once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_rereads_the_meetings_of_a_range_beyond_the_lookback() {
    let env = setup(ZoomSimOptions::default(), "lookback_days = 1\n").await;
    authorize(&env).await;
    let id = meeting_for(&env, "4811", None).await;
    let start = now_s() - chrono::Duration::days(40);
    env.zoom.end_meeting(id, None, start, start + chrono::Duration::minutes(25), people(3, start));
    env.zoom.add_recording(id, true);
    // The link was made when the meeting was, 40 days ago: the poll looks back one day.
    sqlx::query("UPDATE ticket_links SET created_at = ? WHERE vendor = 'zoom'")
        .bind(ticketsync::session::ts(start - chrono::Duration::minutes(5)))
        .execute(env.app.store.sqlite_pool())
        .await
        .unwrap();
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.polled[0].1.inserted, 0, "beyond the poll's look-back");
    let reports =
        |env: &Env| texts(&env.hook).into_iter().filter(|t| t.starts_with("Zoom session")).collect::<Vec<_>>();
    assert!(reports(&env).is_empty());

    let day = |d: i64| (start + chrono::Duration::days(d)).format("%Y-%m-%d").to_string();
    let (from, to) = (day(-1), day(1));
    let args = ["backfill", "--source", "zoom", "--from", from.as_str(), "--to", to.as_str(), "--progress-secs", "0"];
    let dry = run_bin(&env.cfg_path, &[&args[..], &["--dry-run"]].concat()).await;
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success() && out.contains("would store 1 new"), "{out}{}", String::from_utf8_lossy(&dry.stderr));
    assert!(reports(&env).is_empty(), "a dry run delivers nothing");

    let o = run_bin(&env.cfg_path, &args).await;
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("1 records in 1 pages — 1 new") && out.contains("matched 1 sessions"), "{out}");
    assert!(err.contains("backfill progress"), "{err}");
    let report = reports(&env);
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(report[0].contains("Participants (3)") && report[0].contains("/rec/share/"), "{}", report[0]);

    // Again: nothing new, nothing sent twice; outside the range, nothing read.
    let o = run_bin(&env.cfg_path, &args).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 new, 0 updated, 1 unchanged"));
    let before = env.zoom.log().len();
    let o = run_bin(&env.cfg_path, &["backfill", "--source", "zoom", "--from", &day(-20), "--to", &day(-10)]).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 records in 1 pages"));
    assert_eq!(env.zoom.log().len(), before, "no meeting in that range: no call");
    assert_eq!(reports(&env).len(), 1);
}

#[tokio::test]
async fn expired_page_token_restarts_the_walk_and_loses_nothing() {
    let env = setup(ZoomSimOptions::default(), "auto_recording = \"none\"").await;
    authorize(&env).await;
    let id = meeting_for(&env, "55", None).await;
    let start = now_s() - chrono::Duration::minutes(30);
    env.zoom.end_meeting(id, None, start, start + chrono::Duration::minutes(20), people(5, start));
    env.zoom.expire_next_page_tokens(1);
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.matched.matched, 1);
    assert_eq!(count(&env, "/participants", 400), 1, "the expired token was seen");
    let raw: String = sqlx::query_scalar("SELECT raw_json FROM sessions WHERE vendor = 'zoom'")
        .fetch_one(env.app.store.sqlite_pool())
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    let names: Vec<_> = v["participants"].as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, (0..5).map(|i| json!(format!("Person {i}"))).collect::<Vec<_>>());
}

#[tokio::test]
async fn uuids_with_slashes_are_double_encoded() {
    let env = setup(ZoomSimOptions::default(), "auto_recording = \"none\"").await;
    authorize(&env).await;
    let id = meeting_for(&env, "66", None).await;
    let start = now_s() - chrono::Duration::minutes(30);
    env.zoom.end_meeting(id, Some("/ab//cdEF+gh=="), start, start + chrono::Duration::minutes(10), people(3, start));
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.matched.matched, 1);
    assert!(env.zoom.log().iter().any(|r| r.path.contains("%252Fab%252F%252FcdEF%252Bgh") && r.status == 200));
    let ext: String = sqlx::query_scalar("SELECT external_id FROM sessions WHERE vendor = 'zoom'")
        .fetch_one(env.app.store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(ext, "/ab//cdEF+gh==");
    assert!(texts(&env.hook).iter().any(|t| t.contains("Participants (3)")));
}

#[tokio::test]
async fn recordings_missing_at_the_deadline_do_not_hold_the_note_forever() {
    let env = setup(ZoomSimOptions::default(), "recording_deadline_minutes = 0").await;
    authorize(&env).await;
    let id = meeting_for(&env, "77", None).await;
    let start = now_s() - chrono::Duration::minutes(30);
    env.zoom.end_meeting(id, None, start, start + chrono::Duration::minutes(10), people(1, start));
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.matched.matched, 1);
    let report = texts(&env.hook).into_iter().find(|t| t.starts_with("Zoom session")).unwrap();
    assert!(report.contains("none available by the configured deadline"), "{report}");
}

#[tokio::test]
async fn throttling_429_honours_retry_after_in_seconds_and_as_a_date() {
    let env = setup(ZoomSimOptions::default(), "auto_recording = \"none\"").await;
    authorize(&env).await;
    let id = meeting_for(&env, "88", None).await;
    let start = now_s() - chrono::Duration::minutes(30);
    env.zoom.end_meeting(id, None, start, start + chrono::Duration::minutes(10), people(1, start));
    let body = json!({"code": 429, "message": "You have reached the maximum per-second rate limit for this API. Try again later."});
    let date = (Utc::now() + chrono::Duration::seconds(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    for retry_after in ["1".to_string(), date] {
        env.zoom.fail_next(ZoomFault {
            path_prefix: "/past_meetings".into(),
            times: 1,
            status: 429,
            headers: vec![("Retry-After".into(), retry_after), ("X-RateLimit-Type".into(), "QPS".into())],
            body: body.clone(),
        });
    }
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.matched.matched, 1);
    assert_eq!(count(&env, "/past_meetings", 429), 2);
}

#[tokio::test]
async fn several_accounts_are_polled_each_with_its_own_tokens() {
    let env = setup(ZoomSimOptions::default(), "auto_recording = \"none\"").await;
    authorize(&env).await;
    let a = meeting_for(&env, "501", None).await;
    let b = meeting_for(&env, "502", Some("s2s")).await;
    let start = now_s() - chrono::Duration::minutes(30);
    for id in [a, b] {
        env.zoom.end_meeting(id, None, start, start + chrono::Duration::minutes(10), people(2, start));
    }
    let r = env.app.cycle().await.unwrap();
    assert_eq!(r.matched.matched, 2);
    let mut rows: Vec<(String, String)> =
        sqlx::query_as("SELECT ticket_id, session_code FROM v_sessions_by_ticket ORDER BY ticket_id")
            .fetch_all(env.app.store.sqlite_pool())
            .await
            .unwrap();
    rows.sort();
    assert_eq!(rows, vec![("501".into(), a.to_string()), ("502".into(), b.to_string())]);
    let providers: Vec<(String,)> = sqlx::query_as("SELECT provider FROM oauth_tokens ORDER BY provider")
        .fetch_all(env.app.store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(providers, vec![("zoom:helpdesk".to_string(),), ("zoom:s2s".to_string(),)]);
}

#[tokio::test]
async fn visioconference_room_moderator_link_internal_room_url_public_both_shapes() {
    let env = setup(ZoomSimOptions::default(), "").await;
    for (shape, ticket) in [(VisioShape::Current, "900"), (VisioShape::Room, "901")] {
        env.visio.set_shape(shape);
        let c = create_session_on(&env.app, "visioconference", ticket, None, None, None).await.unwrap();
        let room = env.visio.rooms().last().unwrap().clone();
        assert_eq!(room["name"], format!("Ticket-{ticket}"));
        assert_eq!(c.code, room["uniqid"].as_str().unwrap());
        deliver_due(&env.app.store, &env.app.sinks, &env.app.policy).await.unwrap();
        let notes: Vec<Value> = env.hook.accepted().into_iter().filter(|n| n["ticket_id"] == ticket).collect();
        let internal =
            notes.iter().find(|n| n["visibility"] == "internal").unwrap()["text"].as_str().unwrap().to_string();
        let public = notes.iter().find(|n| n["visibility"] == "public").unwrap()["text"].as_str().unwrap().to_string();
        let url = format!("https://visioconference.me/meet/{}", c.code);
        let moderator = format!("{url}?m={}&name=Jon+Snow", room["moderator_token"].as_str().unwrap());
        assert!(internal.contains(&moderator), "{shape:?}: {internal}");
        assert!(public.contains(&url) && !public.contains("?m="), "{public}");
    }
    // The room creation is the audit record (no report API).
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT ticket_id, detail_json FROM audit_events WHERE kind = 'link_created' AND vendor = 'visioconference'",
    )
    .fetch_all(env.app.store.sqlite_pool())
    .await
    .unwrap();
    assert_eq!(audit.len(), 2);
    let links: Vec<(String,)> =
        sqlx::query_as("SELECT details_json FROM ticket_links WHERE vendor = 'visioconference'")
            .fetch_all(env.app.store.sqlite_pool())
            .await
            .unwrap();
    assert!(links.iter().all(|(d,)| d.contains("room_url") && !d.contains("moderator_token\":\"")));
    // A bad key is a clear error naming the setting.
    std::fs::write(env.dir.path().join("visio_token"), "wrong").unwrap();
    let app = App::build(Config::load(&env.cfg_path).unwrap()).await.unwrap();
    let err = format!("{:#}", create_session_on(&app, "visioconference", "902", None, None, None).await.unwrap_err());
    assert!(err.contains("HTTP 401") && err.contains("rooms.visioconference.token"), "{err}");
}

#[tokio::test]
async fn example_config_passes_check_with_zoom_and_visio_credentials() {
    let creds = tempfile::tempdir().unwrap();
    for c in ["zoom_helpdesk_client_secret", "visioconference_token"] {
        std::fs::write(creds.path().join(c), "x\n").unwrap();
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ticketsync.example.toml");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.arg("--config").arg(&example).arg("check").env_clear();
    cmd.env("CREDENTIALS_DIRECTORY", creds.path());
    for k in [
        "TICKETSYNC__SOURCES__TEAMVIEWER__TOKEN",
        "TICKETSYNC__SOURCES__SPLASHTOP__TOKEN",
        "TICKETSYNC__SINKS__REDMINE__API_KEY",
        "TICKETSYNC__SINKS__WEBHOOK__SECRET",
    ] {
        cmd.env(k, "x");
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("sources: teamviewer, splashtop, zoom (accounts: helpdesk)")
            && stdout.contains("rooms: visioconference"),
        "{stdout}"
    );
    // Without the Zoom credential the check names the key.
    std::fs::remove_file(creds.path().join("zoom_helpdesk_client_secret")).unwrap();
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sources.zoom.accounts[0].client_secret"));
}

#[tokio::test]
async fn concurrent_refreshes_never_spend_a_rotated_token_twice() {
    let env = setup(ZoomSimOptions { access_ttl_secs: 60, ..Default::default() }, "").await;
    authorize(&env).await;
    expire_stored(&env).await;
    // Two clients of one database (the daemon and a CLI command), three tasks each.
    let mk = || {
        std::sync::Arc::new(
            ticketsync::sources::zoom::oauth_client(zoom_cfg(&env), 0, &env.app.store, reqwest::Client::new()).unwrap(),
        )
    };
    let (a, b) = (mk(), mk());
    let mut tasks = Vec::new();
    for i in 0..6 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { c.access_token().await.map(|_| ()) }));
    }
    for t in tasks {
        t.await.unwrap().expect("every task gets a working token");
    }
    assert_eq!(env.zoom.valid_refresh_tokens(), vec![stored_refresh(&env).await]);
    let refreshes = env.zoom.grants().iter().filter(|g| *g == "refresh_token").count();
    assert!((1..=6).contains(&refreshes), "{refreshes}");
}

#[tokio::test]
async fn one_failing_account_does_not_stop_the_others() {
    // The user-managed account is never authorized; the Server-to-Server one still polls.
    let env = setup(ZoomSimOptions::default(), "auto_recording = \"none\"").await;
    let id = meeting_for(&env, "601", Some("s2s")).await;
    let start = now_s() - chrono::Duration::minutes(30);
    env.zoom.end_meeting(id, None, start, start + chrono::Duration::minutes(10), people(1, start));
    // A link for the unauthorized account, so that it has something to poll.
    let mut tx = env.app.store.begin().await.unwrap();
    ticketsync::store::links::insert(
        &mut tx,
        "zoom",
        "123",
        "602",
        "created",
        Some(&json!({"account": "helpdesk"})),
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let err = format!("{:#}", env.app.cycle().await.unwrap_err());
    assert!(err.contains("run `ticketsync auth zoom --account helpdesk`"), "{err}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE vendor = 'zoom' AND ended_at IS NOT NULL")
        .fetch_one(env.app.store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_malformed_meeting_is_quarantined_with_its_field_and_the_rest_goes_on() {
    let env = setup(ZoomSimOptions::default(), "auto_recording = \"none\"").await;
    authorize(&env).await;
    let bad = meeting_for(&env, "701", None).await;
    let good = meeting_for(&env, "702", None).await;
    let start = now_s() - chrono::Duration::minutes(30);
    let mut ps = people(2, start);
    ps[1].as_object_mut().unwrap().remove("join_time");
    env.zoom.end_meeting(good, None, start, start + chrono::Duration::minutes(10), ps);
    env.zoom.fail_next(ZoomFault {
        path_prefix: format!("/past_meetings/{bad}"),
        times: 1,
        status: 200,
        headers: vec![],
        body: json!({"uuid": "broken==", "id": bad, "start_time": "2025-05-01T09:00:00Z"}),
    });
    let r = env.app.cycle().await.unwrap();
    assert_eq!((r.polled[0].1.quarantined, r.matched.matched), (2, 1));
    let q: Vec<(Option<String>, String)> = sqlx::query_as("SELECT external_id, reason FROM quarantine ORDER BY id")
        .fetch_all(env.app.store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(q[0].0.as_deref(), Some("broken=="));
    assert!(q[0].1.contains("end_time"), "{q:?}");
    assert!(q[1].1.contains("participant") && q[1].1.contains("join_time"), "{q:?}");
    assert!(texts(&env.hook).iter().any(|t| t.contains("Participants (1)") && t.contains("Person 0")));
}

/// Fault suite, bad data: a topic cut in the middle of a surrogate pair (`\ud83d` alone,
/// which serde_json refuses) and a participant name in Latin-1 bytes. Each page still
/// decodes; the meeting and the participant are quarantined naming the field; the other
/// meeting's note goes out with its other participants.
#[tokio::test]
async fn bad_data_lone_surrogate_topic_and_latin1_participant_are_quarantined() {
    let env = setup(ZoomSimOptions::default(), "auto_recording = \"none\"").await;
    authorize(&env).await;
    let broken = meeting_for(&env, "811", None).await;
    let good = meeting_for(&env, "812", None).await;
    let start = now_s() - chrono::Duration::minutes(30);
    let end = start + chrono::Duration::minutes(10);
    env.zoom.end_meeting(broken, Some("topic-broken=="), start, end, people(1, start));
    env.zoom.end_meeting(good, Some("topic-good=="), start, end, people(3, start));
    env.zoom.mis_encode("Ticket #811", b"Ticket #811 \\ud83d");
    env.zoom.mis_encode("Person 1", b"Ren\xe9 1");

    let r = env.app.cycle().await.expect("the bad text does not fail the poll");
    assert_eq!((r.polled[0].1.quarantined, r.matched.matched), (2, 1), "{r:?}");
    let q: Vec<(Option<String>, String)> = sqlx::query_as("SELECT external_id, reason FROM quarantine ORDER BY id")
        .fetch_all(env.app.store.sqlite_pool())
        .await
        .unwrap();
    let reasons: Vec<&str> = q.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(q[0].0.as_deref(), Some("topic-broken=="));
    assert_eq!(q[0].1, format!("meeting {broken}: a lone surrogate escape in topic"));
    let participant = format!("meeting {good} participant: invalid UTF-8 in name");
    assert_eq!(q[1].1, participant);
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT external_id FROM sessions").fetch_all(env.app.store.sqlite_pool()).await.unwrap();
    assert_eq!(stored, ["topic-good=="]);
    let notes: Vec<String> = texts(&env.hook).into_iter().filter(|t| t.contains("Participants")).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("Participants (2)") && notes[0].contains("Person 0") && notes[0].contains("Person 2"));
    assert!(!notes[0].contains('\u{FFFD}'), "no replacement character reaches a ticket");
    println!("bad data (zoom): {} quarantined: {reasons:?}; 1 meeting stored and its note delivered", q.len());

    // The next poll meets the same records: nothing is quarantined twice.
    env.app.cycle().await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM quarantine").fetch_one(env.app.store.sqlite_pool()).await.unwrap();
    assert_eq!(n as usize, q.len());
}
