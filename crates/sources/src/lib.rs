//! Vendor sources behind one trait: an incremental poll from a saved cursor that yields
//! pages (records, the cursor after them, and whether the walk ended); the pipeline's ingest
//! commits each page with its cursor in one transaction. A source reads the store (its
//! cursor, the sessions still running, the links it polls by) and never writes it. One
//! module (and folder) per vendor: its config section, wire types, API client, poll, doctor
//! probe, launcher, and what it adds to its sessions' notes.

// The layers below, under the names the sources' files use.
use ticketsync_http::{self as http, oauth};
use ticketsync_model::{note, session};
use ticketsync_store as store;

/// What every vendor's config section uses: errors with key and line, secrets, checks, and
/// the outbound HTTP keys.
pub(crate) mod config {
    pub use ticketsync_config::*;
    pub use ticketsync_http::{outbound_section, Outbound, OutboundConfig};
}

pub mod common;
pub mod launch;
pub mod note_extras;
pub mod probe;
pub mod schedule;
pub mod screen;
pub mod section;
pub mod splashtop;
pub mod teamviewer;
pub mod visio;
pub mod zoom;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::session::NewSession;
use crate::store::sessions;
use crate::store::{Store, StoreError};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    pub pages: u64,
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub quarantined: u64,
    pub vanished: u64,
    /// New sessions matched to a ticket in their page's transaction (the store's page hook).
    pub matched: u64,
    /// Notes queued for those matches.
    pub enqueued: u64,
    /// The walk reached the last page (false when cancelled between pages).
    pub complete: bool,
}

impl PollStats {
    /// Add the counts of `o` (a page, or another walk); `complete` is left as it is.
    pub fn add(&mut self, o: &PollStats) {
        self.pages += o.pages;
        self.records += o.records;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.quarantined += o.quarantined;
        self.vanished += o.vanished;
        self.matched += o.matched;
        self.enqueued += o.enqueued;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: {message}")]
    Vendor { source_name: String, message: String, transient: bool },
    /// A vendor's answer, its status and error code kept (TeamViewer, Zoom).
    #[error(transparent)]
    Api(crate::http::ApiError),
    /// The same for Splashtop, a variant of its own because callers match it by name.
    #[error(transparent)]
    Splashtop(crate::http::ApiError),
    #[error(transparent)]
    OAuth(#[from] crate::oauth::OAuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pipeline stopped taking this poll's pages (its write failed; that error is the
    /// poll's).
    #[error("the page writer stopped")]
    Stopped,
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Vendor { transient, .. } => *transient,
            SourceError::Api(e) | SourceError::Splashtop(e) => e.transient,
            SourceError::OAuth(
                crate::oauth::OAuthError::Transport { .. } | crate::oauth::OAuthError::Unavailable { .. },
            ) => true,
            SourceError::OAuth(_) => false,
            SourceError::Store(_) | SourceError::Stopped => true,
        }
    }
}

/// A record a source could not turn into a session.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub external_id: Option<String>,
    pub reason: String,
    pub raw: String,
}

/// One page of a time-range read (`ticketsync backfill`).
#[derive(Debug, Default)]
pub struct RangePage {
    pub records: Vec<Result<NewSession, Rejected>>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
    /// Records after this page, when the vendor says (for a progress bar).
    pub remaining: Option<u64>,
}

/// One page of a poll: what the pipeline's ingest commits in one transaction (with the
/// matches and notes of its new sessions), so that the cursor never runs ahead of the records.
#[derive(Debug)]
pub struct Page {
    /// The cursor row it moves: the source's name, or one account's (`zoom:<account>`).
    /// Its quarantined records are filed under it too.
    pub source: String,
    pub records: Vec<Result<NewSession, Rejected>>,
    /// The walk the page belongs to (sessions it did not see again may have vanished).
    pub walk_id: String,
    /// Where the next poll starts, as the vendor's cursor JSON.
    pub cursor: String,
    /// The walk ended with this page; the range `(from, to)` it read, whose stored sessions
    /// the walk did not see are marked vanished.
    pub complete: Option<(String, String)>,
}

/// Where a source hands its pages: the pipeline's ingest, which writes them in order while
/// the source fetches the next one.
pub struct Pages(tokio::sync::mpsc::Sender<Page>);

impl Pages {
    /// A page channel: one page waits while the one before it is written, so the fetch of
    /// the next page overlaps the write of this one.
    pub fn channel() -> (Pages, tokio::sync::mpsc::Receiver<Page>) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        (Pages(tx), rx)
    }

    /// Hand over a page; [`SourceError::Stopped`] when the writer failed (stop polling).
    pub async fn send(&self, page: Page) -> Result<(), SourceError> {
        self.0.send(page).await.map_err(|_| SourceError::Stopped)
    }
}

