//! Driver for `bench/delivery.sh`: seeds an outbox backlog into a ticketsync database and runs
//! the Redmine simulator in its own process, logging its progress, so that the script times
//! the real `ticketsync sync-once` draining the backlog.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::store::Store;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create (migrate) the database and queue `n` pending Redmine notes over `tickets`
    /// tickets (ids from 1001), after `delivered` delivered ones on the same tickets.
    Seed {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        n: usize,
        #[arg(long)]
        tickets: usize,
        #[arg(long, default_value_t = 0)]
        delivered: usize,
    },
    /// The Redmine simulator with issues 1001..1001+tickets answering after `latency_ms`;
    /// prints `url=<url>`, then appends `<ms since start> <PUT requests received>` to `progress`
    /// every 50 ms.
    RedmineSim {
        #[arg(long)]
        key: String,
        #[arg(long)]
        tickets: u64,
        #[arg(long, default_value_t = 1)]
        latency_ms: u64,
        #[arg(long)]
        progress: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().cmd {
        Cmd::Seed { db, n, tickets, delivered } => seed(db, n, tickets, delivered).await,
        Cmd::RedmineSim { key, tickets, latency_ms, progress } => redmine_sim(key, tickets, latency_ms, progress).await,
    }
}

async fn seed(db: PathBuf, n: usize, tickets: usize, delivered: usize) -> Result<()> {
    let store = Store::open(&db, Duration::from_secs(5)).await?;
    let now = ticketsync::store::now();
    // The same rows the outbox's own enqueue writes (a real `Note` each), in one statement.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO deliveries (sink, ticket_id, kind, marker, note_json, state, attempts, next_attempt_at, created_at, updated_at, delivered_at)
         SELECT 'redmine', CAST(1001 + (i % ?2) AS TEXT), 'session_report', 'tsd:v1:bench:' || i || ':report',
                json_object('title', 'Bench note ' || i, 'fields', json('[]'), 'links', json('[]'), 'body', NULL,
                            'attachments', json('[]'), 'visibility', 'internal', 'marker', 'tsd:v1:bench:' || i || ':report'),
                CASE WHEN i <= ?3 THEN 'delivered' ELSE 'pending' END, CASE WHEN i <= ?3 THEN 1 ELSE 0 END,
                ?4, ?4, ?4, CASE WHEN i <= ?3 THEN ?4 END
         FROM n",
    )
    .bind((n + delivered) as i64)
    .bind(tickets.max(1) as i64)
    .bind(delivered as i64)
    .bind(&now)
    .execute(store.sqlite_pool())
    .await?;
    store.close().await;
    println!("seeded={n} delivered={delivered} tickets={tickets}");
    Ok(())
}

async fn redmine_sim(key: String, tickets: u64, latency_ms: u64, progress: PathBuf) -> Result<()> {
    let sim = RedmineSim::start(&key, &(1001..1001 + tickets).collect::<Vec<_>>()).await?;
    sim.set_delay(Duration::from_millis(latency_ms));
    println!("url={}", sim.base_url);
    let start = Instant::now();
    let mut out = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let applied = sim.put_count();
        out.push_str(&format!("{} {applied}\n", start.elapsed().as_millis()));
        // Whole lines only for a reader: write aside, then rename.
        let tmp = progress.with_extension("tmp");
        std::fs::write(&tmp, &out)?;
        std::fs::rename(&tmp, &progress)?;
    }
}
