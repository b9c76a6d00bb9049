use std::process::ExitCode;

use anyhow::{bail, Result};

use ticketsync::cli::Cli;
use ticketsync::config::Config;

/// `ticketsync check`: the configuration and the secrets it needs.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    // Run by hand (by root), check reads the secrets where the unit's LoadCredential=
    // lines take them from, as doctor does: the same answer as the service will get.
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
    let mut sources = vec![];
    if cfg.sources.teamviewer.as_ref().is_some_and(|t| t.enabled) {
        sources.push("teamviewer".to_string());
    }
    if cfg.sources.splashtop.as_ref().is_some_and(|t| t.enabled) {
        sources.push("splashtop".to_string());
    }
    if let Some(z) = cfg.sources.zoom.as_ref().filter(|z| z.enabled) {
        let names: Vec<_> = z.accounts.iter().map(|a| a.name.as_str()).collect();
        sources.push(format!("zoom (accounts: {})", names.join(", ")));
    }
    println!("  sources: {}", if sources.is_empty() { "(none)".to_string() } else { sources.join(", ") });
    if cfg.rooms.visioconference.as_ref().is_some_and(|v| v.enabled) {
        println!("  rooms: visioconference");
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
    check_refresh_tokens(&cfg).await?;
    check_lookback(&cfg).await?;
    Ok(ExitCode::SUCCESS)
}

/// OAuth refresh tokens close to their end are a warning, expired ones an error naming the
/// command that fixes them. Only reads an existing database; never creates one.
async fn check_refresh_tokens(cfg: &Config) -> Result<()> {
    let Some(st) =
        cfg.sources.splashtop.as_ref().filter(|s| s.enabled && s.auth == ticketsync::config::SplashtopAuth::Oauth)
    else {
        return Ok(());
    };
    let Some(store) = ticketsync::app::open_existing_store_read_only(cfg).await? else {
        println!("  splashtop: not authorized yet: run `ticketsync auth splashtop`");
        return Ok(());
    };
    let oauth = ticketsync::sources::splashtop::oauth_client(
        st,
        &store,
        st.outbound().client(std::time::Duration::from_secs(30))?,
    )?;
    let status = oauth.refresh_expiry().await;
    store.close().await;
    match status? {
        None => println!("  splashtop: no refresh token stored: run `ticketsync auth splashtop`"),
        Some((at, _)) if ticketsync::session::parse_ts(&at).is_some_and(|t| t <= chrono::Utc::now()) => {
            bail!("sources.splashtop: the OAuth refresh token expired at {at}: run `ticketsync auth splashtop`")
        }
        Some((at, true)) => {
            tracing::warn!(provider = "splashtop", refresh_expires_at = %at, "refresh token expires soon");
            println!("  warning: splashtop refresh token expires at {at}: run `ticketsync auth splashtop` before then");
        }
        Some((at, false)) => println!("  splashtop: refresh token valid until {at}"),
    }
    Ok(())
}

/// Before the first poll of TeamViewer: warn when `initial_lookback_days` reads less than the
/// vendor keeps, and say how to read the rest. Read only; nothing once the source has polled.
async fn check_lookback(cfg: &Config) -> Result<()> {
    let Some(tv) = cfg.sources.teamviewer.as_ref().filter(|t| t.enabled) else { return Ok(()) };
    let retention = ticketsync::sources::teamviewer::REPORT_RETENTION_DAYS;
    if tv.initial_lookback_days >= retention {
        return Ok(());
    }
    if let Some(store) = ticketsync::app::open_existing_store_read_only(cfg).await? {
        let polled = ticketsync::store::cursors::load(&store, "teamviewer").await;
        store.close().await;
        if polled?.is_some() {
            return Ok(());
        }
    }
    let from = (chrono::Utc::now() - chrono::Duration::days(tv.initial_lookback_days as i64)).format("%Y-%m-%d");
    println!(
        "  warning: sources.teamviewer.initial_lookback_days = {}: the first poll reads connection reports from {from} on, \
         but TeamViewer keeps about {retention} days of them (assumed; see docs/security/oauth.md); \
         to read the older ones run `ticketsync backfill --source teamviewer --from <first day> --to {from}` after it",
        tv.initial_lookback_days
    );
    Ok(())
}
