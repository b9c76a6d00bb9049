use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use ticketsync::cli::{Cli, Command};

mod commands;

fn init_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn" } else { "info,sqlx=warn,hyper=warn,reqwest=warn" };
    let filter = EnvFilter::try_from_env("TICKETSYNC_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("TICKETSYNC_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Every formatted line passes the redactor: vendor text in any field, at any level.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ticketsync::redact::ScrubbingMakeWriter(std::io::stderr));
    if json {
        builder.json().flatten_event(true).init();
    } else {
        // journald adds its own timestamps; keep lines short and free of colour codes there.
        let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
        builder.with_ansi(!under_systemd && std::io::stderr().is_terminal()).with_target(false).init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Interactive one-shot commands print their own summary; the daemon logs.
    init_logging(!matches!(cli.command, Command::Run | Command::SyncOnce | Command::Backfill { .. }));
    match commands::dispatch(&cli).await {
        Ok(code) => code,
        Err(e) => {
            // One clear line: the context chain, scrubbed (a vendor's answer may echo a secret).
            eprintln!("error: {}", ticketsync::redact::scrub(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
