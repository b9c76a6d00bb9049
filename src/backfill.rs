//! `ticketsync backfill`: re-read a source's history for a time range through the same
//! pipeline as a poll (store, match, outbox, deliver). Idempotent by construction: stored
//! sessions are upserted by (vendor, external_id), a matched session stays matched, and
//! the outbox is unique per (sink, marker), so nothing already queued or delivered is
//! queued or delivered again. The incremental cursor is left alone.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::session::NewSession;
use crate::sources::Rejected;
use crate::store::sessions::{self, Upsert};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackfillStats {
    pub pages: u64,
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub quarantined: u64,
    /// Records the vendor still had after the last page read (for progress).
    pub remaining: Option<u64>,
}

/// Read `[from, to)` page by page; commit each page (or, with `dry_run`, only count what
/// would change). `progress` is called after every page.
pub async fn read_range(
    app: &App,
    source: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    dry_run: bool,
    progress: &mut dyn FnMut(&BackfillStats),
) -> Result<BackfillStats> {
    let Some((src, _)) = app.sources.iter().find(|(s, _)| s.name() == source) else {
        let names: Vec<&str> = app.sources.iter().map(|(s, _)| s.name()).collect();
        bail!("--source {source:?}: not a configured and enabled source (configured: {})", names.join(", "));
    };
    let mut stats = BackfillStats::default();
    let mut page: Option<String> = None;
    loop {
        let p = src.fetch_range(from, to, page.as_deref()).await.with_context(|| format!("backfill {source}"))?;
        if dry_run {
            count_changes(app, &p.records, &mut stats).await?;
        } else {
            commit(app, source, &p.records, &mut stats).await?;
        }
        stats.pages += 1;
        stats.records += p.records.len() as u64;
        stats.remaining = p.remaining;
        progress(&stats);
        match p.next {
            Some(n) => page = Some(n),
            None => return Ok(stats),
        }
    }
}

/// One page in one transaction. No walk id: a backfill must not make a running poll walk
/// think the records it has not reached yet were seen.
async fn commit(
    app: &App,
    source: &str,
    records: &[Result<NewSession, Rejected>],
    stats: &mut BackfillStats,
) -> Result<()> {
    let mut tx = app.store.begin().await?;
    let good: Vec<&NewSession> = records.iter().filter_map(|r| r.as_ref().ok()).collect();
    for (_, outcome) in sessions::upsert_many(&mut tx, &good, None, false).await? {
        match outcome {
            Upsert::Inserted => stats.inserted += 1,
            Upsert::Updated => stats.updated += 1,
            Upsert::Unchanged => stats.unchanged += 1,
            Upsert::Refused => stats.quarantined += 1,
        }
    }
    for rej in records.iter().filter_map(|r| r.as_ref().err()) {
        tracing::warn!(source, external_id = rej.external_id.as_deref().unwrap_or("?"), reason = %rej.reason, "record quarantined");
        sessions::quarantine(&mut tx, source, rej.external_id.as_deref(), &rej.reason, &rej.raw).await?;
        stats.quarantined += 1;
    }
    tx.commit().await?;
    Ok(())
}

async fn count_changes(app: &App, records: &[Result<NewSession, Rejected>], stats: &mut BackfillStats) -> Result<()> {
    for r in records {
        match r {
            Ok(s) => {
                let stored = crate::store::reads::content_hash(&app.store, &s.vendor, &s.external_id).await?;
                match stored {
                    None => stats.inserted += 1,
                    Some(h) if h == hex::encode(Sha256::digest(s.raw_json.as_bytes())) => stats.unchanged += 1,
                    Some(_) => stats.updated += 1,
                }
            }
            Err(_) => stats.quarantined += 1,
        }
    }
    Ok(())
}

fn parse_range(from: &str, to: Option<&str>) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let t = |s: &str, end: bool, flag: &str| -> Result<DateTime<Utc>> {
        let v = crate::export::parse_bound(s, end).map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
        crate::session::parse_ts(&v).with_context(|| format!("{flag} {s:?}"))
    };
    let from = t(from, false, "--from")?;
    let to = match to {
        Some(s) => t(s, true, "--to")?,
        None => Utc::now(),
    };
    if from >= to {
        bail!("--from must be before --to");
    }
    Ok((from, to))
}

/// The command: progress bar on a terminal, otherwise an info log line after the first page
/// and then at most every `progress_every` (zero: after every page).
pub async fn run_cli(
    app: &App,
    source: &str,
    from: &str,
    to: Option<&str>,
    dry_run: bool,
    progress_every: Duration,
) -> Result<()> {
    let (from, to) = parse_range(from, to)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} records ({elapsed})")
                .expect("static template")
                .progress_chars("=> "),
        );
        b
    });
    let mut last_log: Option<Instant> = None;
    let mut progress = |s: &BackfillStats| {
        let msg = format!("{source}: {} new, {} updated, {} unchanged", s.inserted, s.updated, s.unchanged);
        if let Some(b) = &bar {
            b.set_length(s.records + s.remaining.unwrap_or(0));
            b.set_position(s.records);
            b.set_message(msg);
        } else if last_log.is_none_or(|t| t.elapsed() >= progress_every) {
            last_log = Some(Instant::now());
            tracing::info!(
                source,
                pages = s.pages,
                records = s.records,
                remaining = s.remaining,
                inserted = s.inserted,
                updated = s.updated,
                unchanged = s.unchanged,
                quarantined = s.quarantined,
                "backfill progress"
            );
        }
    };
    let stats = read_range(app, source, from, to, dry_run, &mut progress).await?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let range = format!("{} to {}", crate::session::ts(from), crate::session::ts(to));
    if dry_run {
        println!(
            "dry run, {source} {range}: {} records in {} pages — would store {} new and {} updated, {} unchanged, {} would be quarantined; nothing written",
            stats.records, stats.pages, stats.inserted, stats.updated, stats.unchanged, stats.quarantined
        );
        return Ok(());
    }
    println!(
        "backfill {source} {range}: {} records in {} pages — {} new, {} updated, {} unchanged, {} quarantined",
        stats.records, stats.pages, stats.inserted, stats.updated, stats.unchanged, stats.quarantined
    );
    let m = app.match_pass().await?;
    let d = app.deliver_pass().await?;
    println!(
        "matched {} sessions, queued {} notes; delivered {} ({} already present, {} retrying, {} failed, {} dead)",
        m.matched, m.enqueued, d.delivered, d.found_existing, d.retrying, d.failed, d.dead
    );
    Ok(())
}
