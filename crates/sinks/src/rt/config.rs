//! `[sinks.rt]`: Request Tracker 5's keys, checks, secret and how the sink is built.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::RtSink;
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, BuildCtx, ConfigError, Errors, Outbound,
    OutboundConfig, RouteConfig, SecretUse, SinkSection,
};
use crate::TicketSink;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtConfig {
    #[serde(default = "crate::section::yes")]
    pub enabled: bool,
    /// RT's web address (`https://rt.example.org`, or with its WebPath `…/rt`); REST 2.0 is
    /// called under `<url>/REST/2.0` (a URL already ending in `/REST/2.0` is taken as is).
    pub url: String,
    /// An RT auth token (Logged in as the API user: Settings → Auth Tokens), sent as
    /// `Authorization: token …`.
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Name of a ticket custom field holding the session code (TicketSQL `CF.{name}`), for
    /// `ticket_field` lookups.
    #[serde(default)]
    pub session_code_field: Option<String>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

crate::section::outbound_section!(RtConfig, "sinks.rt");

impl RtConfig {
    pub fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.rt.token", self.token.as_ref(), self.token_file.as_deref())
    }
}

impl SinkSection for RtConfig {
    section_basics!("rt");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.rt.url", &self.url);
        if let Some(f) = &self.session_code_field {
            // It goes into TicketSQL as `CF.{name}`: a brace or quote would change the query.
            if f.is_empty() || f.contains(['{', '}', '\'', '"', '\\']) {
                e.key("sinks.rt.session_code_field", "a custom field name without braces, quotes or backslashes");
            }
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.rt.token", true, self.token_value())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let token = require(self.token_value()?, "sinks.rt.token")?;
        let http = self.outbound().client(ctx.timeout)?;
        let sink = RtSink::new("rt", &self.url, token, self.session_code_field.clone(), http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

/// `[sinks.rt]` before it is read: its name, its secret key and what `init` asks.
impl crate::section::Described for RtConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "rt",
        section: "sinks.rt",
        secrets: &["sinks.rt.token"],
        setup: &crate::section::Plain {
            keys: &[crate::section::InitKey::new(
                "url",
                "Request Tracker URL (https://…, REST 2.0 is under <url>/REST/2.0)",
                None,
            )],
            secrets: &["token"],
        },
    };
}
