use std::process::ExitCode;

use anyhow::{bail, Result};

use super::load;
use ticketsync::cli::{Cli, Command};
use ticketsync::store::outbox;

/// `ticketsync deliveries`: the outbox.
pub async fn list(cli: &Cli) -> Result<ExitCode> {
    let Command::Deliveries { state, limit, json } = &cli.command else {
        unreachable!("dispatched on Command::Deliveries")
    };
    if let Some(s) = state {
        if !["pending", "sending", "delivered", "failed", "dead"].contains(&s.as_str()) {
            bail!("--state {s:?}: expected pending, sending, delivered, failed or dead");
        }
    }
    let cfg = load(cli)?;
    let store = super::for_cli_tenant(cli, ticketsync::app::open_store(&cfg).await?)?;
    let rows = match limit {
        Some(n) => outbox::list_recent(&store, state.as_deref(), i64::from(*n)).await?,
        None => outbox::list(&store, state.as_deref()).await?,
    };
    // Rows written before redaction existed, or before a token was known, are scrubbed here.
    // Times as stored (`session::ts`), not chrono's shortest form.
    let ts = ticketsync::session::ts;
    let error = |d: &outbox::Delivery| ticketsync::redact::scrubbed(d.last_error.as_deref().unwrap_or(""));
    if *json {
        for d in &rows {
            let line = serde_json::json!({
                "id": d.id, "sink": d.sink, "ticket_id": d.ticket_id, "session_id": d.session_id,
                "state": d.state, "kind": d.kind, "attempts": d.attempts,
                "next_attempt_at": ts(d.next_attempt_at),
                "last_error": d.last_error.as_ref().map(|_| error(d)),
                "remote_ref": d.remote_ref, "created_at": ts(d.created_at), "delivered_at": d.delivered_at.map(ts),
                "tenant": d.tenant,
            });
            println!("{line}");
        }
    } else {
        println!(
            "{:<6} {:<9} {:<10} {:<10} {:<15} {:<8} last error",
            "id", "sink", "ticket", "state", "kind", "attempts"
        );
        for d in &rows {
            println!(
                "{:<6} {:<9} {:<10} {:<10} {:<15} {:<8} {}",
                d.id,
                d.sink,
                d.ticket_id,
                d.state,
                d.kind,
                d.attempts,
                error(d)
            );
        }
        match limit {
            Some(n) => println!("{} deliveries (the {n} most recent at most)", rows.len()),
            None => println!("{} deliveries", rows.len()),
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `ticketsync retry ID`: a failed or dead delivery back to pending.
pub async fn retry(cli: &Cli) -> Result<ExitCode> {
    let Command::Retry { id } = &cli.command else { unreachable!("dispatched on Command::Retry") };
    let cfg = load(cli)?;
    let store = ticketsync::app::open_store(&cfg).await?;
    // The audit row names the OS user who ran the command.
    let who = ticketsync::operator::os_user();
    let actor = ticketsync::store::audit::Actor { by: &who, via: "cli" };
    ticketsync::operator::retry_delivery(&store, *id, actor).await?;
    println!("delivery {id} requeued");
    Ok(ExitCode::SUCCESS)
}
