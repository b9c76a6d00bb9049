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
use crate::config::{declared_secret, require, ConfigError, Errors};

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

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.into(), message: message.into() }
}

fn check_url(e: &mut Errors, key: &str, u: &str) {
    e.add(crate::config::check_url(u).map_err(|m| key_err(key, m)));
}

/// The routing keys of one sink section.
pub(crate) fn check_route_into(e: &mut Errors, section: &str, tickets: Option<&str>, sources: Option<&[String]>) {
    if let Some(p) = tickets {
        e.add(
            regex::Regex::new(p)
                .map_err(|err| key_err(&format!("{section}.tickets"), err.to_string().replace('\n', " "))),
        );
    }
    if sources.is_some_and(|s| s.is_empty()) {
        e.key(&format!("{section}.sources"), "must name at least one source, or be left out");
    }
    // A misspelt source would silently route nothing to this sink.
    let known = crate::sources::ROUTING_NAMES;
    for bad in sources.into_iter().flatten().filter(|s| !known.iter().any(|k| k.eq_ignore_ascii_case(s))) {
        e.key(&format!("{section}.sources"), format!("unknown source {bad:?} (known: {})", known.join(", ")));
    }
}

impl ZendeskConfig {
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.zendesk.url", &self.url);
        if self.auth == ZendeskAuthKind::ApiToken && self.email.as_deref().unwrap_or("").is_empty() {
            e.key("sinks.zendesk.email", "required when auth = \"api_token\"");
        }
    }
    pub(crate) fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
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
    pub(crate) fn api_key_value(&self) -> Result<Option<SecretString>, ConfigError> {
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
    pub(crate) fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
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
    pub(crate) fn user_token_value(&self) -> Result<Option<SecretString>, ConfigError> {
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
    pub(crate) fn validate_into(&self, e: &mut Errors) {
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

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml_with_env(text, "t.toml", Vec::<(String, String)>::new())
    }

    #[test]
    fn four_sinks_build_with_routes_and_secrets() {
        let c = load(
            r#"
[sinks.zendesk]
url = "https://x.zendesk.com"
email = "a@x.test"
token = "t"
session_code_field_id = 360001
tickets = '^\d+$'
[sinks.freshservice]
url = "https://x.freshservice.com"
api_key = "k"
[sinks.jsm]
url = "https://x.atlassian.net"
deployment = "data_center"
token = "pat"
tickets = '^[A-Z]+-\d+$'
sources = ["teamviewer"]
[sinks.glpi]
url = "https://glpi.x.test/apirest.php"
user_token = "u"
"#,
        )
        .unwrap();
        c.check_secrets().unwrap();
        let routes = c.sinks.routes();
        assert_eq!(routes.iter().map(|r| r.0).collect::<Vec<_>>(), ["zendesk", "freshservice", "jsm", "glpi"]);
        let mut sinks = std::collections::HashMap::new();
        c.sinks.extra().build(std::time::Duration::from_secs(5), 20_000, &mut sinks).unwrap();
        assert_eq!(sinks.len(), 4);
        assert_eq!(sinks["zendesk"].max_batch(), super::super::zendesk::DEFAULT_MAX_BATCH);
        assert_eq!(sinks["glpi"].max_batch(), 1);
    }

    #[test]
    fn bad_keys_are_named() {
        let e = load("[sinks.zendesk]\nurl = \"https://x.zendesk.com\"\ntoken = \"t\"\n").unwrap_err().to_string();
        assert!(e.contains("sinks.zendesk.email"), "{e}");
        let e = load("[sinks.glpi]\nurl = \"https://glpi.x.test/\"\n").unwrap_err().to_string();
        assert!(e.contains("sinks.glpi.url"), "{e}");
        let e = load("[sinks.jsm]\nurl = \"https://x\"\nemail = \"a\"\ntickets = \"(\"\n").unwrap_err().to_string();
        assert!(e.contains("sinks.jsm.tickets"), "{e}");
        let e = load("[sinks.freshservice]\nurl = \"https://x\"\n").unwrap().check_secrets().unwrap_err().to_string();
        assert!(e.starts_with("sinks.freshservice.api_key"), "{e}");
        let e = load("[sinks.glpi]\nurl = \"https://g/apirest.php\"\nuser_tokn = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("user_tokn"), "{e}");
        let e = load("[sinks.webhook]\nurl = \"https://h\"\nsources = [\"zoom:helpdesk\"]\n").unwrap_err().to_string();
        assert!(e.contains("sinks.webhook.sources") && e.contains("unknown source \"zoom:helpdesk\""), "{e}");
        let c =
            load("[sinks.webhook]\nurl = \"https://h\"\nsources = [\"Splashtop\", \"zoom\", \"visioconference\"]\n");
        assert!(c.is_ok(), "{:?}", c.err());
    }
}
