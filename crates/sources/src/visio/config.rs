//! `[rooms.visioconference]`: the API, its token, and the rooms created for tickets.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{declared_secret, ConfigError};

/// The section's secret key (its credential: `visioconference_token`).
pub const SECRETS: &[&str] = &["rooms.visioconference.token"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisioConfig {
    pub enabled: bool,
    /// API base; the room is created at `<api_url>/entreprise/visio`.
    pub api_url: String,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    /// Room name; `{ticket}` is replaced.
    pub name_template: String,
    /// Display name in the moderator link (`&name=`).
    pub agent_name: String,
    pub duration_minutes: u32,
    pub request_timeout_secs: u64,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}

impl Default for VisioConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            api_url: "https://api.visioconference.me/api/v1".into(),
            token: None,
            token_file: None,
            name_template: "Ticket-{ticket}".into(),
            agent_name: "Helpdesk".into(),
            duration_minutes: 60,
            request_timeout_secs: 30,
            outbound: Default::default(),
        }
    }
}

crate::config::outbound_section!(VisioConfig, "rooms.visioconference");

impl VisioConfig {
    pub fn token_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("rooms.visioconference.token", self.token.as_ref(), self.token_file.as_deref())
    }
}
