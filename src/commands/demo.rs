use std::process::ExitCode;

use anyhow::Result;

use ticketsync::cli::{Cli, Command};

/// `ticketsync demo`: the simulators, a temporary database, every vendor and sink.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Demo { state_dir } = &cli.command else { unreachable!("dispatched on Command::Demo") };
    ticketsync::demo::run(state_dir).await?;
    Ok(ExitCode::SUCCESS)
}
