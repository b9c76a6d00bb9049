//! Big backlogs: what a claim costs with many notes pending, and a Retry-After storm.
//! Figures are printed, never asserted on time (the GUIDE: benchmarks print, tests assert
//! behaviour). `TICKETSYNC_BACKLOG_N` sets the backlog (CI default is small; the long
//! fault run uses 100 000).

use std::time::Instant;

use ticketsync::store::{outbox, Store};

use super::support::temp_store;

/// The backlog size for these checks: `TICKETSYNC_BACKLOG_N`, else `default`.
pub fn backlog_n(default: usize) -> usize {
    std::env::var("TICKETSYNC_BACKLOG_N").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Queue `pending` notes for sink `sink` spread over `tickets` tickets (ids from 1001), after
/// `delivered` already delivered ones on the same tickets, in one statement: the outbox as a
/// long outage or a first run over a big history leaves it. Each note is a real `Note`.
pub async fn seed(store: &Store, sink: &str, pending: usize, delivered: usize, tickets: usize) {
    let now = ticketsync::store::now();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO deliveries (sink, ticket_id, kind, marker, note_json, state, attempts, next_attempt_at, created_at, updated_at, delivered_at)
         SELECT ?2, CAST(1001 + (i % ?3) AS TEXT), 'session_report', 'tsd:v1:bench:' || i || ':report',
                json_object('title', 'Bench note ' || i, 'fields', json('[]'), 'links', json('[]'), 'body', NULL,
                            'attachments', json('[]'), 'visibility', 'internal', 'marker', 'tsd:v1:bench:' || i || ':report'),
                CASE WHEN i <= ?4 THEN 'delivered' ELSE 'pending' END, CASE WHEN i <= ?4 THEN 1 ELSE 0 END,
                ?5, ?5, ?5, CASE WHEN i <= ?4 THEN ?5 END
         FROM n",
    )
    .bind((pending + delivered) as i64)
    .bind(sink)
    .bind(tickets as i64)
    .bind(delivered as i64)
    .bind(&now)
    .execute(store.sqlite_pool())
    .await
    .unwrap();
}

/// A claim of 16 at the backlog size: its time is printed (before/after figures in
/// docs/delivery.md), and per-ticket order is checked: a claim never takes two notes of one
/// ticket, nor a note with an earlier undelivered one on its ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_claim_cost_and_order() {
    let n = backlog_n(5_000);
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    seed(&store, "redmine", n, n / 2, (n / 20).max(1)).await;
    let mut times = Vec::new();
    let mut claimed_ids = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let got = outbox::claim_due(&store, 16).await.unwrap();
        times.push(t.elapsed());
        let mut tickets: Vec<&str> = got.iter().map(|d| d.ticket_id.as_str()).collect();
        tickets.sort();
        let before = tickets.len();
        tickets.dedup();
        assert_eq!(before, tickets.len(), "two notes of one ticket in one claim");
        for d in &got {
            let older: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM deliveries WHERE sink = ? AND ticket_id = ? AND id < ? AND state IN ('pending', 'sending')",
            )
            .bind(&d.sink)
            .bind(&d.ticket_id)
            .bind(d.id)
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
            assert_eq!(older, 0, "delivery {} claimed before an older note on ticket {}", d.id, d.ticket_id);
        }
        claimed_ids.extend(got.iter().map(|d| d.id));
    }
    assert_eq!(claimed_ids.len(), 80, "80 distinct heads in 5 claims of 16");
    let ms: Vec<String> = times.iter().map(|t| format!("{:.2}", t.as_secs_f64() * 1000.0)).collect();
    println!("backlog claim: {n} pending, {} delivered: claim of 16 took [{}] ms", n / 2, ms.join(", "));
}

// ---------------------------------------------------------------------------------------
// Delivery at a backlog, against the Redmine simulator

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use ticketsync::config::OutboxConfig;
use ticketsync::pipeline::{deliver_due, DeliverStats, DeliveryPolicy, Sinks};
use ticketsync::sim::redmine::{RedmineSim, SimRequest};
use ticketsync::sinks::redmine::RedmineSink;
use ticketsync::sinks::TicketSink;

const KEY: &str = "backlog-redmine-key";

fn redmine_sinks(sim: &RedmineSim) -> Sinks {
    let sink: Arc<dyn TicketSink> = Arc::new(RedmineSink::new(
        "redmine",
        &sim.base_url,
        SecretString::from(KEY.to_string()),
        true,
        ticketsync::http::client(Duration::from_secs(30)),
    ));
    Arc::new(HashMap::from([("redmine".to_string(), sink)]))
}

