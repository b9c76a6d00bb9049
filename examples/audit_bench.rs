//! Benchmark of `ticketsync audit verify` and `audit export`: builds an audit chain of N rows
//! (default 1,000,000) in a fresh SQLite file and times the verification walk.
//!
//!     cargo run --release --example audit_bench -- 1000000 /tmp/audit-bench.db
//!
//! Then time the real commands on the same file:
//!     time target/release/ticketsync audit verify --db /tmp/audit-bench.db
//!     time target/release/ticketsync audit export --db /tmp/audit-bench.db --from 2000-01-01 --to 2100-01-01 --format jsonl >/dev/null

use std::time::{Duration, Instant};

use ticketsync::store::audit::{self, GENESIS};
use ticketsync::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: i64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let path = std::path::PathBuf::from(args.next().unwrap_or_else(|| "target/audit-bench.db".into()));
    // An existing file of the right size is reused: only the verification is timed again.
    if std::env::var_os("AUDIT_BENCH_REUSE").is_some() && path.exists() {
        let ro = Store::open_read_only(&path).await?;
        let t = Instant::now();
        let r = audit::verify(&ro).await?;
        println!("verify: {r:?} in {:.2}s", t.elapsed().as_secs_f64());
        println!("reading the rows alone (no hashing): {:.2}s", stream_only(ro.sqlite_pool()).await?);
        return Ok(());
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(&path, Duration::from_secs(5)).await?;
    let t = Instant::now();
    let mut prev = GENESIS.to_string();
    let mut tx = store.begin().await?;
    for id in 1..=n {
        let at = format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}.000Z",
            1 + (id / 86_400) % 28,
            (id / 3600) % 24,
            (id / 60) % 60,
            id % 60
        );
        let ticket = format!("{}", 1000 + id % 5000);
        let detail = format!(
            r#"{{"kind":"session_report","marker":"tsd:v1:teamviewer:{id:08x}-57e9-4c62-b236-280390954b6f:report","sink":"redmine"}}"#
        );
        let hash = audit::row_hash(
            &prev,
            id,
            &at,
            "delivery_enqueued",
            Some("teamviewer"),
            None,
            Some(&ticket),
            None,
            &detail,
        );
        sqlx::query(
            "INSERT INTO audit_events (id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash)
             VALUES (?, ?, 'delivery_enqueued', 'teamviewer', NULL, ?, NULL, ?, ?, ?)",
        )
        .bind(id)
        .bind(&at)
        .bind(&ticket)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .execute(tx.sqlite_conn())
        .await?;
        prev = hash;
        if id % 100_000 == 0 {
            tx.commit().await?;
            tx = store.begin().await?;
        }
    }
    tx.commit().await?;
    println!("built {n} audit rows in {:.1}s ({})", t.elapsed().as_secs_f64(), path.display());
    store.close().await;

    let ro = Store::open_read_only(&path).await?;
    let t = Instant::now();
    let r = audit::verify(&ro).await?;
    let secs = t.elapsed().as_secs_f64();
    println!("verify: {r:?} in {secs:.2}s ({:.0} rows/s)", n as f64 / secs);
    println!("reading the rows alone (no hashing): {:.2}s", stream_only(ro.sqlite_pool()).await?);
    Ok(())
}

#[allow(dead_code)]
async fn stream_only(pool: &sqlx::SqlitePool) -> anyhow::Result<f64> {
    use futures::TryStreamExt;
    let t = Instant::now();
    let mut rows = sqlx::query_as::<_, (i64, String, String, Option<String>, Option<i64>, Option<String>, Option<i64>, String, String, String)>(
        "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash FROM audit_events ORDER BY id",
    )
    .fetch(pool);
    let mut n = 0u64;
    while let Some(_r) = rows.try_next().await? {
        n += 1;
    }
    let _ = n;
    Ok(t.elapsed().as_secs_f64())
}
