//! Configuration of the Zendesk, Freshservice, Jira Service Management and GLPI sinks
//! (`[sinks.zendesk]`, `[sinks.freshservice]`, `[sinks.jsm]`, `[sinks.glpi]`): keys,
//! validation, secrets, and building the sinks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::freshservice::FreshserviceSink;
use super::glpi::GlpiSink;
use super::jsm::{JsmAuth, JsmSink};
use super::zendesk::{ZendeskAuth, ZendeskSink};
use super::TicketSink;
// What every component's configuration shares, under this module so the sinks' files name
// it `crate::config::…` as they did inside the binary.
pub use ticketsync_config::{declared_secret, key_err, require, ConfigError, Errors};
pub use ticketsync_http::{outbound_section, OutboundConfig};

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ZendeskAuthKind {
    /// `email` + API token (Basic `{email}/token:{token}`).
    #[default]
    ApiToken,
    /// An OAuth access token (Bearer).
    Oauth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `https://{subdomain}.zendesk.com`
    pub url: String,
    #[serde(default)]
    pub auth: ZendeskAuthKind,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Id of a custom ticket field (text) that receives the session code.
    #[serde(default)]
    pub session_code_field_id: Option<u64>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::config::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshserviceConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `https://{domain}.freshservice.com`
    pub url: String,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Name of a custom ticket field holding the session code (`cf_session_code`), for lookups.
    #[serde(default)]
    pub session_code_field: Option<String>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::config::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JsmDeployment {
    /// Atlassian Cloud: `email` + API token.
    #[default]
    Cloud,
    /// Data Center / Server: personal access token.
    DataCenter,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsmConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `https://{site}.atlassian.net` or the Data Center base URL.
    pub url: String,
    #[serde(default)]
    pub deployment: JsmDeployment,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Add a remote link (upserted by a stable globalId) for the note's first link.
    #[serde(default = "yes")]
    pub remote_links: bool,
    /// Numeric id of a text custom field holding the session code (JQL `cf[id]`).
    #[serde(default)]
    pub session_code_field_id: Option<u64>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::config::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlpiConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The legacy REST endpoint, ending in `/apirest.php`.
    pub url: String,
    #[serde(default)]
    pub user_token: Option<SecretString>,
    #[serde(default)]
    pub user_token_file: Option<PathBuf>,
    #[serde(default)]
    pub app_token: Option<SecretString>,
    #[serde(default)]
    pub app_token_file: Option<PathBuf>,
    /// searchOption id of the Ticket field holding the session code.
    #[serde(default)]
    pub session_code_search_option: Option<u32>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::config::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}

crate::config::outbound_section!(ZendeskConfig, "sinks.zendesk");

crate::config::outbound_section!(FreshserviceConfig, "sinks.freshservice");

crate::config::outbound_section!(JsmConfig, "sinks.jsm");

crate::config::outbound_section!(GlpiConfig, "sinks.glpi");

fn check_url(e: &mut Errors, key: &str, u: &str) {
    e.add(ticketsync_config::check_url(u).map_err(|m| key_err(key, m)));
}

impl ZendeskConfig {
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.zendesk.url", &self.url);
        if self.auth == ZendeskAuthKind::ApiToken && self.email.as_deref().unwrap_or("").is_empty() {
            e.key("sinks.zendesk.email", "required when auth = \"api_token\"");
        }
    }
    pub fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.zendesk.token", self.token.as_ref(), self.token_file.as_deref())
    }
    pub fn token_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.token_value()?, "sinks.zendesk.token")
    }
}

impl FreshserviceConfig {
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.freshservice.url", &self.url);
    }
    pub fn api_key_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.freshservice.api_key", self.api_key.as_ref(), self.api_key_file.as_deref())
    }
    pub fn api_key_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.api_key_value()?, "sinks.freshservice.api_key")
    }
}

