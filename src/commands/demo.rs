use std::process::ExitCode;

use anyhow::Result;

use ticketsync::cli::{Cli, Command};

/// `ticketsync demo`: the simulators, a temporary database, every vendor and sink.
#[cfg(feature = "demo")]
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Demo { state_dir, store } = &cli.command else { unreachable!("dispatched on Command::Demo") };
    ticketsync::demo::run_on(state_dir, store.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The CLI keeps the command in every build; a product build names what it lacks.
#[cfg(not(feature = "demo"))]
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Demo { .. } = &cli.command else { unreachable!("dispatched on Command::Demo") };
    anyhow::bail!("this build has no simulators: `demo` needs the `demo` cargo feature")
}
