//! `ticketsync auth zoom`: authorize a user-managed Zoom OAuth app for one account, with
//! the redirect received on a loopback port (`--listen`) or the pasted redirect URL/code.
//! Server-to-Server accounts need no authorization: the command fetches a token to prove
//! the credentials work.
//!
//! [`authorize`] is the authorization step every vendor's `auth` shares (TeamViewer and
//! Splashtop call it from `main.rs`): whenever this process printed the authorize URL, the
//! redirect must carry the `state` it issued, or it is refused (docs/security/oauth.md).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::oauth::{parse_callback, CallbackError, OAuthClient};
use crate::sources::zoom::config::ZoomAuth;

/// Zoom's authorization codes live 5 minutes.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(
    cfg: &Config,
    account: Option<&str>,
    code: Option<&str>,
    state: Option<&str>,
    listen: bool,
) -> Result<()> {
    let z = cfg.sources.zoom.as_ref().context("[sources.zoom] is not configured")?;
    let (index, acct) = z.account(account).map_err(anyhow::Error::msg).context("--account")?;
    let store = crate::app::open_store(cfg).await?;
    let oauth = crate::sources::zoom::oauth_client(z, index, &store, z.outbound().client(Duration::from_secs(30))?)?;
    if acct.auth == ZoomAuth::ServerToServer {
        oauth.access_token().await?;
        let exp = oauth.expiry_info().await?.unwrap_or_default();
        println!(
            "zoom account {}: server-to-server token obtained (valid until {exp}); no authorization step is needed",
            acct.name
        );
        store.close().await;
        return Ok(());
    }
    let cmd = format!("zoom --account {}", acct.name);
    let listen_on = listen.then_some(acct.redirect_uri.as_str());
    if let Some(exp) = authorize(&oauth, &cmd, code, state, listen_on).await? {
        println!(
            "zoom account {}: authorized; access token valid until {exp}; tokens stored encrypted in {}",
            acct.name,
            cfg.store.display()
        );
    }
    store.close().await;
    Ok(())
}

/// The authorization step of `ticketsync auth <cmd>`; the access token's expiry, or `None`
/// when the operator still has to come back with `--code` (no terminal to paste into).
///
/// - `code` given (`--code URL-or-code`, a later process): a state in the URL, or `state`
///   (`--state`), must be one this ticketsync issued and not used yet; it also yields the
///   PKCE verifier. A bare code without any state was not requested through a ticketsync URL
///   (e.g. a Marketplace install): it is exchanged as it is, with a warning.
/// - otherwise this process issues the URL and its state, and the redirect must carry exactly
///   that state: pasted (a bare code is refused) or received on `listen_on`, where a wrong or
///   missing state is answered 400 and the listener keeps waiting for the right one.
pub async fn authorize(
    oauth: &OAuthClient,
    cmd: &str,
    code: Option<&str>,
    state: Option<&str>,
    listen_on: Option<&str>,
) -> Result<Option<String>> {
    if let Some(input) = code {
        let cb = parse_callback(input, None)?;
        return Ok(Some(match cb.state.as_deref().or(state) {
            Some(s) => oauth.complete_authorization(&cb.code, s).await?,
            None => {
                eprintln!(
                    "warning: this code comes without a state, so ticketsync cannot check that it answers a request it made; exchanging it as given (use the whole redirect URL of `ticketsync auth {cmd}` to have it checked)"
                );
                oauth.exchange_code(&cb.code).await?
            }
        }));
    }
    let (url, issued) = oauth.authorize_url().await?;
    let cb = if let Some(redirect_uri) = listen_on {
        println!("Open this URL and approve; the redirect is received on {redirect_uri}:\n\n  {url}\n");
        std::io::stdout().flush()?;
        receive_redirect(redirect_uri, &issued).await?
    } else {
        println!("Open this URL, approve, and paste the redirect URL you land on:\n\n  {url}\n");
        if !std::io::stdin().is_terminal() {
            println!("Then run: ticketsync auth {cmd} --code '<the whole redirect URL>'");
            return Ok(None);
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        parse_callback(&line, Some(&issued)).map_err(|e| refused(e, cmd))?
    };
    Ok(Some(oauth.complete_authorization(&cb.code, &issued).await?))
}

fn refused(e: CallbackError, cmd: &str) -> anyhow::Error {
    match e {
        CallbackError::Refused(_) => anyhow::anyhow!("{e}"),
        _ => anyhow::anyhow!("{e}: nothing was exchanged; run `ticketsync auth {cmd}` again"),
    }
}

/// Serve the redirect URI's loopback address until a request carrying `issued` state
/// arrives, and return that callback. Requests without it (a forged callback, a stale tab)
/// are answered 400 and logged; the wait goes on until the timeout.
async fn receive_redirect(redirect_uri: &str, issued: &str) -> Result<crate::oauth::Callback> {
    let u = url::Url::parse(redirect_uri).context("redirect_uri")?;
    let host = u.host_str().unwrap_or("");
    if !["127.0.0.1", "localhost", "[::1]", "::1"].contains(&host) {
        bail!("--listen needs a loopback redirect_uri (http://127.0.0.1:PORT/…), not {redirect_uri}");
    }
    let port = u.port_or_known_default().unwrap_or(80);
    let addr = if host.contains(':') { format!("[::1]:{port}") } else { format!("127.0.0.1:{port}") };
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("listening on {addr}"))?;
    let path = u.path().to_string();
    type Outcome = std::result::Result<crate::oauth::Callback, CallbackError>;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Outcome>(1);
    let base = format!("{}://{}", u.scheme(), u.authority());
    let issued = issued.to_string();
    let app = axum::Router::new().route(
        &path,
        axum::routing::get(move |uri: axum::http::Uri| {
            let tx = tx.clone();
            let full = format!("{base}{uri}");
            let issued = issued.clone();
            async move {
                use axum::response::IntoResponse;
                match parse_callback(&full, Some(&issued)) {
                    Err(e @ (CallbackError::NoState | CallbackError::WrongState)) => {
                        eprintln!("refused a callback on the redirect URI: {e}; still waiting");
                        (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::response::Html(
                                "<p>ticketsync: this callback does not answer the authorization request in progress; it was ignored.</p>",
                            ),
                        )
                            .into_response()
                    }
                    outcome => {
                        let _ = tx.send(outcome).await;
                        axum::response::Html("<p>ticketsync: authorization received. You can close this window.</p>")
                            .into_response()
                    }
                }
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let got = tokio::time::timeout(LISTEN_TIMEOUT, rx.recv()).await;
    // Let the browser get its answer before the listener goes away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    match got {
        Ok(Some(Ok(cb))) => Ok(cb),
        Ok(Some(Err(e))) => Err(anyhow::anyhow!("{e}")),
        _ => bail!("no redirect received on {addr} within 5 minutes (Zoom codes expire); run the command again"),
    }
}
