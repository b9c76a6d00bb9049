use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::load;
use ticketsync::cli::{Cli, Command};

/// `ticketsync auth PROVIDER`: the OAuth authorization of a vendor (Zoom: per account).
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Auth { provider, code, state, account, listen } = &cli.command else {
        unreachable!("dispatched on Command::Auth")
    };
    if provider == "zoom" {
        ticketsync::auth_zoom::run(&load(cli)?, account.as_deref(), code.as_deref(), state.as_deref(), *listen).await?
    } else {
        auth(cli, provider, code.as_deref(), state.as_deref(), *listen).await?
    }
    Ok(ExitCode::SUCCESS)
}

async fn auth(cli: &Cli, provider: &str, code: Option<&str>, state: Option<&str>, listen: bool) -> Result<()> {
    let cfg = load(cli)?;
    let timeout = std::time::Duration::from_secs(30);
    let store;
    let oauth = match provider {
        "teamviewer" => {
            let tv = cfg.sources.teamviewer.as_ref().context("[sources.teamviewer] is not configured")?;
            if tv.auth != ticketsync::config::TeamViewerAuth::Oauth {
                bail!("sources.teamviewer.auth is \"script\": set auth = \"oauth\" with client_id and client_secret to use OAuth");
            }
            store = ticketsync::app::open_store(&cfg).await?;
            ticketsync::sources::teamviewer::oauth_client(tv, &store, tv.outbound().client(timeout)?)?
        }
        "splashtop" => {
            let st = cfg.sources.splashtop.as_ref().context("[sources.splashtop] is not configured")?;
            if st.auth != ticketsync::config::SplashtopAuth::Oauth {
                bail!("sources.splashtop.auth is \"token\": set auth = \"oauth\" with client_id and client_secret to use OAuth");
            }
            store = ticketsync::app::open_store(&cfg).await?;
            ticketsync::sources::splashtop::oauth_client(st, &store, st.outbound().client(timeout)?)?
        }
        other => bail!("unknown provider {other:?} (available: teamviewer, splashtop, zoom)"),
    };
    // `state` is mandatory whenever this process printed the authorize URL (auth_zoom::authorize).
    let listen_on = listen.then_some(oauth.redirect_uri.clone());
    let Some(exp) = ticketsync::auth_zoom::authorize(&oauth, provider, code, state, listen_on.as_deref()).await? else {
        return Ok(());
    };
    println!(
        "{provider}: authorized; access token valid until {exp}; tokens stored encrypted in {}",
        cfg.store.display()
    );
    Ok(())
}
