//! `ticketsync doctor`'s vocabulary for a source: a check (OK, WARN, FAIL, with the fix), what
//! a vendor's probe is handed, and what the OAuth vendors' probes share (their stored tokens).
//! Each vendor's probe is in its own folder ([`crate::SourceSection::probe`]): one harmless
//! authenticated call, with the credentials the service will get.

use std::time::Duration;

use crate::oauth::OAuthClient;
use crate::store::Store;
use crate::SourceError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// As the table and the JSON lines write it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One row of `doctor`'s table.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

pub fn ok(name: &str, detail: impl Into<String>) -> Check {
    Check { name: name.into(), status: Status::Ok, detail: detail.into(), fix: None }
}
pub fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
}
pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
}

/// A client that could not be built: the fix follows from why. A host without CA roots (a
/// minimal Debian without ca-certificates) fails every https client alike, and "fix the named
/// key" sent the operator looking at a configuration that was right.
pub fn client_fail(name: &str, detail: String, otherwise: &str) -> Check {
    let fix = if detail.contains("CA certificates") {
        "the system has no CA certificates: install them (`apt-get install ca-certificates`), or set ca_file in the section"
    } else {
        otherwise
    };
    fail(name, detail, fix)
}

/// The databases a probe may use: the real one (opened read-only), and a throwaway one when
/// there is no real one yet, so that token-authenticated vendors can be pinged before the
/// first start (OAuth vendors need the real one, which holds their tokens).
#[derive(Clone, Copy)]
pub struct ProbeCtx<'a> {
    pub real: Option<&'a Store>,
    pub scratch: Option<&'a Store>,
}

impl<'a> ProbeCtx<'a> {
    /// The database to call through, and whether it is the real one.
    pub fn store(&self) -> Option<(&'a Store, bool)> {
        self.real.map(|s| (s, true)).or(self.scratch.map(|s| (s, false)))
    }
}

/// A throwaway database in the temporary directory, removed by [`Scratch::close`].
pub struct Scratch {
    dir: std::path::PathBuf,
    pub store: Store,
}

impl Scratch {
    pub async fn open() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("ticketsync-doctor-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        match Store::open(&dir.join("doctor.db"), Duration::from_secs(1)).await {
            Ok(store) => Ok(Scratch { dir, store }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e.to_string())
            }
        }
    }

    pub async fn close(self) {
        self.store.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The component's client (its `ca_file`); the config was validated, so a `ca_file`
/// that became unreadable since falls back to the platform roots and the call says why.
pub fn token_http(o: crate::http::Outbound<'_>) -> reqwest::Client {
    o.client(Duration::from_secs(10)).unwrap_or_else(|_| crate::http::client(Duration::from_secs(10)))
}

/// The stored OAuth tokens of `provider`, and whether the access token is still valid
/// for a call that must not refresh it. `client` (the vendor's OAuth client, when its
/// configuration is complete) proves the tokens can be decrypted: their expiry dates are
/// stored in clear, the tokens are not.
pub async fn oauth_token(
    store: &Store,
    provider: &str,
    fix: &str,
    client: Result<OAuthClient, SourceError>,
) -> (Check, bool) {
    let name = format!("token {provider}");
    let row = crate::store::reads::token_expiry(store, provider)
        .await
        .ok()
        .flatten()
        .map(|t| (t.access_expires_at, t.refresh_expires_at));
    let now = chrono::Utc::now();
    let parse = |t: &Option<String>| t.as_deref().and_then(crate::session::parse_ts);
    match row {
        None => (fail(&name, "no OAuth tokens stored", format!("run `{fix}`")), false),
        Some((access, refresh)) => {
            // A client secret changed since `auth` leaves the tokens unreadable; no refresh
            // can mend that.
            if let Ok(c) = &client {
                if let Err(e) = c.expiry_info().await {
                    return (fail(&name, e.to_string(), format!("run `{fix}`")), false);
                }
            }
            let access_ok = parse(&access).is_some_and(|t| t > now + chrono::Duration::minutes(1));
            let access_txt = access.as_deref().unwrap_or("unknown");
            let c = match parse(&refresh) {
                Some(r) if r <= now => fail(
                    &name,
                    format!("the refresh token expired at {}", refresh.as_deref().unwrap_or_default()),
                    format!("run `{fix}`"),
                ),
                Some(r) if r - chrono::Duration::days(7) <= now => warn(
                    &name,
                    format!("the refresh token expires at {}", refresh.as_deref().unwrap_or_default()),
                    format!("run `{fix}` before then"),
                ),
                Some(_) => ok(
                    &name,
                    format!(
                        "access token expires {access_txt} (refreshed automatically); refresh token valid until {}",
                        refresh.as_deref().unwrap_or_default()
                    ),
                ),
                None => ok(&name, format!("OAuth access token expires {access_txt} (refreshed automatically)")),
            };
            (c, access_ok)
        }
    }
}

/// The vendor call was not made: its tokens are unusable, or their refresh could not be saved.
pub fn not_called(name: &str, token: &Check) -> Check {
    if token.status == Status::Fail {
        return warn(name, "not checked: no usable OAuth tokens (see below)", "fix the token first");
    }
    warn(
        name,
        "not checked: the stored access token has expired, and a refresh from here could not be saved",
        "the daemon refreshes it at its next poll; run doctor again after that",
    )
}

/// An OAuth vendor's probe: with a valid stored access token, `call`; else why not, and the
/// token row. A token-authenticated vendor is called directly, through either database.
pub async fn oauth_or_call<F, Fut>(
    name: &str,
    provider: &str,
    oauth: bool,
    ctx: &ProbeCtx<'_>,
    client: impl FnOnce(&Store) -> Result<OAuthClient, SourceError>,
    call: F,
) -> Vec<Check>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Check>,
{
    let Some((store, real)) = ctx.store() else { return vec![] };
    if !oauth {
        return vec![call(store.clone()).await];
    }
    let fix = format!("ticketsync auth {provider}");
    if !real {
        return vec![fail(name, "no database, so no OAuth tokens", format!("run `{fix}`"))];
    }
    let token = oauth_token(store, provider, &fix, client(store)).await;
    // Only with a valid access token: a refresh through this read-only database could not
    // store the rotated refresh token.
    let first = if token.1 { call(store.clone()).await } else { not_called(name, &token.0) };
    vec![first, token.0]
}
