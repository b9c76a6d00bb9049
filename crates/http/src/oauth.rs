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
    /// The redirect does not answer an authorization request this ticketsync issued.
    #[error("{provider}: {detail}: run `ticketsync auth {}` again and use the URL it prints", auth_cmd(provider))]
    StateRejected { provider: String, detail: String },
    /// The stored tokens do not decrypt with the configured client secret (rotated?); they
    /// were deleted so that nothing retries them.
    #[error(
        "{provider}: the stored OAuth tokens cannot be decrypted with the configured client secret (was it rotated?) and were discarded: run `ticketsync auth {}`",
        auth_cmd(provider)
    )]
    Discarded { provider: String },
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

    /// When the access token expires: the vendor's own word (`expires_in`, default an hour),
    /// only kept between now and a year so the date stays in chrono's range. No lower bound:
    /// a token said to live 20 s is treated as living 20 s (see [`refresh_due_at`]).
    pub fn access_expires_at(&self, now: chrono::DateTime<Utc>) -> String {
        crate::session::ts(now + chrono::Duration::seconds(self.expires_in.unwrap_or(3600).clamp(0, 365 * 86400)))
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

/// When a token issued at `issued` and expiring at `expires` is refreshed: shortly before the
/// vendor's own expiry, at the earlier of 30 s before it and 90 % of its lifetime (a day-long
/// token 2.4 h early, an hour-long one 6 min early, a one-minute one after 30 s), but never
/// before half its lifetime, so that a token living only seconds is still used once rather than
/// refreshed on every call.
pub fn refresh_due_at(issued: chrono::DateTime<Utc>, expires: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let life = (expires - issued).max(chrono::Duration::zero());
    let early = (life - chrono::Duration::seconds(30)).min(life * 9 / 10);
    issued + early.max(life / 2)
}

/// What an OAuth redirect carried, once checked against the request this process issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub code: String,
    pub state: Option<String>,
}

/// Why a redirect (or pasted text) is not accepted as the answer to an authorization request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("authorization refused by the vendor: {0}")]
    Refused(String),
    #[error("the redirect has no `code` parameter")]
    NoCode,
    #[error("the redirect has no `state`: it cannot be told apart from a forged one (paste the whole redirect URL, not only its code)")]
    NoState,
    #[error(
        "the redirect's `state` does not match the request this ticketsync issued (possible CSRF, or an older URL)"
    )]
    WrongState,
}

