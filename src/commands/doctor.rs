use std::process::ExitCode;

use anyhow::Result;

use ticketsync::cli::{Cli, Command};

/// `ticketsync doctor`: the installation checked, with the fix for each failure.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Doctor { json } = &cli.command else { unreachable!("dispatched on Command::Doctor") };
    let mut out = ticketsync::redact::ScrubWriter::new(std::io::stdout().lock());
    let ok = ticketsync::doctor::run_as(&cli.config, *json, &mut out).await;
    drop(out);
    if !ok {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
