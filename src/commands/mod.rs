//! One file per command of the `ticketsync` binary; `dispatch` is the one list of them.

mod audit;
mod auth;
mod backfill;
mod backup;
mod check;
mod console;
mod deliveries;
mod demo;
mod doctor;
mod init;
mod link;
pub mod logging;
mod man;
mod migrate;
mod relink;
mod run;
mod session;
mod store;
mod unmatched;

use std::process::ExitCode;

use anyhow::Result;

use ticketsync::cli::{AuditCommand, Cli, Command};
use ticketsync::config::Config;

pub async fn dispatch(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Demo { .. } => demo::run(cli).await,
        Command::Check => check::run(cli).await,
        Command::Init { .. } => init::run(cli).await,
        Command::Migrate => migrate::run(cli).await,
        Command::Run => run::daemon(cli).await,
        Command::SyncOnce => run::sync_once(cli).await,
        Command::Auth { .. } => auth::run(cli).await,
        Command::Session { .. } => session::create(cli).await,
        Command::Link { .. } => link::run(cli).await,
        Command::Relink { .. } => relink::run(cli).await,
        Command::Unmatched { .. } => unmatched::run(cli).await,
        Command::Deliveries { .. } => deliveries::list(cli).await,
        Command::Retry { .. } => deliveries::retry(cli).await,
        Command::Console { .. } => console::hash_password().await,
        Command::Audit { command: AuditCommand::Verify { .. } } => audit::verify(cli).await,
        Command::Audit { command: AuditCommand::Head { .. } } => audit::head(cli).await,
        Command::Audit { command: AuditCommand::Show { .. } } => audit::show(cli).await,
        Command::Audit { command: AuditCommand::Export { .. } } => audit::export(cli).await,
        Command::Backup { .. } => backup::run(cli).await,
        Command::Store { .. } => store::run(cli).await,
        Command::Backfill { .. } => backfill::run(cli).await,
        Command::Man { .. } => man::run(cli).await,
        Command::Doctor { .. } => doctor::run(cli).await,
    }
}

/// The configuration of `--config` (with its environment overrides).
fn load(cli: &Cli) -> Result<Config> {
    Ok(Config::load(&cli.config)?)
}

/// `store` narrowed to `--tenant`, when given: every view and export through it shows that
/// tenant's rows only.
fn for_cli_tenant(cli: &Cli, store: ticketsync::store::Store) -> Result<ticketsync::store::Store> {
    match cli.tenant.as_deref() {
        None => Ok(store),
        Some(t) => {
            let t = ticketsync::store::TenantName::new(t).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            Ok(store.for_tenant(&t))
        }
    }
}

/// `--db FILE`, else `store.path` of the configuration (with its environment override):
/// the SQLite file of `backup`, which copies a file. A PostgreSQL store has no file.
fn audit_db(cli: &Cli, db: &Option<std::path::PathBuf>) -> Result<std::path::PathBuf> {
    Ok(match db {
        Some(p) => p.clone(),
        None => match load(cli)?.store.location()? {
            ticketsync::store::Location::Sqlite(p) => p,
            ticketsync::store::Location::Postgres(_) => {
                return Err(ticketsync::store::StoreError::Unsupported("a file copy of the database").into())
            }
        },
    })
}

/// The database of `--db FILE`, else the configuration's store (SQLite or PostgreSQL),
/// opened read-only for the auditors' commands.
async fn audit_store(cli: &Cli, db: &Option<std::path::PathBuf>) -> Result<ticketsync::store::Store> {
    let store = match db {
        Some(p) => ticketsync::store::Store::open_read_only(p).await?,
        None => ticketsync::app::open_store_read_only(&load(cli)?).await?,
    };
    for_cli_tenant(cli, store)
}

/// The one line a failed command prints: the error and its causes joined by ": ", each cause
/// left out when the text before it already says it (sqlx and our own errors quote their
/// source in their message, so a plain `{:#}` said "database x does not exist" three times),
/// scrubbed (a vendor's answer may echo a secret).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    ticketsync::redact::scrub(&line).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_line_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("database x does not exist")]
        struct Root;
        #[derive(Debug, thiserror::Error)]
        #[error("error returned from database: {0}")]
        struct Mid(#[source] Root);
        let e = anyhow::Error::new(Mid(Root))
            .context("opening the store")
            .context("database x: error returned from database: database x does not exist");
        let line = super::error_line(&e);
        assert_eq!(line.matches("does not exist").count(), 1, "{line}");
        assert!(line.starts_with("database x: "), "{line}");
        let plain = anyhow::anyhow!("first").context("second");
        assert_eq!(super::error_line(&plain), "second: first");
    }
}
