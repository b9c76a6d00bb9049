//! `SIGHUP` re-reads the configuration of a running daemon (issue 18, point 6): the new sink
//! takes the next notes, a source on a new schedule polls at once, a broken file is refused
//! while the daemon goes on, and `[store]` changes wait for a restart.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;

const TOKEN: &str = "54213-ReloadTokenAbCdEf01";
const SECRET: &str = "hook-secret-reload";

fn connection(id: &str, ticket: &str) -> Value {
    let start = Utc::now() - chrono::Duration::minutes(30);
    let d = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "id": id, "userid": "u11293276", "username": "Jon Snow", "deviceid": "1234567890",
        "start_date": d(start), "end_date": d(start + chrono::Duration::minutes(15)),
        "support_session_type": 1, "custom_api": format!("{{\"ticket_id\":\"{ticket}\"}}")
    })
}

fn write_config(path: &Path, db: &Path, tv: &TeamViewerSim, hook: &WebhookSim, schedule: &str, extra: &str) {
    std::fs::write(
        path,
        format!(
            "[store]\npath = \"{db}\"\n\n[daemon]\ndelivery_interval_secs = 1\n\n[sources.teamviewer]\nbase_url = \"{tv}\"\ntoken = \"{TOKEN}\"\nschedule = \"{schedule}\"\n\n\
             [sinks.webhook]\nurl = \"{hook}\"\nsecret = \"{SECRET}\"\n{extra}",
            db = db.display(),
            tv = tv.base_url,
            hook = hook.url,
        ),
    )
    .unwrap();
}

/// Wait (bounded) for a log line whose message contains `what`; returns the line.
async fn wait_log(lines: &mut mpsc::UnboundedReceiver<Value>, what: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(v) = lines.recv().await {
            if v["message"].as_str().is_some_and(|m| m.contains(what)) {
                return v;
            }
        }
        panic!("the daemon exited before logging {what:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no log line {what:?} in 30 s"))
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 30 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_switches_sinks_and_schedules_and_refuses_a_broken_file() {
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..Default::default() }).await.unwrap();
    let a = WebhookSim::start(SECRET, "X-Ticketsync-Signature").await.unwrap();
    let b = WebhookSim::start(SECRET, "X-Ticketsync-Signature").await.unwrap();
    tv.add_connection(connection("0755a8dd-df19-4ea7-af47-cabb6b2a97e4", "101"));
    let dir = tempfile::tempdir().unwrap();
    let (cfg, db) = (dir.path().join("ticketsync.toml"), dir.path().join("t.db"));
    write_config(&cfg, &db, &tv, &a, "*/5 * * * *", "");

    let (mut child, mut stderr) = crate::support::spawn_daemon(&cfg);
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    let (tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(l)) = stderr.next_line().await {
            let v: Value = serde_json::from_str(&l).unwrap_or_else(|_| json!({"message": l}));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    wait_until("the first note on webhook A", || a.accepted().len() == 1).await;

    // A new sink URL and a new schedule: the source polls at once, the note goes to B only.
    tv.add_connection(connection("5ae6d2a9-57e9-4c62-b236-280390954b6f", "102"));
    write_config(&cfg, &db, &tv, &b, "*/4 * * * *", "");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_log(&mut lines, "configuration reloaded").await;
    wait_until("the second note on webhook B", || b.accepted().len() == 1).await;
    assert_eq!(b.accepted()[0]["ticket_id"], "102", "{:?}", b.accepted());
    assert_eq!(a.accepted().len(), 1, "nothing more to the old sink");

    // A broken file is refused, naming the key; the daemon goes on with what runs.
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("[daemon]", "[daemon]\nbogus_key = 1"))
        .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let refused = wait_log(&mut lines, "configuration reload refused").await;
    assert!(refused.to_string().contains("bogus_key"), "{refused}");

    // [store] needs a restart: said so, and the running database stays in use.
    let elsewhere = dir.path().join("other.db");
    write_config(&cfg, &elsewhere, &tv, &b, "*/4 * * * *", "");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let warned = wait_log(&mut lines, "takes effect at the next restart").await;
    assert_eq!(warned["section"], "[store]", "{warned}");
    wait_log(&mut lines, "configuration reloaded").await;
    tv.add_connection(connection("9f3b1c2e-1111-4ea7-af47-cabb6b2a97e4", "103"));
    // Same schedule as before: no poll at once after this reload; the note for 103 waits for
    // the schedule, so nothing new is expected here. What matters: still alive and ready.
    assert!(!elsewhere.exists(), "the running database stays in use until a restart");
    assert!(child.try_wait().unwrap().is_none(), "still running");

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(b.accepted().len(), 1);
}
