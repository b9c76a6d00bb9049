//! `[sources.zoom]` as the binary sees it: the component (and how `init` writes its first
//! account), its checks and secrets (one per account), the source it builds and its doctor
//! probe (each account).

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;

use super::config::{ZoomAuth, ZoomConfig, SECRETS};
use super::{ZoomApi, ZoomSource};
use crate::config::{Component, Described, Errors, InitKey, Outbound, SecretUse, Setup, Shaped, Values};
use crate::launch::Launcher;
use crate::probe::{self, fail, not_called, oauth_token, ok, Check, ProbeCtx, Scratch};
use crate::section::{SourceSection, Vendor};
use crate::store::Store;
use crate::{Source, SourceError};

impl Described for ZoomConfig {
    const COMPONENT: Component =
        Component { kind: super::wire::VENDOR, section: "sources.zoom", secrets: SECRETS, setup: &ZoomSetup };
}

impl Vendor for ZoomConfig {
    const NOTES: &'static dyn crate::VendorNotes = &super::Notes;
}

/// `init` writes one account, `[[sources.zoom.accounts]]`, whose name its credential carries.
struct ZoomSetup;

impl Setup for ZoomSetup {
    fn keys(&self) -> &'static [InitKey] {
        const KEYS: &[InitKey] = &[
            InitKey::new("account", "Zoom account name (letters, digits, - and _)", Some("helpdesk")),
            InitKey {
                name: "auth",
                prompt: "Zoom app type",
                default: Some("oauth"),
                choices: &["oauth", "server_to_server"],
            },
            InitKey::new("client_id", "Zoom OAuth client id", None),
            InitKey::new("account_id", "Zoom account id (Server-to-Server apps only; empty otherwise)", Some("")),
        ];
        KEYS
    }
    fn secrets(&self) -> &'static [&'static str] {
        &["accounts[].client_secret"]
    }
    fn element<'a>(&self, values: &'a Values) -> Option<&'a str> {
        values.get("account").map(String::as_str)
    }
    fn missing(&self, values: &Values) -> Vec<String> {
        match s2s(values) && values.get("account_id").is_none_or(|v| v.is_empty()) {
            true => vec!["zoom.account_id (Server-to-Server apps): --set zoom.account_id=…".into()],
            false => vec![],
        }
    }
    fn shape(&self, values: &Values) -> Shaped {
        let v = |k: &str| values.get(k).cloned().unwrap_or_default();
        let mut account =
            vec![("name".into(), v("account")), ("auth".into(), v("auth")), ("client_id".into(), v("client_id"))];
        if s2s(values) {
            account.push(("account_id".into(), v("account_id")));
        }
        Shaped { keys: vec![], elements: vec![("sources.zoom.accounts".into(), account)] }
    }
    fn next(&self, values: &Values) -> Option<String> {
        (values.get("auth").map(String::as_str) == Some("oauth")).then(|| {
            format!(
                "ticketsync auth zoom --account {} (a user-managed OAuth app needs one authorization)",
                values.get("account").map(String::as_str).unwrap_or("")
            )
        })
    }
}

fn s2s(values: &Values) -> bool {
    values.get("auth").map(String::as_str) == Some("server_to_server")
}

#[async_trait]
impl SourceSection for ZoomConfig {
    crate::section::section_basics!();

    fn schedule(&self) -> Option<&str> {
        Some(&self.schedule)
    }

    fn validate_into(&self, e: &mut Errors) {
        ZoomConfig::validate_into(self, e)
    }

    /// Each account's, its credential named after the account.
    fn secrets(&self) -> Vec<SecretUse> {
        let accounts = self.accounts.iter().enumerate();
        accounts
            .map(|(i, a)| SecretUse {
                key: format!("sources.zoom.accounts[{i}].client_secret"),
                credential: a.credential_name(),
                required: true,
                value: a.client_secret(i),
            })
            .collect()
    }

