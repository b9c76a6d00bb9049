use std::process::ExitCode;

use anyhow::Result;

use super::load;
use ticketsync::cli::Cli;

/// `ticketsync unmatched`: the sessions no rule matched.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let cfg = load(cli)?;
    let store = ticketsync::app::open_store(&cfg).await?;
    let rows = ticketsync::store::sessions::unmatched_all(&store).await?;
    println!("{:<10} {:<38} {:<14} {:<20} {:<20} state", "vendor", "external id", "code", "start", "technician");
    for s in &rows {
        println!(
            "{:<10} {:<38} {:<14} {:<20} {:<20} {}",
            s.vendor,
            s.external_id,
            s.session_code.as_deref().unwrap_or("-"),
            &s.started_at[..19.min(s.started_at.len())],
            s.technician.as_deref().unwrap_or("-"),
            if s.ended_at.is_some() { "ended" } else { "running" }
        );
    }
    println!("{} unmatched session(s); link one with `ticketsync link --session CODE --ticket ID`", rows.len());
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
