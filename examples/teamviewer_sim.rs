//! The TeamViewer simulator alone, on a fixed loopback port, for `packaging/first-hour.sh`:
//! the installed daemon (in a Debian chroot, which shares the host's network) polls it as it
//! would poll webapi.teamviewer.com. An example, not a subcommand, so that the release binary
//! the .deb ships carries no extra simulator entry point.
//!
//! It serves one ended connection whose `custom_api` names `--ticket` (the default
//! `custom_api` rule matches it, so one note goes to that ticket) and one still running (stored,
//! no note until it ends), then runs until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use clap::Parser;
use serde_json::json;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};

#[derive(Parser)]
struct Args {
    /// 127.0.0.1:<port> to listen on.
    #[arg(long, default_value_t = 18_443)]
    port: u16,
    /// The script token the simulator accepts (read from this file, like a credential).
    #[arg(long)]
    token_file: PathBuf,
    /// The ticket the ended connection names in its custom_api.
    #[arg(long)]
    ticket: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("--token-file {}", args.token_file.display()))?
        .trim_end()
        .to_string();
    let sim = TeamViewerSim::start(SimOptions { script_tokens: vec![token], port: args.port, ..Default::default() })
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", args.port))?;
    let now = Utc::now();
    let date = |mins: i64| (now - Duration::minutes(mins)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // A fresh id per run: a second walk against the same Redmine gets a note of its own.
    let ended = uuid::Uuid::new_v4().to_string();
    sim.add_connection(json!({
        "id": ended, "userid": "u11293276", "username": "Jon Snow",
        "deviceid": "1234567890", "devicename": "ACME-LT-042", "groupid": "g272032545", "groupname": "Helpdesk",
        "start_date": date(40), "end_date": date(25), "billing_state": "Bill", "support_session_type": 2,
        "notes": "First-hour walkthrough: printer driver reinstalled", "session_code": "s119-457-589",
        "custom_api": json!({"ticket_id": args.ticket}).to_string()
    }));
    sim.add_connection(json!({
        "id": uuid::Uuid::new_v4().to_string(), "userid": "u11293276", "username": "Jon Snow",
        "deviceid": "1234567890", "start_date": date(5), "support_session_type": 1
    }));
    println!("url={} connection={ended}", sim.base_url);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.shutdown().await;
    Ok(())
}
