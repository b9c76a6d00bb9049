//! Prometheus metrics through the `metrics` facade. Counters are recorded where things
//! happen (polls, delivery attempts); gauges that describe stored state (deliveries by
//! state, outbox age, last successful poll, token expiry) are read from the database at
//! each scrape, so they are right after a restart too.

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::sources::{PollStats, SourceError};
use crate::store::outbox::Outcome;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the Prometheus recorder once per process and return its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is already global; ours then renders nothing recorded.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only database gauges");
        }
        describe();
        handle
    })
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
}

pub fn poll_finished(source: &str, result: &Result<PollStats, SourceError>) {
    match result {
        Ok(s) => {
            counter!("ticketsync_polls_total", "source" => source.to_string(), "outcome" => "ok").increment(1);
            for (what, n) in [
                ("read", s.records),
                ("inserted", s.inserted),
                ("updated", s.updated),
                ("quarantined", s.quarantined),
                ("vanished", s.vanished),
            ] {
                counter!("ticketsync_records_total", "source" => source.to_string(), "result" => what).increment(n);
            }
        }
        Err(e) => {
            counter!("ticketsync_polls_total", "source" => source.to_string(), "outcome" => "error").increment(1);
            let kind = if e.is_transient() { "transient" } else { "permanent" };
            counter!("ticketsync_errors_total", "component" => format!("source:{source}"), "kind" => kind).increment(1);
        }
    }
}

pub fn delivery_finished(sink: &str, outcome: &Outcome) {
    let (label, error_kind) = match outcome {
        Outcome::Delivered { found_existing: true, .. } => ("found_existing", None),
        Outcome::Delivered { .. } => ("delivered", None),
        Outcome::Retry { ambiguous: true, .. } => ("retry", Some("ambiguous")),
        Outcome::Retry { .. } => ("retry", Some("retry")),
        Outcome::Failed { .. } => ("failed", Some("failed")),
        Outcome::Dead { .. } => ("dead", Some("permanent")),
    };
    counter!("ticketsync_delivery_attempts_total", "sink" => sink.to_string(), "outcome" => label).increment(1);
    if let Some(kind) = error_kind {
        counter!("ticketsync_errors_total", "component" => format!("sink:{sink}"), "kind" => kind).increment(1);
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
    gauge!("ticketsync_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
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
