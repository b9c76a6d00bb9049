use std::process::ExitCode;

use anyhow::Result;

use super::load;
use ticketsync::app::App;
use ticketsync::cli::Cli;

/// `ticketsync run`: the daemon.
pub async fn daemon(cli: &Cli) -> Result<ExitCode> {
    let app = App::build(load(cli)?).await?;
    ticketsync::daemon::run_reloadable(app, Some(cli.config.clone())).await?;
    Ok(ExitCode::SUCCESS)
}

/// `ticketsync sync-once`: one poll of every source, one matching and delivery pass.
pub async fn sync_once(cli: &Cli) -> Result<ExitCode> {
    let app = App::build(load(cli)?).await?;
    let r = app.cycle().await?;
    for sink in app.sinks.values() {
        sink.close().await;
    }
    println!("{r}");
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}