impl JsmConfig {
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.jsm.url", &self.url);
        if self.deployment == JsmDeployment::Cloud && self.email.as_deref().unwrap_or("").is_empty() {
            e.key("sinks.jsm.email", "required when deployment = \"cloud\"");
        }
    }
    pub fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.jsm.token", self.token.as_ref(), self.token_file.as_deref())
    }
    pub fn token_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.token_value()?, "sinks.jsm.token")
    }
}

impl GlpiConfig {
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.glpi.url", &self.url);
        if !self.url.trim_end_matches('/').ends_with("apirest.php") {
            e.key("sinks.glpi.url", "must be the legacy REST endpoint, ending in /apirest.php");
        }
    }
    pub fn user_token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.glpi.user_token", self.user_token.as_ref(), self.user_token_file.as_deref())
    }
    pub fn user_token_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.user_token_value()?, "sinks.glpi.user_token")
    }
    /// Optional: only when the GLPI API client is configured with an App-Token.
    pub fn app_token_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.glpi.app_token", self.app_token.as_ref(), self.app_token_file.as_deref())
    }
}

/// The four sink sections, as they sit in `[sinks]`.
pub struct ExtraSinks<'a> {
    pub zendesk: Option<&'a ZendeskConfig>,
    pub freshservice: Option<&'a FreshserviceConfig>,
    pub jsm: Option<&'a JsmConfig>,
    pub glpi: Option<&'a GlpiConfig>,
}

impl<'a> ExtraSinks<'a> {
    pub fn validate_into(&self, e: &mut Errors) {
        if let Some(c) = self.zendesk {
            c.validate_into(e);
        }
        if let Some(c) = self.freshservice {
            c.validate_into(e);
        }
        if let Some(c) = self.jsm {
            c.validate_into(e);
        }
        if let Some(c) = self.glpi {
            c.validate_into(e);
        }
    }