    /// The token endpoint's `client_id:client_secret` of each account.
    fn basic_pairs(&self) -> Vec<(String, String)> {
        let accounts = self.accounts.iter().enumerate();
        accounts
            .filter_map(|(i, a)| match a.client_secret(i) {
                Ok(Some(s)) => Some((a.client_id.clone(), s.expose_secret().to_string())),
                _ => None,
            })
            .collect()
    }

    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>) {
        let urls = vec![("api_url", self.api_url.clone()), ("oauth_url", self.oauth_url.clone())];
        crate::section::outbound_urls(self.outbound(), "sources.zoom", urls)
    }

    fn build(&self, store: &Store) -> Result<Option<Arc<dyn Source>>, SourceError> {
        Ok(Some(Arc::new(ZoomSource::new(self, store)?)))
    }

    fn summary(&self) -> String {
        let names: Vec<_> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        format!("zoom (accounts: {})", names.join(", "))
    }

    /// Each account: one harmless read (today's recordings, one item), and for a
    /// user-managed app its stored tokens. A server-to-server app gets its token with its own
    /// credentials: the stored one while it is valid, else a new one through a scratch
    /// database (the real one is read-only, and the daemon fetches a new one anyway once the
    /// old expires).
    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Vec<Check> {
        let z = self;
        let store = ctx.real;
        let mut out = Vec::new();
        for (i, a) in z.accounts.iter().enumerate() {
            let key = a.token_key();
            let name = format!("source {key}");
            let fix = format!("ticketsync auth zoom --account {}", a.name);
            match (a.auth, store) {
                (ZoomAuth::ServerToServer, _) => {
                    let stored = match store {
                        Some(s) => oauth_token(s, &key, &fix, zoom_client(z, i, s)).await.1,
                        None => false,
                    };
                    let call = match (stored, store) {
                        (true, Some(s)) => zoom_call(z, i, s).await,
                        _ => match Scratch::open().await {
                            Ok(scratch) => {
                                let c = zoom_call(z, i, &scratch.store).await;
                                scratch.close().await;
                                c
                            }
                            Err(e) => fail(&name, e, "check the temporary directory"),
                        },
                    };
                    out.push(call);
                    out.push(ok(&format!("token {key}"), "server-to-server app: a token is requested when needed"));
                }
                (_, None) => {
                    let token =
                        fail(&format!("token {key}"), "no database, so no OAuth tokens", format!("run `{fix}`"));
                    out.push(not_called(&name, &token));
                    out.push(token);
                }
                (_, Some(s)) => {
                    let (token, callable) = oauth_token(s, &key, &fix, zoom_client(z, i, s)).await;
                    // Only with a valid access token: a refresh through this read-only database
                    // could not store the rotated refresh token.
                    out.push(if callable { zoom_call(z, i, s).await } else { not_called(&name, &token) });
                    out.push(token);
                }
            }
        }
        out
    }

    fn launcher(&self) -> Option<&dyn Launcher> {
        Some(self)
    }
}

fn zoom_client(z: &ZoomConfig, index: usize, store: &Store) -> Result<crate::oauth::OAuthClient, SourceError> {
    super::oauth_client(z, index, store, probe::token_http(z.outbound()))
}

async fn zoom_call(z: &ZoomConfig, index: usize, store: &Store) -> Check {
    let a = &z.accounts[index];
    let name = format!("source {}", a.token_key());
    let api = match ZoomApi::new(z, index, store) {
        Ok(api) => api.with_max_retries(1),
        Err(e) => return probe::client_fail(&name, e.to_string(), "fix the named key"),
    };
    match api.check().await {
        Ok(what) => ok(&name, format!("{what}: token and recording:read scope accepted")),
        Err(e) => fail(
            &name,
            e.to_string(),
            format!(
                "check sources.zoom.api_url / oauth_url, the network, accounts[{index}] (client_id, client_secret{}, user_id) and the app's scopes",
                if a.auth == ZoomAuth::ServerToServer { ", account_id" } else { "" }
            ),
        ),
    }
}