fn policy(concurrency: Option<usize>) -> DeliveryPolicy {
    let p = DeliveryPolicy::from_config(&OutboxConfig { base_backoff_secs: 1, ..Default::default() });
    match concurrency {
        Some(c) => p.with_sink_concurrency(HashMap::from([("redmine".to_string(), c)])),
        None => p,
    }
}

async fn open_count(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'sending')")
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap()
}

/// Delivery passes until nothing is pending (as the daemon runs them, a short pause when a
/// pass had nothing it could send, e.g. during a hold). Bounded by passes, not by time.
async fn drain(store: &Store, sinks: &Sinks, policy: &DeliveryPolicy) -> DeliverStats {
    let mut total = DeliverStats::default();
    for _ in 0..20_000 {
        let s = deliver_due(store, sinks, policy).await.unwrap();
        total.attempted += s.attempted;
        total.delivered += s.delivered;
        total.found_existing += s.found_existing;
        total.retrying += s.retrying;
        total.failed += s.failed;
        total.dead += s.dead;
        if open_count(store).await == 0 {
            return total;
        }
        if s.attempted == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("the backlog did not drain: {total:?}");
}

/// Every seeded note is on its ticket exactly once, and each ticket's notes are in queue order.
fn assert_each_note_once_in_order(sim: &RedmineSim, pending: usize, delivered: usize, tickets: usize) -> usize {
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for t in 0..tickets {
        let issue = 1001 + t as u64;
        let mut last = 0;
        for j in sim.journals(issue) {
            let i: usize = j
                .notes
                .rsplit("tsd:v1:bench:")
                .next()
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no marker in journal {j:?}"));
            assert!(i > last, "issue {issue}: note {i} landed after note {last}");
            last = i;
            *seen.entry(i).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "notes posted twice: {twice:?}");
    let lost: Vec<usize> = (delivered + 1..=delivered + pending).filter(|i| !seen.contains_key(i)).collect();
    assert!(lost.is_empty(), "{} notes lost, first {:?}", lost.len(), &lost[..lost.len().min(5)]);
    seen.len()
}

/// For each 429 with `Retry-After: s` the simulator answered at t0: the requests that reached
/// it between t0 and t0 + s (any issue).
fn requests_during_holds(log: &[SimRequest]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, r) in log.iter().enumerate() {
        let Some(secs) = r.retry_after.filter(|_| r.status == 429) else { continue };
        let end = r.at + Duration::from_secs(secs);
        let during = log[i + 1..].iter().take_while(|o| o.at < end).count();
        out.push((i, during));
    }
    out
}

/// A Retry-After storm on one issue holds every issue of that Redmine: after the 429 on
/// issue 1001, not one request reaches the simulator until its Retry-After is over, though
/// many other issues have notes waiting; then everything lands once, in order. One note in
/// flight at a time, so every request after the 429 was sent knowing of it (exact count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redmine_retry_after_holds_every_issue_of_the_system() {
    let tickets = 40;
    let sim = RedmineSim::start(KEY, &(1001..1001 + tickets as u64).collect::<Vec<_>>()).await.unwrap();
    sim.throttle_issue(1001, 2, 1);
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    seed(&store, "redmine", 200, 0, tickets).await;
    let sinks = redmine_sinks(&sim);
    let stats = drain(&store, &sinks, &policy(Some(1))).await;
    let log = sim.requests();
    let holds = requests_during_holds(&log);
    assert_eq!(holds.len(), 1, "one 429 answered");
    let (at, during) = holds[0];
    println!(
        "retry-after storm (1 issue, Retry-After 2 s, concurrency 1): {} requests before the 429, {during} during the hold, {} after; {stats:?}",
        at,
        log.len() - at - 1 - during
    );
    assert_eq!(during, 0, "requests reached Redmine during its Retry-After hold");
    assert!(log.len() > at + 1, "delivery resumed after the hold");
    assert_eq!(assert_each_note_once_in_order(&sim, 200, 0, tickets), 200);
    println!("retry-after storm: 200 notes, early requests 0, lost 0, duplicates 0");
}

