//! `[sources.teamviewer]` as the binary sees it: the component, its checks and secrets, the
//! source it builds, its doctor probe and its `check` remarks.

use std::sync::Arc;

use async_trait::async_trait;

use super::config::{TeamViewerAuth, TeamViewerConfig, SECRETS};
use super::{TeamViewerApi, TeamViewerSource, REPORT_RETENTION_DAYS};
use crate::config::{Component, Described, Errors, InitKey, Outbound, Plain, SecretUse};
use crate::launch::Launcher;
use crate::probe::{self, fail, ok, Check, ProbeCtx};
use crate::section::{Remark, SourceSection, Vendor};
use crate::store::Store;
use crate::{Source, SourceError};

impl Described for TeamViewerConfig {
    const COMPONENT: Component = Component {
        kind: super::wire::VENDOR,
        section: "sources.teamviewer",
        secrets: SECRETS,
        // `init` writes a script token (auth = "script", the default).
        setup: &Plain { keys: &[] as &[InitKey], secrets: &["token"] },
    };
}

impl Vendor for TeamViewerConfig {
    const NOTES: &'static dyn crate::VendorNotes = &super::Notes;
}

#[async_trait]
impl SourceSection for TeamViewerConfig {
    crate::section::section_basics!();

    fn schedule(&self) -> Option<&str> {
        Some(&self.schedule)
    }

    fn validate_into(&self, e: &mut Errors) {
        TeamViewerConfig::validate_into(self, e)
    }

    fn secrets(&self) -> Vec<SecretUse> {
        vec![match self.auth {
            TeamViewerAuth::Script => SecretUse::declared("sources.teamviewer.token", true, self.token_secret()),
            TeamViewerAuth::Oauth => {
                SecretUse::declared("sources.teamviewer.client_secret", true, self.client_secret())
            }
        }]
    }

    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>) {
        let urls = vec![("base_url", self.base_url.clone()), ("authorize_url", self.authorize_url.clone())];
        crate::section::outbound_urls(self.outbound(), "sources.teamviewer", urls)
    }

    fn build(&self, store: &Store) -> Result<Option<Arc<dyn Source>>, SourceError> {
        Ok(Some(Arc::new(TeamViewerSource::new(self, store)?)))
    }

    /// Before the first poll: warn when `initial_lookback_days` reads less than the vendor
    /// keeps, and say how to read the rest. Nothing once the source has polled.
    async fn remarks(&self, store: Option<&Store>) -> Result<Vec<Remark>, SourceError> {
        let retention = REPORT_RETENTION_DAYS;
        if self.initial_lookback_days >= retention {
            return Ok(vec![]);
        }
        if let Some(store) = store {
            if crate::store::cursors::load(store, super::wire::VENDOR).await?.is_some() {
                return Ok(vec![]);
            }
        }
        let from = (chrono::Utc::now() - chrono::Duration::days(self.initial_lookback_days as i64)).format("%Y-%m-%d");
        Ok(vec![Remark::Warning(format!(
            "sources.teamviewer.initial_lookback_days = {}: the first poll reads connection reports from {from} on, \
             but TeamViewer keeps about {retention} days of them (assumed; see docs/security/oauth.md); \
             to read the older ones run `ticketsync backfill --source teamviewer --from <first day> --to {from}` after it",
            self.initial_lookback_days
        ))])
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Vec<Check> {
        let client = |store: &Store| super::oauth_client(self, store, probe::token_http(self.outbound()));
        let oauth = self.auth == TeamViewerAuth::Oauth;
        probe::oauth_or_call("source teamviewer", "teamviewer", oauth, ctx, client, |store| ping(self, store)).await
    }

    fn launcher(&self) -> Option<&dyn Launcher> {
        Some(self)
    }
}

async fn ping(tv: &TeamViewerConfig, store: Store) -> Check {
    let name = "source teamviewer";
    let api = match TeamViewerApi::new(tv, &store) {
        Ok(a) => a.with_max_retries(1),
        Err(e) => return probe::client_fail(name, e.to_string(), "fix the named key"),
    };
    match api.ping().await {
        Ok(true) => ok(name, format!("GET {}/api/v1/ping: token valid", tv.base_url.trim_end_matches('/'))),
        Ok(false) => fail(
            name,
            "GET /api/v1/ping: token_valid = false",
            "create a new script token (Connections.Read, Sessions.Create) or run `ticketsync auth teamviewer`",
        ),
        Err(e) => fail(name, e.to_string(), "check sources.teamviewer.base_url, the network and the token"),
    }
}
