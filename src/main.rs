use std::process::ExitCode;

use clap::Parser;

use ticketsync::cli::Cli;

mod commands;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::logging::init(commands::logging::Verbosity::of(&cli.command));
    // A credentials directory of systemd-creds encrypted files (what `init` writes where
    // systemd runs), given to a command run by hand: decrypted for as long as it runs.
    let _decrypted = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => match ticketsync::credentials::use_dir(std::path::Path::new(&dir)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    match commands::dispatch(&cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::error_line(&e));
            ExitCode::from(1)
        }
    }
}
