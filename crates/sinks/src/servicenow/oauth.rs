//! ServiceNow's OAuth for a daemon: the password grant (an integration user's name and
//! password with the OAuth client's id and secret) or the client-credentials grant (the
//! client's own, bound to its "OAuth Application User"), at `POST <instance>/oauth_token.do`
//! (form-encoded; `{"access_token","refresh_token"?,"expires_in","token_type":"Bearer"}`).
//! The access token is kept in memory only and renewed before it expires, with the refresh
//! token when the instance issued one, else with the grant again: both grants can always be
//! repeated, so nothing needs to outlive the process (unlike the vendors' authorization-code
//! tokens in `ticketsync_http::oauth`).

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::common;
use crate::{SinkError, SinkErrorKind};

/// Renew this long before the instance's expiry, so no request carries a token that lapses
/// on the way.
const EARLY: Duration = Duration::from_secs(60);

pub enum Grant {
    /// `grant_type=password`: the integration user's credentials.
    Password { user: String, password: SecretString },
    /// `grant_type=client_credentials` (`glide.oauth.inbound.client.credential.grant_type.enabled`);
    /// `user` is the OAuth Application User's name, when known, for the marker scan's author check.
    ClientCredentials { user: Option<String> },
}

pub struct OAuthSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    pub grant: Grant,
    /// The token endpoint; `<instance>/oauth_token.do` unless given.
    pub token_url: Option<String>,
}

impl OAuthSettings {
    /// The user the notes are written as, when known.
    pub fn user(&self) -> Option<&str> {
        match &self.grant {
            Grant::Password { user, .. } => Some(user),
            Grant::ClientCredentials { user } => user.as_deref(),
        }
    }
}

struct Token {
    access: SecretString,
    refresh: Option<SecretString>,
    renew_at: Instant,
    generation: u64,
}

/// The current access token, fetched and renewed on demand.
pub struct TokenSource {
    sink: String,
    url: String,
    settings: OAuthSettings,
    http: reqwest::Client,
    current: Mutex<Option<Token>>,
    /// Form fields every token request adds (HaloPSA's `scope=all`).
    extra: Vec<(&'static str, String)>,
    /// The configuration keys a refused token request names.
    keys: String,
}

impl TokenSource {
    pub fn new(sink: &str, base_url: &str, settings: OAuthSettings, http: reqwest::Client) -> Self {
        let url = match &settings.token_url {
            Some(u) => u.clone(),
            None => format!("{}/oauth_token.do", base_url.trim_end_matches('/')),
        };
        let keys = match settings.grant {
            Grant::Password { .. } => "sinks.servicenow.client_id, client_secret, user, password",
            Grant::ClientCredentials { .. } => "sinks.servicenow.client_id, client_secret",
        };
        Self { sink: sink.into(), url, settings, http, current: Mutex::new(None), extra: Vec::new(), keys: keys.into() }
    }

    /// Another system's client-credentials endpoint (HaloPSA's `/auth/token`): `url` in
    /// full, `extra` form fields on every request, `keys` named when the grant is refused.
    pub fn client_credentials(
        sink: &str,
        url: &str,
        client_id: &str,
        client_secret: SecretString,
        extra: Vec<(&'static str, String)>,
        keys: &str,
        http: reqwest::Client,
    ) -> Self {
        let settings = OAuthSettings {
            client_id: client_id.into(),
            client_secret,
            grant: Grant::ClientCredentials { user: None },
            token_url: Some(url.into()),
        };
        Self { sink: sink.into(), url: url.into(), settings, http, current: Mutex::new(None), extra, keys: keys.into() }
    }

    /// An access token and its generation; a new one when `fresh` or when the current one is
    /// due.
    pub async fn token(&self, fresh: bool) -> Result<(SecretString, u64), SinkError> {
        let mut cur = self.current.lock().await;
        if let Some(t) = cur.as_ref().filter(|t| !fresh && Instant::now() < t.renew_at) {
            return Ok((t.access.clone(), t.generation));
        }
        let generation = cur.as_ref().map_or(1, |t| t.generation + 1);
        // The refresh token first; a refused one (expired, revoked) falls back to the grant.
        let refreshed = match cur.as_ref().and_then(|t| t.refresh.clone()) {
            Some(r) => {
                match self.request(&[("grant_type", "refresh_token"), ("refresh_token", r.expose_secret())]).await {
                    Ok(t) => Some(t),
                    Err(e) if e.kind == SinkErrorKind::Auth => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let got = match refreshed {
            Some(t) => t,
            None => self.grant().await?,
        };
        let token = Token { generation, ..got };
        let out = (token.access.clone(), token.generation);
        *cur = Some(token);
        Ok(out)
    }

    /// The instance refused the token of `generation`: the next call asks for a new one.
    pub async fn rejected(&self, generation: u64) {
        let mut cur = self.current.lock().await;
        if cur.as_ref().is_some_and(|t| t.generation == generation) {
            if let Some(t) = cur.as_mut() {
                t.renew_at = Instant::now();
            }
        }
    }

    async fn grant(&self) -> Result<Token, SinkError> {
        match &self.settings.grant {
            Grant::Password { user, password } => {
                self.request(&[("grant_type", "password"), ("username", user), ("password", password.expose_secret())])
                    .await
            }
            Grant::ClientCredentials { .. } => self.request(&[("grant_type", "client_credentials")]).await,
        }
    }

    async fn request(&self, params: &[(&str, &str)]) -> Result<Token, SinkError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", self.settings.client_secret.expose_secret()),
        ];
        form.extend_from_slice(params);
        form.extend(self.extra.iter().map(|(k, v)| (*k, v.as_str())));
        let req = self.http.post(&self.url).header("Accept", "application/json").form(&form);
        let r = common::send(&self.sink, crate::http::DEFAULT_MAX_RESPONSE_BYTES, req).await?;
        if !r.status.is_success() {
            // `{"error":"server_error","error_description":"access_denied"}`: the instance says
            // no more than that; a 400/401 is a configuration problem for the operator.
            let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let detail = [v["error"].as_str(), v["error_description"].as_str()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            let mut err = SinkError::from_status(&self.sink, r.status, &r.headers, &detail);
            if matches!(r.status.as_u16(), 400 | 401 | 403) {
                err.kind = SinkErrorKind::Auth;
                err.message = format!(
                    "credentials rejected (HTTP {}): the OAuth token request failed ({}): {detail}",
                    r.status.as_u16(),
                    self.keys
                );
            }
            return Err(err);
        }
        let v: Value = serde_json::from_str(&r.body).map_err(|e| {
            SinkError::new(
                &self.sink,
                SinkErrorKind::Retry { retry_after: None },
                format!("unreadable token answer: {e}"),
            )
        })?;
        let Some(access) = v["access_token"].as_str().filter(|a| !a.is_empty()) else {
            return Err(SinkError::new(
                &self.sink,
                SinkErrorKind::Retry { retry_after: None },
                "the token answer has no access_token",
            ));
        };
        crate::redact::register(access);
        let refresh = v["refresh_token"].as_str().filter(|r| !r.is_empty()).map(|r| {
            crate::redact::register(r);
            SecretString::from(r.to_string())
        });
        // ServiceNow's default lifetime is 1800 s (it answers 1799).
        let life = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(1799));
        Ok(Token {
            access: SecretString::from(access.to_string()),
            refresh,
            renew_at: Instant::now() + life.saturating_sub(EARLY),
            generation: 0,
        })
    }
}
