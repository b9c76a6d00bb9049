use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use ticketsync::app::App;
use ticketsync::cli::{AuditCommand, Cli, Command, SessionCommand};
use ticketsync::config::Config;
use ticketsync::store::outbox;

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
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            // One clear line: the context chain, scrubbed (a vendor's answer may echo a secret).
            eprintln!("error: {}", ticketsync::redact::scrub(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

fn load(cli: &Cli) -> Result<Config> {
    Ok(Config::load(&cli.config)?)
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        #[cfg(feature = "demo")]
        Command::Demo { state_dir } => {
            ticketsync::demo::run(state_dir).await?;
        }
        // The CLI keeps the command in every build; a product build names what it lacks.
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            anyhow::bail!("this build has no simulators: `demo` needs the `demo` cargo feature");
        }
        Command::Check => {
            let cfg = load(&cli)?;
            cfg.check_secrets()?;
            println!("{}: OK", cli.config.display());
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
            println!("  database: {}", cfg.store.path.display());
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
        }
        Command::Migrate => {
            let cfg = load(&cli)?;
            let store = ticketsync::app::open_store(&cfg).await?;
            let v: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&store.pool).await?;
            println!("database {} at schema version {}", cfg.store.path.display(), v.unwrap_or(0));
            store.pool.close().await;
        }
        Command::Run => {
            let app = App::build(load(&cli)?).await?;
            ticketsync::daemon::run(app).await?;
        }
        Command::SyncOnce => {
            let app = App::build(load(&cli)?).await?;
            let r = app.cycle().await?;
            for sink in app.sinks.values() {
                sink.close().await;
            }
            for (name, s) in &r.polled {
                println!(
                    "{name}: {} records in {} pages ({} new, {} updated, {} quarantined)",
                    s.records, s.pages, s.inserted, s.updated, s.quarantined
                );
            }
            println!(
                "matched {} sessions, delivered {} notes ({} already present, {} retrying, {} failed, {} dead)",
                r.matched.matched,
                r.delivered.delivered,
                r.delivered.found_existing,
                r.delivered.retrying,
                r.delivered.failed,
                r.delivered.dead
            );
            app.store.pool.close().await;
        }
        Command::Auth { provider, code, state, account, listen } if provider == "zoom" => {
            ticketsync::auth_zoom::run(&load(&cli)?, account.as_deref(), code.as_deref(), state.as_deref(), *listen)
                .await?
        }
        Command::Auth { provider, code, state, listen, .. } => {
            auth(&cli, provider, code.as_deref(), state.as_deref(), *listen).await?
        }
        Command::Session {
            command: SessionCommand::Create { ticket, provider, account, customer_name, customer_email },
        } => {
            let app = App::build(load(&cli)?).await?;
            let c = ticketsync::launchers::create_session_on(
                &app,
                provider,
                ticket,
                account.as_deref(),
                customer_name.as_deref(),
                customer_email.as_deref(),
            )
            .await?;
            for t in &c.truncated {
                println!("note: {t}");
            }
            println!("{} session {} created for ticket {}", c.provider, c.code, c.ticket);
            let d = ticketsync::pipeline::deliver_due(&app.store, &app.sinks, &app.policy).await?;
            println!(
                "links posted: {} delivered, {} retrying (the daemon will finish them)",
                d.delivered + d.found_existing,
                d.retrying
            );
            app.store.pool.close().await;
        }
        Command::Link { session, ticket } => {
            let app = App::build(load(&cli)?).await?;
            let id = ticketsync::launchers::manual_link(&app, session, ticket).await?;
            let m = app.match_pass().await?;
            println!("link {id}: session {session} → ticket {ticket} ({} session(s) matched now)", m.matched);
            app.store.pool.close().await;
        }
        Command::Unmatched => {
            let cfg = load(&cli)?;
            let store = ticketsync::app::open_store(&cfg).await?;
            let rows = ticketsync::store::sessions::unmatched_all(&store.pool).await?;
            println!(
                "{:<10} {:<38} {:<14} {:<20} {:<20} state",
                "vendor", "external id", "code", "start", "technician"
            );
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
            store.pool.close().await;
        }
        Command::Deliveries { state } => {
            if let Some(s) = state {
                if !["pending", "sending", "delivered", "failed", "dead"].contains(&s.as_str()) {
                    bail!("--state {s:?}: expected pending, sending, delivered, failed or dead");
                }
            }
            let cfg = load(&cli)?;
            let store = ticketsync::app::open_store(&cfg).await?;
            let rows = outbox::list(&store.pool, state.as_deref()).await?;
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
                    // Rows written before redaction existed, or before a token was known.
                    ticketsync::redact::scrub(d.last_error.as_deref().unwrap_or(""))
                );
            }
            println!("{} deliveries", rows.len());
            store.pool.close().await;
        }
        Command::Audit { command: AuditCommand::Verify { db, expect_head, key_file } } => {
            return audit_verify(&cli, db, expect_head.as_deref(), key_file.as_deref()).await;
        }
        Command::Audit { command: AuditCommand::Head { db } } => {
            let store = ticketsync::store::Store::open_read_only(&audit_db(&cli, db)?).await?;
            let head = ticketsync::store::audit::head(&store.pool).await?;
            store.pool.close().await;
            println!("{head}");
        }
        Command::Backup { to, db } => {
            let src = audit_db(&cli, db)?;
            let r = ticketsync::store::backup::backup(&src, to).await?;
            let head = r.head.map(|(id, h)| format!("{id}:{h}")).unwrap_or_else(|| "empty".into());
            println!(
                "backup of {} written to {} (mode 0600): {} pages, integrity {}, audit head {head}",
                src.display(),
                r.path.display(),
                r.pages,
                r.integrity
            );
        }
        Command::Audit { command: AuditCommand::Show { ticket, db } } => {
            let store = ticketsync::store::Store::open_read_only(&audit_db(&cli, db)?).await?;
            let mut out = ticketsync::redact::ScrubWriter::new(std::io::stdout().lock());
            let found = ticketsync::export::show_ticket(&store.pool, ticket, &mut out).await?;
            drop(out);
            store.pool.close().await;
            if !found {
                eprintln!("nothing recorded for ticket {ticket}");
            }
        }
        Command::Audit { command: AuditCommand::Export { from, to, format, vendor, output, db } } => {
            let filter = ticketsync::export::Filter {
                from: ticketsync::export::parse_bound(from, false).map_err(|e| anyhow::anyhow!("--from {e}"))?,
                to: ticketsync::export::parse_bound(to, true).map_err(|e| anyhow::anyhow!("--to {e}"))?,
                vendor: vendor.clone(),
            };
            let store = ticketsync::store::Store::open_read_only(&audit_db(&cli, db)?).await?;
            // Scrubbed: rows stored before redaction existed may hold a vendor's echo.
            let mut out: Box<dyn std::io::Write> = match output {
                Some(p) => Box::new(ticketsync::redact::ScrubWriter::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("--output {}", p.display()))?,
                ))),
                None => {
                    Box::new(ticketsync::redact::ScrubWriter::new(std::io::BufWriter::new(std::io::stdout().lock())))
                }
            };
            let s = ticketsync::export::export(&store.pool, &filter, *format, &mut out).await?;
            drop(out);
            store.pool.close().await;
            eprintln!(
                "exported {} events; chain head: {} rows, hash {}",
                s.rows, s.header.chain_rows, s.header.chain_head_hash
            );
        }
        Command::Backfill { source, from, to, dry_run } => {
            let app = App::build(load(&cli)?).await?;
            let r = ticketsync::backfill::run_cli(&app, source, from, to.as_deref(), *dry_run).await;
            app.store.pool.close().await;
            r?;
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())?;
        }
        Command::Doctor => {
            let mut out = ticketsync::redact::ScrubWriter::new(std::io::stdout().lock());
            let ok = ticketsync::doctor::run(&cli.config, &mut out).await;
            drop(out);
            if !ok {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Retry { id } => {
            let cfg = load(&cli)?;
            let store = ticketsync::app::open_store(&cfg).await?;
            // `requeue` answers with the row's state, and "pending" also means "was already
            // pending, nothing requeued": refuse that case before calling it.
            if let Some(d) = outbox::get(&store.pool, *id).await?.filter(|d| d.state != "failed" && d.state != "dead") {
                bail!("delivery {id} is {}; only failed or dead deliveries can be requeued", d.state);
            }
            match outbox::requeue(&store, *id).await? {
                None => bail!("delivery {id} does not exist"),
                Some(s) if s == "pending" => println!("delivery {id} requeued"),
                Some(s) => bail!("delivery {id} is {s}; only failed or dead deliveries can be requeued"),
            }
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
    let path = audit_db(cli, db)?;
    let store = ticketsync::store::Store::open_read_only(&path).await?;
    store.pool.close().await;
    let started = std::time::Instant::now();
    match audit::verify_path(&path, VerifyOptions { key, expect_head }).await? {
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

/// `--db FILE`, else `store.path` of the configuration (with its environment override).
fn audit_db(cli: &Cli, db: &Option<std::path::PathBuf>) -> Result<std::path::PathBuf> {
    Ok(match db {
        Some(p) => p.clone(),
        None => load(cli)?.store.path,
    })
}

/// OAuth refresh tokens close to their end are a warning, expired ones an error naming the
/// command that fixes them. Only reads an existing database; never creates one.
async fn check_refresh_tokens(cfg: &Config) -> Result<()> {
    let Some(st) =
        cfg.sources.splashtop.as_ref().filter(|s| s.enabled && s.auth == ticketsync::config::SplashtopAuth::Oauth)
    else {
        return Ok(());
    };
    if !cfg.store.path.exists() {
        println!("  splashtop: not authorized yet: run `ticketsync auth splashtop`");
        return Ok(());
    }
    let store = ticketsync::store::Store::open_read_only(&cfg.store.path).await?;
    let oauth = ticketsync::sources::splashtop::oauth_client(
        st,
        &store,
        st.outbound().client(std::time::Duration::from_secs(30))?,
    )?;
    let status = oauth.refresh_expiry().await;
    store.pool.close().await;
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

async fn auth(cli: &Cli, provider: &str, code: Option<&str>, state: Option<&str>, listen: bool) -> Result<()> {
    let cfg = load(cli)?;
    let timeout = std::time::Duration::from_secs(30);
    let store;
    let oauth = match provider {
        "teamviewer" => {
            let tv = cfg.sources.teamviewer.as_ref().context("[sources.teamviewer] is not configured")?;
            if tv.auth != ticketsync::config::TeamViewerAuth::Oauth {
                bail!("sources.teamviewer.auth is \"script\": set auth = \"oauth\" with client_id and client_secret to use OAuth");
            }
            store = ticketsync::app::open_store(&cfg).await?;
            ticketsync::sources::teamviewer::oauth_client(tv, &store, tv.outbound().client(timeout)?)?
        }
        "splashtop" => {
            let st = cfg.sources.splashtop.as_ref().context("[sources.splashtop] is not configured")?;
            if st.auth != ticketsync::config::SplashtopAuth::Oauth {
                bail!("sources.splashtop.auth is \"token\": set auth = \"oauth\" with client_id and client_secret to use OAuth");
            }
            store = ticketsync::app::open_store(&cfg).await?;
            ticketsync::sources::splashtop::oauth_client(st, &store, st.outbound().client(timeout)?)?
        }
        other => bail!("unknown provider {other:?} (available: teamviewer, splashtop, zoom)"),
    };
    // `state` is mandatory whenever this process printed the authorize URL (auth_zoom::authorize).
    let listen_on = listen.then_some(oauth.redirect_uri.clone());
    let Some(exp) = ticketsync::auth_zoom::authorize(&oauth, provider, code, state, listen_on.as_deref()).await? else {
        return Ok(());
    };
    println!(
        "{provider}: authorized; access token valid until {exp}; tokens stored encrypted in {}",
        cfg.store.path.display()
    );
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
    if cfg.store.path.exists() {
        let store = ticketsync::store::Store::open_read_only(&cfg.store.path).await?;
        let polled = ticketsync::store::cursors::load(&store.pool, "teamviewer").await;
        store.pool.close().await;
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
