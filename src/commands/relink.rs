//! `ticketsync relink`: a wrongly matched session moved to the ticket it belongs to.
//!
//! One transaction: the match moves (rule `relink`), `session_unlinked` and
//! `session_relinked` are audited, a correction note is queued for the old ticket on every
//! sink its note may have reached, and the session's note for the new ticket on every sink
//! whose route accepts it. The notes carry markers of their own, numbered by relink, so the
//! outbox sends each once (a re-send scans for the marker first), and a session moved back
//! to a ticket it left gets a fresh note there.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::load;
use ticketsync::app::App;
use ticketsync::cli::{Cli, Command};
use ticketsync::note::{Field, Note, Visibility};
use ticketsync::store::sessions::StoredSession;
use ticketsync::store::{audit, links, outbox, sessions};

/// The delivery kind of the note on the old ticket (the new ticket's note is a
/// `session_report`, like any other).
pub const CORRECTION_KIND: outbox::NoteKind = outbox::NoteKind::RelinkCorrection;

pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let Command::Relink { session, ticket, reason } = &cli.command else {
        unreachable!("dispatched on Command::Relink")
    };
    if !ticketsync::matcher::valid_ticket_id(ticket) {
        bail!("--ticket {ticket:?}: not a valid ticket id (letters, digits, '-', '_', '.')");
    }
    let reason = reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let app = App::build(load(cli)?).await?;
    let r = relink(&app, session, ticket, reason).await;
    app.store.close().await;
    r
}

/// The login name of whoever runs the command (under sudo: the one who called sudo).
fn who() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
}

fn describe(s: &StoredSession) -> String {
    let started = ticketsync::session::ts(s.started_at);
    format!("{} {} ({started})", s.vendor, s.session_code.as_deref().unwrap_or(&s.external_id))
}

/// The one stored session `key` names.
async fn find(app: &App, key: &str) -> Result<StoredSession> {
    let found = sessions::named(&app.store, key, 11).await?;
    match found.as_slice() {
        [] => bail!("--session {key:?}: no stored session has this id, vendor report id or session code"),
        [s] => Ok(s.clone()),
        many => {
            let list: Vec<String> = many.iter().take(10).map(|s| format!("id {}: {}", s.id, describe(s))).collect();
            let more = if many.len() > 10 { ", …" } else { "" };
            bail!(
                "--session {key:?}: {} sessions have this session code ({}{more}); name one by its id",
                if many.len() > 10 { "more than 10".to_string() } else { many.len().to_string() },
                list.join("; ")
            )
        }
    }
}

