//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ticketsync", version, about = "Remote-support sessions → audit history → helpdesk tickets", long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Every key can be overridden by TICKETSYNC__SECTION__KEY.
    #[arg(long, global = true, env = "TICKETSYNC_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sources on their schedules, matching and delivery continuously.
    Run,
    /// Validate the configuration and the secrets it needs; names the bad key.
    Check,
    /// Create or upgrade the database schema and exit.
    Migrate,
    /// Run one full cycle (poll every source, match, deliver) and exit.
    SyncOnce,
    /// Start built-in simulators on 127.0.0.1 and run a full cycle into a SQLite file.
    Demo {
        /// Where the demo database and configuration go.
        #[arg(long, default_value = "ticketsync-demo")]
        state_dir: PathBuf,
    },
    /// OAuth authorization for a vendor: prints the authorize URL, then exchanges the code.
    Auth {
        /// Vendor name (teamviewer, splashtop, zoom).
        provider: String,
        /// Zoom: which [[sources.zoom.accounts]] entry (default: default_account, else the first).
        #[arg(long)]
        account: Option<String>,
        /// Zoom: receive the redirect on the loopback address of the account's redirect_uri
        /// instead of asking for the pasted code.
        #[arg(long)]
        listen: bool,
        /// The `code` from the redirect (or the whole redirect URL).
        #[arg(long)]
        code: Option<String>,
        /// The `state` from the redirect (taken from the URL when a URL is given).
        #[arg(long)]
        state: Option<String>,
    },
    /// Remote sessions created for tickets.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Link a session code (or report id) to a ticket by hand.
    Link {
        #[arg(long)]
        session: String,
        #[arg(long)]
        ticket: String,
    },
    /// List sessions that no rule matched to a ticket.
    Unmatched,
    /// List deliveries, optionally by state (pending, sending, delivered, failed, dead).
    Deliveries {
        #[arg(long)]
        state: Option<String>,
    },
    /// Requeue a failed or dead delivery.
    Retry { id: i64 },
    /// The audit history (read-only).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit_events hash chain; reports the first broken row and exits non-zero.
    Verify {
        /// Database file (default: store.path from the configuration).
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a session for a ticket and post its links on the ticket.
    Create {
        #[arg(long)]
        ticket: String,
        /// teamviewer (a service case), splashtop (an attended-support session), zoom (a meeting)
        /// or visioconference (a room).
        #[arg(long, default_value = "teamviewer")]
        provider: String,
        /// Zoom: which [[sources.zoom.accounts]] entry creates the meeting.
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        customer_name: Option<String>,
        #[arg(long)]
        customer_email: Option<String>,
    },
}
