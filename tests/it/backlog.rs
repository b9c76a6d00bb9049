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
    .execute(&store.pool)
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
            .fetch_one(&store.pool)
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
