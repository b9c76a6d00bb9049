//! Ingest: a source's pages into the store. A source only reads the store and hands its
//! pages over ([`ticketsync_sources::Pages`]); here each page is written with its cursor in
//! one transaction, with the matches and queued notes of its new sessions (the store's page
//! hook, [`crate::InlineMatch`]), so that a page is stored, matched and its notes queued
//! together or not at all, and the cursor never runs ahead of the records.
//!
//! The writer runs on its own task while the source fetches the next page: SQLite's work is
//! on sqlx's worker thread and needs that task only between statements. Pages are written
//! one after the other, each with its cursor, and a transaction takes further pages while the
//! next one is already here, up to [`OpenTx`]'s bounds: on a backlog, fewer commits rewrite
//! the same index pages less often. A crash loses only uncommitted pages, which the committed
//! cursor re-reads.

use tokio_util::sync::CancellationToken;

use crate::session::NewSession;
use crate::sources::{Page, Pages, PollStats, Rejected, Source, SourceError, WalkEnd};
use crate::store::sessions::{self, Upsert};
use crate::store::{cursors, Store, StoreError};

/// Poll `src` from its saved cursor and commit its pages; the counts of what was written.
/// `cancel` stops the walk between pages (every page handed over is still written). When a
/// write fails the source is stopped at its next page and the poll fails with the store's
/// error, the transaction's pages rolled back (the cursor re-reads them).
pub async fn poll(src: &dyn Source, store: &Store, cancel: &CancellationToken) -> Result<PollStats, SourceError> {
    // The source's tenant owns everything its pages write (sessions, quarantine, cursor).
    let store = &src.store_for(store);
    let (pages, rx) = Pages::channel();
    // The source stops at its next page when a write fails; it is not dropped mid-call (a
    // vendor call may be rotating an OAuth token, which must be committed).
    let stop = cancel.child_token();
    let writer = tokio::spawn(write_pages(store.clone(), rx, stop.clone()));
    let walked = src.poll(store, pages, &stop).await;
    let written = writer.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    match (written, walked) {
        (Err(e), _) => Err(SourceError::Store(e)),
        (Ok(_), Err(e)) => Err(e),
        (Ok(mut stats), Ok(end)) => {
            stats.complete = end == WalkEnd::Complete;
            Ok(stats)
        }
    }
}

/// Write the pages as they come, each with its cursor; a transaction stays open only while
/// the next page is already here, so the write lock is never held while waiting on the vendor.
async fn write_pages(
    store: Store,
    mut rx: tokio::sync::mpsc::Receiver<Page>,
    stop: CancellationToken,
) -> Result<PollStats, StoreError> {
    let written = async {
        let mut stats = PollStats::default();
        let mut open: Option<OpenTx> = None;
        while let Some(page) = rx.recv().await {
            let mut t = match open.take() {
                Some(t) => t,
                None => OpenTx::begin(&store).await?,
            };
            t.write_page(&store, &page).await?;
            if t.full() || rx.is_empty() {
                stats.add(&t.commit().await?);
            } else {
                open = Some(t);
            }
        }
        Ok(stats)
    }
    .await;
    if written.is_err() {
        stop.cancel();
    }
    written
}

/// Tell the store how a poll's writes went ([`Store::note_write`]); a vendor error says
/// nothing about the disk.
pub fn note_poll(store: &Store, result: &Result<PollStats, SourceError>) {
    match result {
        Ok(_) => store.note_write(Ok(())),
        Err(SourceError::Store(e)) => store.note_write(Err(e)),
        Err(_) => {}
    }
}

/// Commit one page: sessions, quarantined records and the cursor, in one transaction.
pub async fn commit_page(
    store: &Store,
    source: &str,
    records: &[Result<NewSession, Rejected>],
    walk_id: &str,
    cursor_json: &str,
    complete: Option<(&str, &str)>,
    stats: &mut PollStats,
) -> Result<(), StoreError> {
    let mut t = OpenTx::begin(store).await?;
    t.write(store, source, records, walk_id, cursor_json, complete).await?;
    stats.add(&t.commit().await?);
    Ok(())
}

/// A page transaction the ingest keeps open for the pages that follow, while they arrive
/// faster than they are written ([`poll`]). On a backlog, fewer and larger
/// commits rewrite the random-key index pages less often (1M records: 172 s with 1 s
/// transactions, 130–137 s with 2–4 s; BENCHMARKS.md). Bounded so that another writer (the
/// outbox, the matcher) waits at most about half its busy timeout for the write lock (2.5 s
/// by default) and never fails for it, and a crash re-reads at most a few seconds of pages.
pub struct OpenTx {
    tx: crate::store::Tx<'static>,
    since: std::time::Instant,
    max_age: std::time::Duration,
    /// Counts of the pages written and not yet committed.
    pending: PollStats,
}

