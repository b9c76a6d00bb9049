//! Configuration of the Zendesk, Freshservice, Jira Service Management and GLPI sinks
//! (`[sinks.zendesk]`, `[sinks.freshservice]`, `[sinks.jsm]`, `[sinks.glpi]`): keys,
//! validation, secrets, and building the sinks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::common::HttpKnobs;
use super::freshservice::FreshserviceSink;
use super::glpi::GlpiSink;
use super::jsm::{JsmAuth, JsmSink};
use super::redmine::RedmineSink;
use super::webhook::WebhookSink;
use super::zendesk::{ZendeskAuth, ZendeskSink};
use super::TicketSink;
// What every component's configuration shares, under this module so the sinks' files name
// it `crate::config::…` as they did inside the binary.
pub use ticketsync_config::{
    declared_secret, key_err, require, Component, ConfigError, Described, Errors, HasComponent, InitKey, Plain,
    SecretUse,
};
pub use ticketsync_http::{outbound_section, Outbound, OutboundConfig};

/// Serde's default for `enabled` and the other keys that default to on.
pub(crate) fn yes() -> bool {
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

pub(crate) fn check_url(e: &mut Errors, key: &str, u: &str) {
    e.add(ticketsync_config::check_url(u).map_err(|m| key_err(key, m)));
}

impl ZendeskConfig {
    fn check_into(&self, e: &mut Errors) {
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
    fn check_into(&self, e: &mut Errors) {
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
    fn check_into(&self, e: &mut Errors) {
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
    fn check_into(&self, e: &mut Errors) {
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

/// Declares `[sinks]` and the lists read before any section is: each line names a ticket
/// system's key and its section type, which says the rest ([`Described`], [`SinkSection`]).
macro_rules! registry {
    ($($(#[$attr:meta])* $name:ident: $t:ty),* $(,)?) => {
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct SinksConfig {
            $($(#[$attr])* pub $name: Option<$t>,)*
        }

        /// How many ticket systems there are. (Counted by statements, which a `cfg` may
        /// take out, as it takes out the field.)
        pub const COUNT: usize = {
            let mut n = 0;
            $($(#[$attr])* {
                n += 1;
            })*
            n
        };

        /// The sink sections under `[sinks]`, as the config parse needs them before any
        /// section is read (their routing keys live in [`RouteConfig`]).
        pub const SECTIONS: [&str; COUNT] = {
            let mut out = [""; COUNT];
            let mut i = 0;
            $($(#[$attr])* {
                out[i] = <$t as Described>::COMPONENT.section;
                i += 1;
            })*
            let _ = i;
            out
        };

        /// Every ticket system, configured or not, in registry order.
        pub fn components() -> Vec<&'static Component> {
            let mut out: Vec<&'static Component> = Vec::with_capacity(COUNT);
            $($(#[$attr])* out.push(const { &<$t as Described>::COMPONENT });)*
            out
        }

        impl SinksConfig {
            /// Every configured sink section, in registry order: the one list of ticket
            /// systems the binary builds, validates, routes and asks for secrets.
            pub fn all(&self) -> Vec<&dyn SinkSection> {
                let mut out: Vec<&dyn SinkSection> = Vec::with_capacity(COUNT);
                $($(#[$attr])* if let Some(c) = &self.$name {
                    out.push(c);
                })*
                out
            }
        }
    };
}

/// The sink sections' secret keys (credentials named by `ticketsync_config::credential`:
/// `redmine_api_key`, …), as `doctor` needs them before any section is read.
pub fn secret_keys() -> Vec<&'static str> {
    components().into_iter().flat_map(|c| c.secrets.iter().copied()).collect()
}

// The one list of ticket systems: adding one is its module and a line here.
registry! {
    redmine: RedmineConfig,
    zendesk: ZendeskConfig,
    freshservice: FreshserviceConfig,
    jsm: JsmConfig,
    glpi: GlpiConfig,
    rt: crate::rt::config::RtConfig,
    zammad: crate::zammad::config::ZammadConfig,
    servicenow: crate::servicenow::config::ServiceNowConfig,
    webhook: WebhookConfig,
    #[cfg(feature = "fake-sink")]
    fake: crate::fake::FakeConfig,
}

impl SinksConfig {
    /// The enabled sections.
    pub fn enabled(&self) -> impl Iterator<Item = &dyn SinkSection> {
        self.all().into_iter().filter(|c| c.enabled())
    }

    /// Every configured sink: its name, whether it is enabled, its routing keys.
    pub fn sections(&self) -> Vec<(&'static str, bool, &RouteConfig)> {
        self.all().into_iter().map(|c| (c.kind(), c.enabled(), c.route())).collect()
    }

    /// Every section's own checks (URLs, keys required together), all of them.
    pub fn validate_into(&self, e: &mut Errors) {
        for c in self.all() {
            c.validate_into(e);
        }
    }

    /// The secrets of the enabled sinks, resolved.
    pub fn secret_uses(&self) -> Vec<SecretUse> {
        self.enabled().flat_map(|c| c.secrets()).collect()
    }

    /// The HTTP Basic pairs the enabled sinks send, for the redactor.
    pub fn basic_pairs(&self) -> Vec<(String, String)> {
        self.enabled().flat_map(|c| c.basic_pairs()).collect()
    }

    /// Every enabled sink, built, by name.
    pub fn build(&self, ctx: &BuildCtx) -> Result<HashMap<String, Arc<dyn TicketSink>>, ConfigError> {
        self.enabled().map(|c| Ok((c.kind().to_string(), c.build(ctx)?))).collect()
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

impl SinkSection for RedmineConfig {
    section_basics!("redmine");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.redmine.url", &self.url);
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.redmine.api_key", true, self.api_key_secret())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let key = require(self.api_key_secret()?, "sinks.redmine.api_key")?;
        let http = self.outbound().client(ctx.timeout)?;
        let sink = RedmineSink::new("redmine", &self.url, key, self.private_notes, http);
        Ok(tuned(sink.with_text_formatting(self.text_formatting), ctx, &self.outbound()))
    }
}

impl SinkSection for WebhookConfig {
    section_basics!("webhook");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.webhook.url", &self.url);
        if reqwest::header::HeaderName::from_bytes(self.signature_header.as_bytes()).is_err() {
            e.key("sinks.webhook.signature_header", "not a valid HTTP header name");
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.webhook.secret", true, self.secret_value())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let secret = require(self.secret_value()?, "sinks.webhook.secret")?;
        let http = self.outbound().client(ctx.timeout)?;
        Ok(Arc::new(
            WebhookSink::new("webhook", &self.url, secret, &self.signature_header, http)
                .with_scheme(self.signature)
                .with_max_response_bytes(self.outbound().limit()),
        ))
    }
}

impl SinkSection for ZendeskConfig {
    section_basics!("zendesk");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.zendesk.token", true, self.token_value())]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        match (self.auth, &self.email, self.token_secret()) {
            (ZendeskAuthKind::ApiToken, Some(email), Ok(t)) => {
                vec![(format!("{email}/token"), t.expose_secret().to_string())]
            }
            _ => Vec::new(),
        }
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let token = self.token_secret()?;
        let auth = match self.auth {
            ZendeskAuthKind::ApiToken => ZendeskAuth::ApiToken { email: self.email.clone().unwrap_or_default(), token },
            ZendeskAuthKind::Oauth => ZendeskAuth::OAuth { token },
        };
        let http = self.outbound().client(ctx.timeout)?;
        let sink = ZendeskSink::new("zendesk", &self.url, auth, self.session_code_field_id, http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

impl SinkSection for FreshserviceConfig {
    section_basics!("freshservice");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.freshservice.api_key", true, self.api_key_value())]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        // Freshworks: the API key is the user name, any password (we send "X").
        self.api_key_secret().map(|k| vec![(k.expose_secret().to_string(), "X".into())]).unwrap_or_default()
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let http = self.outbound().client(ctx.timeout)?;
        let sink = FreshserviceSink::new(
            "freshservice",
            &self.url,
            self.api_key_secret()?,
            self.session_code_field.clone(),
            http,
        );
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

impl SinkSection for JsmConfig {
    section_basics!("jsm");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.jsm.token", true, self.token_value())]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        match (self.deployment, &self.email, self.token_secret()) {
            (JsmDeployment::Cloud, Some(email), Ok(t)) => vec![(email.clone(), t.expose_secret().to_string())],
            _ => Vec::new(),
        }
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let token = self.token_secret()?;
        let auth = match self.deployment {
            JsmDeployment::Cloud => JsmAuth::Cloud { email: self.email.clone().unwrap_or_default(), api_token: token },
            JsmDeployment::DataCenter => JsmAuth::DataCenter { pat: token },
        };
        let http = self.outbound().client(ctx.timeout)?;
        let sink = JsmSink::new("jsm", &self.url, auth, self.remote_links, self.session_code_field_id, http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

impl SinkSection for GlpiConfig {
    section_basics!("glpi");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![
            SecretUse::declared("sinks.glpi.user_token", true, self.user_token_value()),
            // Optional: only when the GLPI API client is configured with an App-Token.
            SecretUse::declared("sinks.glpi.app_token", false, self.app_token_secret()),
        ]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let http = self.outbound().client(ctx.timeout)?;
        let (user, app) = (self.user_token_secret()?, self.app_token_secret()?);
        let sink = GlpiSink::new("glpi", &self.url, user, app, self.session_code_search_option, http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}