/// The fault suite's backlog case: `TICKETSYNC_BACKLOG_N` notes pending (CI: 5 000; the long
/// run: 100 000) at the default concurrency while Redmine answers every n-th PUT with 429 and
/// `Retry-After: 1` (five storms). During each hold only the requests already on the wire
/// when the 429 was answered may arrive (at most concurrency - 1); nothing lost, nothing
/// twice, every ticket in queue order. Prints notes/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_under_retry_after_storm() {
    let n = backlog_n(5_000);
    let tickets = (n / 10).max(1);
    let sim = RedmineSim::start(KEY, &(1001..1001 + tickets as u64).collect::<Vec<_>>()).await.unwrap();
    sim.throttle_every_nth_put((n / 5).max(50), 1);
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    seed(&store, "redmine", n, n / 10, tickets).await;
    let sinks = redmine_sinks(&sim);
    let policy = policy(None);
    let t = Instant::now();
    let stats = drain(&store, &sinks, &policy).await;
    let wall = t.elapsed();
    let log = sim.requests();
    let holds = requests_during_holds(&log);
    let in_flight = policy.concurrency_for("redmine") - 1;
    let early: usize = holds.iter().map(|(_, d)| d.saturating_sub(in_flight)).sum();
    println!(
        "backlog storm: {n} pending over {tickets} tickets, {} holds, requests arriving during them {:?} (in flight allowed {in_flight}), early requests {early}; {} requests in {:.1} s ({:.0} notes/s, debug build); {stats:?}",
        holds.len(),
        holds.iter().map(|(_, d)| *d).collect::<Vec<_>>(),
        log.len(),
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    assert!(!holds.is_empty(), "the storm happened");
    assert_eq!(early, 0, "requests sent to Redmine during a Retry-After hold");
    // The seeded 'delivered' notes were never sent: only the pending ones are on the tickets.
    assert_eq!(assert_each_note_once_in_order(&sim, n, n / 10, tickets), n);
    println!("backlog storm: {n} pending, early requests 0, lost 0, duplicates 0");
}

/// Delivery rate at a backlog with a sink answering in ~1 ms: printed from the first note to
/// the last in tenths, to show it is flat (no timed assertion; bench/delivery.sh measures the
/// release binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_delivery_rate_is_printed_by_tenths() {
    let n = backlog_n(5_000);
    let tickets = (n / 10).max(1);
    let sim = RedmineSim::start(KEY, &(1001..1001 + tickets as u64).collect::<Vec<_>>()).await.unwrap();
    sim.set_delay(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    seed(&store, "redmine", n, n / 2, tickets).await;
    let sinks = redmine_sinks(&sim);
    // TICKETSYNC_BACKLOG_CONCURRENCY: compare settings (how the default was chosen).
    let conc = std::env::var("TICKETSYNC_BACKLOG_CONCURRENCY").ok().and_then(|v| v.parse().ok());
    let policy = |_: Option<usize>| self::policy(conc);
    let t = Instant::now();
    let stats = deliver_due(&store, &sinks, &policy(None)).await.unwrap();
    let wall = t.elapsed();
    assert_eq!(stats.delivered as usize, n, "{stats:?}");
    let puts: Vec<Instant> =
        sim.requests().iter().filter(|r| r.method == "PUT" && r.status == 204).map(|r| r.at).collect();
    let tenth = (n / 10).max(1);
    let mut rates = Vec::new();
    let mut from = t;
    for chunk in puts.chunks(tenth) {
        let to = *chunk.last().expect("chunks are not empty");
        rates.push(format!("{:.0}", chunk.len() as f64 / (to - from).as_secs_f64().max(1e-6)));
        from = to;
    }
    println!(
        "backlog delivery: {n} pending ({} delivered before), sink 1 ms, concurrency {}: {:.1} s, {:.0} notes/s; by tenths [{}] notes/s (debug build)",
        n / 2,
        policy(None).concurrency_for("redmine"),
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        rates.join(", ")
    );
    assert_eq!(assert_each_note_once_in_order(&sim, n, n / 2, tickets), n);
}

/// The claim reads the heads' partial index and sorts nothing; the plan is printed for
/// docs/delivery.md.
#[tokio::test]
async fn claim_plan_uses_the_heads_index_without_a_sort() {
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", outbox::CLAIM_SQL))
        .bind("redmine")
        .bind("9999")
        .bind(16)
        .fetch_all(store.sqlite_pool())
        .await
        .unwrap();
    let text: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
    println!("claim plan: {text:?}");
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].starts_with("SEARCH deliveries USING INDEX deliveries_heads (sink=? AND next_attempt_at<?)"),
        "{text:?}"
    );
    assert!(!text.iter().any(|t| t.contains("TEMP B-TREE")), "{text:?}");
}

