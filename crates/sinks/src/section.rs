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
}

impl RouteConfig {
    pub const KEYS: [&'static str; 3] = ["tickets", "sources", "concurrency"];
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
