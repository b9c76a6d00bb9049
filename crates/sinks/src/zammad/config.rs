//! `[sinks.zammad]`: Zammad's keys, checks, secret and how the sink is built.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

use super::{ZammadAuth, ZammadSink};
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, BuildCtx, ConfigError, Errors, Outbound,
    OutboundConfig, RouteConfig, SecretUse, SinkSection,
};
use crate::TicketSink;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ZammadAuthKind {
    /// An agent's API token (`Authorization: Token token=…`).
    #[default]
    Token,
    /// An OAuth access token (Bearer).
    Oauth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZammadConfig {
    #[serde(default = "crate::section::yes")]
    pub enabled: bool,
    /// `https://zammad.example.com`
    pub url: String,
    #[serde(default)]
    pub auth: ZammadAuthKind,
    /// The API token (Profile → Token Access, permission `ticket.agent`) or, with
    /// `auth = "oauth"`, an OAuth access token.
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Name of a ticket object attribute holding the session code, for `ticket_field`
    /// lookups (Zammad's search).
    #[serde(default)]
    pub session_code_field: Option<String>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

crate::section::outbound_section!(ZammadConfig, "sinks.zammad");

impl ZammadConfig {
    pub fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.zammad.token", self.token.as_ref(), self.token_file.as_deref())
    }
}

impl SinkSection for ZammadConfig {
    section_basics!("zammad");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.zammad.url", &self.url);
        if let Some(f) = &self.session_code_field {
            // It goes into a search query as `<name>:"…"`: only an attribute name.
            if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                e.key("sinks.zammad.session_code_field", "an attribute name (letters, digits, _ and .)");
            }
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.zammad.token", true, self.token_value())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let token = require(self.token_value()?, "sinks.zammad.token")?;
        let auth = match self.auth {
            ZammadAuthKind::Token => ZammadAuth::Token(token),
            ZammadAuthKind::Oauth => ZammadAuth::OAuth(token),
        };
        let http = self.outbound().client(ctx.timeout)?;
        let sink = ZammadSink::new("zammad", &self.url, auth, self.session_code_field.clone(), http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

/// `[sinks.zammad]` before it is read: its name, its secret key and what `init` asks.
impl crate::section::Described for ZammadConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "zammad",
        section: "sinks.zammad",
        secrets: &["sinks.zammad.token"],
        setup: &crate::section::Plain {
            keys: &[crate::section::InitKey::new("url", "Zammad URL (https://…)", None)],
            secrets: &["token"],
        },
    };
}
