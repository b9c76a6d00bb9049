//! A small OAuth2 token client (authorization code + refresh) shared by the vendors.
//!
//! Not the `oauth2` crate: its 5.x line depends on reqwest 0.12 (two HTTP stacks in one
//! binary) and it cannot express the one rule that matters here: a rotated refresh token
//! is committed to the store before the new access token is used, under a per-provider
//! lock so two tasks never spend the same single-use refresh token.

use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::store::tokens::{self, TokenKey};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{provider}: not authorized yet: run `ticketsync auth {}`", auth_cmd(provider))]
    NotAuthorized { provider: String },
    #[error(
        "{provider}: token endpoint refused the {grant} grant ({status}: {error}{desc}); {}",
        refused_fix(provider, grant)
    )]
    Refused { provider: String, grant: &'static str, status: u16, error: String, desc: String },
    #[error("{provider}: token endpoint unreachable: {source}")]
    Transport {
        provider: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{provider}: token endpoint temporarily unavailable (HTTP {status})")]
    Unavailable { provider: String, status: u16, retry_after: Option<Duration> },
    #[error("{provider}: token store: {source}")]
    Store {
        provider: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error(
        "{provider}: the refresh token expired at {at}: run `ticketsync auth {}` to authorize again",
        auth_cmd(provider)
    )]
    RefreshExpired { provider: String, at: String },
    #[error("{provider}: malformed token response: {detail}")]
    Malformed { provider: String, detail: String },
    /// The token endpoint redirected (never followed: a 307 would re-post the client secret
    /// and the refresh token) or answered more than `max_response_bytes`. A configuration
    /// or endpoint problem, not retried in a loop.
    #[error("{provider}: token endpoint: {message}")]
    Refusal { provider: String, message: String },
}

/// The `ticketsync auth …` arguments for a token store key: `teamviewer`, or
/// `zoom --account NAME` for the per-account key `zoom:NAME`.
fn auth_cmd(provider: &str) -> String {
    match provider.split_once(':') {
        Some((vendor, account)) => format!("{vendor} --account {account}"),
        None => provider.to_string(),
    }
}

/// A refused server-to-server grant is the app's credentials, which `auth` cannot fix.
fn refused_fix(provider: &str, grant: &str) -> String {
    if grant == "account_credentials" {
        "check the app's client_id, client_secret and account_id".into()
    } else {
        format!("run `ticketsync auth {}` again", auth_cmd(provider))
    }
}

/// The token endpoint's answer to a granted request.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// Not every vendor says; the configured lifetime applies then.
    #[serde(default, alias = "refresh_expires_in")]
    pub refresh_token_expires_in: Option<i64>,
}

/// A vendor's refresh-token lifetime is believed up to this long; beyond, the date would
/// leave chrono's range (a panic) and no vendor means it anyway.
const MAX_REFRESH_LIFETIME_S: i64 = 10 * 365 * 86400;

impl TokenResponse {
    /// The body of a 2xx answer. Pure, so fuzz/ can feed it arbitrary bytes.
    pub fn parse(body: &str) -> Result<TokenResponse, serde_json::Error> {
        serde_json::from_str(body)
    }

    /// When the access token expires (`expires_in` kept between a minute and a year).
    pub fn access_expires_at(&self, now: chrono::DateTime<Utc>) -> String {
        crate::session::ts(now + chrono::Duration::seconds(self.expires_in.unwrap_or(3600).clamp(60, 365 * 86400)))
    }

