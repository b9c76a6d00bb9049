//! The delivery stage's metrics, recorded where deliveries happen (through the `metrics`
//! facade). The binary installs the exporter, describes the series and registers every
//! configured sink's at zero.

use std::time::Duration;

use metrics::{counter, histogram};

use crate::store::outbox::Outcome;

/// The delivery histogram (its name ends in `_seconds`, as Prometheus' conventions ask).
pub const DELIVERY_SECONDS: &str = "ticketsync_delivery_duration_seconds";

/// How long one delivery attempt (one request to the sink, or one batch) took.
/// Every series names the sink's tenant (`tenant`, issue 17) beside the sink.
pub fn delivery_duration(sink: &str, tenant: &str, took: Duration) {
    histogram!(DELIVERY_SECONDS, "sink" => sink.to_string(), "tenant" => tenant.to_string()).record(took.as_secs_f64());
}

pub fn delivery_finished(sink: &str, tenant: &str, outcome: &Outcome) {
    let (label, error_kind) = match outcome {
        Outcome::Delivered { found_existing: true, .. } => ("found_existing", None),
        Outcome::Delivered { .. } => ("delivered", None),
        Outcome::Retry { ambiguous: true, .. } => ("retry", Some("ambiguous")),
        Outcome::Retry { .. } => ("retry", Some("retry")),
        Outcome::Failed { .. } => ("failed", Some("failed")),
        Outcome::Dead { .. } => ("dead", Some("permanent")),
    };
    let tenant = tenant.to_string();
    counter!("ticketsync_delivery_attempts_total", "sink" => sink.to_string(), "outcome" => label, "tenant" => tenant.clone())
        .increment(1);
    if let Some(kind) = error_kind {
        counter!("ticketsync_errors_total", "component" => format!("sink:{sink}"), "kind" => kind, "tenant" => tenant)
            .increment(1);
    }
}
