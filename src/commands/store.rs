use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use super::load;
use ticketsync::cli::{Cli, Command, StoreCommand};
use ticketsync::store::audit::{self, Verify, VerifyOptions};
use ticketsync::store::{copy, Store};

/// `ticketsync store copy`: the whole history into a new, empty store, then both chains
/// verified and the rows per table compared. Exit 0 when all agree, 1 otherwise.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Store { command: StoreCommand::Copy { from, to, key_file } } = &cli.command else {
        unreachable!("dispatched on Command::Store")
    };
    let key = match key_file {
        Some(p) => {
            let k = std::fs::read(p).with_context(|| format!("--key-file {}", p.display()))?;
            // As for secret files: a trailing newline is not part of the key.
            let end = k.iter().rposition(|b| *b != b'\n' && *b != b'\r').map_or(0, |i| i + 1);
            Some(audit::AuditKey::new(&k[..end])?)
        }
        // A copy is often made on a machine whose configuration still names the old store:
        // its key, when there is one; without a configuration, an unkeyed chain.
        None => match load(cli) {
            Ok(cfg) => ticketsync::app::audit_key(&cfg)?,
            Err(e) => {
                tracing::debug!(error = %e, "no configuration: verifying without an audit key");
                None
            }
        },
    };
    let busy = Duration::from_secs(30);
    // Read-only: the source is never written (nor created, for a mistyped path); an older
    // schema is refused by the copy, which needs both at this build's version.
    let source = Store::connect_read_only(from, None).await.with_context(|| format!("--from {}", scrub(from)))?;
    let target = Store::connect(to, busy, None).await.with_context(|| format!("--to {}", scrub(to)))?;
    let counts = copy::copy(&source, &target).await.with_context(|| {
        format!("copying {} to {} (nothing was written to the target)", source.path(), target.path())
    })?;

    let mut ok = true;
    println!("{:<20} {:>12} {:>12}", "table", "source", "target");
    for c in &counts {
        let mark = if c.source == c.target { "" } else { "  MISMATCH" };
        ok &= c.source == c.target;
        println!("{:<20} {:>12} {:>12}{mark}", c.table, c.source, c.target);
    }
    for (side, store) in [("source", &source), ("target", &target)] {
        let verdict = audit::verify_with(store, VerifyOptions { key: key.clone(), expect_head: None }).await?;
        match verdict {
            Verify::Ok { rows, head, .. } => {
                println!("audit chain of the {side} ({}): OK, {rows} rows, head {head}", store.path())
            }
            Verify::Broken { row_id, reason } => {
                ok = false;
                println!("audit chain of the {side} ({}): BROKEN at row {row_id}: {reason}", store.path());
            }
            Verify::Evidence { subject, row_id, reason } => {
                ok = false;
                let row = row_id.map(|r| format!(" (audit row {r})")).unwrap_or_default();
                println!("audit evidence of the {side} ({}): {subject}{row}: {reason}", store.path());
            }
        }
    }
    source.close().await;
    target.close().await;
    if ok {
        println!("copied {} to {}", scrub(from), scrub(to));
        Ok(ExitCode::SUCCESS)
    } else {
        println!("the copy differs from its source (see above)");
        Ok(ExitCode::from(1))
    }
}

fn scrub(url: &str) -> String {
    ticketsync::store::scrub_url(url)
}
