use std::process::ExitCode;

use anyhow::Result;

use ticketsync::cli::Cli;
use ticketsync::config::Config;
use ticketsync::sources::section::Remark;

/// `ticketsync check`: the configuration and the secrets it needs.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    // Run by hand (by root), check reads the secrets where the unit's LoadCredential=
    // lines take them from, as doctor does: the same answer as the service will get.
    // `init` writes them encrypted (`*.cred`, systemd-creds) where systemd runs: decrypted for
    // as long as check runs (this was lost once in a merge; the first-hour walk caught it).
    let mut from_source = false;
    let mut _decrypted = None;
    if std::env::var_os("CREDENTIALS_DIRECTORY").is_none()
        && std::fs::read_dir(ticketsync::doctor::CREDENTIALS_SOURCE).is_ok()
    {
        _decrypted = ticketsync::credentials::use_dir(std::path::Path::new(ticketsync::doctor::CREDENTIALS_SOURCE))?;
        from_source = true;
    }
    // Every error of the file at once, one line each, like `vector validate`.
    let cfg = match Config::check(&cli.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            for line in e.report_lines() {
                eprintln!("error: {}", ticketsync::redact::scrub(&line));
            }
            return Ok(ExitCode::from(1));
        }
    };
    println!("{}: OK", cli.config.display());
    if from_source {
        println!(
            "  secrets: read from {} (as the unit's LoadCredential= lines provide them{})",
            ticketsync::doctor::CREDENTIALS_SOURCE,
            match &_decrypted {
                Some(d) => format!("; decrypted with systemd-creds: {}", d.names().join(", ")),
                None => String::new(),
            }
        );
    }
    for w in cfg.insecure_http_warnings() {
        println!("  warning: {w}");
    }
    let list = |v: Vec<&dyn ticketsync::config::SourceSection>| -> Vec<String> {
        v.into_iter().filter(|v| v.enabled()).map(|v| v.summary()).collect()
    };
    let sources = list(cfg.sources.all());
    println!("  sources: {}", if sources.is_empty() { "(none)".to_string() } else { sources.join(", ") });
    let rooms = list(cfg.rooms.all());
    if !rooms.is_empty() {
        println!("  rooms: {}", rooms.join(", "));
    }
    let sinks: Vec<&str> = cfg.sinks.routes().into_iter().map(|r| r.0).collect();
    println!("  sinks: {}", if sinks.is_empty() { "(none)".to_string() } else { sinks.join(", ") });
    println!("  database: {}", cfg.store.display());
    match ticketsync::app::audit_key(&cfg)? {
            Some(_) => println!("  audit chain: keyed (HMAC-SHA256 under store.audit_key)"),
            None => println!(
                "  warning: no store.audit_key: the audit chain is unkeyed SHA-256, which anyone able to write the database can recompute after an edit (docs/security/audit.md)"
            ),
        }
    if sinks.is_empty() {
        println!("  warning: no sink configured: sessions are stored and matched but not delivered");
    }
    remarks(&cfg).await?;
    Ok(ExitCode::SUCCESS)
}

/// What each enabled vendor says of its state (an OAuth refresh token near its end, a first
/// poll that reads less than the vendor keeps), read from an existing store, never creating
/// one; an error fails the check.
async fn remarks(cfg: &Config) -> Result<()> {
    let vendors: Vec<_> = cfg.vendors().into_iter().filter(|v| v.enabled()).collect();
    let store = match vendors.is_empty() {
        false => ticketsync::app::open_existing_store_read_only(cfg).await?,
        true => None,
    };
    let mut result = Ok(());
    for v in vendors {
        match v.remarks(store.as_ref()).await {
            Ok(lines) => {
                for line in lines {
                    match line {
                        Remark::Info(l) => println!("  {l}"),
                        Remark::Warning(l) => println!("  warning: {l}"),
                    }
                }
            }
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    if let Some(s) = store {
        s.close().await;
    }
    result
}
