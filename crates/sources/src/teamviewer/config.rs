//! `[sources.teamviewer]`: the API, the polling, script-token or OAuth authentication, and
//! the service cases created for tickets.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{check_span, check_url, declared_secret, key_err, ConfigError, Errors};

/// The section's secret keys (their credentials: `teamviewer_token`, …, by
/// `ticketsync_config::credential`).
pub const SECRETS: &[&str] = &["sources.teamviewer.token", "sources.teamviewer.client_secret"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamViewerAuth {
    Script,
    Oauth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamViewerConfig {
    pub enabled: bool,
    pub base_url: String,
    pub authorize_url: String,
    /// Standard 5-field cron expression, in `daemon.timezone`.
    pub schedule: String,
    /// How far back each poll re-reads to catch late and changed reports.
    pub overlap_minutes: u64,
    /// First poll: how far back to start.
    pub initial_lookback_days: u64,
    /// Running sessions are re-read until they end, or until they are this old.
    pub open_session_max_age_hours: u64,
    pub request_timeout_secs: u64,
    pub auth: TeamViewerAuth,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    pub redirect_uri: String,
    /// Service cases are created in this group (`group_id` wins when both are set).
    pub group_name: String,
    pub group_id: Option<String>,
    /// Template for the service-case description; `{ticket}` is replaced.
    pub description_template: String,
    pub valid_hours: u64,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}
impl Default for TeamViewerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://webapi.teamviewer.com".into(),
            authorize_url: "https://login.teamviewer.com/oauth2/authorize".into(),
            schedule: "*/5 * * * *".into(),
            overlap_minutes: 120,
            initial_lookback_days: 7,
            open_session_max_age_hours: 48,
            request_timeout_secs: 30,
            auth: TeamViewerAuth::Script,
            token: None,
            token_file: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            redirect_uri: "http://127.0.0.1:8765/callback".into(),
            group_name: "Helpdesk".into(),
            group_id: None,
            description_template: "Ticket #{ticket}".into(),
            valid_hours: 24,
            outbound: Default::default(),
        }
    }
}

crate::config::outbound_section!(TeamViewerConfig, "sources.teamviewer");

impl TeamViewerConfig {
    pub fn token_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sources.teamviewer.token", self.token.as_ref(), self.token_file.as_deref())
    }
    pub fn client_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret(
            "sources.teamviewer.client_secret",
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
        )
    }
    /// Every error of this section (cron, URLs, spans, OAuth and group keys), added to `e`.
    pub fn validate_into(&self, e: &mut Errors) {
        e.add(crate::schedule::parse_cron(&self.schedule).map_err(|m| key_err("sources.teamviewer.schedule", m)));
        e.add(check_url(&self.base_url).map_err(|m| key_err("sources.teamviewer.base_url", m)));
        e.add(check_url(&self.authorize_url).map_err(|m| key_err("sources.teamviewer.authorize_url", m)));
        e.add(check_span("sources.teamviewer.overlap_minutes", self.overlap_minutes, 60));
        e.add(check_span("sources.teamviewer.initial_lookback_days", self.initial_lookback_days, 86_400));
        e.add(check_span("sources.teamviewer.open_session_max_age_hours", self.open_session_max_age_hours, 3600));
        e.add(check_span("sources.teamviewer.valid_hours", self.valid_hours, 3600));
        if self.auth == TeamViewerAuth::Oauth && self.client_id.as_deref().unwrap_or("").is_empty() {
            e.key("sources.teamviewer.client_id", "required when auth = \"oauth\"");
        }
        if self.group_id.is_none() && self.group_name.trim().is_empty() {
            e.key("sources.teamviewer.group_name", "group_name or group_id is required");
        }
    }
}
