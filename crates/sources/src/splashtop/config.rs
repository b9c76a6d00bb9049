//! `[sources.splashtop]`: the API (by region), the polling, token or OAuth authentication,
//! and the PSA settings of created support sessions.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{check_span, check_url, declared_secret, key_err, ConfigError, Errors};

/// The section's secret keys (their credentials: `splashtop_token`, …, by
/// `ticketsync_config::credential`).
pub const SECRETS: &[&str] = &["sources.splashtop.token", "sources.splashtop.client_secret"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplashtopAuth {
    /// API token from the web console (Management > Settings > API).
    Token,
    Oauth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    Us,
    Eu,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplashtopConfig {
    pub enabled: bool,
    /// `us` (splashtop.com) or `eu` (splashtop.eu): picks the defaults of the URLs below.
    pub region: Region,
    pub base_url: Option<String>,
    pub console_url: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub schedule: String,
    pub overlap_minutes: u64,
    pub initial_lookback_days: u64,
    pub open_session_max_age_hours: u64,
    pub page_size: u64,
    pub request_timeout_secs: u64,
    pub auth: SplashtopAuth,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// Splashtop does not say when a refresh token expires; its documented lifetime.
    pub refresh_token_days: u64,
    /// Warn (logs, `ticketsync check`) this many days before the refresh token expires.
    pub refresh_warn_days: u64,
    /// PSA team id; read from `users/basic_info` when unset.
    pub team_id: Option<i64>,
    /// PSA channel; the default channel of `psa/channel_list` when unset.
    pub channel_id: Option<i64>,
    /// `customer_issue` of created support sessions; `{ticket}` is replaced.
    pub issue_template: String,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}
impl Default for SplashtopConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            region: Region::Us,
            base_url: None,
            console_url: None,
            authorize_url: None,
            token_url: None,
            schedule: "*/5 * * * *".into(),
            overlap_minutes: 120,
            initial_lookback_days: 7,
            open_session_max_age_hours: 48,
            page_size: 100,
            request_timeout_secs: 30,
            auth: SplashtopAuth::Token,
            token: None,
            token_file: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            redirect_uri: "http://127.0.0.1:8765/callback".into(),
            scopes: vec!["logs".into(), "psa".into(), "users".into()],
            refresh_token_days: 30,
            refresh_warn_days: 7,
            team_id: None,
            channel_id: None,
            issue_template: "Ticket #{ticket}".into(),
            outbound: Default::default(),
        }
    }
}

impl SplashtopConfig {
    fn eu(&self) -> bool {
        self.region == Region::Eu
    }
    pub fn base_url(&self) -> String {
        let d = super::wire::default_base_url(self.eu());
        self.base_url.clone().unwrap_or_else(|| d.into()).trim_end_matches('/').to_string()
    }
    pub fn console_url(&self) -> String {
        let d = super::wire::default_console_url(self.eu());
        self.console_url.clone().unwrap_or_else(|| d.into()).trim_end_matches('/').to_string()
    }
    pub fn authorize_url(&self) -> String {
        self.authorize_url.clone().unwrap_or_else(|| format!("{}{}", self.console_url(), super::wire::AUTHORIZE_PATH))
    }
    pub fn token_url(&self) -> String {
        self.token_url.clone().unwrap_or_else(|| format!("{}{}", self.console_url(), super::wire::TOKEN_PATH))
    }
    pub fn token_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sources.splashtop.token", self.token.as_ref(), self.token_file.as_deref())
    }
    pub fn client_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret(
            "sources.splashtop.client_secret",
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
        )
    }
    /// Every error of this section (cron, URLs, spans, OAuth keys), added to `e`.
    pub fn validate_into(&self, e: &mut Errors) {
        e.add(crate::schedule::parse_cron(&self.schedule).map_err(|m| key_err("sources.splashtop.schedule", m)));
        for (k, v) in [
            ("base_url", self.base_url()),
            ("console_url", self.console_url()),
            ("authorize_url", self.authorize_url()),
            ("token_url", self.token_url()),
        ] {
            e.add(check_url(&v).map_err(|m| key_err(&format!("sources.splashtop.{k}"), m)));
        }
        if self.auth == SplashtopAuth::Oauth && self.client_id.as_deref().unwrap_or("").is_empty() {
            e.key("sources.splashtop.client_id", "required when auth = \"oauth\"");
        }
        if !(1..=1000).contains(&self.page_size) {
            e.key("sources.splashtop.page_size", "must be between 1 and 1000");
        }
        e.add(check_span("sources.splashtop.overlap_minutes", self.overlap_minutes, 60));
        e.add(check_span("sources.splashtop.initial_lookback_days", self.initial_lookback_days, 86_400));
        e.add(check_span("sources.splashtop.open_session_max_age_hours", self.open_session_max_age_hours, 3600));
        e.add(check_span("sources.splashtop.refresh_token_days", self.refresh_token_days, 86_400));
        e.add(check_span("sources.splashtop.refresh_warn_days", self.refresh_warn_days, 86_400));
    }
}

crate::config::outbound_section!(SplashtopConfig, "sources.splashtop");
