//! Fault suite additions (the rest lives next to the code it exercises; `faults/run.sh`
//! runs them all): a long ticket-system outage while polls go on, and an auditor's long read
//! transaction during polling and delivery.
//!
//! The outage is "long" in simulated time: between passes every pending delivery is made due
//! at once, so each pass is one more failed attempt, as if its backoff had elapsed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use ticketsync::app::{build_sinks, App};
use ticketsync::config::Config;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;

use crate::faultproxy::{Fault, FaultProxy};
use crate::support::tv_connection;

const SECRET: &str = "faults-webhook-secret";
const HEADER: &str = "X-Ticketsync-Signature";
const TICKETS: [u64; 3] = [501, 502, 503];
const PER_TICKET: usize = 4;

/// Session `i` (0-based, in start order) for ticket `ticket`, ended.
fn record(ticket: u64, i: usize, start: DateTime<Utc>) -> Value {
    let id = format!("cccccccc-{ticket:04}-4000-8000-{i:012}");
    tv_connection(&id, &format!("s{ticket}-{i:03}-001"), &ticket.to_string(), start)
}

fn config(dir: &std::path::Path, tv: &str, hook_url: &str) -> Config {
    let tvf = dir.join("tv");
    std::fs::write(&tvf, "faults-token").unwrap();
    let whf = dir.join("wh");
    std::fs::write(&whf, SECRET).unwrap();
    let text = format!(
        r#"
[store]
path = "{db}"
[outbox]
base_backoff_secs = 1
max_backoff_secs = 30
request_timeout_secs = 5
[sources.teamviewer]
base_url = "{tv}"
schedule = "* * * * *"
token_file = "{tvf}"
initial_lookback_days = 1
[sinks.webhook]
url = "{hook_url}"
secret_file = "{whf}"
signature_header = "{HEADER}"
"#,
        db = dir.join("ts.db").display(),
        tvf = tvf.display(),
        whf = whf.display(),
    );
    let p = dir.join("ticketsync.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p).expect("test config")
}

async fn make_all_due(app: &App) {
    sqlx::query("UPDATE deliveries SET next_attempt_at = ? WHERE state = 'pending'")
        .bind(ticketsync::store::now())
        .execute(app.store.sqlite_pool())
        .await
        .unwrap();
}

/// Connection refused for 30 passes, then 503 for 30 more, while new sessions keep arriving;
/// afterwards every note lands once, in session order per ticket, and no retry was ever
/// scheduled further out than `max_backoff_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_sink_outage_then_everything_delivered_in_order_with_capped_backoff() {
    let tv = TeamViewerSim::start(SimOptions {
        script_tokens: vec!["faults-token".into()],
        page_size: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let hook = WebhookSim::start(SECRET, HEADER).await.unwrap();
    let proxy = FaultProxy::start(&hook.url).await;
    // A port nothing listens on: connection refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &tv.base_url, &dead);
    let mut app = App::build(cfg.clone()).await.unwrap();

    let t0 = Utc::now() - TimeDelta::hours(6);
    let mut added = 0usize;
    let mut add_round = |tv: &TeamViewerSim| {
        // One new session per ticket per round, starting in order.
        if added < PER_TICKET {
            for (k, ticket) in TICKETS.iter().enumerate() {
                let start = t0 + TimeDelta::minutes((added * 10 + k) as i64);
                tv.add_connection(record(*ticket, added, start));
            }
            added += 1;
        }
    };

    let mut refused_attempts = 0u64;
    for _ in 0..30 {
        add_round(&tv);
        let r = app.cycle().await.expect("a cycle during the outage still polls");
        assert_eq!(r.delivered.delivered, 0);
        refused_attempts += r.delivered.retrying;
        make_all_due(&app).await;
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(app.store.sqlite_pool()).await.unwrap();
    assert_eq!(stored as usize, TICKETS.len() * PER_TICKET, "polls went on during the outage");

    // The ticket system answers again, but with 503 for a while.
    let mut sink_cfg = cfg.clone();
    sink_cfg.sinks.webhook.as_mut().unwrap().url = format!("{}/hook", proxy.base_url);
    app.sinks = Arc::new(build_sinks(&sink_cfg).unwrap());
    // 30 passes of 503s: one attempt per ticket per pass (a ticket's notes go in order, one at a time).
    for _ in 0..30 * TICKETS.len() {
        proxy.push(Fault::status(503, &[], "maintenance"));
    }
    let mut unavailable_attempts = 0u64;
    for _ in 0..30 {
        let r = app.cycle().await.unwrap();
        unavailable_attempts += r.delivered.retrying;
        make_all_due(&app).await;
    }
    assert!(hook.accepted().is_empty(), "nothing got through the 503s");
    assert_eq!(proxy.queued_faults(), 0);
    for _ in 0..20 {
        let r = app.cycle().await.unwrap();
        make_all_due(&app).await;
        if r.delivered.attempted == 0 {
            break;
        }
    }

    // Exactly once, and in session order per ticket.
    let accepted = hook.accepted();
    let mut per_ticket: HashMap<String, Vec<String>> = HashMap::new();
    for p in &accepted {
        let ticket = p["ticket_id"].as_str().unwrap().to_string();
        per_ticket.entry(ticket).or_default().push(p["marker"].as_str().unwrap().to_string());
    }
    let expected: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.ticket_id, d.marker FROM deliveries d JOIN sessions s ON s.id = d.session_id ORDER BY s.started_at",
    )
    .fetch_all(app.store.sqlite_pool())
    .await
    .unwrap();
    let mut want: HashMap<String, Vec<String>> = HashMap::new();
    for (t, m) in expected {
        want.entry(t).or_default().push(m);
    }
    let lost = want.values().flatten().filter(|m| !accepted.iter().any(|p| p["marker"] == m.as_str())).count();
    let duplicates = accepted.len()
        - accepted.iter().map(|p| p["marker"].to_string()).collect::<std::collections::HashSet<_>>().len();

    // Backoff: no retry scheduled further out than max_backoff_secs (30) after its attempt.
    let retries: Vec<(String, String)> =
        sqlx::query_as("SELECT at, detail_json FROM audit_events WHERE kind = 'delivery_retry_scheduled'")
            .fetch_all(app.store.sqlite_pool())
            .await
            .unwrap();
    let mut longest = Duration::ZERO;
    for (at, detail) in &retries {
        let at: DateTime<Utc> = at.parse().unwrap();
        let d: Value = serde_json::from_str(detail).unwrap();
        let next: DateTime<Utc> = d["next_attempt_at"].as_str().unwrap().parse().unwrap();
        longest = longest.max((next - at).to_std().unwrap_or_default());
    }
    println!(
        "sink outage: {refused_attempts} refused + {unavailable_attempts} 503 attempts over {} retries; {} notes, lost {lost}, \
         duplicates {duplicates}, {} receiver repeats, longest backoff {:?} (cap 30 s)",
        retries.len(),
        accepted.len(),
        hook.duplicates(),
        longest
    );
    assert_eq!((lost, duplicates), (0, 0));
    assert_eq!(per_ticket, want, "every ticket got its notes in session order");
    assert!(refused_attempts >= 30 && unavailable_attempts >= 30, "the outage was exercised");
    assert!(longest <= Duration::from_secs(31), "backoff capped at max_backoff_secs: {longest:?}");
    assert!(longest >= Duration::from_secs(15), "backoff grew towards the cap: {longest:?}");
    tv.shutdown().await;
}

/// An auditor holds a read transaction open (WAL: readers never block the writer) while a
/// poll and a delivery pass run; both finish and the audit chain stays intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditors_long_read_transaction_does_not_stop_polling_or_delivery() {
    let tv = TeamViewerSim::start(SimOptions {
        script_tokens: vec!["faults-token".into()],
        page_size: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let hook = WebhookSim::start(SECRET, HEADER).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &tv.base_url, &hook.url);
    let app = App::build(cfg).await.unwrap();
    let t0 = Utc::now() - TimeDelta::hours(3);
    for i in 0..PER_TICKET {
        tv.add_connection(record(TICKETS[0], i, t0 + TimeDelta::minutes(i as i64 * 10)));
    }
    app.cycle().await.unwrap();

    // The auditor: sqlite3-style reader on its own connection, a transaction left open.
    let db = dir.path().join("ts.db");
    let auditor = auditor_reader(&db).await;
    for i in PER_TICKET..PER_TICKET * 3 {
        tv.add_connection(record(TICKETS[1], i, t0 + TimeDelta::minutes(i as i64 * 10)));
    }
    let r = tokio::time::timeout(Duration::from_secs(15), app.cycle()).await.expect("not blocked").unwrap();
    assert_eq!(r.polled[0].1.inserted as usize, PER_TICKET * 2);
    assert_eq!(r.delivered.delivered as usize, PER_TICKET * 2);
    drop(auditor);

    crate::support::assert_db_sound(app.store.sqlite_pool(), &db).await;
    println!(
        "auditor read transaction: {} sessions stored and {} notes delivered meanwhile",
        PER_TICKET * 2,
        PER_TICKET * 2
    );
    tv.shutdown().await;
}

/// A connection with a read transaction open on a snapshot (kept open until dropped).
async fn auditor_reader(db: &std::path::Path) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
    use sqlx::sqlite::SqliteConnectOptions;
    let pool = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(db).read_only(true)).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&mut *conn).await.unwrap();
    assert!(n > 0);
    conn
}
