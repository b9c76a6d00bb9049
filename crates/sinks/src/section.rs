//! What every ticket system's section shares, below the sinks' modules and the registry
//! (`crate::config`, which lists them): the routing keys, what building a sink takes, the
//! `SinkSection` trait and the helpers its impls share. A sink's module imports from here
//! and never from the registry, so that no file imports one that imports it back.

use std::sync::Arc;

use crate::common::HttpKnobs;
use crate::TicketSink;
// What every component's configuration shares, named here for the sinks' modules.
use serde::Deserialize;
pub use ticketsync_config::{
    declared_secret, key_err, require, Component, ConfigError, Described, Errors, HasComponent, InitKey, Plain,
    SecretUse,
};
pub use ticketsync_http::{outbound_section, Outbound, OutboundConfig};

/// Serde's default for `enabled` and the other keys that default to on.
pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn check_url(e: &mut Errors, key: &str, u: &str) {
    e.add(ticketsync_config::check_url(u).map_err(|m| key_err(key, m)));
}

/// The routing keys every sink section has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Only tickets whose id matches this regex go to this sink.
    pub tickets: Option<String>,
    /// Only sessions from these sources go to this sink.
    pub sources: Option<Vec<String>>,
    /// Notes in flight at once to this system (default 16).
    pub concurrency: Option<usize>,
    /// Write a billable time entry for each matched session (or group of reconnects) on its
    /// ticket (issue 20; docs/time-entries.md). Off by default.
    pub time_entries: bool,
    /// Billed minutes rounded up to a multiple of this (default 15).
    pub time_round_minutes: Option<i64>,
    /// The shortest entry, in minutes (default 15).
    pub time_minimum_minutes: Option<i64>,
    /// Reconnects of one session code within this many minutes are one entry (default 10).
    pub time_merge_gap_minutes: Option<i64>,
    /// A TeamViewer `DoNotBill` session: `non_billable` (default, an entry marked so) or `skip`.
    pub time_do_not_bill: Option<crate::time_entry::DoNotBill>,
    /// Sources whose sessions are non-billable unless the vendor says `Bill` (default none).
    pub time_non_billable_sources: Option<Vec<String>>,
    /// `"<technician> = <user id>"` lines: the technician as the vendor names them (display
    /// name, id or e-mail) → the ticket system's user id; a technician not listed is looked
    /// up by e-mail where the system can, else the entry is posted as the API user and says
    /// so. (A list of lines, not a table: a technician's name is no configuration key.)
    pub time_technicians: Option<Vec<String>>,
}

impl RouteConfig {
    pub const KEYS: [&'static str; 10] = [
        "tickets",
        "sources",
        "concurrency",
        "time_entries",
        "time_round_minutes",
        "time_minimum_minutes",
        "time_merge_gap_minutes",
        "time_do_not_bill",
        "time_non_billable_sources",
        "time_technicians",
    ];

    /// The time-entry policy when `time_entries = true`.
    pub fn time_policy(&self) -> Option<crate::time_entry::TimePolicy> {
        if !self.time_entries {
            return None;
        }
        let d = crate::time_entry::TimePolicy::default();
        Some(crate::time_entry::TimePolicy {
            round_minutes: self.time_round_minutes.unwrap_or(d.round_minutes),
            minimum_minutes: self.time_minimum_minutes.unwrap_or(d.minimum_minutes),
            merge_gap: self.time_merge_gap_minutes.map(chrono::Duration::minutes).unwrap_or(d.merge_gap),
            do_not_bill: self.time_do_not_bill.unwrap_or(d.do_not_bill),
            non_billable_sources: self.time_non_billable_sources.clone().unwrap_or_default(),
        })
    }

    /// The technician map (empty when not configured), keys compared without case; lines
    /// that do not parse are left out (and reported by [`RouteConfig::validate_time_into`]).
    pub fn technicians(&self) -> std::collections::BTreeMap<String, String> {
        self.time_technicians.iter().flatten().filter_map(|l| technician_line(l)).collect()
    }

