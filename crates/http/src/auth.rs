//! How a request presents its credentials: one enum for every source and sink, static
//! (a header, a bearer token, Basic) or OAuth with rotation ([`crate::oauth::OAuthClient`],
//! which commits a rotated refresh token before the new access token is used).

use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};

use crate::oauth::{OAuthClient, OAuthError};
use crate::store::Store;

pub enum Auth {
    /// No credential on every request (GLPI without an App-Token: its session token is
    /// added per call).
    None,
    /// A credential header sent as is (`X-Redmine-API-Key`).
    Header { name: HeaderName, value: SecretString },
    /// `Authorization: Bearer` with a token that never changes (TeamViewer script token,
    /// Splashtop API token, a Zendesk OAuth token).
    Bearer(SecretString),
    /// `Authorization: Basic` (Freshservice's key as the user name, Zendesk's API token).
    Basic { user: SecretString, password: Option<SecretString> },
    /// `Authorization: Bearer` with an access token the OAuth client refreshes.
    OAuth(Arc<OAuthClient>),
}

/// The credentials one attempt is made with: the access token and its generation (to tell
/// the OAuth client which token a 401 rejected); static credentials are generation 0.
pub struct Presented {
    access: Option<SecretString>,
    pub generation: i64,
}

impl Auth {
    /// The credentials for the next attempt (OAuth: the stored access token, refreshed first
    /// when it is due).
    pub async fn present(&self) -> Result<Presented, OAuthError> {
        match self {
            Auth::OAuth(o) => {
                let (t, generation) = o.access_token().await?;
                Ok(Presented { access: Some(t), generation })
            }
            _ => Ok(Presented { access: None, generation: 0 }),
        }
    }

    /// `req` with the credentials: static ones as configured, OAuth's access token from
    /// `presented`.
    pub fn apply(&self, req: RequestBuilder, presented: &Presented) -> RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Header { name, value } => match HeaderValue::from_str(value.expose_secret()) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    req.header(name.clone(), v)
                }
                // Not a valid header value: reqwest reports it when the request is built.
                Err(_) => req.header(name.clone(), value.expose_secret()),
            },
            Auth::Bearer(t) => req.bearer_auth(t.expose_secret()),
            Auth::Basic { user, password } => {
                req.basic_auth(user.expose_secret(), password.as_ref().map(|p| p.expose_secret()))
            }
            Auth::OAuth(_) => match &presented.access {
                Some(t) => req.bearer_auth(t.expose_secret()),
                None => req,
            },
        }
    }

    /// `req` with static credentials (sinks: none of them refreshes a token).
    pub fn apply_static(&self, req: RequestBuilder) -> RequestBuilder {
        self.apply(req, &Presented { access: None, generation: 0 })
    }

    pub fn oauth(&self) -> Option<&Arc<OAuthClient>> {
        match self {
            Auth::OAuth(o) => Some(o),
            _ => None,
        }
    }
}

/// A vendor app's OAuth settings as its config section gives them: the one builder of
/// [`OAuthClient`] for every source, with the errors naming the section's keys.
pub struct OAuthApp<'a> {
    /// The token store key (`teamviewer`, `zoom:helpdesk`).
    pub provider: &'a str,
    /// The config section, e.g. `sources.teamviewer` or `sources.zoom.accounts[0]`.
    pub section: &'a str,
    /// The credential name of the client secret (`teamviewer_client_secret`).
    pub credential: &'a str,
    /// `None`: the section has no `client_id`.
    pub client_id: Option<String>,
    pub client_secret: Result<Option<SecretString>, crate::config::ConfigError>,
    pub token_url: String,
    pub authorize_url: String,
    pub redirect_uri: String,
    /// The section's `max_response_bytes` (the token endpoint's answer is capped too).
    pub max_response: u64,
}

impl OAuthApp<'_> {
    /// The client, or the configuration error that keeps it from being built.
    pub fn build(self, http: reqwest::Client, store: &Store) -> Result<OAuthClient, String> {
        let client_id =
            self.client_id.ok_or_else(|| format!("{}.client_id: required for auth = \"oauth\"", self.section))?;
        let secret = self.client_secret.map_err(|e| e.to_string())?.ok_or_else(|| {
            format!("{}.client_secret: missing (client_secret_file or credential {})", self.section, self.credential)
        })?;
        Ok(OAuthClient::new(
            self.provider,
            self.token_url,
            self.authorize_url,
            client_id,
            secret,
            self.redirect_uri,
            http,
            store.clone(),
        )
        .with_max_response_bytes(self.max_response))
    }
}
