//! Prometheus metrics through the `metrics` facade. Counters are recorded where things
//! happen (polls, delivery attempts); gauges that describe stored state (deliveries by
//! state, outbox age, last successful poll, token expiry) are read from the database at
//! each scrape, so they are right after a restart too.
//!
//! As the best exporters do: durations are `_seconds` histograms, every series of a configured
//! source or sink exists from the start at zero (a `rate()` or an `absent()` alert works
//! before the first event), and the `process_*` metrics of the Prometheus client libraries
//! (CPU, memory, open files, start time) come from /proc at each scrape (`metrics-process`).

use std::sync::OnceLock;

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::sources::{PollStats, SourceError};
// Recorded by the delivery stage where deliveries happen; described and registered here.
pub use crate::pipeline::metrics::{delivery_duration, delivery_finished, DELIVERY_SECONDS};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Buckets of the duration histograms, in seconds: a vendor or sink request takes tens of
/// milliseconds to tens of seconds (the request timeout is 30 s by default); a poll of a
/// backlog can take minutes.
const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The histograms (their names end in `_seconds`, as Prometheus' conventions ask).
pub const POLL_SECONDS: &str = "ticketsync_poll_duration_seconds";
pub const PAGE_SECONDS: &str = "ticketsync_page_fetch_duration_seconds";

/// Install the Prometheus recorder once per process and return its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is already global; ours then renders nothing recorded.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only database gauges");
        }
        describe();
        PROCESS.get_or_init(|| {
            let c = metrics_process::Collector::default();
            c.describe();
            c
        });
        gauge!("ticketsync_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Every series of the configured sources and sinks, at zero until their first event. Each
/// is a (name, tenant) pair: every series of a source or sink names its tenant (issue 17).
pub fn register(sources: &[(String, String)], sinks: &[(String, String)]) {
    install();
    for (source, tenant) in sources {
        let tenant = tenant.clone();
        for outcome in ["ok", "error"] {
            counter!("ticketsync_polls_total", "source" => source.clone(), "outcome" => outcome, "tenant" => tenant.clone())
                .absolute(0);
        }
        for what in ["read", "inserted", "updated", "quarantined", "vanished"] {
            counter!("ticketsync_records_total", "source" => source.clone(), "result" => what, "tenant" => tenant.clone())
                .absolute(0);
        }
        for kind in ["transient", "permanent"] {
            counter!("ticketsync_errors_total", "component" => format!("source:{source}"), "kind" => kind, "tenant" => tenant.clone())
                .absolute(0);
        }
        let _ = histogram!(POLL_SECONDS, "source" => source.clone(), "tenant" => tenant.clone());
        let _ = histogram!(PAGE_SECONDS, "source" => source.clone());
    }
    for (sink, tenant) in sinks {
        let tenant = tenant.clone();
        for outcome in ["delivered", "found_existing", "retry", "failed", "dead"] {
            counter!("ticketsync_delivery_attempts_total", "sink" => sink.clone(), "outcome" => outcome, "tenant" => tenant.clone())
                .absolute(0);
        }
        for kind in ["ambiguous", "retry", "failed", "permanent"] {
            counter!("ticketsync_errors_total", "component" => format!("sink:{sink}"), "kind" => kind, "tenant" => tenant.clone())
                .absolute(0);
        }
        let _ = histogram!(DELIVERY_SECONDS, "sink" => sink.clone(), "tenant" => tenant);
    }
    for kind in ["disk_full", "io"] {
        counter!("ticketsync_errors_total", "component" => "store", "kind" => kind).absolute(0);
    }
}

/// How long one poll of a source took, whatever its outcome.
pub fn poll_duration(source: &str, tenant: &str, took: Duration) {
    histogram!(POLL_SECONDS, "source" => source.to_string(), "tenant" => tenant.to_string()).record(took.as_secs_f64());
}

/// How long one page (one vendor request of a poll, retries included) took to fetch.
pub fn page_fetch_duration(source: &str, took: Duration) {
    histogram!(PAGE_SECONDS, "source" => source.to_string()).record(took.as_secs_f64());
}

/// The process metrics, read from /proc now (called at each scrape).
pub fn collect_process() {
    if let Some(c) = PROCESS.get() {
        c.collect();
    }
}

fn describe() {
    describe_counter!("ticketsync_polls_total", "Source polls by outcome (ok, error).");
    describe_counter!("ticketsync_records_total", "Vendor records read by a poll, by result.");
    describe_counter!("ticketsync_delivery_attempts_total", "Delivery attempts by sink and outcome.");
    describe_counter!("ticketsync_errors_total", "Errors by component and kind.");
    describe_gauge!("ticketsync_deliveries", "Outbox rows by sink and state.");
    describe_gauge!(
        "ticketsync_outbox_oldest_age_seconds",
        "Age of the oldest undelivered (pending or sending) row, per sink."
    );
    describe_gauge!(
        "ticketsync_last_successful_poll_timestamp_seconds",
        "Unix time of the last complete poll per source (per account for Zoom: zoom:<account>)."
    );
    describe_gauge!(
        "ticketsync_token_expiry_timestamp_seconds",
        "Unix time at which a stored OAuth token expires, by provider and token (access, refresh)."
    );
    describe_gauge!("ticketsync_audit_events", "Rows in the audit chain.");
    describe_gauge!("ticketsync_build_info", "Always 1; the version is a label.");
    describe_gauge!(
        "ticketsync_store_writes_failing",
        "1 while the database refuses writes (disk full, I/O error), else 0."
    );
    describe_histogram!(POLL_SECONDS, Unit::Seconds, "Duration of a source poll (all its pages), by source.");
    describe_histogram!(
        PAGE_SECONDS,
        Unit::Seconds,
        "Duration of fetching one page from a vendor (retries and rate-limit waits included), by source."
    );
    describe_histogram!(
        DELIVERY_SECONDS,
        Unit::Seconds,
        "Duration of one delivery attempt to a sink (marker scan and post), by sink."
    );
}

pub fn poll_finished(source: &str, tenant: &str, result: &Result<PollStats, SourceError>) {
    let tenant = tenant.to_string();
    match result {
        Ok(s) => {
            counter!("ticketsync_polls_total", "source" => source.to_string(), "outcome" => "ok", "tenant" => tenant.clone())
                .increment(1);
            for (what, n) in [
                ("read", s.records),
                ("inserted", s.inserted),
                ("updated", s.updated),
                ("quarantined", s.quarantined),
                ("vanished", s.vanished),
            ] {
                counter!("ticketsync_records_total", "source" => source.to_string(), "result" => what, "tenant" => tenant.clone())
                    .increment(n);
            }
        }
        Err(e) => {
            counter!("ticketsync_polls_total", "source" => source.to_string(), "outcome" => "error", "tenant" => tenant.clone())
                .increment(1);
            let kind = if e.is_transient() { "transient" } else { "permanent" };
            counter!("ticketsync_errors_total", "component" => format!("source:{source}"), "kind" => kind, "tenant" => tenant)
                .increment(1);
        }
    }
}

fn epoch(ts: &str) -> Option<f64> {
    crate::session::parse_ts(ts).map(|t| t.timestamp_millis() as f64 / 1000.0)
}

const STATES: [&str; 5] = ["pending", "sending", "delivered", "failed", "dead"];

/// Set the database-backed gauges from the store (called at each scrape).
/// `configured`: the sinks of the configuration, shown with zeros before their first row.
pub async fn refresh_from_store(
    store: &crate::store::Store,
    configured: &[String],
) -> Result<(), crate::store::StoreError> {
    use crate::store::reads;
    collect_process();
    let rows = reads::deliveries_by_sink_state(store).await?;
    let mut sinks: Vec<&str> =
        rows.iter().map(|r| r.sink.as_str()).chain(configured.iter().map(String::as_str)).collect();
    sinks.sort();
    sinks.dedup();
    for sink in &sinks {
        for state in STATES {
            let n = rows.iter().find(|r| r.sink == *sink && r.state == state).map(|r| r.count).unwrap_or(0);
            gauge!("ticketsync_deliveries", "sink" => sink.to_string(), "state" => state).set(n as f64);
        }
    }
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let mut oldest: Vec<(String, Option<String>)> =
        reads::oldest_waiting_by_sink(store).await?.into_iter().map(|b| (b.sink, b.oldest_waiting_at)).collect();
    for sink in configured {
        if !oldest.iter().any(|(s, _)| s == sink) {
            oldest.push((sink.clone(), None));
        }
    }
    for (sink, at) in oldest {
        let age = at.as_deref().and_then(epoch).map(|t| (now - t).max(0.0)).unwrap_or(0.0);
        gauge!("ticketsync_outbox_oldest_age_seconds", "sink" => sink).set(age);
    }
    for poll in reads::source_polls(store).await? {
        if let Some(t) = poll.last_success_at.as_deref().and_then(epoch) {
            gauge!("ticketsync_last_successful_poll_timestamp_seconds", "source" => poll.source).set(t);
        }
    }
    // Every stored provider: teamviewer, splashtop, zoom:<account>.
    for t in reads::token_expiries(store).await? {
        for (token, at) in [("access", t.access_expires_at), ("refresh", t.refresh_expires_at)] {
            if let Some(ts) = at.as_deref().and_then(epoch) {
                gauge!("ticketsync_token_expiry_timestamp_seconds", "provider" => t.provider.clone(), "token" => token)
                    .set(ts);
            }
        }
    }
    let audit = reads::audit_rows(store).await?;
    gauge!("ticketsync_audit_events").set(audit as f64);
    Ok(())
}