/// How a poll's walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkEnd {
    /// It reached the last page.
    Complete,
    /// `cancel` fired between pages.
    Cancelled,
}

#[async_trait]
pub trait Source: Send + Sync {
    fn name(&self) -> &str;
    /// The `source_cursors` rows this source keeps, one per account it polls separately
    /// (readiness and metrics judge each).
    fn cursor_keys(&self) -> Vec<String> {
        vec![self.name().to_string()]
    }
    /// The tenant whose accounts this source polls (issue 17): `default` unless built for a
    /// `[[tenants]]` entry ([`TenantSource`]). Its pages are written through a store handle
    /// scoped to this tenant, so its sessions, cursors and tokens are the tenant's.
    fn tenant(&self) -> TenantName {
        TenantName::default()
    }
    /// The store handle this source's pages are read and written through: `store` itself, or
    /// the tenant's account's ([`Store::for_account`]).
    fn store_for(&self, store: &Store) -> Store {
        store.clone()
    }
    /// The source's key in leases, fences, metrics and logs: its name, or
    /// `<tenant>/<account>/<name>` for a tenant's account.
    fn key(&self) -> String {
        self.name().to_string()
    }
    /// Poll from the saved cursor until the vendor has nothing more, or until `cancel`
    /// fires (checked between pages), handing each page to `pages`. The store is read (the
    /// saved cursor, running sessions, links), never written: `ticketsync_pipeline::ingest`
    /// commits the pages.
    async fn poll(&self, store: &Store, pages: Pages, cancel: &CancellationToken) -> Result<WalkEnd, SourceError>;

    /// One page of the records that started in `[from, to)`, from `page` (`None`: the
    /// first). Used by backfill; it reads only, and the incremental cursor is not touched.
    /// Sources that cannot read a time range keep this default.
    async fn fetch_range(
        &self,
        _from: chrono::DateTime<chrono::Utc>,
        _to: chrono::DateTime<chrono::Utc>,
        _page: Option<&str>,
    ) -> Result<RangePage, SourceError> {
        Err(SourceError::Vendor {
            source_name: self.name().to_string(),
            message: "this source cannot re-read a time range (backfill is not supported)".into(),
            transient: false,
        })
    }
}

/// Why [`fetch_parsed`] gave up on a page: the vendor's answer never parsed, or the call
/// itself failed (already retried by the vendor client's own policy).
#[derive(Debug)]
pub enum PageError<E> {
    Unparsable { attempts: usize, detail: String },
    Call(E),
}

/// Fetch a page and parse it; a page that does not parse (truncated by a proxy, an HTML error
/// page with status 200, a half-written body) is asked for again with the shared backoff,
/// up to `max_retries` times, the same way for every vendor. Only then does the poll fail, as
/// a transient error that the next poll retries from the saved cursor. `fetch` answers
/// `Ok(Err(detail))` for an unparsable page.
pub async fn fetch_parsed<T, E, F, Fut>(
    source: &str,
    what: &str,
    max_retries: usize,
    mut fetch: F,
) -> Result<T, PageError<E>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>, E>>,
{
    use backon::Retryable;
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let once = || {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = fetch();
        async move {
            match f.await {
                Ok(Ok(page)) => Ok(page),
                Ok(Err(detail)) => Err(PageError::Unparsable { attempts: 0, detail }),
                Err(e) => Err(PageError::Call(e)),
            }
        }
    };
    let res = once
        .retry(crate::http::retry_policy(max_retries))
        .when(|e: &PageError<E>| matches!(e, PageError::Unparsable { .. }))
        .notify(|e: &PageError<E>, dur| {
            if let PageError::Unparsable { detail, .. } = e {
                tracing::warn!(source, what, error = %detail, retry_in_ms = dur.as_millis() as u64, "page does not parse; asking for it again");
            }
        })
        .await;
    res.map_err(|e| match e {
        PageError::Unparsable { detail, .. } => {
            PageError::Unparsable { attempts: attempts.load(std::sync::atomic::Ordering::Relaxed), detail }
        }
        other => other,
    })
}

impl PageError<SourceError> {
    /// The poll's error: the call's own, or a transient "malformed page" naming the attempts.
    pub fn into_source_error(self, source: &str, what: &str) -> SourceError {
        match self {
            PageError::Call(e) => e,
            PageError::Unparsable { attempts, detail } => SourceError::Vendor {
                source_name: source.to_string(),
                message: format!("{what}: malformed page ({detail}), {attempts} attempt(s)"),
                transient: true,
            },
        }
    }
}

