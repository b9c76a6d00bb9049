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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    /// A hook that breaks the contract: it examines only the first fresh session.
    #[derive(Debug)]
    struct ExaminesOne;

    #[async_trait::async_trait]
    impl PageHook for ExaminesOne {
        async fn fresh_sessions(&self, _tx: &mut Tx<'_>, fresh: &[(i64, &NewSession)]) -> Result<HookOutcome> {
            Ok(HookOutcome { examined: fresh.len().min(1) as u64, ..HookOutcome::default() })
        }
    }

    fn ended(ext: &str) -> NewSession {
        let start = Utc::now() - Duration::hours(2);
        NewSession {
            vendor: "teamviewer".into(),
            external_id: ext.into(),
            session_code: None,
            technician: None,
            technician_id: None,
            device: None,
            device_id: None,
            group_name: None,
            started_at: start,
            ended_at: Some(start + Duration::minutes(5)),
            notes: None,
            description: None,
            custom_api: None,
            customer_name: None,
            customer_email: None,
            raw_json: format!("{{\"id\":\"{ext}\"}}"),
        }
    }

    /// Sessions inserted marked examined that the hook did not examine would never be
    /// matched: the page fails instead (and its transaction is not committed).
    #[tokio::test]
    async fn a_hook_that_skips_a_fresh_ended_session_fails_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            super::super::Store::open(&dir.path().join("t.db"), std::time::Duration::from_secs(5)).await.unwrap();
        let (a, b) = (ended("a"), ended("b"));
        let mut tx = store.begin().await.unwrap();
        let one = upsert_page(&mut tx, Some(&ExaminesOne), &[&a], "w1").await;
        assert_eq!(one.map(|(_, h)| h.examined).ok(), Some(1), "one of one examined passes");
        let two = upsert_page(&mut tx, Some(&ExaminesOne), &[&b, &ended("c")], "w1").await;
        assert!(matches!(two, Err(StoreError::Invalid(_))), "{two:?}");
    }
}
