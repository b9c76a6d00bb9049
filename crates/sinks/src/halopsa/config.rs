//! `[sinks.halopsa]`: HaloPSA's keys, checks, secret and how the sink is built.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::{HaloCredentials, HaloPsaSink, Outcomes};
use crate::section::{
    check_url, declared_secret, require, tuned, BuildCtx, ConfigError, Errors, Outbound, OutboundConfig, RouteConfig,
    SecretUse, SinkSection,
};
use crate::TicketSink;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaloPsaConfig {
    #[serde(default = "crate::section::yes")]
    pub enabled: bool,
    /// The resource server without `/api` (`https://acme.halopsa.com`).
    pub url: String,
    /// The authorisation server (`https://acme.halopsa.com/auth`); `<url>/auth` by default.
    #[serde(default)]
    pub auth_url: Option<String>,
    /// The tenant of a Halo-hosted instance (Configuration → Integrations → Halo API).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The API application's client id (authentication method: Client ID and Secret).
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The outcome of an internal note (hidden from the end user).
    #[serde(default = "private_note")]
    pub outcome: String,
    /// The outcome of a note the end user sees.
    #[serde(default = "public_note")]
    pub outcome_public: String,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

fn private_note() -> String {
    "Private Note".into()
}
fn public_note() -> String {
    "Public Note".into()
}

crate::section::outbound_section!(HaloPsaConfig, "sinks.halopsa");

impl HaloPsaConfig {
    pub fn client_secret_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.halopsa.client_secret", self.client_secret.as_ref(), self.client_secret_file.as_deref())
    }
}

impl SinkSection for HaloPsaConfig {
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn route(&self) -> &RouteConfig {
        &self.route
    }
    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>) {
        let mut urls = vec![("sinks.halopsa.url".to_string(), self.url.clone())];
        if let Some(a) = &self.auth_url {
            urls.push(("sinks.halopsa.auth_url".to_string(), a.clone()));
        }
        (self.outbound(), urls)
    }
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.halopsa.url", &self.url);
        if self.url.trim_end_matches('/').to_ascii_lowercase().ends_with("/api") {
            e.key("sinks.halopsa.url", "the resource server without /api (https://acme.halopsa.com)");
        }
        if let Some(a) = &self.auth_url {
            check_url(e, "sinks.halopsa.auth_url", a);
        }
        if let Some(t) = &self.tenant {
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                e.key("sinks.halopsa.tenant", "the tenant name (letters, digits, - and _)");
            }
        }
        if self.client_id.is_empty() || !self.client_id.chars().all(|c| c.is_ascii_graphic()) {
            e.key("sinks.halopsa.client_id", "required: the API application's client id");
        }
        for (key, v) in [("outcome", &self.outcome), ("outcome_public", &self.outcome_public)] {
            if v.trim().is_empty() || v.len() > 100 {
                e.key(&format!("sinks.halopsa.{key}"), "an action outcome's name (Configuration → Tickets → Actions)");
            }
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.halopsa.client_secret", true, self.client_secret_value())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let creds = HaloCredentials {
            client_id: self.client_id.clone(),
            client_secret: require(self.client_secret_value()?, "sinks.halopsa.client_secret")?,
            tenant: self.tenant.clone(),
            auth_url: self.auth_url.clone(),
        };
        let outcomes = Outcomes { internal: self.outcome.clone(), public: self.outcome_public.clone() };
        let http = self.outbound().client(ctx.timeout)?;
        let sink = HaloPsaSink::new("halopsa", &self.url, creds, outcomes, http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

/// `[sinks.halopsa]` before it is read: its name, its secret key and what `init` asks.
impl crate::section::Described for HaloPsaConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "halopsa",
        section: "sinks.halopsa",
        secrets: &["sinks.halopsa.client_secret"],
        setup: &crate::section::Plain {
            keys: &[
                crate::section::InitKey::new("url", "HaloPSA resource server (https://<name>.halopsa.com)", None),
                crate::section::InitKey::new("client_id", "HaloPSA API application's client id", None),
            ],
            secrets: &["client_secret"],
        },
    };
}
