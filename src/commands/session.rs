use std::process::ExitCode;

use anyhow::Result;

use super::load;
use ticketsync::app::App;
use ticketsync::cli::{Cli, Command, SessionCommand};

/// `ticketsync session create`: a session for a ticket, its links posted.
pub async fn create(cli: &Cli) -> Result<ExitCode> {
    let Command::Session {
        command: SessionCommand::Create { ticket, provider, account, customer_name, customer_email },
    } = &cli.command
    else {
        unreachable!("dispatched on Command::Session")
    };
    let app = App::build(load(cli)?).await?;
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
    let d = app.deliver_pass().await?;
    println!(
        "links posted: {} delivered, {} retrying (the daemon will finish them)",
        d.delivered + d.found_existing,
        d.retrying
    );
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}
