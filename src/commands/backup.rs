use std::process::ExitCode;

use anyhow::Result;

use super::audit_db;
use ticketsync::cli::{Cli, Command};

/// `ticketsync backup`: a consistent copy of the database.
pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Backup { to, db } = &cli.command else { unreachable!("dispatched on Command::Backup") };
    let src = audit_db(cli, db)?;
    let r = ticketsync::store::backup::backup(&src, to).await?;
    let head = r.head.map(|(id, h)| format!("{id}:{h}")).unwrap_or_else(|| "empty".into());
    println!(
        "backup of {} written to {} (mode 0600): {} pages, integrity {}, audit head {head}",
        src.display(),
        r.path.display(),
        r.pages,
        r.integrity
    );
    Ok(ExitCode::SUCCESS)
}
