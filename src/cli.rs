//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ticketsync",
    version,
    about = "Remote-support sessions → audit history → helpdesk tickets",
    long_about = "ticketsync polls remote-support vendors, stores every session in SQLite with a hash-chained \
audit history, matches sessions to helpdesk tickets and writes a note onto each ticket.",
    after_help = "Environment: TICKETSYNC_CONFIG (config file), TICKETSYNC__SECTION__KEY (override any key), \
TICKETSYNC_LOG (tracing filter), TICKETSYNC_LOG_FORMAT=json (JSON log lines), CREDENTIALS_DIRECTORY (systemd credentials).\n\
Exit codes: 0 success, 1 error, 3 audit chain broken (audit verify) or a failed check (doctor).\n\
Docs (/usr/share/doc/ticketsync/, docs/ in the source): operations.md (install, run, watch, upgrade), \
configuration.md (every key), auditors.md, schema.md (tables, views, example queries)."
)]
pub struct Cli {
    /// Configuration file (TOML). Every key can be overridden by TICKETSYNC__SECTION__KEY.
    #[arg(long, global = true, env = "TICKETSYNC_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Only this tenant's rows (`[[tenants]]`, or `default`): the views and exports
    /// (deliveries, unmatched, audit show, audit export) show only its sessions, deliveries
    /// and events; `link` links in this tenant. Without it: every tenant (`link`: default).
    #[arg(long, global = true, value_name = "NAME")]
    pub tenant: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sources on their schedules, matching and delivery continuously.
    Run,
    /// Validate the configuration and the secrets it needs; names the bad key.
    Check,
    /// Write a configuration for the vendors and ticket systems chosen, their secrets as
    /// credentials (mode 0600) and the unit's LoadCredential= drop-in, then run check and
    /// doctor. Asks on a terminal; otherwise from the flags. Secrets never go on the command
    /// line: --secret NAME=@FILE, NAME=env:VARIABLE or NAME=- (a line of stdin).
    Init {
        // The names come from the sources' and the sinks' registries.
        #[arg(long = "source", help = format!("A source to enable ({}); repeatable", crate::init::names(crate::init::Role::Source)))]
        sources: Vec<String>,
        #[arg(long = "sink", help = format!("A ticket system to enable ({}); repeatable", crate::init::names(crate::init::Role::Sink)))]
        sinks: Vec<String>,
        /// A value: COMPONENT.KEY=VALUE (redmine.url=https://…) or SECTION.KEY=VALUE of the config.
        #[arg(long = "set")]
        sets: Vec<String>,
        /// A secret: NAME=@FILE, NAME=env:VARIABLE or NAME=- (NAME: the credential, e.g. redmine_api_key).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// Where the secrets go (created mode 0700).
        #[arg(long, default_value = "/etc/ticketsync/credentials")]
        credentials_dir: PathBuf,
        /// The unit drop-in to write (default: /etc/systemd/system/ticketsync.service.d/credentials.conf
        /// when /etc/systemd/system exists).
        #[arg(long)]
        unit_dropin: Option<PathBuf>,
        /// Do not write a unit drop-in.
        #[arg(long, conflicts_with = "unit_dropin")]
        no_unit_dropin: bool,
        /// Replace a configuration other than the one the package installed (kept as .bak).
        #[arg(long)]
        force: bool,
        /// Never ask, even on a terminal.
        #[arg(long)]
        no_input: bool,
        /// Skip doctor (it calls the vendors and ticket systems).
        #[arg(long)]
        no_doctor: bool,
    },
    /// Create or upgrade the database schema and exit.
    Migrate,
    /// Run one full cycle (poll every source, match, deliver) and exit.
    SyncOnce,
    /// Start built-in simulators on 127.0.0.1 and run a full cycle into a SQLite file (or --store).
    Demo {
        /// Where the demo database and configuration go.
        #[arg(long, default_value = "ticketsync-demo")]
        state_dir: PathBuf,
        /// The history in this PostgreSQL database instead of a SQLite file
        /// (postgres://user@host/ticketsync_demo): created if missing, replaced if an
        /// earlier demo created it, refused if it holds another ticketsync history.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// OAuth authorization for a vendor: prints the authorize URL, then exchanges the code.
    Auth {
        /// Vendor name (teamviewer, splashtop, zoom).
        provider: String,
        /// Zoom: which [[sources.zoom.accounts]] entry (default: default_account, else the first).
        #[arg(long)]
        account: Option<String>,
        /// Receive the redirect on the loopback address of the redirect_uri (Zoom: the
        /// account's) instead of asking for the pasted URL; callbacks without the state this
        /// command issued are refused and the wait goes on.
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
    /// Move a wrongly matched session to another ticket.
    ///
    /// A correction note goes to the old ticket (for each sink its note may have reached),
    /// the session's note to the new one, both through the outbox (sent once, scanned for
    /// before any re-send) and audited (session_unlinked, session_relinked). Running it
    /// again is a no-op; naming the ticket the session is already matched to is an error.
    Relink {
        /// The session: its id, its vendor report id, or its session code (when only one
        /// session has that code).
        #[arg(long)]
        session: String,
        /// The ticket the session belongs to.
        #[arg(long)]
        ticket: String,
        /// Why, kept in the audit history (with the login name of whoever ran it).
        #[arg(long)]
        reason: Option<String>,
    },
    /// List sessions that no rule matched to a ticket.
    Unmatched {
        /// Only the N most recent sessions (by start), printed oldest first.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// One JSON object per line (vendor, external_id, session_code, started_at, ended_at,
        /// technician, state), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List deliveries, optionally by state (pending, sending, delivered, failed, dead).
    Deliveries {
        #[arg(long)]
        state: Option<String>,
        /// Only the N most recent deliveries (by id), printed oldest first.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// One JSON object per line (id, sink, ticket_id, session_id, state, kind, attempts,
        /// next_attempt_at, last_error, remote_ref, created_at, delivered_at), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Requeue a failed or dead delivery.
    Retry { id: i64 },
    /// The web console (`[console]`): helpers.
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// The audit history (read-only).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Re-read a source's history for a time range through the same pipeline.
    ///
    /// Store, match and deliver as a poll does. Idempotent: a session already stored is not
    /// duplicated and a note already queued or delivered is not sent again. Shows a progress
    /// bar on a terminal, a progress log line every --progress-secs otherwise; the log lines
    /// of each matched session and delivered note are left out (TICKETSYNC_LOG=debug shows them).
    Backfill {
        /// Source name as in the configuration (teamviewer, splashtop, zoom).
        #[arg(long)]
        source: String,
        /// First day (2026-11-01) or time (RFC 3339) to re-read, inclusive.
        #[arg(long)]
        from: String,
        /// Last day (inclusive) or time (exclusive); default: now.
        #[arg(long)]
        to: Option<String>,
        /// Read and count what would change; write nothing, deliver nothing.
        #[arg(long)]
        dry_run: bool,
        /// Without a terminal, log a progress line at most every N seconds (0: after every page).
        #[arg(long, value_name = "N", default_value_t = 10)]
        progress_secs: u64,
    },
    /// Check the installation; prints OK/WARN/FAIL with the fix for each failure.
    ///
    /// Configuration, secrets, database, the systemd credentials directory, and a harmless
    /// call to every configured vendor and sink (TeamViewer ping, Splashtop basic_info, each
    /// sink's current-user call; Zoom and visioconference.me are reported "not checked"),
    /// OAuth token expiry. Exits 3 when a check failed.
    Doctor {
        /// One JSON object per check and line ({"check","status","detail","fix"}), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Copy the database consistently while the daemon runs (SQLite online backup, the
    /// WAL's transactions included) into a new file of mode 0600.
    Backup {
        /// The copy to write; must not exist.
        #[arg(long)]
        to: PathBuf,
        /// Database file (default: store.path from the configuration).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// The store as a whole: `store copy` moves the history to another database.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Print the man page (roff) to standard output; with --dir, write ticketsync(1) and one
    /// page per subcommand (ticketsync-run(1), …) into that directory, as the .deb ships them.
    #[command(hide = true)]
    Man {
        /// Directory to write every page into (ticketsync.1, ticketsync-<command>.1, …).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the whole history (sessions, quarantine, links, matches, deliveries and their
    /// attempts, cursors, OAuth tokens, the store's secrets, the audit chain) into a new,
    /// empty database, ids preserved, in one transaction; then verify the audit chain on
    /// both sides and compare the rows per table (exit 1 on any difference). Stop the
    /// daemon first. Typically SQLite → PostgreSQL; leases are not copied.
    Copy {
        /// The store to read (sqlite:///path or postgres://user@host/db).
        #[arg(long)]
        from: String,
        /// The store to write: created and migrated if needed, refused unless empty.
        /// PostgreSQL's password: in the URL or PGPASSWORD, never in a file given here.
        #[arg(long)]
        to: String,
        /// The audit key file, for a keyed chain (default: store.audit_key of the
        /// configuration, if readable).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print the argon2 hash of a password read from standard input (never echoed), for a
    /// user's `password_hash_file` in `[[console.users]]`.
    HashPassword,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit_events hash chain; reports the first broken row and exits non-zero.
    ///
    /// Also compares every session and delivery with the latest audit event that recorded
    /// it (an edited technician, raw record or note is reported), and, with --expect-head,
    /// finds rows deleted from the end. A keyed chain needs the audit key: store.audit_key
    /// of the configuration, or --key-file.
    Verify {
        /// Database file (default: store.path from the configuration).
        #[arg(long)]
        db: Option<PathBuf>,
        /// A head recorded earlier (`ticketsync audit head`, or the daemon's log): that row
        /// must still exist with that hash.
        #[arg(long, value_name = "ID:HASH")]
        expect_head: Option<String>,
        /// The audit key file (default: store.audit_key of the configuration, if readable).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Print the chain head as ID:HASH, to keep outside the host (an external anchor for
    /// `audit verify --expect-head`).
    Head {
        /// Database file (default: store.path from the configuration).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// A ticket's sessions, deliveries with every attempt, and its audit history.
    Show {
        #[arg(long)]
        ticket: String,
        /// Only the N most recent sessions, deliveries and events (each part oldest first).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// One JSON object per line: {"record":"session",…}, {"record":"delivery",…,
        /// "attempts":[…]}, {"record":"event",…}, in the order of the text output.
        #[arg(long)]
        json: bool,
        /// Database file (default: store.path from the configuration).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Stream audit events in a time range as CSV or JSON lines.
    ///
    /// The header carries the chain head hash (compare it with `audit verify`), every row its
    /// prev_hash and hash. Constant memory; the database is opened read-only.
    Export {
        /// First day (2026-11-01) or time (RFC 3339), inclusive.
        #[arg(long)]
        from: String,
        /// Last day (inclusive) or time (exclusive).
        #[arg(long)]
        to: String,
        #[arg(long, value_enum)]
        format: crate::export::Format,
        /// What to export: the audit events, or the time entries whose work started in the
        /// range (docs/time-entries.md).
        #[arg(long, value_enum, default_value = "events")]
        kind: crate::export::ExportKind,
        /// Only events of this vendor (and of its sessions' deliveries).
        #[arg(long)]
        vendor: Option<String>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
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