/// Read a redirect URL (or a bare code) received for an authorization request. With
/// `issued_state` (this process printed the authorize URL) the redirect must carry exactly that
/// state, or it is refused: a forged callback on the loopback listener, or a code pasted from
/// another request, never gets exchanged. Without it (`auth --code` in a later process) a
/// state is returned for the caller to check against the store.
pub fn parse_callback(input: &str, issued_state: Option<&str>) -> Result<Callback, CallbackError> {
    let input = input.trim();
    let (code, state, error) = match url::Url::parse(input) {
        Ok(u) => {
            let get = |k: &str| u.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
            (get("code").filter(|c| !c.is_empty()), get("state"), get("error"))
        }
        Err(_) if input.is_empty() => (None, None, None),
        Err(_) => (Some(input.to_string()), None, None),
    };
    // The state first: an error answer without our state is as forgeable as a code (it would
    // end a `--listen` wait for whoever sends it).
    if let Some(issued) = issued_state {
        match state.as_deref() {
            None => return Err(CallbackError::NoState),
            Some(s) if !constant_time_eq(s.as_bytes(), issued.as_bytes()) => return Err(CallbackError::WrongState),
            Some(_) => {}
        }
    }
    if let Some(err) = error {
        return Err(CallbackError::Refused(crate::short_body(&err)));
    }
    Ok(Callback { code: code.ok_or(CallbackError::NoCode)?, state })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long the last token commit took, from the vendor's answer (for the fault suite's figures).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitTiming {
    /// Until the journal entry was in place, safe from a killed process (zero when there was
    /// no refresh token to protect).
    pub journal: Duration,
    /// Until it was fsynced, safe from a power loss.
    pub journal_synced: Duration,
    /// Until the database commit returned.
    pub database: Duration,
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
    /// Send PKCE (S256) with the authorization request (Zoom; see docs/security/oauth.md).
    pkce: bool,
    /// An interrupted token save (the journal) is replayed once per client, at its first load.
    recovered: tokio::sync::OnceCell<()>,
    last_commit: std::sync::Mutex<Option<CommitTiming>>,
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
            max_response: crate::DEFAULT_MAX_RESPONSE_BYTES,
            pkce: false,
            recovered: tokio::sync::OnceCell::new(),
            last_commit: std::sync::Mutex::new(None),
        }
    }

    /// Send a PKCE S256 challenge with the authorization request and its verifier with the
    /// code (RFC 7636), for vendors that document it.
    pub fn with_pkce(mut self) -> Self {
        self.pkce = true;
        self
    }

    pub fn uses_pkce(&self) -> bool {
        self.pkce
    }

    /// The timing of the last token commit of this client.
    pub fn last_commit_timing(&self) -> Option<CommitTiming> {
        *self.last_commit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored tokens, after replaying an interrupted save. Tokens the configured client
    /// secret no longer opens are discarded with a warning: a server-to-server client then
    /// fetches a fresh token (`Ok(None)`), a user app asks for `auth` ([`OAuthError::Discarded`]).
    /// Either way nothing retries the unreadable row.
    async fn load(&self) -> Result<Option<tokens::Tokens>, OAuthError> {
        self.recovered.get_or_init(|| self.replay_journal()).await;
        match tokens::load_checked(&self.store, &self.provider, &self.key).await.map_err(|e| self.store_err(e))? {
            tokens::Loaded::Missing => Ok(None),
            tokens::Loaded::Tokens(t) => Ok(Some(t)),
            tokens::Loaded::Undecryptable { generation } => {
                let s2s = self.account_credentials.is_some();
                tracing::warn!(provider = %self.provider, generation,
                    "stored OAuth tokens cannot be decrypted with the configured client secret (rotated?): discarding them; {}",
                    if s2s { "fetching a fresh server-to-server token".to_string() } else { format!("run `ticketsync auth {}`", auth_cmd(&self.provider)) });
                tokens::discard(
                    &self.store,
                    &self.provider,
                    generation,
                    "undecryptable with the configured client secret",
                )
                .await
                .map_err(|e| self.store_err(e))?;
                if s2s {
                    Ok(None)
                } else {
                    Err(OAuthError::Discarded { provider: self.provider.clone() })
                }
            }
        }
    }

    /// Commit a journal entry left by a save that did not reach the database (a crash right
    /// after the vendor answered). Only onto the row it was meant to follow: if the database
    /// already holds that refresh token, or moved on since, the entry is just removed.
    async fn replay_journal(&self) {
        let Some(db) = self.store.journal_base().map(str::to_string) else { return };
        let Some(entry) = tokens::journal_read(&db, &self.provider) else { return };
        // A save still under way in a live process (this one included: another client of the
        // same provider) is that process's to commit; replaying it too would commit it twice.
        if tokens::writer_alive(entry.writer) {
            return;
        }
        // Entries sealed under another secret are of no use (and are not ours to judge here).
        if entry.refresh_token_enc.as_deref().is_some_and(|r| self.key.decrypt(r).is_err()) {
            return;
        }
        let current = match tokens::stored_refresh_enc(&self.store, &self.provider).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e, "token journal not replayed (database unreadable)");
                return;
            }
        };
        if current.as_ref().is_some_and(|(_, r)| r.is_some() && *r == entry.refresh_token_enc) {
            tokens::journal_remove(&db, &self.provider);
            return;
        }
        let generation = current.map(|(g, _)| g).unwrap_or(0);
        let mut replay = entry.clone();
        replay.reason = format!("{} (replayed from the token journal after an interrupted save)", entry.reason);
        match tokens::save_sealed(&self.store, &replay, Some(generation)).await {
            Ok(Some(g)) => {
                tracing::warn!(provider = %self.provider, generation = g, "a token save was interrupted (crash?); the vendor's last answer was recovered from the token journal");
                tokens::journal_remove(&db, &self.provider);
            }
            Ok(None) => tokens::journal_remove(&db, &self.provider),
            Err(e) => tracing::warn!(provider = %self.provider, error = %e, "token journal not replayed yet"),
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
        // Read only (`check` opens the database read-only): no replay, no discard.
        let t = tokens::load(&self.store, &self.provider, &self.key).await.map_err(|e| self.store_err(e))?;
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

    /// The URL the operator opens; `state` is stored and checked on exchange
    /// ([`Self::complete_authorization`]). With PKCE, the S256 challenge of the verifier
    /// derived from this state goes with it.
    pub async fn authorize_url(&self) -> Result<(String, String), OAuthError> {
        // 128 random bits, as hex.
        let state = uuid::Uuid::new_v4().simple().to_string();
        tokens::save_state(&self.store, &self.provider, &state).await.map_err(|e| self.store_err(e))?;
        let mut u = url::Url::parse(&self.authorize_url)
            .map_err(|e| OAuthError::Malformed { provider: self.provider.clone(), detail: e.to_string() })?;
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &state);
        if self.pkce {
            u.query_pairs_mut()
                .append_pair("code_challenge", &tokens::pkce_challenge(&self.key.pkce_verifier(&state)))
                .append_pair("code_challenge_method", "S256");
        }
        for (k, v) in &self.authorize_params {
            u.query_pairs_mut().append_pair(k, v);
        }
        Ok((u.to_string(), state))
    }

    pub async fn check_state(&self, state: &str) -> Result<bool, OAuthError> {
        tokens::take_state(&self.store, &self.provider, state).await.map_err(|e| self.store_err(e))
    }

    /// Exchange a code obtained outside a ticketsync authorize URL (no state to check, no
    /// PKCE verifier), e.g. a Marketplace install or a simulator's approval.
    pub async fn exchange_code(&self, code: &str) -> Result<String, OAuthError> {
        self.exchange(code, None).await
    }

    /// Finish an authorization this ticketsync started: `state` must be one it issued for this
    /// provider, unused and younger than [`tokens::STATE_VALIDITY`] (it is consumed), and with
    /// PKCE the code goes with the verifier derived from it.
    pub async fn complete_authorization(&self, code: &str, state: &str) -> Result<String, OAuthError> {
        if !tokens::take_fresh_state(&self.store, &self.provider, state).await.map_err(|e| self.store_err(e))? {
            return Err(OAuthError::StateRejected {
                provider: self.provider.clone(),
                detail: "the redirect's state was not issued by this ticketsync, was already used, or is older than 30 minutes (possible CSRF, or an old URL)".into(),
            });
        }
        let verifier = self.pkce.then(|| self.key.pkce_verifier(state));
        self.exchange(code, verifier.as_deref()).await
    }

    async fn exchange(&self, code: &str, verifier: Option<&str>) -> Result<String, OAuthError> {
        let _g = self.lock.lock().await;
        self.recovered.get_or_init(|| self.replay_journal()).await;
        let mut form =
            vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", self.redirect_uri.as_str())];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let form = self.grant_form(form);
        let resp = self.call_token_endpoint(&form, "authorization_code").await?;
        // Tokens the configured secret cannot open would keep a refresh token nobody can
        // read (the save keeps the old one when the answer carries none): drop them first.
        if let Ok(tokens::Loaded::Undecryptable { generation }) =
            tokens::load_checked(&self.store, &self.provider, &self.key).await
        {
            tokens::discard(&self.store, &self.provider, generation, "replaced by a new authorization")
                .await
                .map_err(|e| self.store_err(e))?;
        }
        self.commit(resp, "authorization_code").await
    }

    /// A valid access token, refreshed first when it expires within the margin.
    pub async fn access_token(&self) -> Result<(SecretString, i64), OAuthError> {
        let Some(t) = self.load().await? else {
            if self.account_credentials.is_some() {
                return self.refresh(0).await;
            }
            return Err(OAuthError::NotAuthorized { provider: self.provider.clone() });
        };
        let fresh = self.is_fresh(&t);
        match (t.access, fresh) {
            (Some(a), true) => Ok((a, t.generation)),
            _ => self.refresh(t.generation).await,
        }
    }

    /// The stored access token is good for now: before its refresh point ([`refresh_due_at`]
    /// from the vendor's own lifetime, without any floor) and before `refresh_margin` ahead of
    /// its expiry when that margin is shorter than the lifetime (an old row without its issue
    /// time falls back to the margin alone).
    fn is_fresh(&self, t: &tokens::Tokens) -> bool {
        let Some(exp) = t.access_expires_at.as_deref().and_then(crate::session::parse_ts) else { return false };
        let now = Utc::now();
        match t.updated_at.as_deref().and_then(crate::session::parse_ts) {
            Some(issued) => now < refresh_due_at(issued, exp),
            None => exp - self.refresh_margin > now,
        }
    }

    /// Refresh unless another task already did since `seen_generation` (the token that
    /// just got a 401 is then already replaced).
    pub async fn refresh(&self, seen_generation: i64) -> Result<(SecretString, i64), OAuthError> {
        let _g = self.lock.lock().await;
        if let Some(account_id) = &self.account_credentials {
            return self.account_token(account_id, seen_generation).await;
        }
        let t = self.load().await?.ok_or_else(|| OAuthError::NotAuthorized { provider: self.provider.clone() })?;
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
        if let Some(t) = self.load().await? {
            let fresh = self.is_fresh(&t);
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
            // The other client may have died after its vendor answered: its journal entry
            // holds the rotated tokens then.
            self.replay_journal().await;
            if let Ok(Some(t)) = tokens::load(&self.store, &self.provider, &self.key).await {
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
                OAuthError::Refusal { provider: self.provider.clone(), message: crate::describe_transport_error(&e) }
            } else {
                OAuthError::Transport { provider: self.provider.clone(), source: e.without_url() }
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = crate::read_text(resp, self.max_response).await.map_err(|e| match e {
            crate::BodyError::Transport(e) => {
                OAuthError::Transport { provider: self.provider.clone(), source: e.without_url() }
            }
            too_large => OAuthError::Refusal { provider: self.provider.clone(), message: too_large.to_string() },
        })?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(OAuthError::Unavailable {
                provider: self.provider.clone(),
                status: status.as_u16(),
                retry_after: crate::retry_after(&headers),
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
                    (false, _) => format!(": {}", crate::short_body(&e.error_description)),
                    (true, false) => format!(": {}", crate::short_body(&e.reason)),
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

    /// Make the vendor's answer durable, then commit it. An answer with a refresh token goes
    /// to the token journal first (an fsync of a small file that never waits for the database's
    /// write lock, which a page transaction may hold); the database commit follows and removes
    /// the entry. A crash in between is repaired by the next load ([`Self::replay_journal`]).
    async fn commit_raw(&self, resp: TokenResponse, reason: &str) -> Result<i64, OAuthError> {
        let answered = std::time::Instant::now();
        let now = Utc::now();
        let exp = resp.access_expires_at(now);
        let refresh_exp = resp.refresh_expires_at(self.refresh_lifetime.map(|(l, _)| l), now);
        let access = SecretString::from(resp.access_token);
        let refresh = resp.refresh_token.map(SecretString::from);
        let sealed = tokens::Sealed::new(
            &self.provider,
            &self.key,
            &access,
            refresh.as_ref(),
            &exp,
            refresh_exp.as_deref(),
            reason,
        );
        let db = self.store.journal_base().map(str::to_string);
        let mut journal = Duration::ZERO;
        let mut synced = Duration::ZERO;
        // Staged on this thread (a small write and a rename, no waiting): a kill from here on
        // loses nothing. The fsyncs for power loss follow on the blocking pool. No journal
        // without a place for it (a PostgreSQL store not given one).
        let journaled = match db.as_deref().filter(|_| refresh.is_some()).map(|db| tokens::journal_stage(db, &sealed)) {
            None => false,
            Some(Ok(path)) => {
                journal = answered.elapsed();
                let synced_ok = tokio::task::spawn_blocking(move || tokens::journal_sync(&path))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                if let Err(e) = synced_ok {
                    tracing::warn!(provider = %self.provider, error = %e, "token journal not fsynced; committing to the database");
                }
                synced = answered.elapsed();
                true
            }
            Some(Err(e)) => {
                // The database commit below still protects the token, as before the journal.
                tracing::warn!(provider = %self.provider, error = %e, "token journal not written; committing to the database only");
                false
            }
        };
        let generation = tokens::save_sealed(&self.store, &sealed, None)
            .await
            .map_err(|e| self.store_err(e))?
            .expect("an unconditional save always writes");
        if let Some(db) = db.as_deref().filter(|_| journaled) {
            tokens::journal_remove(db, &self.provider);
        }
        let timing = CommitTiming { journal, journal_synced: synced, database: answered.elapsed() };
        *self.last_commit.lock().unwrap_or_else(|e| e.into_inner()) = Some(timing);
        tracing::debug!(provider = %self.provider, journal_us = timing.journal.as_micros() as u64,
            journal_synced_us = timing.journal_synced.as_micros() as u64, commit_us = timing.database.as_micros() as u64,
            "token response committed");
        Ok(generation)
    }

    fn store_err(&self, e: crate::store::StoreError) -> OAuthError {
        OAuthError::Store { provider: self.provider.clone(), source: e }
    }

    /// When the stored access token expires (for `check` and `doctor`).
    pub async fn expiry_info(&self) -> Result<Option<String>, OAuthError> {
        Ok(tokens::load(&self.store, &self.provider, &self.key)
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
        assert_eq!(t.access_expires_at(now()), crate::session::ts(now()));
        assert_eq!(t.refresh_expires_at(Some(chrono::Duration::days(30)), now()), None);
    }

    /// Regression (issue 15): `expires_in` was raised to at least 60 s, so a 20-second token
    /// was used for a minute (a 401 before every refresh). Now the vendor's word stands, and
    /// the refresh comes shortly before it.
    #[test]
    fn short_tokens_are_refreshed_before_the_vendors_expiry() {
        let t = TokenResponse::parse(r#"{"access_token":"a","expires_in":20}"#).unwrap();
        assert_eq!(t.access_expires_at(now()), crate::session::ts(now() + chrono::Duration::seconds(20)));
        let at = |life: i64| refresh_due_at(now(), now() + chrono::Duration::seconds(life)) - now();
        // min(expiry - 30 s, 90 %), never before half the lifetime.
        assert_eq!(at(86_400), chrono::Duration::seconds(77_760));
        assert_eq!(at(3_600), chrono::Duration::seconds(3_240));
        assert_eq!(at(300), chrono::Duration::seconds(270));
        assert_eq!(at(60), chrono::Duration::seconds(30));
        assert_eq!(at(20), chrono::Duration::seconds(10));
        assert_eq!(at(0), chrono::Duration::zero());
        assert_eq!(at(-5), chrono::Duration::zero(), "an expiry in the past: refresh now");
        for life in [1, 20, 59, 60, 61, 3_599, 86_400] {
            assert!(at(life) < chrono::Duration::seconds(life), "{life}: before the vendor's expiry");
        }
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
