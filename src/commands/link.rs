use std::process::ExitCode;

use anyhow::Result;

use super::load;
use ticketsync::app::App;
use ticketsync::cli::{Cli, Command};

/// `ticketsync link`: a session linked to a ticket by hand.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Link { session, ticket } = &cli.command else { unreachable!("dispatched on Command::Link") };
    let app = App::build(load(cli)?).await?;
    // In `--tenant`'s namespace: the link matches that tenant's sessions only.
    let store = super::for_cli_tenant(cli, app.store.clone())?;
    let id = ticketsync::launchers::manual_link_in(&app, &store, session, ticket).await?;
    let m = app.match_pass().await?;
    println!("link {id}: session {session} → ticket {ticket} ({} session(s) matched now)", m.matched);
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}
