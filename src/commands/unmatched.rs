use std::process::ExitCode;

use anyhow::Result;

use super::load;
use ticketsync::cli::{Cli, Command};

/// `ticketsync unmatched`: the sessions no rule matched.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Unmatched { limit, json } = &cli.command else { unreachable!("dispatched on Command::Unmatched") };
    let cfg = load(cli)?;
    let store = super::for_cli_tenant(cli, ticketsync::app::open_store(&cfg).await?)?;
    let rows = match limit {
        Some(n) => ticketsync::store::sessions::unmatched_recent(&store, i64::from(*n)).await?,
        None => ticketsync::store::sessions::unmatched_all(&store).await?,
    };
    // Times as stored (`session::ts`).
    let ts = ticketsync::session::ts;
    let state = |s: &ticketsync::store::sessions::StoredSession| if s.ended_at.is_some() { "ended" } else { "running" };
    if *json {
        for s in &rows {
            let line = serde_json::json!({
                "vendor": s.vendor, "external_id": s.external_id, "session_code": s.session_code,
                "started_at": ts(s.started_at), "ended_at": s.ended_at.map(ts), "technician": s.technician,
                "state": state(s),
            });
            println!("{line}");
        }
    } else {
        println!("{:<10} {:<38} {:<14} {:<20} {:<20} state", "vendor", "external id", "code", "start", "technician");
        for s in &rows {
            println!(
                "{:<10} {:<38} {:<14} {:<20} {:<20} {}",
                s.vendor,
                s.external_id,
                s.session_code.as_deref().unwrap_or("-"),
                s.started_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
                s.technician.as_deref().unwrap_or("-"),
                state(s)
            );
        }
        // With --limit, the count is of the rows shown, and says so.
        let shown = limit.map(|n| format!(" (the {n} most recently started at most)")).unwrap_or_default();
        println!(
            "{} unmatched session(s){shown}; link one with `ticketsync link --session CODE --ticket ID`",
            rows.len()
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