    /// When the refresh token expires: the vendor's word, else the configured lifetime;
    /// `None` without a refresh token or a lifetime.
    pub fn refresh_expires_at(
        &self,
        configured: Option<chrono::Duration>,
        now: chrono::DateTime<Utc>,
    ) -> Option<String> {
        self.refresh_token.as_ref()?;
        let lifetime = self
            .refresh_token_expires_in
            .map(|s| chrono::Duration::seconds(s.clamp(0, MAX_REFRESH_LIFETIME_S)))
            .or(configured)?;
        Some(crate::session::ts(now + lifetime))
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    /// Zoom's wording of the description (`{"reason": …, "error": "invalid_grant"}`).
    #[serde(default)]
    reason: String,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body (TeamViewer).
    Form,
    /// `Authorization: Basic base64(client_id:client_secret)` (Zoom).
    Basic,
}

pub struct OAuthClient {
    pub provider: String,
    pub token_url: String,
    pub authorize_url: String,
    pub client_id: String,
    client_secret: SecretString,
    pub redirect_uri: String,
    key: TokenKey,
    http: reqwest::Client,
    store: Store,
    lock: Mutex<()>,
    /// Refresh this long before the access token's expiry.
    pub refresh_margin: chrono::Duration,
    /// Extra authorize-URL parameters (TeamViewer: `display=popup`; Splashtop: `scope`).
    authorize_params: Vec<(String, String)>,
    /// Lifetime of a refresh token when the token response does not give one, and how
    /// long before its end a warning is logged.
    refresh_lifetime: Option<(chrono::Duration, chrono::Duration)>,
    client_auth: ClientAuth,
    /// Server-to-Server: fetch tokens with `account_credentials` for this account id
    /// instead of refreshing.
    account_credentials: Option<String>,
    /// Cap on the token endpoint's answer (`max_response_bytes` of the source).
    max_response: u64,
}

impl OAuthClient {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        provider: &str,
        token_url: String,
        authorize_url: String,
        client_id: String,
        client_secret: SecretString,
        redirect_uri: String,
        http: reqwest::Client,
        store: Store,
    ) -> Self {
        let key = TokenKey::derive(provider, &client_secret);
        Self {
            provider: provider.to_string(),
            token_url,
            authorize_url,
            client_id,
            client_secret,
            redirect_uri,
            key,
            http,
            store,
            lock: Mutex::new(()),
            refresh_margin: chrono::Duration::minutes(5),
            authorize_params: vec![("display".into(), "popup".into())],
            refresh_lifetime: None,
            client_auth: ClientAuth::Form,
            account_credentials: None,
            max_response: crate::http::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The source's `max_response_bytes`: token answers are read up to this many bytes.
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response = bytes;
        self
    }

    pub fn with_authorize_params(mut self, params: Vec<(String, String)>) -> Self {
        self.authorize_params = params;
        self
    }

    pub fn with_refresh_lifetime(mut self, lifetime: chrono::Duration, warn_before: chrono::Duration) -> Self {
        self.refresh_lifetime = Some((lifetime, warn_before));
        self
    }

    /// When the stored refresh token expires, if known, and whether that is within the
    /// warning window.
    pub async fn refresh_expiry(&self) -> Result<Option<(String, bool)>, OAuthError> {
        let t = tokens::load(&self.store.pool, &self.provider, &self.key).await.map_err(|e| self.store_err(e))?;
        let warn = self.refresh_lifetime.map(|(_, w)| w).unwrap_or_else(|| chrono::Duration::days(7));
        Ok(t.and_then(|t| t.refresh_expires_at).map(|at| {
            let soon = crate::session::parse_ts(&at).is_some_and(|exp| exp - warn <= Utc::now());
            (at, soon)
        }))
    }

    pub fn with_client_auth(mut self, a: ClientAuth) -> Self {
        self.client_auth = a;
        self
    }

    /// Server-to-Server OAuth: no authorization step, no refresh token; a new token is
    /// requested with `grant_type=account_credentials` when the stored one expires.
    pub fn with_account_credentials(mut self, account_id: String) -> Self {
        self.account_credentials = Some(account_id);
        self
    }

    /// The form of a token request, with the client credentials where this vendor wants them.
    fn grant_form<'a>(&'a self, mut form: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        if self.client_auth == ClientAuth::Form {
            form.push(("client_id", self.client_id.as_str()));
            form.push(("client_secret", self.client_secret.expose_secret()));
        }
        form
    }

