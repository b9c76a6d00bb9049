//! `[sinks.connectwise]`: ConnectWise PSA's keys, checks, secret and how the sink is built.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConnectWiseKeys, ConnectWiseSink};
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, BuildCtx, ConfigError, Errors, Outbound,
    OutboundConfig, RouteConfig, SecretUse, SinkSection,
};
use crate::TicketSink;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectWiseConfig {
    #[serde(default = "crate::section::yes")]
    pub enabled: bool,
    /// The API server: `https://api-na.myconnectwise.net` (also `api-eu`, `api-au`, or an
    /// on-premise host); the REST root `/v4_6_release/apis/3.0` is added.
    pub url: String,
    /// The company id people log in with.
    #[serde(default)]
    pub company: String,
    /// The API member's public key (System → Members → API Members → API Keys).
    #[serde(default)]
    pub public_key: String,
    #[serde(default)]
    pub private_key: Option<SecretString>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// The integration's clientId (developer.connectwise.com/ClientID).
    #[serde(default)]
    pub client_id: String,
    /// The API member's identifier: the marker scan counts only the notes it wrote.
    #[serde(default)]
    pub member: String,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

crate::section::outbound_section!(ConnectWiseConfig, "sinks.connectwise");

impl ConnectWiseConfig {
    pub fn private_key_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.connectwise.private_key", self.private_key.as_ref(), self.private_key_file.as_deref())
    }
}

/// A value that goes into the Basic user name or a header: no separator, space or control.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.chars().all(|c| c.is_ascii_graphic() && c != ':' && c != '+')
}

impl SinkSection for ConnectWiseConfig {
    section_basics!("connectwise");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.connectwise.url", &self.url);
        if self.url.contains("/v4_6_release") {
            e.key("sinks.connectwise.url", "the server only (https://api-na.myconnectwise.net): the API path is added");
        }
        for (key, value, what) in [
            ("company", &self.company, "the company id (letters, digits, no + or :)"),
            ("public_key", &self.public_key, "the API member's public key"),
            ("client_id", &self.client_id, "the integration's clientId (developer.connectwise.com/ClientID)"),
            ("member", &self.member, "the API member's identifier (its notes are the ones the scan counts)"),
        ] {
            if !is_token(value) {
                e.key(&format!("sinks.connectwise.{key}"), format!("required: {what}"));
            }
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.connectwise.private_key", true, self.private_key_value())]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        match self.private_key_value() {
            Ok(Some(p)) => {
                vec![(format!("{}+{}", self.company, self.public_key), p.expose_secret().to_string())]
            }
            _ => Vec::new(),
        }
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let keys = ConnectWiseKeys {
            company: self.company.clone(),
            public_key: self.public_key.clone(),
            private_key: require(self.private_key_value()?, "sinks.connectwise.private_key")?,
            client_id: self.client_id.clone(),
        };
        let http = self.outbound().client(ctx.timeout)?;
        let sink = ConnectWiseSink::new("connectwise", &self.url, keys, &self.member, http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

/// `[sinks.connectwise]` before it is read: its name, its secret key and what `init` asks.
impl crate::section::Described for ConnectWiseConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "connectwise",
        section: "sinks.connectwise",
        secrets: &["sinks.connectwise.private_key"],
        setup: &crate::section::Plain {
            keys: &[
                crate::section::InitKey::new("url", "ConnectWise API server", Some("https://api-na.myconnectwise.net")),
                crate::section::InitKey::new("company", "ConnectWise company id (as at login)", None),
                crate::section::InitKey::new("public_key", "API member's public key", None),
                crate::section::InitKey::new("client_id", "Integration clientId (developer.connectwise.com)", None),
                crate::section::InitKey::new("member", "API member's identifier", None),
            ],
            secrets: &["private_key"],
        },
    };
}