    pub fn build(
        &self,
        timeout: std::time::Duration,
        inline_limit: usize,
        sinks: &mut HashMap<String, Arc<dyn TicketSink>>,
    ) -> Result<(), ConfigError> {
        if let Some(c) = self.zendesk.filter(|c| c.enabled) {
            let token = c.token_secret()?;
            let auth = match c.auth {
                ZendeskAuthKind::ApiToken => {
                    ZendeskAuth::ApiToken { email: c.email.clone().unwrap_or_default(), token }
                }
                ZendeskAuthKind::Oauth => ZendeskAuth::OAuth { token },
            };
            sinks.insert(
                "zendesk".into(),
                Arc::new(
                    ZendeskSink::new("zendesk", &c.url, auth, c.session_code_field_id, c.outbound().client(timeout)?)
                        .with_inline_limit(inline_limit)
                        .with_max_response_bytes(c.outbound().limit()),
                ),
            );
        }
        if let Some(c) = self.freshservice.filter(|c| c.enabled) {
            sinks.insert(
                "freshservice".into(),
                Arc::new(
                    FreshserviceSink::new(
                        "freshservice",
                        &c.url,
                        c.api_key_secret()?,
                        c.session_code_field.clone(),
                        c.outbound().client(timeout)?,
                    )
                    .with_inline_limit(inline_limit)
                    .with_max_response_bytes(c.outbound().limit()),
                ),
            );
        }
        if let Some(c) = self.jsm.filter(|c| c.enabled) {
            let token = c.token_secret()?;
            let auth = match c.deployment {
                JsmDeployment::Cloud => JsmAuth::Cloud { email: c.email.clone().unwrap_or_default(), api_token: token },
                JsmDeployment::DataCenter => JsmAuth::DataCenter { pat: token },
            };
            sinks.insert(
                "jsm".into(),
                Arc::new(
                    JsmSink::new(
                        "jsm",
                        &c.url,
                        auth,
                        c.remote_links,
                        c.session_code_field_id,
                        c.outbound().client(timeout)?,
                    )
                    .with_inline_limit(inline_limit)
                    .with_max_response_bytes(c.outbound().limit()),
                ),
            );
        }
        if let Some(c) = self.glpi.filter(|c| c.enabled) {
            sinks.insert(
                "glpi".into(),
                Arc::new(
                    GlpiSink::new(
                        "glpi",
                        &c.url,
                        c.user_token_secret()?,
                        c.app_token_secret()?,
                        c.session_code_search_option,
                        c.outbound().client(timeout)?,
                    )
                    .with_inline_limit(inline_limit)
                    .with_max_response_bytes(c.outbound().limit()),
                ),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    pub redmine: Option<RedmineConfig>,
    pub webhook: Option<WebhookConfig>,
    pub zendesk: Option<ZendeskConfig>,
    pub freshservice: Option<FreshserviceConfig>,
    pub jsm: Option<JsmConfig>,
    pub glpi: Option<GlpiConfig>,
}

impl SinksConfig {
    pub fn extra(&self) -> ExtraSinks<'_> {
        ExtraSinks {
            zendesk: self.zendesk.as_ref(),
            freshservice: self.freshservice.as_ref(),
            jsm: self.jsm.as_ref(),
            glpi: self.glpi.as_ref(),
        }
    }

    /// Every configured sink: its name, whether it is enabled, its routing keys.
    pub fn sections(&self) -> Vec<(&'static str, bool, &RouteConfig)> {
        let all: [(&'static str, Option<(bool, &RouteConfig)>); 6] = [
            ("redmine", self.redmine.as_ref().map(|c| (c.enabled, &c.route))),
            ("webhook", self.webhook.as_ref().map(|c| (c.enabled, &c.route))),
            ("zendesk", self.zendesk.as_ref().map(|c| (c.enabled, &c.route))),
            ("freshservice", self.freshservice.as_ref().map(|c| (c.enabled, &c.route))),
            ("jsm", self.jsm.as_ref().map(|c| (c.enabled, &c.route))),
            ("glpi", self.glpi.as_ref().map(|c| (c.enabled, &c.route))),
        ];
        all.into_iter().filter_map(|(name, c)| c.map(|(enabled, route)| (name, enabled, route))).collect()
    }

    /// Every enabled sink with its routing keys (ticket-id pattern, sources), by name.
    pub fn routes(&self) -> Vec<crate::routing::RouteKeys<'_>> {
        let enabled = self.sections().into_iter().filter(|s| s.1);
        enabled.map(|(name, _, r)| (name, r.tickets.as_deref(), r.sources.as_deref())).collect()
    }

    /// The `concurrency` key of each enabled sink that sets it, by sink name.
    pub fn concurrency(&self) -> std::collections::HashMap<String, usize> {
        let enabled = self.sections().into_iter().filter(|s| s.1);
        enabled.filter_map(|(name, _, r)| Some((name.to_string(), r.concurrency?))).collect()
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedmineConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub url: String,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Session notes are private notes (visible to agents only).
    #[serde(default = "yes")]
    pub private_notes: bool,
    /// Redmine's text formatting (Administration > Settings > General): `textile` (default),
    /// `markdown` or `common_mark`. Vendor text is escaped for all three; this picks how
    /// inlined attachments are fenced (`<pre>` or a code fence).
    #[serde(default)]
    pub text_formatting: crate::redmine::TextFormatting,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub url: String,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_sig_header")]
    pub signature_header: String,
    /// `standard` (Standard Webhooks headers), `legacy` (`signature_header` only) or
    /// `both` (the default, so receivers of the legacy header keep working).
    #[serde(default)]
    pub signature: crate::webhook::SignatureScheme,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

crate::config::outbound_section!(RedmineConfig, "sinks.redmine");
crate::config::outbound_section!(WebhookConfig, "sinks.webhook");

fn default_sig_header() -> String {
    "X-Ticketsync-Signature".into()
}

impl RedmineConfig {
    pub fn api_key_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.redmine.api_key", self.api_key.as_ref(), self.api_key_file.as_deref())
    }
}
impl WebhookConfig {
    pub fn secret_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.webhook.secret", self.secret.as_ref(), self.secret_file.as_deref())
    }
}