    /// The time keys' checks, each error naming its key under `section` (`sinks.redmine`).
    pub fn validate_time_into(&self, section: &str, e: &mut Errors) {
        let key = |k: &str| format!("{section}.{k}");
        if let Some(r) = self.time_round_minutes.filter(|r| !(1..=1440).contains(r)) {
            e.key(&key("time_round_minutes"), format!("must be 1 to 1440 minutes, got {r}"));
        }
        if let Some(m) = self.time_minimum_minutes.filter(|m| !(0..=1440).contains(m)) {
            e.key(&key("time_minimum_minutes"), format!("must be 0 to 1440 minutes, got {m}"));
        }
        if let Some(g) = self.time_merge_gap_minutes.filter(|g| !(0..=1440).contains(g)) {
            e.key(&key("time_merge_gap_minutes"), format!("must be 0 to 1440 minutes, got {g}"));
        }
        for (i, line) in self.time_technicians.iter().flatten().enumerate() {
            if technician_line(line).is_none() {
                e.key(
                    &format!("{}[{i}]", key("time_technicians")),
                    format!("{line:?} is not \"<technician> = <user id>\" (neither side empty)"),
                );
            }
        }
        let set = self.time_round_minutes.is_some()
            || self.time_minimum_minutes.is_some()
            || self.time_merge_gap_minutes.is_some()
            || self.time_do_not_bill.is_some()
            || self.time_non_billable_sources.is_some()
            || self.time_technicians.is_some();
        if set && !self.time_entries {
            e.key(&key("time_entries"), "time_* keys are set but time_entries is not true: no entry would be written");
        }
    }
}

/// `"<technician> = <user id>"` → (technician in lower case, user id), split at the last `=`.
fn technician_line(line: &str) -> Option<(String, String)> {
    let (t, u) = line.rsplit_once('=')?;
    let (t, u) = (t.trim(), u.trim());
    (!t.is_empty() && !u.is_empty()).then(|| (t.to_lowercase(), u.to_string()))
}

/// What building a sink takes besides its own section.
pub struct BuildCtx {
    /// `outbox.request_timeout_secs`: the whole of one request.
    pub timeout: std::time::Duration,
    /// `notes.inline_attachment_max_chars`.
    pub inline_limit: usize,
}

/// One ticket system's section, everything the binary asks of it in one place: its name,
/// routing keys, checks, secrets, outbound keys and how it is built.
pub trait SinkSection: HasComponent + Send + Sync {
    /// The section's name under `[sinks]`, which is also the sink's name in routes, the
    /// outbox and metrics.
    fn kind(&self) -> &'static str {
        self.component().kind
    }
    fn enabled(&self) -> bool;
    fn route(&self) -> &RouteConfig;
    /// The section's own checks, every error reported.
    fn validate_into(&self, e: &mut Errors);
    /// The secrets it uses, resolved.
    fn secrets(&self) -> Vec<SecretUse>;
    /// The HTTP Basic `(user, password)` pairs it sends, which the redactor scrubs in their
    /// encoded form too.
    fn basic_pairs(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Its outbound keys and the URLs (key, value) it calls.
    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>);
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError>;
}

/// What every section's impl says the same way: the `enabled` and `route` fields, and the
/// one `url` key it calls (the webhook's included).
macro_rules! section_basics {
    ($kind:literal) => {
        fn enabled(&self) -> bool {
            self.enabled
        }
        fn route(&self) -> &RouteConfig {
            &self.route
        }
        fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>) {
            (self.outbound(), vec![(concat!("sinks.", $kind, ".url").to_string(), self.url.clone())])
        }
    };
}

pub(crate) use section_basics;

/// An HTTP sink with the knobs every one of them takes from the context and its section.
pub(crate) fn tuned<S: HttpKnobs + TicketSink + 'static>(
    sink: S,
    ctx: &BuildCtx,
    out: &Outbound<'_>,
) -> Arc<dyn TicketSink> {
    Arc::new(sink.with_inline_limit(ctx.inline_limit).with_max_response_bytes(out.limit()))
}
