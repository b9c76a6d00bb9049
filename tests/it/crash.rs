//! Crash test: the real daemon killed with SIGKILL at random moments while it pages
//! through TeamViewer reports and Splashtop session logs and posts notes, restarted each
//! time; at the end every session is stored once and every note is on its ticket once.
//!
//! `TICKETSYNC_CRASH_RUNS` sets the number of kills (default 12 here; the long fault
//! suite runs 100+).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::{Rng, SeedableRng};
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::splashtop::{SimOptions as StSimOptions, SplashtopSim};
use ticketsync::sim::teamviewer::{Fault, SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;

const TV_RECORDS: usize = 400;
const ST_RECORDS: usize = 150;
const RECORDS: usize = TV_RECORDS + ST_RECORDS;

fn write_config(dir: &std::path::Path, tv: &str, st: &str, rm: &str, wh: &str) -> std::path::PathBuf {
    let secret = |name: &str, v: &str| {
        let p = dir.join(name);
        std::fs::write(&p, v).unwrap();
        p
    };
    let tvf = secret("tv", "crash-token");
    let stf = secret("st", "crash-st-token");
    let rmf = secret("rm", "crash-key");
    let whf = secret("wh", "crash-secret");
    let cfg = format!(
        r##"
[store]
path = "{db}"
[daemon]
delivery_interval_secs = 1
shutdown_grace_secs = 2
[outbox]
base_backoff_secs = 1
max_backoff_secs = 2
request_timeout_secs = 5
[sources.teamviewer]
base_url = "{tv}"
schedule = "* * * * *"
token_file = "{tvf}"
initial_lookback_days = 3
[sources.splashtop]
base_url = "{st}"
console_url = "{st}"
schedule = "* * * * *"
token_file = "{stf}"
page_size = 10
initial_lookback_days = 3
[[match.rules]]
kind = "custom_api"
[[match.rules]]
kind = "notes_regex"
pattern = "#(\\d+)"
[sinks.redmine]
url = "{rm}"
api_key_file = "{rmf}"
time_entries = true
time_activity_id = 9
time_merge_gap_minutes = 0
[sinks.webhook]
url = "{wh}"
secret_file = "{whf}"
"##,
        db = dir.join("crash.db").display(),
        tvf = tvf.display(),
        stf = stf.display(),
        rmf = rmf.display(),
        whf = whf.display(),
    );
    let p = dir.join("ticketsync.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn spawn(cfg: &std::path::Path, log: &std::path::Path) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
        .args(["run", "--config"])
        .arg(cfg)
        .env("TICKETSYNC_LOG", "info,ticketsync_sources=debug")
        .env(crate::support::TEST_LISTEN.0, crate::support::TEST_LISTEN.1)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ticketsync run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_page_and_mid_delivery_loses_nothing_and_posts_nothing_twice() {
    let runs: usize = std::env::var("TICKETSYNC_CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let tv = TeamViewerSim::start(SimOptions {
        script_tokens: vec!["crash-token".into()],
        page_size: 25,
        ..Default::default()
    })
    .await
    .unwrap();
    tv.generate(TV_RECORDS, 7, Utc::now() - chrono::Duration::hours(30));
    let st = SplashtopSim::start(StSimOptions { api_tokens: vec!["crash-st-token".into()], ..Default::default() })
        .await
        .unwrap();
    st.generate(ST_RECORDS, 11, Utc::now() - chrono::Duration::hours(20));
    st.push_fault(ticketsync::sim::splashtop::Fault {
        path_prefix: "/api/open/v1/teams/123456/logs/sessions".into(),
        times: 100_000,
        status: 0,
        delay: Some(Duration::from_millis(40)),
        ..Default::default()
    });
    // Slow pages so kills land mid-walk; every other page answers at once, so it is often
    // fetched before its predecessor is written and the two share a transaction: kills land
    // inside multi-page transactions too.
    for i in 0..4000 {
        tv.push_fault(Fault {
            path_prefix: "/api/v1/reports/connections".into(),
            times: 1,
            status: 0,
            delay: Some(Duration::from_millis(if i % 2 == 0 { 80 } else { 0 })),
            ..Default::default()
        });
    }
    let redmine = RedmineSim::start("crash-key", &[]).await.unwrap();
    redmine.add_issues(10_000..11_000);
    // Slow answers after the note is applied: kills land in the duplicate window.
    redmine.set_delay(Duration::from_millis(60));
    let hook = WebhookSim::start("crash-secret", "X-Ticketsync-Signature").await.unwrap();
    let cfg = write_config(dir.path(), &tv.base_url, &st.base_url, &redmine.base_url, &hook.url);
    let log = dir.path().join("daemon.log");

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut killed_with_sending = 0;
    for _ in 0..runs {
        let mut child = spawn(&cfg, &log);
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..1800))).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        if let Ok(store) = ticketsync::store::Store::open_read_only(&dir.path().join("crash.db")).await {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'sending'")
                .fetch_one(store.sqlite_pool())
                .await
                .unwrap_or(0);
            if n > 0 {
                killed_with_sending += 1;
            }
            store.close().await;
        }
    }

    // Final run: let it finish everything, then stop it with SIGTERM.
    let log_len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
    let mut child = spawn(&cfg, &log);
    let ready_by = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap_or_default().get(log_len..).unwrap_or("").contains("ticketsync running")
    {
        assert!(Instant::now() < ready_by, "final daemon never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = loop {
        if let Ok(s) = ticketsync::store::Store::open_read_only(&dir.path().join("crash.db")).await {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let sessions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(store.sqlite_pool()).await.unwrap_or(0);
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state IN ('pending','sending')")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap_or(1);
        let to_match: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions s LEFT JOIN matches m ON m.session_id = s.id WHERE m.session_id IS NULL AND s.match_checked_rev IS NULL",
        )
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap_or(1);
        let cursors: Vec<String> =
            sqlx::query_scalar("SELECT cursor_json FROM source_cursors WHERE source IN ('teamviewer', 'splashtop')")
                .fetch_all(store.sqlite_pool())
                .await
                .unwrap_or_default();
        let walk_done = cursors.len() == 2 && cursors.iter().all(|c| c.contains("\"walk\":null"));
        // Every matched session's time entry decided (issue 20), and delivered above.
        let time_open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM time_sessions WHERE state = 'open'")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap_or(1);
        if sessions as usize == RECORDS && open == 0 && to_match == 0 && walk_done && time_open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not finish: sessions={sessions} open deliveries={open} to_match={to_match}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "SIGTERM exit status {status:?}");

    // Every session stored exactly once.
    let (n, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT vendor || ':' || external_id) FROM sessions")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!((n as usize, distinct as usize), (RECORDS, RECORDS));
    let st_sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE vendor = 'splashtop'")
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(st_sessions as usize, ST_RECORDS);
    let st_matched: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM matches m JOIN sessions s ON s.id = m.session_id WHERE s.vendor = 'splashtop'",
    )
    .fetch_one(store.sqlite_pool())
    .await
    .unwrap();
    assert_eq!(st_matched as usize, ST_RECORDS.div_ceil(3), "every Splashtop log with a ticket reference matched");

    // Every expected note on its ticket exactly once, nothing unexpected.
    let deliveries: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT sink, ticket_id, marker, state FROM deliveries WHERE kind <> 'time_entry'")
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
    let matched_with_ref: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE custom_api IS NOT NULL")
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    let matched: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM matches").fetch_one(store.sqlite_pool()).await.unwrap();
    assert!(matched >= matched_with_ref && matched > 50, "matched {matched} of {matched_with_ref} with custom_api");
    assert_eq!(deliveries.len() as i64, matched * 2, "one delivery per sink per match");
    let vanished: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE vanished_at IS NOT NULL")
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(vanished, 0, "no report was deleted upstream");
    let mut lost = 0;
    let mut duplicates = 0;
    let mut per_marker: HashMap<String, usize> = HashMap::new();
    for t in 10_000..11_000u64 {
        for j in redmine.journals(t) {
            let m = j.notes.lines().last().unwrap_or("").trim_start_matches("ticketsync-marker: ").to_string();
            *per_marker.entry(format!("{t}:{m}")).or_default() += 1;
        }
    }
    for (sink, ticket, marker, state) in &deliveries {
        assert_eq!(state, "delivered", "{sink} {ticket} {marker}");
        if sink == "redmine" {
            match per_marker.get(&format!("{ticket}:{marker}")).copied().unwrap_or(0) {
                0 => lost += 1,
                1 => {}
                _ => duplicates += 1,
            }
        }
    }
    let redmine_notes: usize = per_marker.values().sum();
    let webhook_accepted = hook.accepted().len();
    // TeamViewer pages that shared a transaction (the walks the kills interrupted included).
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let commits: Vec<&str> = log_text.lines().filter(|l| l.contains("page transaction committed")).collect();
    let multi = commits.iter().filter(|l| !l.contains("pages=1 ")).count();
    assert!(multi > 0, "no two TeamViewer pages ever shared a transaction: {:?}", &commits[..commits.len().min(5)]);
    println!(
        "crash test: TeamViewer page transactions: {} committed, {multi} of them with several pages",
        commits.len()
    );
    println!(
        "crash test: {runs} SIGKILLs ({killed_with_sending} left a delivery in 'sending'); {RECORDS} sessions \
         ({TV_RECORDS} TeamViewer, {ST_RECORDS} Splashtop) stored once; {matched} matched ({st_matched} Splashtop) ({matched_with_ref} by custom_api); redmine notes {redmine_notes}, lost {lost}, duplicates {duplicates}; webhook accepted {webhook_accepted} (receiver dropped {} repeats)",
        hook.duplicates()
    );
    assert_eq!((lost, duplicates), (0, 0));
    assert_eq!(redmine_notes as i64, matched, "no note on a ticket without a delivery");
    // Time entries (issue 20) went through the same kills: each delivered exactly once.
    let entries: Vec<(String, String, String)> =
        sqlx::query_as("SELECT ticket_id, marker, state FROM deliveries WHERE kind = 'time_entry'")
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
    let counted: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(sessions), 0) FROM time_entries")
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(counted, matched, "every session matched to Redmine counted in one entry");
    let on_redmine = redmine.time_entries();
    let (mut time_lost, mut time_twice) = (0, 0);
    for (ticket, marker, state) in &entries {
        assert_eq!(state, "delivered", "time entry {ticket} {marker}");
        let n = on_redmine
            .iter()
            .filter(|e| e.issue.to_string() == *ticket && ticketsync::time_entry::ends_with_marker(&e.comments, marker))
            .count();
        match n {
            0 => time_lost += 1,
            1 => {}
            _ => time_twice += 1,
        }
    }
    println!(
        "crash test: {} time entries for {counted} sessions; on Redmine {}, lost {time_lost}, twice {time_twice}",
        entries.len(),
        on_redmine.len()
    );
    assert_eq!((time_lost, time_twice), (0, 0));
    assert_eq!(on_redmine.len(), entries.len(), "no time entry without a delivery");
    assert_eq!(webhook_accepted as i64, matched);
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.sqlite_pool()).await.unwrap();
    assert_eq!(ok, "ok");
    match ticketsync::store::audit::verify(&store).await.unwrap() {
        ticketsync::store::audit::Verify::Ok { rows, .. } => assert!(rows > RECORDS as u64),
        broken => panic!("audit chain broken: {broken:?}"),
    }
}
