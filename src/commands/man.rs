use std::process::ExitCode;

use anyhow::Result;

use ticketsync::cli::{Cli, Command};

/// `ticketsync man`: the man pages.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Man { dir } = &cli.command else { unreachable!("dispatched on Command::Man") };
    use clap::CommandFactory;
    match dir {
        // ticketsync(1) names ticketsync-run(1) and the others under SUBCOMMANDS.
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir)?,
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())?,
    }
    Ok(ExitCode::SUCCESS)
}