async fn relink(app: &App, key: &str, to: &str, reason: Option<&str>) -> Result<ExitCode> {
    let s = find(app, key).await?;
    let by = who();
    let tz = app.config.notes_tz();
    let marker_key = app.store.marker_key().clone();
    let mut tx = app.store.begin().await?;
    let Some(m) = links::match_of(&mut tx, s.id).await? else {
        bail!(
            "session {} ({}) is not matched to a ticket: nothing to move; `ticketsync link --session {} --ticket {to}` links it",
            s.id,
            describe(&s),
            s.session_code.as_deref().unwrap_or(&s.external_id)
        );
    };
    let from = m.ticket_id.as_str();
    if from == to {
        if m.rule == "relink" {
            println!("session {} ({}) is already relinked to ticket {to}; nothing to do", s.id, describe(&s));
            return Ok(ExitCode::SUCCESS);
        }
        bail!(
            "session {} ({}) is already matched to ticket {to} (rule {}); nothing to move",
            s.id,
            describe(&s),
            m.rule
        );
    }
    let number = links::relinks_of(&mut tx, s.id).await? + 1;
    let reports = outbox::session_reports_in(&mut tx, s.id, from).await?;
    let report = ticketsync::report::session_note(&s, tz, &marker_key);
    let correction = correction_note(
        &report,
        to,
        reason,
        marker_key.marker(&s.vendor, &s.external_id, &format!("relinked{number}-to-{to}")),
    );
    let moved =
        Note { marker: marker_key.marker(&s.vendor, &s.external_id, &format!("report-relink{number}")), ..report };

    let mut chain = audit::Chain::load(&mut tx).await?;
    let r = links::Relink {
        session_id: s.id,
        vendor: &s.vendor,
        from_ticket: from,
        to_ticket: to,
        number,
        by: by.as_deref(),
        reason,
    };
    if !links::move_match_in(&mut tx, &mut chain, &r).await? {
        bail!("session {} was moved by someone else meanwhile; run the command again", s.id);
    }
    // A correction only where the wrong note may be: a sink that refused it every time
    // (the old ticket does not exist, say) has nothing to correct.
    let mut corrected: Vec<&str> = Vec::new();
    let mut unconfigured: Vec<&str> = Vec::new();
    for q in reports.iter().filter(|q| q.may_be_on_ticket) {
        let sink = q.delivery.sink.as_str();
        if corrected.contains(&sink) || unconfigured.contains(&sink) {
            continue;
        }
        if !app.sinks.contains_key(sink) {
            unconfigured.push(sink);
            continue;
        }
        let json = serde_json::to_string(&correction)?;
        outbox::enqueue_in(
            &mut tx,
            &mut chain,
            sink,
            from,
            Some(s.id),
            None,
            CORRECTION_KIND,
            &correction.marker,
            &json,
        )
        .await?;
        corrected.push(sink);
    }
    let json = serde_json::to_string(&moved)?;
    let mut noted: Vec<&str> = Vec::new();
    for sink in app.sinks_for(&s.vendor, to) {
        let report = outbox::NoteKind::SessionReport;
        outbox::enqueue_in(&mut tx, &mut chain, sink, to, Some(s.id), None, report, &moved.marker, &json).await?;
        noted.push(sink);
    }
    chain.flush(&mut tx).await?;
    tx.commit().await?;

    println!("session {} ({}) moved from ticket {from} to ticket {to}", s.id, describe(&s));
    match corrected.as_slice() {
        [] => println!("  no correction on ticket {from}: no note of this session may have reached it"),
        c => println!("  correction queued on ticket {from} for: {}", c.join(", ")),
    }
    if !unconfigured.is_empty() {
        println!(
            "  no correction through {} (not configured any more): correct ticket {from} there by hand",
            unconfigured.join(", ")
        );
    }
    match noted.as_slice() {
        [] => println!("  no sink routes {} notes for ticket {to}: no note queued there", s.vendor),
        n => println!("  note queued on ticket {to} for: {}", n.join(", ")),
    }
    let d = app.deliver_pass().await?;
    println!(
        "notes: {} delivered, {} retrying, {} failed, {} dead (the daemon finishes retries; `ticketsync deliveries` lists them)",
        d.delivered + d.found_existing,
        d.retrying,
        d.failed,
        d.dead
    );
    Ok(ExitCode::SUCCESS)
}

/// The note that tells the old ticket's readers the session's note there was wrong: the
/// report's title and its identifying fields, and where the session went.
fn correction_note(report: &Note, to: &str, reason: Option<&str>, marker: String) -> Note {
    const KEEP: [&str; 5] = ["Vendor", "Session code", "Technician", "Start", "End"];
    let mut fields: Vec<Field> = report.fields.iter().filter(|f| KEEP.contains(&f.label.as_str())).cloned().collect();
    fields.push(Field { label: "Moved to ticket".into(), value: to.to_string() });
    if let Some(r) = reason {
        fields.push(Field { label: "Reason".into(), value: r.to_string() });
    }
    Note {
        title: format!("Correction: {} belongs to ticket {to}", report.title),
        fields,
        links: Vec::new(),
        body: Some(format!(
            "The note about this session on this ticket was matched to the wrong ticket. \
             The session belongs to ticket {to}; disregard that note here."
        )),
        attachments: Vec::new(),
        visibility: Visibility::Internal,
        marker,
    }
}
