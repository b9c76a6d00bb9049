//! `[sinks.autotask]`: Autotask's keys, checks, secret and how the sink is built.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::{AutotaskCredentials, AutotaskSink, NoteKinds, TimeSettings};
use crate::section::{
    check_url, declared_secret, require, tuned, BuildCtx, ConfigError, Errors, Outbound, OutboundConfig, RouteConfig,
    SecretUse, SinkSection,
};
use crate::TicketSink;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutotaskConfig {
    #[serde(default = "crate::section::yes")]
    pub enabled: bool,
    /// The zone-discovery server.
    #[serde(default = "default_url")]
    pub url: String,
    /// The zone's REST root (`https://webservices5.autotask.net/atservicesrest`): skips the
    /// discovery.
    #[serde(default)]
    pub zone_url: Option<String>,
    /// The API-only user's user name (`UserName` header).
    #[serde(default)]
    pub username: String,
    /// The integration's tracking identifier (`ApiIntegrationCode` header).
    #[serde(default)]
    pub integration_code: String,
    /// The API user's secret (`Secret` header).
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `TicketNotes.noteType` picklist value.
    #[serde(default = "one")]
    pub note_type: i64,
    /// `TicketNotes.publish` picklist value of an internal note.
    #[serde(default = "one")]
    pub publish: i64,
    /// `TicketNotes.publish` picklist value of a note the contact may see.
    #[serde(default = "three")]
    pub publish_public: i64,
    /// Time entries: the role (`roleID`) they are written with; required with `time_entries`.
    #[serde(default)]
    pub time_role_id: Option<i64>,
    /// Time entries: the work type (`billingCodeID`), when the instance wants one.
    #[serde(default)]
    pub time_billing_code_id: Option<i64>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

fn default_url() -> String {
    "https://webservices.autotask.net".into()
}
fn one() -> i64 {
    1
}
fn three() -> i64 {
    3
}

crate::section::outbound_section!(AutotaskConfig, "sinks.autotask");

impl AutotaskConfig {
    pub fn secret_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.autotask.secret", self.secret.as_ref(), self.secret_file.as_deref())
    }
}

/// A header value: visible ASCII, no separators that would end the header.
fn is_header_value(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.chars().all(|c| c.is_ascii_graphic())
}

impl SinkSection for AutotaskConfig {
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn route(&self) -> &RouteConfig {
        &self.route
    }
    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>) {
        let mut urls = vec![("sinks.autotask.url".to_string(), self.url.clone())];
        if let Some(z) = &self.zone_url {
            urls.push(("sinks.autotask.zone_url".to_string(), z.clone()));
        }
        (self.outbound(), urls)
    }
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.autotask.url", &self.url);
        if let Some(z) = &self.zone_url {
            check_url(e, "sinks.autotask.zone_url", z);
            if !z.trim_end_matches('/').to_ascii_lowercase().ends_with("/atservicesrest") {
                e.key("sinks.autotask.zone_url", "the zone's REST root, ending in /atservicesrest");
            }
        }
        if !is_header_value(&self.username) {
            e.key("sinks.autotask.username", "required: the API-only user's user name");
        }
        if !is_header_value(&self.integration_code) {
            e.key("sinks.autotask.integration_code", "required: the API tracking identifier of the integration");
        }
        if self.route.time_entries && self.time_role_id.is_none_or(|r| r <= 0) {
            e.key("sinks.autotask.time_role_id", "required with time_entries = true: the roleID time is billed at");
        }
        if self.time_billing_code_id.is_some_and(|c| c <= 0) {
            e.key("sinks.autotask.time_billing_code_id", "a billing code id (a positive integer)");
        }
        for (key, v) in
            [("note_type", self.note_type), ("publish", self.publish), ("publish_public", self.publish_public)]
        {
            if v <= 0 {
                e.key(&format!("sinks.autotask.{key}"), "a picklist value (a positive integer)");
            }
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.autotask.secret", true, self.secret_value())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let creds = AutotaskCredentials {
            username: self.username.clone(),
            integration_code: self.integration_code.clone(),
            secret: require(self.secret_value()?, "sinks.autotask.secret")?,
        };
        let kinds = NoteKinds { note_type: self.note_type, publish: self.publish, publish_public: self.publish_public };
        let http = self.outbound().client(ctx.timeout)?;
        let mut sink = AutotaskSink::new("autotask", &self.url, self.zone_url.as_deref(), creds, kinds, http);
        if let (true, Some(role_id)) = (self.route.time_entries, self.time_role_id) {
            sink = sink.with_time_entries(TimeSettings { role_id, billing_code_id: self.time_billing_code_id });
        }
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

/// `[sinks.autotask]` before it is read: its name, its secret key and what `init` asks.
impl crate::section::Described for AutotaskConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "autotask",
        section: "sinks.autotask",
        secrets: &["sinks.autotask.secret"],
        setup: &crate::section::Plain {
            keys: &[
                crate::section::InitKey::new("username", "Autotask API-only user's user name", None),
                crate::section::InitKey::new("integration_code", "Autotask API tracking identifier", None),
            ],
            secrets: &["secret"],
        },
    };
}
