use std::process::ExitCode;

use anyhow::Result;

use super::load;
use ticketsync::app::App;
use ticketsync::cli::{Cli, Command};

/// `ticketsync backfill`: an old time range of one source.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Backfill { source, from, to, dry_run, progress_secs } = &cli.command else {
        unreachable!("dispatched on Command::Backfill")
    };
    let app = App::build(load(cli)?).await?;
    let every = std::time::Duration::from_secs(*progress_secs);
    let r = ticketsync::backfill::run_cli(&app, source, from, to.as_deref(), *dry_run, every).await;
    app.store.close().await;
    r?;
    Ok(ExitCode::SUCCESS)
}
