use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{audit_store, load};
use ticketsync::cli::{AuditCommand, Cli, Command};

/// `ticketsync audit verify`.
pub async fn verify(cli: &Cli) -> Result<ExitCode> {
    let Command::Audit { command: AuditCommand::Verify { db, expect_head, key_file } } = &cli.command else {
        unreachable!("dispatched on Command::Audit")
    };
    audit_verify(cli, db, expect_head.as_deref(), key_file.as_deref()).await
}

/// `ticketsync audit head`: the chain head as ID:HASH.
pub async fn head(cli: &Cli) -> Result<ExitCode> {
    let Command::Audit { command: AuditCommand::Head { db } } = &cli.command else {
        unreachable!("dispatched on Command::Audit")
    };
    let store = audit_store(cli, db).await?;
    let head = ticketsync::store::audit::head(&store).await?;
    store.close().await;
    println!("{head}");
    Ok(ExitCode::SUCCESS)
}

/// `ticketsync audit show`: what happened to a ticket.
pub async fn show(cli: &Cli) -> Result<ExitCode> {
    let Command::Audit { command: AuditCommand::Show { ticket, limit, json, db } } = &cli.command else {
        unreachable!("dispatched on Command::Audit")
    };
    let store = audit_store(cli, db).await?;
    let mut out = ticketsync::redact::ScrubWriter::new(std::io::stdout().lock());
    let how = ticketsync::export::Show { limit: *limit, json: *json };
    let found = ticketsync::export::show_ticket(&store, ticket, how, &mut out).await?;
    drop(out);
    store.close().await;
    if !found {
        // Exit 1, as grep does: a script checking a ticket's history must not read a typo
        // in the ticket id as "nothing happened".
        eprintln!("nothing recorded for ticket {ticket}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ticketsync audit export`: the history as CSV or JSON lines.
pub async fn export(cli: &Cli) -> Result<ExitCode> {
    let Command::Audit { command: AuditCommand::Export { from, to, format, kind, vendor, output, db } } = &cli.command
    else {
        unreachable!("dispatched on Command::Audit")
    };
    let filter = ticketsync::export::Filter {
        from: ticketsync::export::parse_bound(from, false).map_err(|e| anyhow::anyhow!("--from {e}"))?,
        to: ticketsync::export::parse_bound(to, true).map_err(|e| anyhow::anyhow!("--to {e}"))?,
        vendor: vendor.clone(),
    };
    let store = audit_store(cli, db).await?;
    // Scrubbed: rows stored before redaction existed may hold a vendor's echo. The digest is
    // taken under the redactor: it is that of the bytes written.
    let (sink, digest): (Box<dyn std::io::Write>, _) = match output {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("--output {}", p.display()))?;
            let (w, d) = ticketsync::export::HashingWriter::new(std::io::BufWriter::new(f));
            (Box::new(w), d)
        }
        None => {
            let (w, d) = ticketsync::export::HashingWriter::new(std::io::BufWriter::new(std::io::stdout().lock()));
            (Box::new(w), d)
        }
    };
    let mut out = ticketsync::redact::ScrubWriter::new(sink);
    if *kind == ticketsync::export::ExportKind::TimeEntries {
        let n = ticketsync::export::export_time_entries(&store, &filter, *format, &mut out).await?;
        std::io::Write::flush(&mut out)?;
        drop(out);
        store.close().await;
        eprintln!("exported {n} time entries");
        return Ok(ExitCode::SUCCESS);
    }
    let s = ticketsync::export::export(&store, &filter, *format, &mut out).await?;
    std::io::Write::flush(&mut out)?;
    drop(out);
    store.close().await;
    eprintln!(
        "exported {} events; chain head: {} rows, hash {}",
        s.rows, s.header.chain_rows, s.header.chain_head_hash
    );
    if *format == ticketsync::export::Format::Csv {
        // RFC 4180 CSV holds rows only: the head, the count and the file's SHA-256 beside it.
        let meta = serde_json::to_string(&s.meta(ticketsync::export::hex_digest(&digest)))?;
        match output {
            Some(p) => {
                let side = std::path::PathBuf::from(format!("{}.meta.json", p.display()));
                std::fs::write(&side, format!("{meta}\n")).with_context(|| format!("{}", side.display()))?;
                eprintln!("chain head, row count and SHA-256 of the CSV: {}", side.display());
            }
            None => eprintln!("{meta}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ticketsync audit verify`: exit 0 intact, 3 broken (the row or record named), 1 when it
/// cannot be checked (no key for a keyed chain, unreadable database).
async fn audit_verify(
    cli: &Cli,
    db: &Option<std::path::PathBuf>,
    expect_head: Option<&str>,
    key_file: Option<&std::path::Path>,
) -> Result<ExitCode> {
    use ticketsync::store::audit::{self, Verify, VerifyOptions};
    let expect_head =
        expect_head.map(audit::parse_head).transpose().map_err(|e| anyhow::anyhow!("--expect-head {e}"))?;
    let key = match key_file {
        Some(p) => {
            let k = std::fs::read(p).with_context(|| format!("--key-file {}", p.display()))?;
            // As for secret files: a trailing newline is not part of the key.
            let end = k.iter().rposition(|b| *b != b'\n' && *b != b'\r').map_or(0, |i| i + 1);
            Some(audit::AuditKey::new(&k[..end])?)
        }
        // The configuration's key, when there is a readable configuration: an auditor may
        // verify a copy with --db on a machine without one.
        None => match load(cli) {
            Ok(cfg) => ticketsync::app::audit_key(&cfg)?,
            Err(e) if db.is_some() => {
                tracing::debug!(error = %e, "no configuration: verifying without an audit key");
                None
            }
            Err(e) => return Err(e),
        },
    };
    let store = audit_store(cli, db).await?;
    let started = std::time::Instant::now();
    let verdict = audit::verify_with(&store, VerifyOptions { key, expect_head }).await;
    store.close().await;
    match verdict? {
        Verify::Ok { rows, head, keyed_from, checked_sessions, checked_deliveries, uncovered } => {
            let scheme = match keyed_from {
                Some(1) => "keyed (HMAC-SHA256)".to_string(),
                Some(k) => format!("rows 1-{} unkeyed SHA-256, keyed (HMAC-SHA256) from row {k}", k - 1),
                None => "unkeyed SHA-256 (configure store.audit_key, see docs/security/audit.md)".to_string(),
            };
            let uncovered = if uncovered > 0 {
                format!(" ({uncovered} recorded before audit evidence existed: their content is not covered)")
            } else {
                String::new()
            };
            // One line, the head last: scripts take the hash after "head ".
            println!(
                "audit chain OK: {rows} rows in {:.2}s; {scheme}; {checked_sessions} sessions and {checked_deliveries} deliveries match their latest audit event{uncovered}; head {head}",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Verify::Broken { row_id, reason } => {
            eprintln!("audit chain BROKEN at row {row_id}: {reason}");
            Ok(ExitCode::from(3))
        }
        Verify::Evidence { subject, row_id, reason } => {
            match row_id {
                Some(r) => eprintln!("audit evidence BROKEN: {subject} (recorded by audit row {r}): {reason}"),
                None => eprintln!("audit evidence BROKEN: {subject}: {reason}"),
            }
            Ok(ExitCode::from(3))
        }
    }
}
