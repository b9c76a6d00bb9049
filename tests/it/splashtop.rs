//! Splashtop over real HTTP against `ticketsync::sim::splashtop`: session-log paging, the
//! saved cursor and its overlap re-read, quarantine, the `result` codes as typed errors,
//! retries, API token and OAuth (scopes, state, refresh before expiry and on 40101,
//! rotation on and off, refresh-token expiry), support sessions created for a ticket, and
//! what lands on the ticket (file-transfer table, transcript inline or attached).

use crate::support::SendJson;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use ticketsync::config::{Config, SplashtopAuth, SplashtopConfig};
use ticketsync::pipeline::ingest;
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::splashtop::{Fault, SimOptions, SplashtopSim, SIM_TEAM_ID};
use ticketsync::sim::webhook::WebhookSim;
use ticketsync::sources::splashtop::wire::ResultKind;
use ticketsync::sources::splashtop::{ApiError, Cursor, SplashtopApi, SplashtopSource};
use ticketsync::sources::{PollStats, Source, SourceError};
use ticketsync::store::Store;

use crate::support::{temp_store, vdate};

const TOKEN: &str = "st-api-token-7Qx2";
const CLIENT_ID: &str = "st-client-1";
const CLIENT_SECRET: &str = "st-cs-9f8e7d";
const LOGS: &str = "/api/open/v1/teams/123456/logs/sessions";

fn now_s() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn log(id: &str, start: DateTime<Utc>, end: Option<DateTime<Utc>>, note: Option<&str>) -> Value {
    json!({"session_id": id, "user_email": "tech@example.com", "dst_name": "DESKTOP-1", "dst_ip": "198.51.100.7",
           "start_time": vdate(start), "end_time": end.map(vdate), "connection_type": "remote", "note": note})
}

async fn sim(opts: SimOptions) -> SplashtopSim {
    SplashtopSim::start(SimOptions { api_tokens: vec![TOKEN.into()], ..opts }).await.expect("start sim")
}

fn token_cfg(sim: &SplashtopSim) -> SplashtopConfig {
    SplashtopConfig {
        base_url: Some(sim.base_url.clone()),
        console_url: Some(sim.base_url.clone()),
        token: Some(SecretString::from(TOKEN.to_string())),
        request_timeout_secs: 10,
        page_size: 3,
        ..Default::default()
    }
}

fn oauth_cfg(sim: &SplashtopSim) -> SplashtopConfig {
    SplashtopConfig {
        auth: SplashtopAuth::Oauth,
        token: None,
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SecretString::from(CLIENT_SECRET.to_string())),
        ..token_cfg(sim)
    }
}

fn source(cfg: &SplashtopConfig, store: &Store, retries: usize) -> SplashtopSource {
    SplashtopSource::with_api(cfg, SplashtopApi::new(cfg, store).expect("api").with_max_retries(retries))
}

async fn poll(src: &SplashtopSource, store: &Store) -> Result<PollStats, SourceError> {
    ingest::poll(src, store, &CancellationToken::new()).await
}

async fn cursor(store: &Store) -> Cursor {
    let j = ticketsync::store::cursors::load(store, "splashtop").await.unwrap().expect("cursor");
    serde_json::from_str(&j).unwrap()
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(store.sqlite_pool()).await.unwrap()
}

fn log_requests(sim: &SplashtopSim) -> Vec<String> {
    sim.requests().into_iter().filter(|(_, p, _)| p == LOGS).map(|(_, _, q)| q).collect()
}

fn param(q: &str, k: &str) -> Option<String> {
    url::form_urlencoded::parse(q.as_bytes()).find(|(n, _)| n == k).map(|(_, v)| v.to_string())
}