/// Heads follow every state change: delivered or failed, the next note of the ticket heads
/// the queue; a requeued older note heads it again (queue order), in the same transaction.
#[tokio::test]
async fn queue_heads_follow_fail_deliver_and_requeue() {
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    seed(&store, "redmine", 3, 0, 1).await;
    seed(&store, "webhook", 1, 0, 1).await;
    let heads = |store: &Store| {
        let pool = store.sqlite_pool().clone();
        async move {
            sqlx::query_as::<_, (String, i64, String)>(
                "SELECT sink, id, state FROM deliveries WHERE is_head = 1 ORDER BY sink, id",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(heads(&store).await, [("redmine".into(), 1, "pending".into()), ("webhook".into(), 4, "pending".into())]);
    let got = outbox::claim_due(&store, 10).await.unwrap();
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 4], "one head per (sink, ticket)");
    outbox::finish(&store, &got[0], &outbox::Outcome::Failed { error: "x".into() }).await.unwrap();
    assert_eq!(heads(&store).await[0], ("redmine".into(), 2, "pending".into()));
    assert_eq!(outbox::claim_due(&store, 10).await.unwrap().iter().map(|d| d.id).collect::<Vec<_>>(), [2]);
    // The failed note is requeued while note 2 is in flight: it is older, so it heads again.
    outbox::requeue(&store, 1).await.unwrap();
    assert_eq!(heads(&store).await[0], ("redmine".into(), 1, "pending".into()));
    let d2 = outbox::get(&store, 2).await.unwrap().unwrap();
    outbox::finish(&store, &d2, &outbox::Outcome::Delivered { remote_ref: "r".into(), found_existing: false })
        .await
        .unwrap();
    assert_eq!(heads(&store).await[0], ("redmine".into(), 1, "pending".into()), "the older note keeps the head");
    let d1 = outbox::claim_due(&store, 10).await.unwrap();
    assert_eq!(d1.iter().map(|d| d.id).collect::<Vec<_>>(), [1]);
    outbox::finish(&store, &d1[0], &outbox::Outcome::Dead { error: "x".into() }).await.unwrap();
    assert_eq!(heads(&store).await, [("redmine".into(), 3, "pending".into()), ("webhook".into(), 4, "sending".into())]);
}

/// The in-process path (for vendor calls that retry in process): after a 429 with
/// `Retry-After: 1` on one issue, a call to another issue of the same system waits the hold
/// out: the simulator sees nothing until the hold is over. Another API key is another
/// party and is not held.
#[tokio::test]
async fn in_process_calls_wait_out_a_hold_on_their_system() {
    use ticketsync::holds::{send_waiting, Sent};
    let sim = RedmineSim::start(KEY, &[1, 2]).await.unwrap();
    sim.throttle_issue(1, 1, 1);
    let http = reqwest::Client::new();
    let put = |issue: u64, key: &str| {
        http.put(format!("{}/issues/{issue}.json", sim.base_url))
            .header("X-Redmine-API-Key", key)
            .json(&serde_json::json!({"issue": {"notes": "n"}}))
    };
    let cap = Duration::from_secs(5);
    match send_waiting(put(1, KEY), cap).await.unwrap() {
        Sent::Answered(r) => assert_eq!(r.status().as_u16(), 429),
        Sent::Held { .. } => panic!("nothing was held yet"),
    }
    // Another key on the same host: not held (answers 401 at once: the sim knows one key).
    match send_waiting(put(2, "another-key"), cap).await.unwrap() {
        Sent::Answered(r) => assert_eq!(r.status().as_u16(), 401),
        Sent::Held { .. } => panic!("another party was held"),
    }
    // A cap below the hold: not sent, the caller is told how long is left.
    assert!(matches!(send_waiting(put(2, KEY), Duration::ZERO).await.unwrap(), Sent::Held { .. }));
    match send_waiting(put(2, KEY), cap).await.unwrap() {
        Sent::Answered(r) => assert_eq!(r.status().as_u16(), 204),
        Sent::Held { .. } => panic!("the hold is shorter than the cap"),
    }
    let log = sim.requests();
    let t429 = log.iter().find(|r| r.status == 429).expect("the 429").at;
    let put2 = log.iter().find(|r| r.status == 204).expect("the later PUT").at;
    assert!(put2 >= t429 + Duration::from_secs(1), "issue 2 was written during the hold");
    assert_eq!(log.len(), 2, "the request of another key does not reach the issue handler log: {log:?}");
}
