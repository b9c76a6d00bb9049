//! New ticket links, the pipeline's other way in: a session a launcher created for a ticket
//! (`session create`), and a link an operator made (`link`). A launcher only talks to its
//! vendor and hands the result here; the link, the re-match of sessions already stored with
//! its code, and the notes announcing the session are then committed together as the
//! pipeline's own rows, as a match commits its note.

use crate::note::Note;
use crate::sinks::routing::Route;
use crate::store::outbox::NoteKind;
use crate::store::{links, outbox, Store, StoreError};

/// A session a vendor created for a ticket, and the notes that announce it.
#[derive(Debug)]
pub struct CreatedSession<'a> {
    /// The vendor name its sessions are stored under (and routes are judged by).
    pub vendor: &'a str,
    pub ticket: &'a str,
    /// The code the vendor's session log will show; the notes hang on its link.
    pub code: &'a str,
    /// Another id of the same session that the log may show instead (Splashtop's support
    /// session id), linked to the same ticket as well when it differs from the code.
    pub also_known_as: Option<&'a str>,
    /// The vendor's answer, kept on the link: its audit event is the record of the creation.
    pub details: &'a serde_json::Value,
    /// (kind, note), queued for every sink whose route accepts the vendor and the ticket.
    pub notes: &'a [(NoteKind, &'a Note)],
}

/// Record a created session: its link(s), and its notes for the sinks `routes` accept, in
/// one transaction. A crash after the vendor call but before this commit leaves a vendor
/// session with no ticket link (recoverable with `ticketsync link`), never a note pointing
/// at an unrecorded session. The ids of the deliveries queued (a note already queued under
/// its marker is not queued twice).
pub async fn record_created(store: &Store, routes: &[Route], c: &CreatedSession<'_>) -> Result<Vec<i64>, StoreError> {
    let notes: Vec<(NoteKind, &Note, String)> = c
        .notes
        .iter()
        .map(|(kind, note)| {
            serde_json::to_string(note)
                .map(|j| (*kind, *note, j))
                .map_err(|e| StoreError::Invalid(format!("{kind} note does not serialize: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut tx = store.begin().await?;
    let link_id = links::insert(&mut tx, c.vendor, c.code, c.ticket, "created", Some(c.details), Some("cli")).await?;
    let code_norm = crate::session::normalize_code(c.code);
    super::rematch_code(&mut tx, &code_norm).await?;
    if let Some(other) = c.also_known_as.filter(|o| crate::session::normalize_code(o) != code_norm) {
        links::insert(&mut tx, c.vendor, other, c.ticket, "created", None, Some("cli")).await?;
        super::rematch_code(&mut tx, &crate::session::normalize_code(other)).await?;
    }
    let mut deliveries = Vec::new();
    // The transaction's tenant's sinks only (the store handle's tenant: `default` for
    // `session create`).
    let tenant = tx.tenant().clone();
    for route in routes.iter().filter(|r| r.serves(&tenant) && r.accepts(c.vendor, c.ticket)) {
        for (kind, note, json) in &notes {
            if let Some(id) =
                outbox::enqueue(&mut tx, &route.sink, c.ticket, None, Some(link_id), *kind, &note.marker, json).await?
            {
                deliveries.push(id);
            }
        }
    }
    tx.commit().await?;
    Ok(deliveries)
}

/// A link an operator made between a session code and a ticket, for any vendor (`*`);
/// the sessions already stored with that code are matched on the next pass.
pub async fn record_manual(store: &Store, code: &str, ticket: &str) -> Result<i64, StoreError> {
    record_manual_by(store, code, ticket, None).await
}

/// [`record_manual`] by a person (`ticketsync link` as an OS user, the console's link form):
/// the link's `created_by` is the way they came, its audit row names them.
pub async fn record_manual_by(
    store: &Store,
    code: &str,
    ticket: &str,
    actor: Option<crate::store::audit::Actor<'_>>,
) -> Result<i64, StoreError> {
    let mut tx = store.begin().await?;
    let via = actor.map_or("cli", |a| a.via);
    let id = links::insert_by(&mut tx, "*", code, ticket, "manual", None, Some(via), actor).await?;
    super::rematch_code(&mut tx, &crate::session::normalize_code(code)).await?;
    tx.commit().await?;
    Ok(id)
}
