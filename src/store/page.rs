//! A page of sessions from a source, and the work that shares its transaction (the store's
//! [`PageHook`]). This is the one place that holds the contract between the two halves:
//! with a hook, the page's first-seen ended sessions are inserted already marked examined
//! (so the matching pass skips them), which is only sound if the hook examines every one.

use super::sessions::{self, Upsert};
use super::{PageHook, Result, StoreError, Tx};
use crate::session::NewSession;

/// What a [`PageHook`] did with a page's first-seen sessions. The store defines it (not the
/// matcher that fills it in) so that the store names nothing of the stages above it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HookOutcome {
    /// First-seen ended sessions the hook examined: all of them, or the page fails.
    pub examined: u64,
    pub matched: u64,
    pub enqueued: u64,
}

/// Upsert a page's sessions in `tx` (one result per record, in order) and run `hook`, when
/// the store has one, on those the page inserted.
///
/// A hook that reports fewer examined sessions than the page's first-seen ended ones fails
/// the page with [`StoreError::Invalid`]: its transaction rolls back and the source fetches
/// the page again from the saved cursor, where a silent success would leave sessions that
/// were inserted marked examined and that no matching pass would ever look at.
pub async fn upsert_page(
    tx: &mut Tx<'_>,
    hook: Option<&dyn PageHook>,
    records: &[&NewSession],
    walk_id: &str,
) -> Result<(Vec<(i64, Upsert)>, HookOutcome)> {
    let examined_here = hook.is_some();
    let outcomes = sessions::upsert_many(tx, records, Some(walk_id), examined_here).await?;
    let fresh: Vec<(i64, &NewSession)> = outcomes
        .iter()
        .zip(records)
        .filter(|((_, o), _)| *o == Upsert::Inserted)
        .map(|((id, _), s)| (*id, *s))
        .collect();
    let Some(hook) = hook.filter(|_| !fresh.is_empty()) else {
        return Ok((outcomes, HookOutcome::default()));
    };
    let done = hook.fresh_sessions(tx, &fresh).await?;
    let ended = fresh.iter().filter(|(_, s)| s.ended_at.is_some()).count() as u64;
    if done.examined != ended {
        return Err(StoreError::Invalid(format!(
            "the page hook examined {} of the page's {ended} first-seen ended sessions",
            done.examined
        )));
    }
    Ok((outcomes, done))
}
