//! `[sources.zoom]`: the API, the polling and one or more accounts.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{check_url, element_credential, key_err, resolve_secret, ConfigError, Errors};

/// The section's secret key: each account's, its credential named after the account
/// (`zoom_<account>_client_secret`).
pub const SECRETS: &[&str] = &["sources.zoom.accounts[].client_secret"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoomAuth {
    /// User-managed OAuth app (authorization code, rotating refresh tokens).
    Oauth,
    /// Server-to-Server OAuth app (`account_credentials`, 1 h token, no refresh token).
    ServerToServer,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoomConfig {
    pub enabled: bool,
    /// REST base, e.g. `https://api.zoom.us/v2`.
    pub api_url: String,
    /// OAuth host: `<oauth_url>/oauth/authorize` and `<oauth_url>/oauth/token`.
    pub oauth_url: String,
    pub schedule: String,
    /// `page_size` of paged calls (Zoom allows up to 300).
    pub page_size: u32,
    /// Recordings are re-polled until present or until this long after the meeting ended.
    pub recording_deadline_minutes: u64,
    /// Meetings created for tickets longer ago than this are no longer polled.
    pub lookback_days: u64,
    pub request_timeout_secs: u64,
    /// Meeting topic; `{ticket}` is replaced.
    pub topic_template: String,
    pub duration_minutes: u32,
    /// `none`, `local` or `cloud`: cloud recordings come back onto the ticket.
    pub auto_recording: String,
    /// The account `session create --provider zoom` uses without `--account`.
    pub default_account: Option<String>,
    pub accounts: Vec<ZoomAccount>,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::config::OutboundConfig,
}

impl Default for ZoomConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            api_url: "https://api.zoom.us/v2".into(),
            oauth_url: "https://zoom.us".into(),
            schedule: "*/10 * * * *".into(),
            page_size: 300,
            recording_deadline_minutes: 24 * 60,
            lookback_days: 14,
            request_timeout_secs: 30,
            topic_template: "Ticket #{ticket}".into(),
            duration_minutes: 30,
            auto_recording: "cloud".into(),
            default_account: None,
            accounts: Vec::new(),
            outbound: Default::default(),
        }
    }
}

crate::config::outbound_section!(ZoomConfig, "sources.zoom");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoomAccount {
    /// Short name: letters, digits, `-`, `_`. Tokens are stored per account.
    pub name: String,
    pub auth: ZoomAuth,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Server-to-Server only: the Zoom account id.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Whose meetings: `me` for a user-managed app, a user id or e-mail for Server-to-Server.
    #[serde(default = "me")]
    pub user_id: String,
    #[serde(default = "default_redirect")]
    pub redirect_uri: String,
}

fn me() -> String {
    "me".into()
}
fn default_redirect() -> String {
    "http://127.0.0.1:8766/callback".into()
}

impl ZoomAccount {
    pub fn credential_name(&self) -> String {
        element_credential(SECRETS[0], &self.name)
    }
    pub fn client_secret(&self, index: usize) -> Result<Option<SecretString>, ConfigError> {
        resolve_secret(
            &format!("sources.zoom.accounts[{index}].client_secret"),
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            &self.credential_name(),
        )
    }
    /// Key of the account's tokens in `oauth_tokens.provider`.
    pub fn token_key(&self) -> String {
        format!("zoom:{}", self.name)
    }
}

impl ZoomConfig {
    /// Every error of this section and its accounts, added to `e`.
    pub fn validate_into(&self, e: &mut Errors) {
        e.add(crate::schedule::parse_cron(&self.schedule).map_err(|m| key_err("sources.zoom.schedule", m)));
        e.add(check_url(&self.api_url).map_err(|m| key_err("sources.zoom.api_url", m)));
        e.add(check_url(&self.oauth_url).map_err(|m| key_err("sources.zoom.oauth_url", m)));
        if !(1..=300).contains(&self.page_size) {
            e.key("sources.zoom.page_size", "must be between 1 and 300 (Zoom's maximum)");
        }
        e.add(crate::config::check_span(
            "sources.zoom.recording_deadline_minutes",
            self.recording_deadline_minutes,
            60,
        ));
        e.add(crate::config::check_span("sources.zoom.lookback_days", self.lookback_days, 86_400));
        if !["none", "local", "cloud"].contains(&self.auto_recording.as_str()) {
            e.key("sources.zoom.auto_recording", "expected \"none\", \"local\" or \"cloud\"");
        }
        if self.enabled && self.accounts.is_empty() {
            e.key("sources.zoom.accounts", "at least one [[sources.zoom.accounts]] is required");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.accounts.iter().enumerate() {
            let k = |f: &str| format!("sources.zoom.accounts[{i}].{f}");
            if a.name.is_empty() || !a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                e.key(&k("name"), "letters, digits, '-' and '_' only, not empty");
            } else if !seen.insert(a.name.clone()) {
                e.key(&k("name"), format!("duplicate account name {:?}", a.name));
            }
            if a.client_id.trim().is_empty() {
                e.key(&k("client_id"), "required");
            }
            if a.auth == ZoomAuth::ServerToServer && a.account_id.as_deref().unwrap_or("").is_empty() {
                e.key(&k("account_id"), "required when auth = \"server_to_server\"");
            }
            if a.user_id.trim().is_empty() {
                e.key(&k("user_id"), "must not be empty");
            }
            e.add(check_url(&a.redirect_uri).map_err(|m| key_err(&k("redirect_uri"), m)));
        }
        if let Some(d) = &self.default_account {
            if !self.accounts.iter().any(|a| &a.name == d) {
                e.key("sources.zoom.default_account", format!("no account named {d:?}"));
            }
        }
    }

    pub fn account(&self, name: Option<&str>) -> Result<(usize, &ZoomAccount), String> {
        let want = name.or(self.default_account.as_deref());
        match want {
            Some(n) => self
                .accounts
                .iter()
                .enumerate()
                .find(|(_, a)| a.name == n)
                .ok_or_else(|| format!("no Zoom account named {n:?} in [[sources.zoom.accounts]]")),
            None => {
                self.accounts.first().map(|a| (0, a)).ok_or_else(|| "no [[sources.zoom.accounts]] configured".into())
            }
        }
    }
}
