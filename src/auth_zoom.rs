//! `ticketsync auth zoom`: authorize a user-managed Zoom OAuth app for one account, with
//! the redirect received on a loopback port (`--listen`) or the pasted redirect URL/code.
//! Server-to-Server accounts need no authorization: the command fetches a token to prove
//! the credentials work.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::sources::zoom::config::ZoomAuth;

/// Zoom's authorization codes live 5 minutes.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(cfg: &Config, account: Option<&str>, code: Option<&str>, listen: bool) -> Result<()> {
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
        store.pool.close().await;
        return Ok(());
    }
    let input = match code {
        Some(c) => c.to_string(),
        None => {
            let (url, _) = oauth.authorize_url().await?;
            if listen {
                println!("Open this URL and approve; the redirect is received on {}:\n\n  {url}\n", acct.redirect_uri);
                std::io::stdout().flush()?;
                receive_redirect(&acct.redirect_uri).await?
            } else {
                println!("Open this URL, approve, and paste the redirect URL (or just its code):\n\n  {url}\n");
                if !std::io::stdin().is_terminal() {
                    println!("Then run: ticketsync auth zoom --account {} --code '<redirect URL or code>'", acct.name);
                    return Ok(());
                }
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim().to_string()
            }
        }
    };
    let (code, state) = match url::Url::parse(&input) {
        Ok(u) => {
            let q: HashMap<String, String> = u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            if let Some(err) = q.get("error") {
                bail!("authorization refused by Zoom: {err}");
            }
            (q.get("code").cloned().context("the redirect URL has no `code` parameter")?, q.get("state").cloned())
        }
        Err(_) => (input.clone(), None),
    };
    if let Some(s) = state {
        if !oauth.check_state(&s).await? {
            bail!("state {s:?} was not issued by this ticketsync (possible CSRF, or an old URL): run `ticketsync auth zoom` again");
        }
    }
    let exp = oauth.exchange_code(&code).await?;
    println!(
        "zoom account {}: authorized; access token valid until {exp}; tokens stored encrypted in {}",
        acct.name,
        cfg.store.path.display()
    );
    store.pool.close().await;
    Ok(())
}

/// Serve one request on the redirect URI's loopback address and return its full URL.
async fn receive_redirect(redirect_uri: &str) -> Result<String> {
    let u = url::Url::parse(redirect_uri).context("redirect_uri")?;
    let host = u.host_str().unwrap_or("");
    if !["127.0.0.1", "localhost", "[::1]", "::1"].contains(&host) {
        bail!("--listen needs a loopback redirect_uri (http://127.0.0.1:PORT/…), not {redirect_uri}");
    }
    let port = u.port_or_known_default().unwrap_or(80);
    let addr = if host.contains(':') { format!("[::1]:{port}") } else { format!("127.0.0.1:{port}") };
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("listening on {addr}"))?;
    let path = u.path().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let base = format!("{}://{}", u.scheme(), u.authority());
    let app = axum::Router::new().route(
        &path,
        axum::routing::get(move |uri: axum::http::Uri| {
            let tx = tx.clone();
            let full = format!("{base}{uri}");
            async move {
                let _ = tx.send(full).await;
                axum::response::Html("<p>ticketsync: authorization received. You can close this window.</p>")
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let got = tokio::time::timeout(LISTEN_TIMEOUT, rx.recv()).await;
    // Let the browser get its answer before the listener goes away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    match got {
        Ok(Some(url)) => Ok(url),
        _ => bail!("no redirect received on {addr} within 5 minutes (Zoom codes expire); run the command again"),
    }
}