impl OpenTx {
    /// At most this many records per transaction, and half the store's busy timeout.
    const MAX_RECORDS: u64 = 20_000;

    pub async fn begin(store: &Store) -> Result<OpenTx, StoreError> {
        Ok(OpenTx {
            tx: store.begin().await?,
            since: std::time::Instant::now(),
            max_age: store.busy_timeout() / 2,
            pending: PollStats::default(),
        })
    }

    pub async fn write(
        &mut self,
        store: &Store,
        source: &str,
        records: &[Result<NewSession, Rejected>],
        walk_id: &str,
        cursor_json: &str,
        complete: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        write_page(&mut self.tx, store, source, records, walk_id, cursor_json, complete, &mut self.pending).await
    }

    /// Time to commit: the transaction holds enough records, or has held the lock long enough.
    pub fn full(&self) -> bool {
        self.pending.records >= Self::MAX_RECORDS || self.since.elapsed() >= self.max_age
    }

    /// Write a source's page.
    pub async fn write_page(&mut self, store: &Store, page: &Page) -> Result<(), StoreError> {
        let complete = page.complete.as_ref().map(|(from, to)| (from.as_str(), to.as_str()));
        self.write(store, &page.source, &page.records, &page.walk_id, &page.cursor, complete).await
    }

    /// Commit; the counts of the pages it held.
    pub async fn commit(self) -> Result<PollStats, StoreError> {
        self.tx.commit().await?;
        // Under the sources' log target, where a poll's progress has always been logged
        // (`TICKETSYNC_LOG=info,ticketsync_sources=debug`).
        tracing::debug!(target: "ticketsync_sources", pages = self.pending.pages, records = self.pending.records, "page transaction committed");
        Ok(self.pending)
    }
}

/// Write one page (sessions, quarantined records, the cursor) into `tx` and add its counts
/// to `stats`; the caller commits. Several pages may share a transaction: each writes its
/// own cursor, so a commit always leaves the cursor of the last page it holds.
#[allow(clippy::too_many_arguments)]
async fn write_page(
    tx: &mut crate::store::Tx<'_>,
    store: &Store,
    source: &str,
    records: &[Result<NewSession, Rejected>],
    walk_id: &str,
    cursor_json: &str,
    complete: Option<(&str, &str)>,
    stats: &mut PollStats,
) -> Result<(), StoreError> {
    let mut page = PollStats::default();
    let good: Vec<&NewSession> = records.iter().filter_map(|r| r.as_ref().ok()).collect();
    let (outcomes, hooked) = crate::store::page::upsert_page(tx, store.page_hook(), &good, walk_id).await?;
    for (_, outcome) in outcomes {
        match outcome {
            Upsert::Inserted => page.inserted += 1,
            Upsert::Updated => page.updated += 1,
            Upsert::Unchanged => {}
            // Quarantined by the store (another tenant's vendor id).
            Upsert::Refused => page.quarantined += 1,
        }
    }
    (page.matched, page.enqueued) = (hooked.matched, hooked.enqueued);
    for rej in records.iter().filter_map(|r| r.as_ref().err()) {
        tracing::warn!(target: "ticketsync_sources", source, external_id = rej.external_id.as_deref().unwrap_or("?"), reason = %rej.reason, "record quarantined");
        sessions::quarantine(tx, source, rej.external_id.as_deref(), &rej.reason, &rej.raw).await?;
        page.quarantined += 1;
    }
    // A tenant may poll several accounts of one vendor, whose sessions the store does not tell
    // apart: one account's complete walk proves nothing about the other's sessions.
    if let Some((from, to)) = complete.filter(|_| !tx.is_account()) {
        page.vanished = sessions::mark_vanished(tx, source, from, to, walk_id).await?;
    }
    // Several instances on one database: only the holder of this source's lease may move its
    // cursor, checked (and the lease extended) in the page's own transaction.
    if let Some((lease, ttl)) = store.fences().for_cursor(&tx.key(source)) {
        crate::store::leases::check_in(tx, &lease, ttl).await?;
    }
    cursors::save(tx, source, cursor_json, complete.is_some()).await?;
    (page.pages, page.records) = (1, records.len() as u64);
    stats.add(&page);
    Ok(())
}