#[tokio::test]
async fn logs_are_paged_resumed_after_a_failure_and_overlap_reread() {
    let sim = sim(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let t0 = now_s() - TimeDelta::hours(5);
    for i in 0..7 {
        let start = t0 + TimeDelta::minutes(10 * i);
        sim.add_log(log(&format!("s{i}"), start, Some(start + TimeDelta::minutes(5)), None));
    }
    sim.add_log(json!({"session_id": "bad", "start_time": "yesterday"}));
    let cfg = token_cfg(&sim);

    // Page 2 fails (no retries here): pages committed so far stay, the walk resumes at page 2.
    sim.push_fault(Fault { path_prefix: LOGS.into(), times: 1, status: 0, ..Default::default() });
    sim.push_fault(Fault { path_prefix: LOGS.into(), times: 1, status: 500, body: "{}".into(), ..Default::default() });
    let err = poll(&source(&cfg, &store, 0), &store).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let c = cursor(&store).await;
    assert_eq!(c.walk.as_ref().map(|w| w.page), Some(2), "{c:?}");
    let stored_after_page1 =
        count(&store, "SELECT COUNT(*) FROM sessions").await + count(&store, "SELECT COUNT(*) FROM quarantine").await;
    assert_eq!(stored_after_page1, 3);

    let stats = poll(&source(&cfg, &store, 0), &store).await.unwrap();
    assert!(stats.complete);
    assert_eq!((stats.inserted, stats.quarantined), (5, 0), "{stats:?}");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM sessions WHERE vendor = 'splashtop'").await, 7);
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM quarantine").fetch_one(store.sqlite_pool()).await.unwrap();
    assert!(reason.starts_with("start_time: not an ISO 8601"), "{reason}");
    let qs = log_requests(&sim);
    let pages: Vec<String> = qs.iter().map(|q| param(q, "page").unwrap()).collect();
    assert_eq!(pages, ["1", "2", "2", "3"], "page 1, failed page 2, resumed at 2, then 3");
    assert!(qs.iter().all(|q| param(q, "per_page").as_deref() == Some("3")));
    // The resumed walk keeps its window.
    assert_eq!(param(&qs[1], "from"), param(&qs[3], "from"));
    assert_eq!(param(&qs[1], "to"), param(&qs[3], "to"));
    let c = cursor(&store).await;
    assert_eq!(c.walk, None);
    let hwm = c.high_watermark.clone().unwrap();
    assert_eq!(hwm, ticketsync::session::ts(t0 + TimeDelta::minutes(60)));
    let raw: String = sqlx::query_scalar("SELECT raw_json FROM sessions WHERE external_id = 's3'")
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap()["dst_ip"], "198.51.100.7", "raw JSON kept");

    // Next poll: from the watermark minus the overlap; a late record inside it is picked up,
    // a changed one is updated, unchanged ones are not.
    sim.add_log(log("late", t0 + TimeDelta::minutes(55), Some(t0 + TimeDelta::minutes(58)), Some("late one")));
    sim.requests();
    let before = log_requests(&sim).len();
    let stats = poll(&source(&cfg, &store, 0), &store).await.unwrap();
    assert_eq!((stats.inserted, stats.updated), (1, 0), "{stats:?}");
    let q = &log_requests(&sim)[before];
    let from = param(q, "from").unwrap();
    let want = ticketsync::session::parse_ts(&hwm).unwrap() - TimeDelta::minutes(120);
    assert_eq!(from, vdate(want), "overlap re-read from the watermark minus overlap_minutes");
}