    /// The URL the operator opens; `state` is stored and checked on exchange.
    pub async fn authorize_url(&self) -> Result<(String, String), OAuthError> {
        let state = uuid::Uuid::new_v4().simple().to_string();
        tokens::save_state(&self.store, &self.provider, &state).await.map_err(|e| self.store_err(e))?;
        let mut u = url::Url::parse(&self.authorize_url)
            .map_err(|e| OAuthError::Malformed { provider: self.provider.clone(), detail: e.to_string() })?;
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &state);
        for (k, v) in &self.authorize_params {
            u.query_pairs_mut().append_pair(k, v);
        }
        Ok((u.to_string(), state))
    }

    pub async fn check_state(&self, state: &str) -> Result<bool, OAuthError> {
        tokens::take_state(&self.store, &self.provider, state).await.map_err(|e| self.store_err(e))
    }

    pub async fn exchange_code(&self, code: &str) -> Result<String, OAuthError> {
        let _g = self.lock.lock().await;
        let form = self.grant_form(vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
        ]);
        let resp = self.call_token_endpoint(&form, "authorization_code").await?;
        self.commit(resp, "authorization_code").await
    }

    /// A valid access token, refreshed first when it expires within the margin.
    pub async fn access_token(&self) -> Result<(SecretString, i64), OAuthError> {
        let t = tokens::load(&self.store.pool, &self.provider, &self.key).await.map_err(|e| self.store_err(e))?;
        let Some(t) = t else {
            if self.account_credentials.is_some() {
                return self.refresh(0).await;
            }
            return Err(OAuthError::NotAuthorized { provider: self.provider.clone() });
        };
        let fresh = t
            .access_expires_at
            .as_deref()
            .and_then(crate::session::parse_ts)
            .map(|exp| exp - self.refresh_margin > Utc::now())
            .unwrap_or(false);
        match (t.access, fresh) {
            (Some(a), true) => Ok((a, t.generation)),
            _ => self.refresh(t.generation).await,
        }
    }

    /// Refresh unless another task already did since `seen_generation` (the token that
    /// just got a 401 is then already replaced).
    pub async fn refresh(&self, seen_generation: i64) -> Result<(SecretString, i64), OAuthError> {
        let _g = self.lock.lock().await;
        if let Some(account_id) = &self.account_credentials {
            return self.account_token(account_id, seen_generation).await;
        }
        let t = tokens::load(&self.store.pool, &self.provider, &self.key)
            .await
            .map_err(|e| self.store_err(e))?
            .ok_or_else(|| OAuthError::NotAuthorized { provider: self.provider.clone() })?;
        if t.generation != seen_generation {
            if let Some(a) = t.access {
                return Ok((a, t.generation));
            }
        }
        let refresh = t.refresh.ok_or_else(|| OAuthError::NotAuthorized { provider: self.provider.clone() })?;
        if let Some(at) = t.refresh_expires_at.as_deref() {
            if let Some(exp) = crate::session::parse_ts(at) {
                if exp <= Utc::now() {
                    return Err(OAuthError::RefreshExpired { provider: self.provider.clone(), at: at.to_string() });
                }
                let warn = self.refresh_lifetime.map(|(_, w)| w).unwrap_or_else(|| chrono::Duration::days(7));
                if exp - warn <= Utc::now() {
                    tracing::warn!(provider = %self.provider, refresh_expires_at = at, "refresh token expires soon: run `ticketsync auth {}`", auth_cmd(&self.provider));
                }
            }
        }
        let form = self.grant_form(vec![("grant_type", "refresh_token"), ("refresh_token", refresh.expose_secret())]);
        let resp = match self.call_token_endpoint(&form, "refresh_token").await {
            Ok(r) => r,
            Err(e @ OAuthError::Refused { .. }) => return self.rotated_elsewhere(t.generation).await.ok_or(e),
            Err(e) => return Err(e),
        };
        let access = SecretString::from(resp.access_token.clone());
        let generation = self.commit_raw(resp, "refresh").await?;
        tracing::info!(provider = %self.provider, generation, "access token refreshed");
        Ok((access, generation))
    }

    /// Server-to-Server: one shared token per account (a new one may invalidate the old),
    /// fetched again only when the stored one is older than `seen_generation` or expiring.
    async fn account_token(&self, account_id: &str, seen_generation: i64) -> Result<(SecretString, i64), OAuthError> {
        if let Some(t) =
            tokens::load(&self.store.pool, &self.provider, &self.key).await.map_err(|e| self.store_err(e))?
        {
            let fresh = t
                .access_expires_at
                .as_deref()
                .and_then(crate::session::parse_ts)
                .is_some_and(|exp| exp - self.refresh_margin > Utc::now());
            if let (Some(a), true) = (t.access, fresh && t.generation != seen_generation) {
                return Ok((a, t.generation));
            }
        }
        let form = vec![("grant_type", "account_credentials"), ("account_id", account_id)];
        let resp = self.call_token_endpoint(&form, "account_credentials").await?;
        let access = SecretString::from(resp.access_token.clone());
        let generation = self.commit_raw(resp, "account_credentials").await?;
        tracing::info!(provider = %self.provider, generation, "server-to-server access token fetched");
        Ok((access, generation))
    }

    /// The lock above only serializes this client. Another client of the same store (the
    /// daemon and a CLI command, two processes) may have spent the single-use refresh token
    /// a moment earlier: its rotated tokens land in the store shortly, so wait for them
    /// briefly instead of failing.
    async fn rotated_elsewhere(&self, spent_generation: i64) -> Option<(SecretString, i64)> {
        for _ in 0..30 {
            if let Ok(Some(t)) = tokens::load(&self.store.pool, &self.provider, &self.key).await {
                if t.generation != spent_generation {
                    if let Some(a) = t.access {
                        tracing::info!(provider = %self.provider, generation = t.generation, "refresh token was rotated by another client; using its tokens");
                        return Some((a, t.generation));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    async fn call_token_endpoint(
        &self,
        form: &[(&str, &str)],
        grant: &'static str,
    ) -> Result<TokenResponse, OAuthError> {
        // Server-to-Server is documented with query parameters and an empty body.
        let mut req = if grant == "account_credentials" {
            self.http.post(&self.token_url).query(form).header(reqwest::header::CONTENT_LENGTH, "0")
        } else {
            self.http.post(&self.token_url).form(form)
        };
        if self.client_auth == ClientAuth::Basic {
            req = req.basic_auth(&self.client_id, Some(self.client_secret.expose_secret()));
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_redirect() {
                OAuthError::Refusal {
                    provider: self.provider.clone(),
                    message: crate::http::describe_transport_error(&e),
                }
            } else {
                OAuthError::Transport { provider: self.provider.clone(), source: e.without_url() }
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = crate::http::read_text(resp, self.max_response).await.map_err(|e| match e {
            crate::http::BodyError::Transport(e) => {
                OAuthError::Transport { provider: self.provider.clone(), source: e.without_url() }
            }
            too_large => OAuthError::Refusal { provider: self.provider.clone(), message: too_large.to_string() },
        })?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(OAuthError::Unavailable {
                provider: self.provider.clone(),
                status: status.as_u16(),
                retry_after: crate::http::retry_after(&headers),
            });
        }
        if !status.is_success() {
            let e: ErrorBody = serde_json::from_str(&body).unwrap_or_default();
            return Err(OAuthError::Refused {
                provider: self.provider.clone(),
                grant,
                status: status.as_u16(),
                error: if e.error.is_empty() { "unknown_error".into() } else { e.error },
                desc: match (e.error_description.is_empty(), e.reason.is_empty()) {
                    (false, _) => format!(": {}", crate::http::short_body(&e.error_description)),
                    (true, false) => format!(": {}", crate::http::short_body(&e.reason)),
                    (true, true) => String::new(),
                },
            });
        }
        TokenResponse::parse(&body)
            .map_err(|e| OAuthError::Malformed { provider: self.provider.clone(), detail: e.to_string() })
    }

    async fn commit(&self, resp: TokenResponse, reason: &str) -> Result<String, OAuthError> {
        let exp = resp.access_expires_at(Utc::now());
        self.commit_raw(resp, reason).await?;
        Ok(exp)
    }

    async fn commit_raw(&self, resp: TokenResponse, reason: &str) -> Result<i64, OAuthError> {
        let now = Utc::now();
        let exp = resp.access_expires_at(now);
        let refresh_exp = resp.refresh_expires_at(self.refresh_lifetime.map(|(l, _)| l), now);
        let access = SecretString::from(resp.access_token);
        let refresh = resp.refresh_token.map(SecretString::from);
        tokens::save(
            &self.store,
            &self.provider,
            &self.key,
            &access,
            refresh.as_ref(),
            &exp,
            refresh_exp.as_deref(),
            reason,
        )
        .await
        .map_err(|e| self.store_err(e))
    }

    fn store_err(&self, e: crate::store::StoreError) -> OAuthError {
        OAuthError::Store { provider: self.provider.clone(), source: e }
    }

    /// When the stored access token expires (for `check` and `doctor`).
    pub async fn expiry_info(&self) -> Result<Option<String>, OAuthError> {
        Ok(tokens::load(&self.store.pool, &self.provider, &self.key)
            .await
            .map_err(|e| self.store_err(e))?
            .and_then(|t| t.access_expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<Utc> {
        "2025-06-01T00:00:00Z".parse().unwrap()
    }

    /// Regression (seen while writing the fuzz target `oauth_token`, which now guards it):
    /// `refresh_token_expires_in` near i64::MAX panicked in `chrono::Duration::seconds`;
    /// 1e15 s overflowed the date.
    #[test]
    fn absurd_refresh_lifetime_is_capped_not_a_panic() {
        let cap = crate::session::ts(now() + chrono::Duration::seconds(MAX_REFRESH_LIFETIME_S));
        for secs in ["9223372036854775807", "1000000000000000"] {
            let body = format!(r#"{{"access_token":"a","refresh_token":"r","refresh_token_expires_in":{secs}}}"#);
            let t = TokenResponse::parse(&body).unwrap();
            assert_eq!(t.refresh_expires_at(None, now()).as_deref(), Some(cap.as_str()), "{secs}");
        }
        let t = TokenResponse::parse(r#"{"access_token":"a","refresh_token":"r","refresh_expires_in":-5}"#).unwrap();
        assert_eq!(t.refresh_expires_at(None, now()), Some(crate::session::ts(now())));
        let t = TokenResponse::parse(r#"{"access_token":"a","expires_in":-9223372036854775808}"#).unwrap();
        assert_eq!(t.access_expires_at(now()), crate::session::ts(now() + chrono::Duration::seconds(60)));
        assert_eq!(t.refresh_expires_at(Some(chrono::Duration::days(30)), now()), None);
    }

    #[test]
    fn refresh_expiry_is_the_vendors_word_else_the_configured_lifetime() {
        let t = TokenResponse::parse(r#"{"access_token":"a","refresh_token":"r","expires_in":3600}"#).unwrap();
        let days = chrono::Duration::days(30);
        assert_eq!(t.refresh_expires_at(Some(days), now()), Some(crate::session::ts(now() + days)));
        assert_eq!(t.refresh_expires_at(None, now()), None);
        let t =
            TokenResponse::parse(r#"{"access_token":"a","refresh_token":"r","refresh_token_expires_in":60}"#).unwrap();
        let minute = crate::session::ts(now() + chrono::Duration::seconds(60));
        assert_eq!(t.refresh_expires_at(Some(days), now()), Some(minute));
    }
}
