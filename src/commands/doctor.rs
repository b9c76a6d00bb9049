use std::process::ExitCode;

use anyhow::Result;

use ticketsync::cli::Cli;

/// `ticketsync doctor`: the installation checked, with the fix for each failure.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let mut out = ticketsync::redact::ScrubWriter::new(std::io::stdout().lock());
    let ok = ticketsync::doctor::run(&cli.config, &mut out).await;
    drop(out);
    if !ok {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
