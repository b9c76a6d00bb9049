//! `[sources.splashtop]` as the binary sees it: the component, its checks and secrets, the
//! source it builds, its doctor probe and its `check` remarks (the OAuth refresh token).

use std::sync::Arc;

use async_trait::async_trait;

use super::config::{SplashtopAuth, SplashtopConfig, SECRETS};
use super::{SplashtopApi, SplashtopSource};
use crate::config::{Component, Described, Errors, InitKey, Outbound, Plain, SecretUse};
use crate::launch::Launcher;
use crate::probe::{self, fail, ok, Check, ProbeCtx};
use crate::section::{Remark, SourceSection, Vendor};
use crate::store::Store;
use crate::{Source, SourceError};

impl Described for SplashtopConfig {
    const COMPONENT: Component = Component {
        kind: super::wire::VENDOR,
        section: "sources.splashtop",
        secrets: SECRETS,
        // `init` writes an API token (auth = "token", the default).
        setup: &Plain {
            keys: &[InitKey {
                name: "region",
                prompt: "Splashtop region",
                default: Some("us"),
                choices: &["us", "eu"],
            }],
            secrets: &["token"],
        },
    };
}

impl Vendor for SplashtopConfig {
    const NOTES: &'static dyn crate::VendorNotes = &super::Notes;
}

#[async_trait]
impl SourceSection for SplashtopConfig {
    crate::section::section_basics!();

    fn schedule(&self) -> Option<&str> {
        Some(&self.schedule)
    }

    fn validate_into(&self, e: &mut Errors) {
        SplashtopConfig::validate_into(self, e)
    }

    fn secrets(&self) -> Vec<SecretUse> {
        vec![match self.auth {
            SplashtopAuth::Token => SecretUse::declared("sources.splashtop.token", true, self.token_secret()),
            SplashtopAuth::Oauth => SecretUse::declared("sources.splashtop.client_secret", true, self.client_secret()),
        }]
    }

    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>) {
        let urls = vec![
            ("base_url", self.base_url()),
            ("console_url", self.console_url()),
            ("authorize_url", self.authorize_url()),
            ("token_url", self.token_url()),
        ];
        crate::section::outbound_urls(self.outbound(), "sources.splashtop", urls)
    }

    fn build(&self, store: &Store) -> Result<Option<Arc<dyn Source>>, SourceError> {
        Ok(Some(Arc::new(SplashtopSource::new(self, store)?)))
    }

    /// OAuth refresh tokens close to their end are a warning, expired ones an error naming
    /// the command that fixes them.
    async fn remarks(&self, store: Option<&Store>) -> Result<Vec<Remark>, SourceError> {
        if self.auth != SplashtopAuth::Oauth {
            return Ok(vec![]);
        }
        let Some(store) = store else {
            return Ok(vec![Remark::Info("splashtop: not authorized yet: run `ticketsync auth splashtop`".into())]);
        };
        let http = self.outbound().client(std::time::Duration::from_secs(30)).map_err(|e| SourceError::Vendor {
            source_name: "sources.splashtop".into(),
            message: e.to_string(),
            transient: false,
        })?;
        let oauth = super::oauth_client(self, store, http)?;
        Ok(vec![match oauth.refresh_expiry().await? {
            None => Remark::Info("splashtop: no refresh token stored: run `ticketsync auth splashtop`".into()),
            Some((at, _)) if crate::session::parse_ts(&at).is_some_and(|t| t <= chrono::Utc::now()) => {
                return Err(SourceError::Vendor {
                    source_name: "sources.splashtop".into(),
                    message: format!("the OAuth refresh token expired at {at}: run `ticketsync auth splashtop`"),
                    transient: false,
                })
            }
            Some((at, true)) => {
                tracing::warn!(provider = "splashtop", refresh_expires_at = %at, "refresh token expires soon");
                Remark::Warning(format!(
                    "splashtop refresh token expires at {at}: run `ticketsync auth splashtop` before then"
                ))
            }
            Some((at, false)) => Remark::Info(format!("splashtop: refresh token valid until {at}")),
        }])
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Vec<Check> {
        let client = |store: &Store| super::oauth_client(self, store, probe::token_http(self.outbound()));
        let oauth = self.auth == SplashtopAuth::Oauth;
        probe::oauth_or_call("source splashtop", "splashtop", oauth, ctx, client, |store| whoami(self, store)).await
    }

    fn launcher(&self) -> Option<&dyn Launcher> {
        Some(self)
    }
}

async fn whoami(st: &SplashtopConfig, store: Store) -> Check {
    let name = "source splashtop";
    let api = match SplashtopApi::new(st, &store) {
        Ok(a) => a.with_max_retries(1),
        Err(e) => return probe::client_fail(name, e.to_string(), "fix the named key"),
    };
    match api.basic_info().await {
        Ok(_) => ok(name, format!("GET {}{}: token accepted", st.base_url(), super::wire::basic_info_path())),
        Err(e) => fail(name, e.to_string(), "check sources.splashtop.base_url (or region), the network and the token"),
    }
}
