//! The binary's logging: one subscriber, every line through the redactor.

use std::io::IsTerminal;

use ticketsync::cli::Command;

/// How much a command logs unless `TICKETSYNC_LOG` says otherwise.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Interactive one-shot commands print their own summary: warnings only.
    Quiet,
    /// The daemon and `sync-once`: every session matched, every note delivered.
    Daemon,
    /// `backfill`: its progress lines, but the per-session and per-note lines of matching and
    /// delivery (thousands in a backfill) only at DEBUG; their warnings still show.
    Backfill,
}

pub fn init(v: Verbosity) {
    use tracing_subscriber::EnvFilter;
    let default = match v {
        Verbosity::Quiet => "warn",
        Verbosity::Daemon => "info,sqlx=warn,hyper=warn,reqwest=warn",
        Verbosity::Backfill => "info,ticketsync_pipeline=warn,sqlx=warn,hyper=warn,reqwest=warn",
    };
    let filter = EnvFilter::try_from_env("TICKETSYNC_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("TICKETSYNC_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Every formatted line passes the redactor: vendor text in any field, at any level.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ticketsync::redact::ScrubbingMakeWriter(std::io::stderr));
    if json {
        builder.json().flatten_event(true).init();
    } else {
        // journald adds its own timestamps; keep lines short and free of colour codes there
        // (the unit's lines carried a second timestamp in the journal before: seen in the
        // first-hour walkthrough under a real systemd).
        let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
        let builder = builder.with_ansi(!under_systemd && std::io::stderr().is_terminal()).with_target(false);
        if under_systemd {
            builder.without_time().init();
        } else {
            builder.init();
        }
    }
}

impl Verbosity {
    pub fn of(command: &Command) -> Verbosity {
        match command {
            Command::Run | Command::SyncOnce => Verbosity::Daemon,
            Command::Backfill { .. } => Verbosity::Backfill,
            _ => Verbosity::Quiet,
        }
    }
}
