//! `[sinks.servicenow]`: ServiceNow's keys, checks, secrets and how the sink is built.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Grant, OAuthSettings, ServiceNowAuth, ServiceNowSink};
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, BuildCtx, ConfigError, Errors, Outbound,
    OutboundConfig, RouteConfig, SecretUse, SinkSection,
};
use crate::TicketSink;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServiceNowAuthKind {
    /// `user` + `password`, HTTP Basic.
    #[default]
    Basic,
    /// OAuth password grant: `client_id` + `client_secret` + `user` + `password`.
    OauthPassword,
    /// OAuth client-credentials grant: `client_id` + `client_secret` (the instance binds the
    /// token to the OAuth entity's application user).
    OauthClientCredentials,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    #[serde(default = "crate::section::yes")]
    pub enabled: bool,
    /// `https://<instance>.service-now.com`
    pub url: String,
    #[serde(default)]
    pub auth: ServiceNowAuthKind,
    /// The integration user's name (`user_name`): Basic and the password grant; with client
    /// credentials, the OAuth application user's name (optional, for the marker scan).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The OAuth client (System OAuth → Application Registry).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The table of tickets given by `sys_id` and of numbers other than INC/RITM/SCTASK.
    #[serde(default = "default_table")]
    pub table: String,
    /// A field of `table` holding the session code (`u_session_code`), for `ticket_field`.
    #[serde(default)]
    pub session_code_field: Option<String>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: OutboundConfig,
}

fn default_table() -> String {
    "incident".into()
}

crate::section::outbound_section!(ServiceNowConfig, "sinks.servicenow");

/// A table or field name: it goes into a URL path and an encoded query.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 80 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ServiceNowConfig {
    pub fn password_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.servicenow.password", self.password.as_ref(), self.password_file.as_deref())
    }
    pub fn client_secret_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret(
            "sinks.servicenow.client_secret",
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
        )
    }
    fn uses_password(&self) -> bool {
        self.auth != ServiceNowAuthKind::OauthClientCredentials
    }
    fn uses_client(&self) -> bool {
        self.auth != ServiceNowAuthKind::Basic
    }
    fn user_name(&self) -> String {
        self.user.clone().unwrap_or_default()
    }
}

impl SinkSection for ServiceNowConfig {
    section_basics!("servicenow");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.servicenow.url", &self.url);
        if self.uses_password() && self.user.as_deref().unwrap_or("").is_empty() {
            e.key("sinks.servicenow.user", "required with auth = \"basic\" and \"oauth_password\"");
        }
        if self.uses_client() && self.client_id.as_deref().unwrap_or("").is_empty() {
            e.key("sinks.servicenow.client_id", "required with the OAuth grants");
        }
        if !is_name(&self.table) {
            e.key("sinks.servicenow.table", "a table name (letters, digits and _)");
        }
        if self.session_code_field.as_deref().is_some_and(|f| !is_name(f)) {
            e.key("sinks.servicenow.session_code_field", "a field name (letters, digits and _)");
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![
            SecretUse::declared("sinks.servicenow.password", self.uses_password(), self.password_value()),
            SecretUse::declared("sinks.servicenow.client_secret", self.uses_client(), self.client_secret_value()),
        ]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        match (self.auth, self.password_value()) {
            (ServiceNowAuthKind::Basic, Ok(Some(p))) => vec![(self.user_name(), p.expose_secret().to_string())],
            _ => Vec::new(),
        }
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let password = || require(self.password_value()?, "sinks.servicenow.password");
        let client = |grant| -> Result<ServiceNowAuth, ConfigError> {
            Ok(ServiceNowAuth::OAuth(OAuthSettings {
                client_id: self.client_id.clone().unwrap_or_default(),
                client_secret: require(self.client_secret_value()?, "sinks.servicenow.client_secret")?,
                grant,
                token_url: None,
            }))
        };
        let auth = match self.auth {
            ServiceNowAuthKind::Basic => ServiceNowAuth::Basic { user: self.user_name(), password: password()? },
            ServiceNowAuthKind::OauthPassword => {
                client(Grant::Password { user: self.user_name(), password: password()? })?
            }
            ServiceNowAuthKind::OauthClientCredentials => client(Grant::ClientCredentials { user: self.user.clone() })?,
        };
        let http = self.outbound().client(ctx.timeout)?;
        let sink =
            ServiceNowSink::new("servicenow", &self.url, auth, &self.table, self.session_code_field.clone(), http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

/// `[sinks.servicenow]` before it is read: its name, its secret keys and what `init` asks
/// (Basic auth: a user and its password).
impl crate::section::Described for ServiceNowConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "servicenow",
        section: "sinks.servicenow",
        secrets: &["sinks.servicenow.password", "sinks.servicenow.client_secret"],
        setup: &crate::section::Plain {
            keys: &[
                crate::section::InitKey::new(
                    "url",
                    "ServiceNow instance URL (https://<instance>.service-now.com)",
                    None,
                ),
                crate::section::InitKey::new("user", "ServiceNow integration user (user_name, Basic auth)", None),
            ],
            secrets: &["password"],
        },
    };
}