/// Where the first poll of a source starts, said once at INFO (`sync-once` shows it on
/// stderr): the range read, and how to read what is older (`ticketsync backfill`).
pub fn first_poll_notice(source: &str, from: chrono::DateTime<chrono::Utc>, lookback_days: u64) {
    tracing::info!(
        source,
        from = %crate::session::ts(from),
        initial_lookback_days = lookback_days,
        "first poll of {source}: reading sessions that started from {} to now (initial_lookback_days = {lookback_days}); anything older is not read: run `ticketsync backfill --source {source} --from <first day> --to {}` to read it",
        crate::session::ts(from),
        from.format("%Y-%m-%d"),
    );
}

// The vendors' modules and callers outside the crate name them from the crate's root.
pub use note_extras::{NoteExtras, VendorNotes};
pub use ticketsync_model::tenant::TenantName;

/// A vendor's source polling a tenant's account (`[[tenants.sources]]`). The source itself
/// is the vendor's, unchanged: it is handed the account's store handle at each poll, so the
/// sessions it reads and the cursors it keeps are its own ([`Store::for_account`]); its
/// cursor keys and its key in leases and metrics are qualified (`acme/tv-main/teamviewer`),
/// while [`Source::name`] stays the vendor's.
pub struct TenantSource {
    inner: std::sync::Arc<dyn Source>,
    tenant: TenantName,
    /// The account's name in the tenant (`[[tenants.sources]] name`).
    account: String,
}

impl TenantSource {
    pub fn new(inner: std::sync::Arc<dyn Source>, tenant: TenantName, account: &str) -> TenantSource {
        TenantSource { inner, tenant, account: account.to_string() }
    }

    fn qualify(&self, key: &str) -> String {
        format!("{}/{}/{key}", self.tenant, self.account)
    }
}

#[async_trait]
impl Source for TenantSource {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn cursor_keys(&self) -> Vec<String> {
        self.inner.cursor_keys().iter().map(|k| self.qualify(k)).collect()
    }
    fn tenant(&self) -> TenantName {
        self.tenant.clone()
    }
    fn store_for(&self, store: &Store) -> Store {
        store.for_account(&self.tenant, &self.account)
    }
    fn key(&self) -> String {
        self.qualify(self.inner.name())
    }
    async fn poll(&self, store: &Store, pages: Pages, cancel: &CancellationToken) -> Result<WalkEnd, SourceError> {
        // Whatever handle the caller passes, the source reads its own account's rows.
        self.inner.poll(&self.store_for(store), pages, cancel).await
    }
    async fn fetch_range(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        page: Option<&str>,
    ) -> Result<RangePage, SourceError> {
        self.inner.fetch_range(from, to, page).await
    }
}
pub use section::{RoomsConfig, SourceSection, SourcesConfig, ROUTING_NAMES, SECRET_KEYS, VENDORS, VENDOR_NOTES};

/// The note content of the vendor whose sessions are stored under `vendor`.
pub fn vendor_notes(vendor: &str) -> Option<&'static dyn VendorNotes> {
    VENDOR_NOTES.iter().copied().find(|v| v.vendor() == vendor)
}

/// Human name of a vendor, for note titles.
pub fn display_name(vendor: &str) -> &str {
    vendor_notes(vendor).map(|v| v.display_name()).unwrap_or(vendor)
}

/// Where a new poll walk starts: the high watermark minus the overlap (or the initial
/// lookback on a first poll), pulled back to the oldest still-running session younger than
/// `open_max_age`. Vendors filter on start time only, so a running session is only seen
/// again if the window reaches back to its start.
pub async fn walk_start(
    store: &Store,
    vendor: &str,
    high_watermark: Option<&str>,
    windows: (chrono::Duration, chrono::Duration, chrono::Duration),
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    let (overlap, initial_lookback, open_max_age) = windows;
    let mut from = match high_watermark.and_then(crate::session::parse_ts) {
        Some(hwm) => hwm - overlap,
        None => now - initial_lookback,
    };
    if let Some(open) = sessions::earliest_open_start(store, vendor, &crate::session::ts(now - open_max_age))
        .await?
        .as_deref()
        .and_then(crate::session::parse_ts)
    {
        from = from.min(open);
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vendor a session can be stored under has its note content registered, once.
    #[test]
    fn every_vendor_has_its_note_content_registered_once() {
        for name in ROUTING_NAMES {
            let n = VENDOR_NOTES.iter().filter(|v| v.vendor() == *name).count();
            assert_eq!(n, 1, "{name}: {n} registrations in VENDOR_NOTES");
        }
        assert_eq!(display_name("visioconference"), "visioconference.me");
        assert_eq!(display_name("someone-else"), "someone-else");
    }
}
