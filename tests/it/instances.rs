//! Several instances on one store (issue 17, point 2): each source is polled by the holder
//! of its lease only, and when that instance is killed (SIGKILL: no release) another takes
//! the source over at its first scheduled run after the lease's TTL, from the saved cursor:
//! every session stored once, every note delivered once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::Value;

use crate::support::{read_until, spawn_daemon, tv_connection};
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;

const TOKEN: &str = "54213-instancesTokenXyz";
const HOOK_SECRET: &str = "hook-secret-instances";

fn config(dir: &Path, db: &crate::support::TestDb, name: &str, tv: &TeamViewerSim, hook: &WebhookSim) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let text = format!(
        "{store}\n[daemon]\ndelivery_interval_secs = 1\nshared_store = true\ninstance_id = \"{name}\"\nlease_ttl_secs = 5\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [sources.teamviewer]\nbase_url = \"{tv}\"\ntoken = \"{TOKEN}\"\nschedule = \"* * * * *\"\n\n\
         [sinks.webhook]\nurl = \"{hook}\"\nsecret = \"{HOOK_SECRET}\"\n",
        store = db.store_section(),
        tv = tv.base_url,
        hook = hook.url,
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v["fields"][k].as_str().or_else(|| v[k].as_str()).unwrap_or_default()
}

fn json(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok()
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < until, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_polls_a_source_and_another_takes_over_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    // One SQLite file, or a throwaway PostgreSQL database with TICKETSYNC_TEST_STORE.
    let db = crate::support::TestDb::new(dir.path()).await;
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..Default::default() }).await.unwrap();
    let hook = WebhookSim::start(HOOK_SECRET, "X-Ticketsync-Signature").await.unwrap();
    let t0 = Utc::now() - TimeDelta::hours(2);
    for i in 0..3 {
        tv.add_connection(tv_connection(&format!("c{i}"), &format!("code{i}"), &format!("{}", 100 + i), t0));
    }

    // a starts first and takes the source's lease (token 1).
    let (mut a, mut a_log) = spawn_daemon(&config(dir.path(), &db, "a", &tv, &hook));
    let mut seen = Vec::new();
    let token = read_until(&mut a_log, 30, "a takes the lease", &mut seen, |l| {
        let v = json(l)?;
        (field(&v, "message").starts_with("lease taken") && field(&v, "instance") == "a")
            .then(|| v["fields"]["token"].as_i64().or(v["token"].as_i64()))
    })
    .await;
    assert_eq!(token, Some(1));
    read_until(&mut a_log, 30, "a's poll", &mut seen, |l| l.contains("poll finished").then_some(())).await;
    wait_for("a's three notes", 30, || hook.accepted().len() == 3).await;

    // b starts while a holds the lease: b's start-up run is a's.
    let (mut b, mut b_log) = spawn_daemon(&config(dir.path(), &db, "b", &tv, &hook));
    let mut b_seen = Vec::new();
    let b_http = read_until(&mut b_log, 30, "b's listener", &mut b_seen, |l| {
        let v = json(l)?;
        field(&v, "message").starts_with("http listener").then(|| field(&v, "address").to_string())
    })
    .await;
    let holder = read_until(&mut b_log, 30, "b sees a's lease", &mut b_seen, |l| {
        let v = json(l)?;
        field(&v, "message").starts_with("another instance holds").then(|| field(&v, "holder").to_string())
    })
    .await;
    assert_eq!(holder, "a");
    assert!(!b_seen.iter().any(|l| l.contains("poll finished")), "b did not poll: {b_seen:#?}");

    // New sessions upstream; a dies without releasing anything.
    for i in 3..5 {
        tv.add_connection(tv_connection(&format!("c{i}"), &format!("code{i}"), &format!("{}", 100 + i), t0));
    }
    crate::support::signal(&a, nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let _ = a.wait().await;

    // b takes the source at its first scheduled run after the TTL (cron: every minute).
    let token = read_until(&mut b_log, 90, "b takes the lease over", &mut b_seen, |l| {
        let v = json(l)?;
        (field(&v, "message").starts_with("lease taken") && field(&v, "instance") == "b")
            .then(|| v["fields"]["token"].as_i64().or(v["token"].as_i64()))
    })
    .await;
    let failover = killed.elapsed();
    assert_eq!(token, Some(2), "a take-over is a new fencing token");
    read_until(&mut b_log, 60, "b's poll", &mut b_seen, |l| l.contains("poll finished").then_some(())).await;
    wait_for("all five notes", 30, || hook.accepted().len() == 5).await;
    // b's /readyz says who polls what.
    let ready: Value = reqwest::get(format!("http://{b_http}/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["instance"], "b", "{ready}");
    let lease = &ready["leases"][0];
    assert_eq!(
        (lease["name"].as_str(), lease["holder"].as_str(), lease["mine"].as_bool()),
        (Some("source:teamviewer"), Some("b"), Some(true)),
        "{ready}"
    );
    eprintln!(
        "failover: kill -9 of the holder to the take-over's lease: {:.1} s (TTL 5 s, schedule every minute)",
        failover.as_secs_f64()
    );

    // Every session stored once, every note delivered once, the chain intact.
    b.start_kill().unwrap();
    let _ = b.wait().await;
    let tickets: Vec<String> =
        hook.accepted().iter().map(|p| p["ticket_id"].as_str().unwrap_or_default().to_string()).collect();
    let mut unique = tickets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "one note per session: {tickets:?}");
    assert_eq!(hook.duplicates(), 0, "no note sent twice");
    let store = ticketsync::store::Store::connect_read_only(&db.url, None).await.unwrap();
    for i in 0..5 {
        let stored = ticketsync::store::sessions::named(&store, &format!("c{i}"), 5).await.unwrap();
        assert_eq!(stored.len(), 1, "session c{i} stored once");
    }
    match ticketsync::store::audit::verify(&store).await.unwrap() {
        ticketsync::store::audit::Verify::Ok { .. } => {}
        other => panic!("audit chain: {other:?}"),
    }
}
