use std::process::ExitCode;

use anyhow::Result;

use super::load;
use ticketsync::cli::Cli;

/// `ticketsync migrate`: open the database and apply the migrations.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let cfg = load(cli)?;
    let store = ticketsync::app::open_store(&cfg).await?;
    let v = store.schema_version().await?;
    println!("database {} at schema version {}", cfg.store.display(), v.unwrap_or(0));
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