/// `raw_json` is the log record as the vendor wrote it (escapes, key order, spacing), not
/// a re-serialization; a record a JSON tree refuses is quarantined with its text while the
/// rest of the page is stored.
#[tokio::test]
async fn raw_json_is_the_vendors_text_and_an_unreadable_record_is_quarantined() {
    use sha2::Digest;
    let sim = sim(SimOptions::default()).await;
    sim.mis_encode("\"tech@example.com\"", b"\"tech@ex\\u0061mple.com\"");
    let t0 = now_s() - TimeDelta::hours(2);
    sim.add_log(log("s1", t0, Some(t0 + TimeDelta::minutes(5)), Some("ok")));
    sim.add_log(log("s2", t0 + TimeDelta::minutes(10), Some(t0 + TimeDelta::minutes(15)), None));
    sim.mis_encode("\"session_id\":\"s2\"", b"\"session_id\":\"s2\",\"duration\":1e400");
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let stats = poll(&source(&token_cfg(&sim), &store, 0), &store).await.unwrap();
    assert_eq!((stats.inserted, stats.quarantined), (1, 1), "{stats:?}");

    let (raw, hash, tech): (String, String, String) =
        sqlx::query_as("SELECT raw_json, content_hash, technician FROM sessions WHERE external_id = 's1'")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
    assert!(raw.contains(r#""user_email":"tech@ex\u0061mple.com""#), "the vendor's text: {raw}");
    assert_eq!(hash, hex::encode(sha2::Sha256::digest(raw.as_bytes())));
    assert_eq!(tech, "tech@example.com");

    let (reason, qraw): (String, String) =
        sqlx::query_as("SELECT reason, raw FROM quarantine").fetch_one(store.sqlite_pool()).await.unwrap();
    assert!(reason.starts_with("record: unreadable JSON"), "{reason}");
    assert!(qraw.contains(r#""session_id":"s2","duration":1e400"#), "kept as sent: {qraw}");
}

#[tokio::test]
async fn a_server_that_ignores_the_page_parameter_cannot_loop_the_walk() {
    let sim = sim(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let t0 = now_s() - TimeDelta::hours(1);
    let logs: Vec<Value> = (0..3).map(|i| log(&format!("p{i}"), t0 + TimeDelta::minutes(i), None, None)).collect();
    let body = json!({"result": 20200, "data": {"page": 1, "logs": logs}}).to_string();
    sim.push_fault(Fault { path_prefix: LOGS.into(), times: 50, status: 200, body, ..Default::default() });
    let stats = poll(&source(&token_cfg(&sim), &store, 0), &store).await.unwrap();
    assert!(stats.complete);
    assert_eq!((stats.pages, stats.inserted), (2, 3), "{stats:?}");
    assert_eq!(log_requests(&sim).len(), 2, "stopped at the repeated page");
    assert_eq!(cursor(&store).await.walk, None);
}

#[tokio::test]
async fn result_codes_are_typed_errors_and_transient_ones_retried() {
    let sim = sim(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let t0 = now_s() - TimeDelta::hours(1);
    sim.add_log(log("a", t0, Some(t0 + TimeDelta::minutes(3)), None));

    let typed = |e: SourceError| match e {
        SourceError::Splashtop(a) => a,
        other => panic!("expected a typed Splashtop error, got {other:?}"),
    };
    let mut cfg = token_cfg(&sim);
    cfg.token = Some(SecretString::from("wrong".to_string()));
    let e: ApiError = typed(poll(&source(&cfg, &store, 0), &store).await.unwrap_err());
    assert_eq!((e.kind, e.code, e.status, e.transient), (ResultKind::BadToken, Some(40100), Some(401), false));
    assert!(e.to_string().contains("invalid token") && e.to_string().contains("40100"), "{e}");
    assert!(!e.to_string().contains("wrong"), "the token never appears in errors: {e}");

    cfg.token = Some(SecretString::from(format!("\"{TOKEN}\"")));
    let e = typed(poll(&source(&cfg, &store, 0), &store).await.unwrap_err());
    assert_eq!((e.kind, e.code), (ResultKind::MalformedToken, Some(41406)));

    let mut cfg = token_cfg(&sim);
    cfg.team_id = Some(999);
    let e = typed(poll(&source(&cfg, &store, 0), &store).await.unwrap_err());
    assert_eq!((e.kind, e.code, e.message.as_str()), (ResultKind::SessionGone, Some(40404), "team not found"));

    // A bad channel: 40403, not retried.
    let api = SplashtopApi::new(&token_cfg(&sim), &store).unwrap();
    let body = ticketsync::sources::splashtop::wire::create_body(999, "Jane", "Ticket #1");
    let e = typed(api.create_support_session(SIM_TEAM_ID, &body).await.unwrap_err());
    assert_eq!((e.kind, e.code), (ResultKind::NotAllowed, Some(40403)));
    let too_long = ticketsync::sources::splashtop::wire::create_body(4673, &"x".repeat(65), "Ticket #1");
    let e = typed(api.create_support_session(SIM_TEAM_ID, &too_long).await.unwrap_err());
    assert_eq!((e.kind, e.code), (ResultKind::BadParams, Some(40422)));

    // 429 with Retry-After, a 503, and an unknown result code: retried, nothing lost.
    let cfg = token_cfg(&sim);
    sim.push_fault(Fault {
        path_prefix: LOGS.into(),
        times: 1,
        status: 429,
        headers: vec![("Retry-After".into(), "1".into())],
        body: r#"{"result":42900,"message":"too many requests"}"#.into(),
        ..Default::default()
    });
    sim.push_fault(Fault {
        path_prefix: LOGS.into(),
        times: 1,
        status: 503,
        body: "<html>busy</html>".into(),
        ..Default::default()
    });
    sim.push_fault(Fault {
        path_prefix: LOGS.into(),
        times: 1,
        status: 200,
        body: r#"{"result":50017}"#.into(),
        ..Default::default()
    });
    let before = log_requests(&sim).len();
    let stats = poll(&source(&cfg, &store, 5), &store).await.unwrap();
    assert_eq!(stats.inserted, 1);
    assert_eq!(log_requests(&sim).len() - before, 4, "three failures, then the page");
}

async fn authorize(sim: &SplashtopSim, store: &Store, cfg: &SplashtopConfig) -> ticketsync::oauth::OAuthClient {
    let oauth = ticketsync::sources::splashtop::oauth_client(cfg, store, reqwest::Client::new()).unwrap();
    let (url, state) = oauth.authorize_url().await.unwrap();
    let u = url::Url::parse(&url).unwrap();
    assert!(url.starts_with(&format!("{}/oauth2/authorize?", sim.base_url)), "{url}");
    let q = |k: &str| u.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
    assert_eq!(q("scope").as_deref(), Some("logs,psa,users"), "scopes from config, comma-separated");
    assert_eq!(q("response_type").as_deref(), Some("code"));
    assert_eq!(q("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(q("state").as_deref(), Some(state.as_str()));
    assert_eq!(q("display"), None, "TeamViewer's popup parameter is not sent to Splashtop");
    // The operator's browser: follow the authorize page to the redirect.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let got = |k: &str| loc.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string()).unwrap();
    assert!(!oauth.check_state("forged").await.unwrap());
    assert!(oauth.check_state(&got("state")).await.unwrap());
    assert!(!oauth.check_state(&got("state")).await.unwrap(), "a state is good once");
    oauth.exchange_code(&got("code")).await.unwrap();
    oauth
}

async fn refresh_token_enc(store: &Store) -> (String, Option<String>, i64) {
    sqlx::query_as(
        "SELECT refresh_token_enc, refresh_expires_at, generation FROM oauth_tokens WHERE provider = 'splashtop'",
    )
    .fetch_one(store.sqlite_pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn oauth_code_exchange_refresh_on_40101_with_rotation() {
    let sim =
        sim(SimOptions { oauth_client: Some((CLIENT_ID.into(), CLIENT_SECRET.into())), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let t0 = now_s() - TimeDelta::hours(1);
    sim.add_log(log("a", t0, Some(t0 + TimeDelta::minutes(3)), None));
    let cfg = oauth_cfg(&sim);
    authorize(&sim, &store, &cfg).await;
    let (rt1, exp1, g1) = refresh_token_enc(&store).await;
    let exp1 = ticketsync::session::parse_ts(&exp1.expect("refresh expiry recorded")).unwrap();
    assert!((exp1 - (Utc::now() + TimeDelta::days(30))).num_seconds().abs() < 60, "30-day refresh lifetime");

    assert_eq!(poll(&source(&cfg, &store, 0), &store).await.unwrap().inserted, 1);
    assert_eq!(sim.refresh_count(), 0);
    sim.expire_access_tokens();
    poll(&source(&cfg, &store, 0), &store).await.expect("40101 → refresh → retry");
    assert_eq!(sim.refresh_count(), 1);
    let (rt2, _, g2) = refresh_token_enc(&store).await;
    assert_ne!(rt1, rt2, "the rotated refresh token replaced the old one");
    assert!(g2 > g1);
    assert_eq!(sim.refresh_tokens(), 1, "the old refresh token is spent on the vendor side");
    let statuses: Vec<String> = sim.requests().into_iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    assert!(statuses.iter().filter(|s| s.as_str() == "POST /oauth2/token").count() == 2, "{statuses:?}");
}

#[tokio::test]
async fn oauth_without_rotation_keeps_the_refresh_token_and_refreshes_before_expiry() {
    let sim = sim(SimOptions {
        rotate_refresh_tokens: false,
        access_token_ttl: Duration::from_secs(120),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = oauth_cfg(&sim);
    authorize(&sim, &store, &cfg).await;
    let (rt1, exp1, _) = refresh_token_enc(&store).await;
    // The stored access token is past its refresh point (shortly before the vendor's expiry):
    // the first call refreshes first, no 401 needed; the page read uses the new token.
    sqlx::query("UPDATE oauth_tokens SET access_expires_at = '2000-01-01T00:00:00Z'")
        .execute(store.sqlite_pool())
        .await
        .unwrap();
    poll(&source(&cfg, &store, 0), &store).await.unwrap();
    assert_eq!(sim.refresh_count(), 1, "refreshed ahead of expiry");
    let (rt2, exp2, _) = refresh_token_enc(&store).await;
    assert_eq!((rt1, exp1), (rt2, exp2), "no new refresh token: the old one and its expiry stay");
}

#[tokio::test]
async fn expired_refresh_token_is_a_clear_error_and_check_warns_before() {
    let sim = sim(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let write_cfg = |days: u64| {
        let p = dir.path().join("ticketsync.toml");
        std::fs::write(
            &p,
            format!(
                "[store]\npath = \"{}\"\n[sources.splashtop]\nbase_url = \"{u}\"\nconsole_url = \"{u}\"\nauth = \"oauth\"\n\
                 client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nrefresh_token_days = {days}\nrefresh_warn_days = 7\n",
                db.display(),
                u = sim.base_url
            ),
        )
        .unwrap();
        p
    };
    let check = |p: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
            .args(["check", "--config"])
            .arg(p)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let p = write_cfg(3);
    let (code, out) = check(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("not authorized yet: run `ticketsync auth splashtop`"), "{out}");

    // Authorized with a 3-day refresh lifetime: inside the 7-day warning window.
    let cfg = Config::load(&p).unwrap().sources.splashtop.unwrap();
    let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
    authorize(&sim, &store, &cfg).await;
    let (code, out) = check(&p);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("warning: splashtop refresh token expires at"), "{out}");

    // A refresh token that has run out: the next refresh and `check` name the fix.
    sqlx::query("UPDATE oauth_tokens SET refresh_expires_at = '2020-01-01T00:00:00.000Z'")
        .execute(store.sqlite_pool())
        .await
        .unwrap();
    sim.expire_access_tokens();
    sqlx::query("UPDATE oauth_tokens SET access_expires_at = '2020-01-01T00:00:00.000Z'")
        .execute(store.sqlite_pool())
        .await
        .unwrap();
    let err = poll(&source(&cfg, &store, 0), &store).await.unwrap_err().to_string();
    assert!(err.contains("refresh token expired") && err.contains("run `ticketsync auth splashtop`"), "{err}");
    let (code, out) = check(&p);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refresh token expired at 2020-01-01") && out.contains("ticketsync auth splashtop"), "{out}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_session_for_a_ticket_then_its_log_lands_on_the_ticket() {
    let sim = sim(SimOptions::default()).await;
    let redmine = RedmineSim::start("rm-key", &[101, 102, 103]).await.unwrap();
    let hook = WebhookSim::start("whsec", "X-Ticketsync-Signature").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r##"
[store]
path = "{db}"
[notes]
inline_attachment_max_chars = 200
[sources.splashtop]
base_url = "{st}"
console_url = "{st}"
token = "{TOKEN}"
[[match.rules]]
kind = "manual"
[[match.rules]]
kind = "session_code"
[[match.rules]]
kind = "notes_regex"
pattern = "#(\\d+)"
[sinks.redmine]
url = "{rm}"
api_key = "rm-key"
[sinks.webhook]
url = "{wh}"
secret = "whsec"
"##,
        db = dir.path().join("t.db").display(),
        st = sim.base_url,
        rm = redmine.base_url,
        wh = hook.url,
    );
    let config = Config::from_toml_with_env(&toml, "test.toml", Vec::<(String, String)>::new()).expect("config");
    let store = temp_store(dir.path()).await;
    let app = ticketsync::app::App::with_store(config, store.clone()).expect("app");

    let long_name = format!("Jane Client · ACME Corporation International Holdings {}", "x".repeat(30));
    let created =
        ticketsync::launchers::create_session(&app, "splashtop", "101", Some(&long_name), None).await.unwrap();
    assert_eq!(created.truncated.len(), 1, "the cut is reported");
    assert!(created.truncated[0].contains("64 characters"), "{:?}", created.truncated);
    let sessions = sim.support_sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s["name"].as_str().unwrap().chars().count(), 64);
    assert_eq!(s["channel_id"], 4673, "default channel from psa/channel_list");
    assert_eq!(s["issue"], "Ticket #101");
    let links: Vec<(String, String)> = sqlx::query_as("SELECT session_code, ticket_id FROM ticket_links ORDER BY id")
        .fetch_all(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(links, [(created.code.clone(), "101".into()), (s["id"].as_str().unwrap().into(), "101".into())]);
    let d = ticketsync::pipeline::deliver_due(&app.store, &app.sinks, &app.policy).await.unwrap();
    assert_eq!(d.delivered, 4, "session links + customer link, for both sinks");
    let j = redmine.journals(101);
    assert_eq!(j.len(), 2);
    assert!(
        j[0].private_notes
            && j[0].notes.contains(&format!(
                "st-business://com.splashtop.business/?sos={}&category=40&account=owner%40example.com",
                created.code
            )),
        "{}",
        j[0].notes
    );
    assert!(
        !j[1].private_notes && j[1].notes.contains(&format!("{}/service_desk/psa/{}", sim.base_url, created.code)),
        "{}",
        j[1].notes
    );
    assert!(!j[1].notes.contains("st-business://"), "the customer never gets the technician link");

    // The technician runs the session: file transfers and a long transcript.
    let start = now_s() - TimeDelta::minutes(40);
    let chat: Vec<Value> = (0..20).map(|i| json!({"time": vdate(start + TimeDelta::minutes(i)), "from": "tech@example.com", "text": format!("line {i}")})).collect();
    sim.connect_session(
        &created.code,
        "tech@example.com",
        start,
        Some(start + TimeDelta::minutes(25)),
        json!([{"file_name": "log.zip", "size": 20480, "direction": "download", "time": vdate(start)}]),
        Some(json!(chat)),
        Some("Outlook rebuilt"),
    );
    // Another log names ticket 102 in its note; a third is linked to 103 by hand.
    sim.add_log(log("n1", start, Some(start + TimeDelta::minutes(5)), Some("VPN reset, see #102")));
    sim.add_log(log("m1", start, Some(start + TimeDelta::minutes(6)), None));
    ticketsync::launchers::manual_link(&app, "m1", "103").await.unwrap();

    let report = app.cycle().await.unwrap();
    assert_eq!(report.polled[0].1.inserted, 3);
    assert_eq!(report.matched.matched, 3);
    let rules: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT s.external_id, m.ticket_id, m.rule FROM matches m JOIN sessions s ON s.id = m.session_id ORDER BY m.ticket_id",
    )
    .fetch_all(store.sqlite_pool())
    .await
    .unwrap();
    assert_eq!(
        rules,
        [
            (s["id"].as_str().unwrap().to_string(), "101".into(), "session_code".into()),
            ("n1".into(), "102".into(), "notes_regex".into()),
            ("m1".into(), "103".into(), "manual".into()),
        ]
    );
    let j = redmine.journals(101);
    assert_eq!(j.len(), 3);
    // Vendor text is entity-escaped for Textile/Markdown: read it as rendered.
    let note = &ticketsync::sinks::common::decode_entities(&j[2].notes);
    assert!(j[2].private_notes);
    assert!(note.contains("| download | log.zip | 20.0 KiB |"), "{note}");
    assert!(note.contains("[… cut at 200 of"), "transcript inline and cut: {note}");
    assert!(note.contains("line 0") && !note.contains("line 19"), "{note}");
    let full: String = sqlx::query_scalar(
        "SELECT note_json FROM deliveries WHERE sink = 'webhook' AND kind = 'session_report' AND ticket_id = '101'",
    )
    .fetch_one(store.sqlite_pool())
    .await
    .unwrap();
    assert!(full.contains("line 19"), "the full transcript stays in the store");
    let payload = hook
        .accepted()
        .into_iter()
        .find(|p| p["ticket_id"] == "101" && p["title"].as_str().unwrap().starts_with("Splashtop session"))
        .unwrap();
    let a = &payload["attachments"][0];
    assert_eq!(a["content_type"], "text/plain");
    assert!(a["text"].as_str().unwrap().contains("line 19"), "the webhook gets the whole transcript as an attachment");
    assert_eq!(redmine.journals(102).len(), 1);
    assert_eq!(redmine.journals(103).len(), 1);
}

/// Why transcripts stay inline on Redmine: an upload sent with a private note is split into
/// a separate PUBLIC journal, and the file is readable by anyone who sees the issue. Shown
/// here against the real Redmine so a Redmine that changes this is noticed.
#[tokio::test]
async fn real_redmine_upload_with_private_note_is_public() {
    let Some(ci) = crate::support::redmine_ci() else { return };
    let http = reqwest::Client::new();
    let id = ci.new_issue("upload visibility probe").await;
    let up: Value = http
        .post(format!("{}/uploads.json?filename=chat.txt", ci.url))
        .header("X-Redmine-API-Key", &ci.api_key)
        .header("Content-Type", "application/octet-stream")
        .body("Jane: my password is hunter2")
        .send_json()
        .await;
    let token = up["upload"]["token"].as_str().unwrap();
    let resp = http
        .put(format!("{}/issues/{id}.json", ci.url))
        .header("X-Redmine-API-Key", &ci.api_key)
        .json(&json!({"issue": {"notes": "private note with transcript", "private_notes": true,
            "uploads": [{"token": token, "filename": "chat.txt", "content_type": "text/plain"}]}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let seen: Value = http
        .get(format!("{}/issues/{id}.json?include=attachments,journals", ci.url))
        .header("X-Redmine-API-Key", &ci.customer_api_key)
        .send_json()
        .await;
    let journals = seen["issue"]["journals"].as_array().cloned().unwrap_or_default();
    assert!(journals.iter().all(|j| j["notes"] != "private note with transcript"), "the note itself is private");
    let names: Vec<&str> =
        seen["issue"]["attachments"].as_array().unwrap().iter().filter_map(|a| a["filename"].as_str()).collect();
    assert_eq!(names, ["chat.txt"], "the customer sees the uploaded transcript: uploads are not private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_auth_splashtop_prints_the_url_checks_state_and_stores_tokens() {
    let sim = sim(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ticketsync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = \"{}\"\n[sources.splashtop]\nregion = \"eu\"\nbase_url = \"{u}\"\nconsole_url = \"{u}\"\n\
             auth = \"oauth\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nscopes = [\"logs\", \"psa\"]\n",
            dir.path().join("t.db").display(),
            u = sim.base_url
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = run(&["auth", "splashtop"]);
    assert_eq!(code, Some(0), "{out}");
    let url = out.split_whitespace().find(|w| w.starts_with(&format!("{}/oauth2/authorize?", sim.base_url))).unwrap();
    assert!(url.contains("scope=logs%2Cpsa") && url.contains("state="), "{url}");
    assert!(out.contains("ticketsync auth splashtop --code"), "{out}");

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let loc = http.get(url).send().await.unwrap().headers()["location"].to_str().unwrap().to_string();
    let forged = loc.replace("state=", "state=forged");
    let (code, out) = run(&["auth", "splashtop", "--code", &forged]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("was not issued by this ticketsync"), "{out}");
    let (code, out) = run(&["auth", "splashtop", "--code", &loc]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("splashtop: authorized"), "{out}");
    let (code, out) = run(&["check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sources: splashtop") && out.contains("splashtop: refresh token valid until"), "{out}");
    assert!(!out.contains("st-rt-") && !out.contains("st-at-"), "no token in the output: {out}");
}

#[tokio::test]
async fn fetch_range_reads_one_time_range_page_by_page_without_touching_the_cursor() {
    let sim = sim(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let old = now_s() - TimeDelta::days(40);
    for i in 0..7 {
        let start = old + TimeDelta::minutes(10 * i);
        sim.add_log(log(&format!("old{i}"), start, Some(start + TimeDelta::minutes(5)), None));
    }
    // Outside the range: not read.
    sim.add_log(log("before", old - TimeDelta::days(3), Some(old - TimeDelta::days(3) + TimeDelta::minutes(5)), None));
    sim.add_log(log("after", old + TimeDelta::days(3), Some(old + TimeDelta::days(3) + TimeDelta::minutes(5)), None));
    let src = source(&token_cfg(&sim), &store, 0);

    let (from, to) = (old - TimeDelta::hours(1), old + TimeDelta::days(1));
    let mut ids = Vec::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let p = src.fetch_range(from, to, page.as_deref()).await.unwrap();
        pages += 1;
        ids.extend(p.records.iter().map(|r| r.as_ref().unwrap().external_id.clone()));
        match p.next {
            Some(n) => page = Some(n),
            None => {
                assert_eq!(p.remaining, Some(0));
                break;
            }
        }
        assert!(pages < 10, "runaway paging");
    }
    ids.sort();
    assert_eq!(ids, (0..7).map(|i| format!("old{i}")).collect::<Vec<_>>());
    assert_eq!(pages, 3, "7 logs at 3 per page");
    let reqs = log_requests(&sim);
    assert_eq!(reqs.iter().filter_map(|q| param(q, "page")).collect::<Vec<_>>(), ["1", "2", "3"]);
    assert_eq!(param(&reqs[0], "from").as_deref(), Some(vdate(from).as_str()));
    assert_eq!(count(&store, "SELECT COUNT(*) FROM source_cursors").await, 0, "a read-only range read");
}

/// A working Splashtop source counts as polled: `v_source_health.last_success_at` is set by a
/// finished walk and `/readyz`'s check for it passes (issue 18: it stayed empty for good, so
/// readiness turned 503 after the first schedule and the staleness alert could never fire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_poll_counts_as_a_successful_one_for_readiness() {
    let sim = sim(SimOptions::default()).await;
    for i in 0..5 {
        let start = now_s() - TimeDelta::minutes(60 - i);
        sim.add_log(log(&format!("r{i}"), start, Some(start + TimeDelta::minutes(3)), None));
    }
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[store]\npath = \"{db}\"\n[sources.splashtop]\nbase_url = \"{st}\"\nconsole_url = \"{st}\"\ntoken = \"{TOKEN}\"\npage_size = 2\nschedule = \"*/5 * * * *\"\n",
        db = dir.path().join("t.db").display(),
        st = sim.base_url,
    );
    let config = Config::from_toml_with_env(&toml, "test.toml", Vec::<(String, String)>::new()).expect("config");
    let store = temp_store(dir.path()).await;
    let app = ticketsync::app::App::with_store(config, store.clone()).expect("app");
    // Started an hour ago: without a successful poll since, the source is late.
    let health = ticketsync::health::Health::from_app(&app, Utc::now() - TimeDelta::hours(1)).unwrap();
    let check = |checks: &[(String, bool, String)]| {
        checks.iter().find(|c| c.0 == "source:splashtop").cloned().unwrap_or_else(|| panic!("{checks:?}"))
    };
    assert!(!check(&health.readiness(Utc::now()).await).1, "late before any poll");

    let report = app.cycle().await.unwrap();
    assert_eq!(report.polled[0].1.inserted, 5, "three pages");
    let last: Option<String> =
        sqlx::query_scalar("SELECT last_success_at FROM v_source_health WHERE source = 'splashtop'")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
    assert!(last.is_some(), "the finished walk is a successful poll");
    let c = check(&health.readiness(Utc::now()).await);
    assert!(c.1, "ready after the poll: {c:?}");
    assert!(c.2.contains("last successful poll 20"), "{c:?}");
}
