//! `ticketsync run`: each source on its cron schedule (never overlapping itself), the
//! matcher and the outbox continuously, systemd notify and watchdog, clean shutdown.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::App;

// Kept here too so `ticketsync::daemon::parse_cron` (used by callers outside the crate)
// still resolves; the parser lives in `schedule`, below the config.
pub use crate::schedule::parse_cron;

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Heartbeats of the long-running tasks: the watchdog only pings while all are alive.
#[derive(Default)]
struct Beats {
    delivery: AtomicI64,
}

pub async fn run(app: App) -> Result<()> {
    run_reloadable(app, None).await
}

/// [`run`], re-reading `config_path` on `SIGHUP` (systemd's `ExecReload=`): sources,
/// schedules, sinks, routes and rules change without a restart. Nothing in flight is dropped:
/// each source finishes the page it is on (its cursor is committed with it) before its new
/// task starts, a delivery pass under way finishes with the sinks it started with, and the
/// next pass takes the new ones. A configuration that does not load or check is refused and
/// the running one stays; `[store]`, `notes.marker_key` and `[http]` need a restart.
pub async fn run_reloadable(app: App, config_path: Option<std::path::PathBuf>) -> Result<()> {
    // Handlers first: a SIGTERM during start-up must still mean a clean stop.
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let app = Arc::new(app);
    let cancel = CancellationToken::new();
    let recovered = recover_interrupted(&app).await?;
    if recovered > 0 {
        tracing::warn!(
            count = recovered,
            "deliveries were interrupted by a stop; they will scan for their marker before resending"
        );
    }
    crate::metrics::install();
    register_metrics(&app);
    if app.store.write_failure().is_none() {
        metrics::gauge!("ticketsync_store_writes_failing").set(0.0);
    }
    log_audit_head(&app.store, "start").await;
    let (app_tx, app_rx) = tokio::sync::watch::channel(app.clone());
    let mut health_tx: Option<tokio::sync::watch::Sender<Arc<crate::health::Health>>> = None;
    let wake = Arc::new(Notify::new());
    if app.config.http.active() {
        let addr = &app.config.http.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("http.listen = {addr}: cannot listen: {e}"))?;
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(crate::health::Health::from_app(&app, Utc::now())?));
        health_tx = Some(tx);
        tracing::info!(address = %listener.local_addr()?, "http listener: /healthz /readyz /metrics");
        let opts = crate::health::ListenerOptions::from_config(&app.config.http)?;
        if opts.token.is_none() {
            tracing::info!("http listener: no metrics_token; /metrics is open to whoever reaches http.listen");
        }
        let console = if app.config.console.enabled {
            let c = crate::console::Console::new(
                &app.config.console,
                app.store.clone(),
                app.sink_names.clone(),
                Some(wake.clone()),
            )?;
            tracing::info!(users = app.config.console.users.len(), "web console on /ui/");
            Some(Arc::new(c))
        } else {
            None
        };
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::health::serve_console(listener, rx, opts, console, cancel).await {
                tracing::error!(error = %e, "http listener stopped");
            }
        });
    } else {
        // Said once, so that a missing /metrics is not a mystery.
        tracing::info!("http listener: off ([http] enabled = false or listen = \"\")");
    }
    let beats = Arc::new(Beats::default());
    beats.delivery.store(now_ms(), Ordering::Relaxed);
    let mut tasks = tokio::task::JoinSet::new();

    // The sources of one configuration; a reload stops them (after their current page) and
    // starts the next configuration's.
    let mut generation = cancel.child_token();
    // Catch up once at start (a missed schedule during downtime runs once, not N times).
    let mut polls = spawn_sources(&app, &generation, &wake, |_| true)?;

    {
        let (app_rx, cancel, wake, beats) = (app_rx.clone(), cancel.clone(), wake.clone(), beats.clone());
        tasks.spawn(async move {
            let mut failed = false;
            loop {
                // Each pass runs with the configuration current when it starts.
                let app = app_rx.borrow().clone();
                let interval = Duration::from_secs(app.config.daemon.delivery_interval_secs.max(1));
                beats.delivery.store(now_ms(), Ordering::Relaxed);
                if app.config.daemon.shared_store {
                    // Another instance that died mid-request left its claims `sending`.
                    match recover_interrupted(&app).await {
                        Ok(n) if n > 0 => tracing::warn!(deliveries = n, "deliveries claimed by an instance that stopped answering are taken over; they scan for their marker first"),
                        Ok(_) => {}
                        Err(e) => app.store.note_write(Err(&e)),
                    }
                }
                if failed {
                    // A pass that failed on the store (e.g. a full disk) may have posted a note
                    // and then failed to record it: its delivery is still `sending`. This task
                    // is the only one delivering, so every such row is ours: back to pending,
                    // and the next attempt scans the ticket for the marker before posting.
                    match recover_interrupted(&app).await {
                        Ok(n) => {
                            failed = false;
                            if n > 0 {
                                tracing::warn!(deliveries = n, "deliveries of a failed outbox pass back to pending; they scan for their marker first");
                            }
                        }
                        Err(e) => app.store.note_write(Err(&e)),
                    }
                }
                let step = async {
                    let m = app.match_pass().await?;
                    let d = app.deliver_pass().await?;
                    Ok::<_, crate::store::StoreError>((m, d))
                };
                tokio::select! {
                    r = step => match r {
                        Ok((m, d)) if m.matched + d.attempted > 0 => {
                            app.store.note_write(Ok(()));
                            tracing::info!(matched = m.matched, enqueued = m.enqueued, delivered = d.delivered,
                                found_existing = d.found_existing, retrying = d.retrying, failed = d.failed, dead = d.dead, "outbox pass")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "outbox pass failed; retrying");
                            app.store.note_write(Err(&e));
                            failed = true;
                        }
                    },
                    // On shutdown the in-flight requests get the grace period, then are dropped:
                    // their deliveries stay `sending` and are scanned for after restart.
                    _ = async { cancel.cancelled().await; tokio::time::sleep(Duration::from_secs(app.config.daemon.shutdown_grace_secs)).await } => return,
                }
                if cancel.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = wake.notified() => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }

    {
        // The head in the journal every hour: a copy outside the database to compare with
        // `audit verify --expect-head` (the journal may be shipped off the host).
        let (app, cancel) = (app.clone(), cancel.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(AUDIT_HEAD_EVERY) => log_audit_head(&app.store, "hourly").await,
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }

    if let Some(wd) = sd_notify::watchdog_enabled() {
        let (beats, cancel, app_rx) = (beats.clone(), cancel.clone(), app_rx.clone());
        tasks.spawn(async move {
            loop {
                let interval = app_rx.borrow().config.daemon.delivery_interval_secs as i64 * 1000;
                let stale =
                    now_ms() - beats.delivery.load(Ordering::Relaxed) > (wd.as_millis() as i64).max(interval * 4);
                if !stale {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wd / 2) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }

    let _ =
        sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("polling and delivering")]);
    tracing::info!(sources = app.sources.len(), sinks = ?app.sink_names, db = %app.config.store.display(), "ticketsync running");

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => {
                let Some(path) = config_path.as_deref() else {
                    tracing::warn!("SIGHUP: this daemon was started without a configuration file to re-read");
                    continue;
                };
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                let current = app_rx.borrow().clone();
                let loaded = crate::config::Config::load(path).map_err(anyhow::Error::from).and_then(|c| current.reload(c));
                match loaded {
                    Err(e) => {
                        tracing::error!(config = %path.display(), error = %crate::redact::scrub(&format!("{e:#}")),
                            "configuration reload refused; the running configuration stays");
                    }
                    Ok((next, needs_restart)) => {
                        for what in needs_restart {
                            tracing::warn!(section = what, "changed in the configuration: takes effect at the next restart; the running value is kept");
                        }
                        let next = Arc::new(next);
                        // The old sources finish their current page, then the new ones start:
                        // a source never polls twice at once.
                        generation.cancel();
                        while polls.join_next().await.is_some() {}
                        generation = cancel.child_token();
                        let old: Vec<String> = current.sources.iter().map(|(s, schedule)| format!("{} {schedule}", s.name())).collect();
                        // A new source (or one on a new schedule) polls at once; the others at
                        // their next scheduled time, as if nothing happened.
                        polls = spawn_sources(&next, &generation, &wake, |key| !old.iter().any(|o| o == key))?;
                        if let Some(tx) = &health_tx {
                            let h = tx.borrow().reloaded(&next, Utc::now())?;
                            let _ = tx.send(Arc::new(h));
                        }
                        register_metrics(&next);
                        let _ = app_tx.send(next.clone());
                        wake.notify_one();
                        tracing::info!(config = %path.display(), sources = next.sources.len(), sinks = ?next.sink_names, "configuration reloaded");
                    }
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }
    tracing::info!("stopping: finishing the current page or request");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    let app = app_rx.borrow().clone();
    let grace = Duration::from_secs(app.config.daemon.shutdown_grace_secs + 1);
    let all_done = async {
        while tasks.join_next().await.is_some() {}
        while polls.join_next().await.is_some() {}
    };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!("tasks did not finish in time; abandoning them (their work resumes from the store)");
        tasks.abort_all();
        polls.abort_all();
    }
    for sink in app.all_sinks().iter().flat_map(|(_, s)| s.values()) {
        sink.close().await;
    }
    release_leases(&app.store).await;
    log_audit_head(&app.store, "stop").await;
    // Everything committed into the database file itself: a copy of the file alone (or a
    // backup tool that skips the -wal) then misses nothing.
    match crate::store::backup::checkpoint(&app.store).await {
        Ok(Some((busy, frames, done))) => {
            tracing::info!(busy, wal_frames = frames, checkpointed = done, "WAL checkpointed")
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint at stop failed; the next start replays the WAL"),
    }
    app.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn register_metrics(app: &App) {
    let sources: Vec<(String, String)> = app.sources.iter().map(|(s, _)| (s.key(), s.tenant().to_string())).collect();
    let sinks: Vec<(String, String)> =
        app.all_sinks().iter().flat_map(|(t, s)| s.keys().map(move |name| (name.clone(), t.to_string()))).collect();
    crate::metrics::register(&sources, &sinks);
}

/// One task per source of `app`, each on its schedule, never overlapping itself, stopped by
/// `cancel` between pages. `at_once(&"<name> <schedule>")`: whether it polls at once or
/// waits for its first scheduled time.
fn spawn_sources(
    app: &Arc<App>,
    cancel: &CancellationToken,
    wake: &Arc<Notify>,
    at_once: impl Fn(&str) -> bool,
) -> Result<tokio::task::JoinSet<()>> {
    let tz = app.config.daemon_tz();
    let mut polls = tokio::task::JoinSet::new();
    for (src, schedule) in app.sources.clone() {
        let cron = parse_cron(&schedule).map_err(anyhow::Error::msg)?;
        let mut first = at_once(&format!("{} {schedule}", src.name()));
        let (app, cancel, wake) = (app.clone(), cancel.clone(), wake.clone());
        polls.spawn(async move {
            loop {
                if !first {
                    let now = Utc::now().with_timezone(&tz);
                    let next = match cron.find_next_occurrence(&now, false) {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::error!(source = src.name(), error = %e, "no next run time; source stopped");
                            return;
                        }
                    };
                    let wait = (next.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                first = false;
                // A tenant's source leases, fences and reports under its qualified key
                // (`acme/tv-main/teamviewer`; the default tenant's is its name, unchanged).
                let key = src.key();
                if !source_lease(&app, &key).await {
                    continue;
                }
                // Sequential inside this task: a source never overlaps itself.
                let started = std::time::Instant::now();
                let result = crate::pipeline::ingest::poll(src.as_ref(), &app.store, &cancel).await;
                crate::metrics::poll_duration(&src.key(), src.tenant().as_str(), started.elapsed());
                crate::metrics::poll_finished(&src.key(), src.tenant().as_str(), &result);
                crate::pipeline::ingest::note_poll(&app.store, &result);
                match result {
                    Ok(stats) => {
                        tracing::info!(source = src.name(), pages = stats.pages, records = stats.records, inserted = stats.inserted,
                            updated = stats.updated, quarantined = stats.quarantined, vanished = stats.vanished, matched = stats.matched,
                            enqueued = stats.enqueued, complete = stats.complete, "poll finished");
                        wake.notify_one();
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        tracing::error!(source = src.name(), error = %msg, transient = e.is_transient(), "poll failed; cursor kept, next run retries");
                        let store = src.store_for(&app.store);
                        let _ = crate::store::cursors::record_error(&store, src.name(), &msg).await;
                    }
                }
                if cancel.is_cancelled() {
                    return;
                }
            }
        });
    }
    Ok(polls)
}

/// With `[daemon] shared_store`: take (or renew) the lease of `source` before polling it,
/// and fence its page writes with it; `false` when another instance holds it (this run is
/// theirs) or the store cannot say. Alone on the store: always `true`, no lease.
async fn source_lease(app: &App, source: &str) -> bool {
    let daemon = &app.config.daemon;
    if !daemon.shared_store {
        return true;
    }
    let ttl = Duration::from_secs(daemon.lease_ttl_secs);
    let name = format!("source:{source}");
    let holder = app.instance_id.as_str();
    match crate::store::leases::acquire(&app.store, &name, holder, ttl).await {
        Ok(Some(lease)) => {
            if app.store.fences().for_cursor(source).map(|(l, _)| l.token) != Some(lease.token) {
                tracing::info!(source, lease = %name, token = lease.token, instance = holder, "lease taken: this instance polls the source");
            }
            metrics::gauge!("ticketsync_lease_held", "lease" => name.clone()).set(1.0);
            app.store.fences().hold(source, lease, ttl);
            true
        }
        Ok(None) => {
            if let Some(lost) = app.store.fences().drop_key(source) {
                tracing::info!(source, lease = %name, token = lost.token, "lease held by another instance now; it polls the source");
            }
            metrics::gauge!("ticketsync_lease_held", "lease" => name.clone()).set(0.0);
            let holder = match crate::store::leases::list(&app.store).await {
                Ok(all) => all.into_iter().find(|l| l.name == name).map(|l| l.holder).unwrap_or_default(),
                Err(_) => String::new(),
            };
            tracing::info!(source, lease = %name, holder = %holder, "another instance holds the source's lease; it polls this run");
            false
        }
        Err(e) => {
            app.store.note_write(Err(&e));
            tracing::warn!(source, lease = %name, error = %e, "cannot take the source's lease; skipping this run");
            false
        }
    }
}

/// Deliveries left `sending` by a stop: every one when this instance is alone on the store;
/// with `shared_store`, only those claimed longer ago than a request may last (the request
/// timeout plus the lease TTL), as the others may be another instance's requests in flight.
async fn recover_interrupted(app: &App) -> Result<u64, crate::store::StoreError> {
    let daemon = &app.config.daemon;
    if !daemon.shared_store {
        return crate::store::outbox::recover_sending(&app.store).await;
    }
    let horizon = app.config.outbox.request_timeout_secs + daemon.lease_ttl_secs;
    let cutoff = Utc::now() - chrono::TimeDelta::seconds(horizon as i64);
    crate::store::outbox::recover_stale_sending(&app.store, &crate::session::ts(cutoff)).await
}

/// Give up every lease this instance holds, so the others take its sources at their next
/// run rather than after the TTL.
async fn release_leases(store: &crate::store::Store) {
    for lease in store.fences().all() {
        match crate::store::leases::release(store, &lease).await {
            Ok(()) => tracing::info!(lease = %lease.name, token = lease.token, "lease released"),
            Err(e) => {
                tracing::warn!(lease = %lease.name, error = %e, "cannot release the lease; it expires after its TTL")
            }
        }
    }
}

const AUDIT_HEAD_EVERY: Duration = Duration::from_secs(3600);

/// Log the audit chain head as `ID:HASH` (`audit_head` field), the form
/// `ticketsync audit verify --expect-head` takes.
async fn log_audit_head(store: &crate::store::Store, at: &'static str) {
    match crate::store::audit::head(store).await {
        Ok(head) => tracing::info!(audit_head = %head, at, "audit chain head"),
        Err(e) => tracing::warn!(error = %e, at, "cannot read the audit chain head"),
    }
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
