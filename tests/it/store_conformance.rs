//! Store conformance suite: every query the rest of the code asks of the store, through the
//! store's public API only (no SQL, no pool), so that a second backend (PostgreSQL, issue
//! 17) is proven by running this same file against it. [`open`] is the one place that
//! names the backend.
//!
//! Each test drives one concern the way its caller does (a source's page commit, the
//! matcher's links, the delivery loop's outbox moves, the OAuth client's tokens, the audit
//! chain) and then checks it through the reads the operators' views use (metrics,
//! readiness, doctor, export, `audit show`, backfill's dry run, the demo's summary).

use std::collections::HashMap;
use std::path::Path;

use crate::support::TestStore;
use chrono::{Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use ticketsync::pipeline::ingest::OpenTx;
use ticketsync::session::{normalize_code, ts, NewSession};
use ticketsync::sources::Rejected;
use ticketsync::store::audit::{self, Event, Verify};
use ticketsync::store::history::{self, EventRange, ExportItem};
use ticketsync::store::outbox::{self, Outcome};
use ticketsync::store::tokens::{self, Loaded, TokenKey};
use ticketsync::store::{cursors, links, reads, sessions, Store};

/// The backend under test: SQLite in `dir`, or, with `TICKETSYNC_TEST_STORE` set to a
/// PostgreSQL URL (`postgres://postgres@127.0.0.1/postgres`), a throwaway database created
/// on that server for this test and dropped after it ([`crate::support::TestDb`]). Every
/// test below runs unchanged on either.
async fn open(dir: &Path) -> TestStore {
    crate::support::test_store(dir).await
}

fn session(vendor: &str, ext: &str, code: &str, ended: bool) -> NewSession {
    let start = Utc::now() - Duration::hours(3);
    NewSession {
        vendor: vendor.into(),
        external_id: ext.into(),
        session_code: Some(code.into()),
        technician: Some("Ana".into()),
        technician_id: None,
        device: Some("PC-7".into()),
        device_id: None,
        group_name: None,
        started_at: start,
        ended_at: ended.then(|| start + Duration::minutes(20)),
        notes: Some("printer".into()),
        description: None,
        custom_api: None,
        customer_name: None,
        customer_email: None,
        raw_json: format!("{{\"id\":\"{ext}\",\"code\":\"{code}\",\"ended\":{ended}}}"),
    }
}

fn rejected(raw: &str) -> Rejected {
    Rejected { external_id: Some("bad-1".into()), reason: "no start date".into(), raw: raw.into() }
}

/// Write one page as a source does: sessions, quarantined records and the cursor in one
/// transaction; `complete`: the walk ended here, over [from, to).
async fn page(
    store: &Store,
    records: &[Result<NewSession, Rejected>],
    walk: &str,
    cursor: &str,
    complete: Option<(&str, &str)>,
) -> ticketsync::sources::PollStats {
    let mut tx = OpenTx::begin(store).await.unwrap();
    tx.write(store, "teamviewer", records, walk, cursor, complete).await.unwrap();
    tx.commit().await.unwrap()
}

fn assert_chain_ok(v: Verify) -> u64 {
    match v {
        Verify::Ok { rows, .. } => rows,
        other => panic!("audit chain not intact: {other:?}"),
    }
}

#[tokio::test]
async fn sessions_page_commit_cursor_quarantine_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (a, b, running) = (
        session("teamviewer", "a", "s11", true),
        session("teamviewer", "b", "s22", true),
        session("teamviewer", "r", "s33", false),
    );

    let first = page(
        &store,
        &[Ok(a.clone()), Ok(b.clone()), Ok(running.clone()), Err(rejected("{\"id\":\"bad-1\"}"))],
        "w1",
        "{\"page\":1}",
        None,
    )
    .await;
    assert_eq!((first.pages, first.records, first.inserted, first.updated, first.quarantined), (1, 4, 3, 0, 1));
    assert_eq!(cursors::load(&store, "teamviewer").await.unwrap().as_deref(), Some("{\"page\":1}"));
    assert_eq!(cursors::load(&store, "splashtop").await.unwrap(), None);
    assert_eq!(sessions::count(&store).await.unwrap(), 3);
    assert_eq!(reads::quarantine_reasons(&store).await.unwrap(), ["no start date"]);

    // Backfill's dry run compares a record's hash with the stored one.
    let stored = reads::content_hash(&store, "teamviewer", "a").await.unwrap();
    assert_eq!(stored, Some(hex::encode(Sha256::digest(a.raw_json.as_bytes()))));
    assert_eq!(reads::content_hash(&store, "teamviewer", "zz").await.unwrap(), None);

    // The matcher's reads: ended sessions wait; the running one does not, but it is unmatched
    // and it holds the next poll window open.
    let waiting: Vec<String> =
        sessions::to_match_read(&store, 0, 10).await.unwrap().into_iter().map(|s| s.external_id).collect();
    assert_eq!(waiting, ["a", "b"]);
    let after_first = sessions::to_match_read(&store, 0, 1).await.unwrap()[0].id;
    let rest: Vec<String> =
        sessions::to_match_read(&store, after_first, 10).await.unwrap().into_iter().map(|s| s.external_id).collect();
    assert_eq!(rest, ["b"], "a pass resumes after the last id it saw");
    let ended: Vec<String> =
        sessions::unmatched_ended(&store, 0, 10).await.unwrap().into_iter().map(|s| s.external_id).collect();
    assert_eq!(ended, ["a", "b"]);
    let all = sessions::unmatched_all(&store).await.unwrap();
    assert_eq!(all.len(), 3);
    // `unmatched --limit`: the most recently started, oldest first.
    let recent = sessions::unmatched_recent(&store, 2).await.unwrap();
    let ids = |v: &[sessions::StoredSession]| v.iter().map(|s| s.external_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&recent), ids(&all[1..]));
    let min_start = ts(Utc::now() - Duration::days(1));
    assert_eq!(
        sessions::earliest_open_start(&store, "teamviewer", &min_start).await.unwrap(),
        Some(ts(running.started_at))
    );

    // The same page again changes nothing (the quarantined record is not stored twice);
    // one changed record is an update.
    let mut b2 = b.clone();
    b2.notes = Some("printer, then scanner".into());
    b2.raw_json = b2.raw_json.replace('}', ",\"v\":2}");
    let again =
        page(&store, &[Ok(a.clone()), Ok(b2), Err(rejected("{\"id\":\"bad-1\"}"))], "w1", "{\"page\":2}", None).await;
    assert_eq!((again.inserted, again.updated), (0, 1));
    assert_eq!(reads::quarantine_reasons(&store).await.unwrap().len(), 1);

    // A complete walk that no longer returns `b` (nor the running one) marks them vanished.
    let from = ts(Utc::now() - Duration::days(1));
    let to = ts(Utc::now());
    let walked = page(&store, &[Ok(a)], "w2", "{\"page\":3}", Some((&from, &to))).await;
    assert_eq!(walked.vanished, 2);
    assert_eq!(sessions::unmatched_all(&store).await.unwrap().len(), 1, "vanished sessions are not listed");
    assert_eq!(sessions::count(&store).await.unwrap(), 3, "never deleted");

    // Readiness and metrics read each source's last success: a complete walk is one.
    let polls = reads::source_polls(&store).await.unwrap();
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].source, "teamviewer");
    assert!(polls[0].last_success_at.is_some());

    assert_chain_ok(audit::verify(&store).await.unwrap());
}

#[tokio::test]
async fn cursor_errors_are_recorded_without_losing_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // An error before any page: the source is known, with no success and an empty cursor.
    cursors::record_error(&store, "splashtop", "HTTP 503").await.unwrap();
    assert_eq!(cursors::load(&store, "splashtop").await.unwrap().as_deref(), Some("{}"));
    let polls = reads::source_polls(&store).await.unwrap();
    assert_eq!((polls[0].source.as_str(), polls[0].last_success_at.as_deref()), ("splashtop", None));

    page(&store, &[], "w1", "{\"at\":1}", Some(("2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"))).await;
    cursors::record_error(&store, "teamviewer", "timeout").await.unwrap();
    assert_eq!(cursors::load(&store, "teamviewer").await.unwrap().as_deref(), Some("{\"at\":1}"));
    let tv = reads::source_polls(&store).await.unwrap().into_iter().find(|p| p.source == "teamviewer").unwrap();
    assert!(tv.last_success_at.is_some(), "an error keeps the last success");
}

#[tokio::test]
async fn links_matches_and_rematch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    page(&store, &[Ok(session("splashtop", "x1", "S119-457", true))], "w1", "{}", None).await;
    let s = sessions::to_match_read(&store, 0, 10).await.unwrap().remove(0);

    // The matcher examines the session: no link yet, so it is marked checked, unmatched.
    let mut tx = store.begin().await.unwrap();
    assert!(links::for_codes(&mut tx, &["s119457"]).await.unwrap().is_empty());
    sessions::mark_match_checked(&mut tx, &[s.id]).await.unwrap();
    tx.commit().await.unwrap();
    assert!(sessions::to_match_read(&store, 0, 10).await.unwrap().is_empty());

    // A manual link for its code makes it eligible again, in the link's transaction.
    let mut tx = store.begin().await.unwrap();
    let link = links::insert(&mut tx, "*", "s119 457", "42", "manual", None, Some("cli")).await.unwrap();
    links::rematch_code(&mut tx, &normalize_code("s119 457")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sessions::to_match_read(&store, 0, 10).await.unwrap().len(), 1);

    let mut tx = store.begin().await.unwrap();
    let found = links::for_codes(&mut tx, &["s119457", "nope"]).await.unwrap();
    assert_eq!(found.len(), 1);
    let l = &found["s119457"][0];
    assert_eq!((l.id, l.ticket_id.as_str(), l.kind.as_str()), (link, "42", "manual"));
    assert!(links::record_match(&mut tx, s.id, "splashtop", "42", "link", "manual link").await.unwrap());
    assert!(
        !links::record_match(&mut tx, s.id, "splashtop", "43", "link", "again").await.unwrap(),
        "one match a session"
    );
    sessions::mark_match_checked(&mut tx, &[s.id]).await.unwrap();
    tx.commit().await.unwrap();
    assert!(sessions::to_match_read(&store, 0, 10).await.unwrap().is_empty());
    assert!(sessions::unmatched_all(&store).await.unwrap().is_empty());

    // The demo's summary and `audit show` read the match through the views.
    let m = reads::matches_by_ticket(&store).await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].ticket_id.as_str(), m[0].vendor.as_str(), m[0].code.as_str(), m[0].rule.as_str()),
        ("42", "splashtop", "S119-457", "link")
    );
    let r = history::ticket_record(&store, "42").await.unwrap();
    assert_eq!(r.sessions.len(), 1);
    assert_eq!((r.sessions[0].external_id.as_str(), r.sessions[0].rule.as_str()), ("x1", "link"));
    assert!(r.history.iter().any(|e| e.kind == "session_matched"));
    // The session's page row shows as its `session_seen` event (the views of migration
    // 0007), with the detail text SQLite's json_object writes, on either backend.
    let seen: Vec<&str> =
        r.history.iter().filter(|e| e.kind == "session_seen").map(|e| e.detail_json.as_str()).collect();
    assert_eq!(seen, [r#"{"ended":true,"external_id":"x1","session_code":"S119-457"}"#]);
    assert!(history::ticket_record(&store, "9999").await.unwrap().is_empty());

    // A meeting source polls by `created` links whose session has not ended.
    let mut tx = store.begin().await.unwrap();
    let details = serde_json::json!({"join_url": "https://example.invalid/j/1"});
    let created = links::insert(&mut tx, "zoom", "8812", "77", "created", Some(&details), Some("cli")).await.unwrap();
    tx.commit().await.unwrap();
    let since = ts(Utc::now() - Duration::hours(1));
    let open_links = links::open_created(&store, "zoom", &since).await.unwrap();
    assert_eq!(open_links.len(), 1);
    assert_eq!((open_links[0].id, open_links[0].ticket_id.as_str()), (created, "77"));
    assert_eq!(open_links[0].details.as_ref(), Some(&details));
    page(&store, &[Ok(session("zoom", "m1", "8812", true))], "w1", "{}", None).await;
    assert!(links::open_created(&store, "zoom", &since).await.unwrap().is_empty(), "its meeting ended");
    // Backfill re-reads the links of a range, ended or not: [from, to).
    let until = ts(Utc::now() + Duration::hours(1));
    let in_range = links::created_between(&store, "zoom", &since, &until).await.unwrap();
    assert_eq!(in_range.iter().map(|l| l.id).collect::<Vec<_>>(), [created]);
    assert_eq!(in_range[0].details.as_ref(), Some(&details));
    assert!(links::created_between(&store, "zoom", &since, &since).await.unwrap().is_empty(), "to is exclusive");
    assert!(links::created_between(&store, "teamviewer", &since, &until).await.unwrap().is_empty());

    assert_chain_ok(audit::verify(&store).await.unwrap());
}

/// `ticketsync relink`: the session named by report id, id or code; its match read and
/// moved (audited) in one transaction; its reports for the old ticket, and whether each may
/// be on the ticket; the relink count that numbers the new markers.
#[tokio::test]
async fn relink_reads_and_moves_a_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    page(
        &store,
        &[
            Ok(session("teamviewer", "Ab-1", "s100-200", true)),
            Ok(session("teamviewer", "b2", "s300", true)),
            Ok(session("splashtop", "c3", "s300", true)),
        ],
        "w1",
        "{}",
        None,
    )
    .await;
    let all = sessions::to_match_read(&store, 0, 10).await.unwrap();
    let (a, b) = (all[0].id, all[1].id);
    let names = |key: String| {
        let store = store.clone();
        async move { sessions::named(&store, &key, 10).await.unwrap().into_iter().map(|s| s.id).collect::<Vec<_>>() }
    };
    assert_eq!(names("Ab-1".into()).await, [a], "by report id");
    assert_eq!(
        names("ab-1".into()).await,
        Vec::<i64>::new(),
        "a report id is matched exactly or lower-cased, not folded"
    );
    assert_eq!(names("S100 200".into()).await, [a], "by normalized code");
    assert_eq!(names("s300".into()).await.len(), 2, "a code two sessions share");
    assert_eq!(names(b.to_string()).await, [b], "by id");
    assert!(names("zz".into()).await.is_empty() && names(" - ".into()).await.is_empty());

    let mut tx = store.begin().await.unwrap();
    assert!(links::record_match(&mut tx, a, "teamviewer", "10", "custom_api", "custom_api.ticket_id").await.unwrap());
    assert_eq!(links::match_of(&mut tx, b).await.unwrap(), None);
    let queued = outbox::enqueue(&mut tx, "redmine", "10", Some(a), None, outbox::NoteKind::SessionReport, "m-a", "{}")
        .await
        .unwrap();
    let refused =
        outbox::enqueue(&mut tx, "webhook", "10", Some(a), None, outbox::NoteKind::SessionReport, "m-a", "{}")
            .await
            .unwrap();
    outbox::enqueue(&mut tx, "redmine", "10", Some(a), None, outbox::NoteKind::SessionLinks, "m-l", "{}")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The webhook's note dies at its first attempt: it never reached the ticket.
    let claimed = outbox::claim_due(&store, 10).await.unwrap();
    let w = claimed.iter().find(|d| Some(d.id) == refused).unwrap();
    outbox::finish(&store, w, &Outcome::Dead { error: "HTTP 404".into() }).await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let m = links::match_of(&mut tx, a).await.unwrap().unwrap();
    assert_eq!((m.ticket_id.as_str(), m.rule.as_str()), ("10", "custom_api"));
    assert_eq!(links::relinks_of(&mut tx, a).await.unwrap(), 0);
    let reports = outbox::session_reports_in(&mut tx, a, "10").await.unwrap();
    let seen: Vec<(Option<i64>, bool)> = reports.iter().map(|q| (Some(q.delivery.id), q.may_be_on_ticket)).collect();
    assert_eq!(seen, [(queued, true), (refused, false)], "reports only, in queue order");
    assert!(outbox::session_reports_in(&mut tx, a, "11").await.unwrap().is_empty());

    let mut chain = audit::Chain::load(&mut tx).await.unwrap();
    let r = links::Relink {
        session_id: a,
        vendor: "teamviewer",
        from_ticket: "10",
        to_ticket: "11",
        number: 1,
        by: Some("ana"),
        reason: Some("wrong ticket"),
    };
    assert!(links::move_match_in(&mut tx, &mut chain, &r).await.unwrap());
    assert!(!links::move_match_in(&mut tx, &mut chain, &r).await.unwrap(), "no longer on ticket 10");
    chain.flush(&mut tx).await.unwrap();
    tx.commit().await.unwrap();

    let m = links::match_for(&store, a).await.unwrap().unwrap();
    assert_eq!((m.ticket_id.as_str(), m.rule.as_str(), m.rule_detail.as_deref()), ("11", "relink", Some("from 10")));
    let mut tx = store.begin().await.unwrap();
    assert_eq!(links::relinks_of(&mut tx, a).await.unwrap(), 1);
    tx.rollback().await.unwrap();
    let moved = history::ticket_record(&store, "11").await.unwrap();
    assert_eq!(moved.sessions.len(), 1);
    assert_eq!(moved.sessions[0].rule, "relink");
    let relinked = moved.history.iter().find(|e| e.kind == "session_relinked").expect("session_relinked");
    let detail: serde_json::Value = serde_json::from_str(&relinked.detail_json).unwrap();
    assert_eq!(detail, serde_json::json!({"from": "10", "relink": 1, "by": "ana", "reason": "wrong ticket"}));
    let old = history::ticket_record(&store, "10").await.unwrap();
    assert!(old.sessions.is_empty());
    assert!(old.history.iter().any(|e| e.kind == "session_unlinked" && e.detail_json.contains("\"to\":\"11\"")));
    assert_chain_ok(audit::verify(&store).await.unwrap());
}

/// Queue one note per (ticket, marker) in one transaction.
#[tokio::test]
async fn leases_grant_one_holder_fence_writes_and_change_hands_after_expiry() {
    use ticketsync::store::leases;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let long = std::time::Duration::from_secs(60);

    let a = leases::acquire(&store, "source:teamviewer", "host-a:1", long).await.unwrap().expect("free: granted");
    assert_eq!((a.holder.as_str(), a.token), ("host-a:1", 1));
    assert_eq!(leases::acquire(&store, "source:teamviewer", "host-b:2", long).await.unwrap(), None, "held by a");
    let again = leases::acquire(&store, "source:teamviewer", "host-a:1", long).await.unwrap().expect("renewed");
    assert_eq!(again.token, 1, "a renewal keeps the token");
    assert!(again.expires_at_ms >= a.expires_at_ms);
    let other = leases::acquire(&store, "source:zoom", "host-b:2", long).await.unwrap().expect("another name is free");
    assert_eq!(other.token, 1);

    // The holder's page commit is fenced with its lease.
    store.fences().hold("teamviewer", a.clone(), long);
    page(&store, &[Ok(session("teamviewer", "L1", "s1", true))], "w1", "{\"o\":1}", None).await;
    assert_eq!(cursors::load(&store, "teamviewer").await.unwrap().as_deref(), Some("{\"o\":1}"));

    // a's lease expires (released here, as at shutdown) and b takes it: a new token.
    leases::release(&store, &a).await.unwrap();
    let b = leases::acquire(&store, "source:teamviewer", "host-b:2", long).await.unwrap().expect("expired: taken over");
    assert_eq!((b.holder.as_str(), b.token), ("host-b:2", 2));

    // a, which still believes it holds token 1, cannot write a page any more: nothing of it lands.
    let mut tx = OpenTx::begin(&store).await.unwrap();
    let records = [Ok(session("teamviewer", "L2", "s2", true))];
    let err = tx.write(&store, "teamviewer", &records, "w2", "{\"o\":2}", None).await.expect_err("fenced out");
    drop(tx);
    assert!(err.to_string().contains("held by another instance"), "{err}");
    assert_eq!(cursors::load(&store, "teamviewer").await.unwrap().as_deref(), Some("{\"o\":1}"), "cursor unmoved");
    assert!(sessions::named(&store, "L2", 5).await.unwrap().is_empty(), "the page rolled back");
    // Keys of one source's accounts are guarded by the source's lease.
    assert_eq!(store.fences().for_cursor("teamviewer:acme").map(|(l, _)| l.token), Some(1));
    assert_eq!(store.fences().drop_key("teamviewer").map(|l| l.token), Some(1));
    assert!(store.fences().for_cursor("teamviewer").is_none());

    let all = leases::list(&store).await.unwrap();
    let held: Vec<(&str, &str, i64)> = all.iter().map(|l| (l.name.as_str(), l.holder.as_str(), l.token)).collect();
    assert_eq!(held, vec![("source:teamviewer", "host-b:2", 2), ("source:zoom", "host-b:2", 1)]);
}

async fn enqueue(store: &Store, sink: &str, ticket: &str, marker: &str) -> Option<i64> {
    let mut tx = store.begin().await.unwrap();
    let id =
        outbox::enqueue(&mut tx, sink, ticket, None, None, outbox::NoteKind::SessionReport, marker, "{\"body\":\"n\"}")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn outbox_claim_ack_retry_fail_dead_requeue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let d1 = enqueue(&store, "redmine", "1", "m1").await.unwrap();
    let d2 = enqueue(&store, "redmine", "1", "m2").await.unwrap();
    let d3 = enqueue(&store, "webhook", "2", "m3").await.unwrap();
    assert_eq!(enqueue(&store, "redmine", "1", "m1").await, None, "a marker is queued once per sink");
    let mut sinks = outbox::sinks_with_heads(&store).await.unwrap();
    sinks.sort();
    assert_eq!(sinks, ["redmine", "webhook"]);
    assert!(outbox::next_due_at(&store).await.unwrap().is_some());

    // One claim per ticket: d2 waits behind d1 on the same ticket.
    let mut claimed: Vec<i64> = outbox::claim_due(&store, 10).await.unwrap().into_iter().map(|d| d.id).collect();
    claimed.sort();
    assert_eq!(claimed, [d1, d3]);
    let sending = outbox::get(&store, d1).await.unwrap().unwrap();
    assert_eq!((sending.state.as_str(), sending.attempts), ("sending", 1));
    assert!(outbox::claim_due(&store, 10).await.unwrap().is_empty(), "nothing claimed twice");

    // A crash while sending: recovered to pending at start, claimable again.
    assert_eq!(outbox::recover_sending(&store).await.unwrap(), 2);
    let again = outbox::claim_due(&store, 10).await.unwrap();
    let d1_row = again.iter().find(|d| d.id == d1).unwrap().clone();
    let d3_row = again.iter().find(|d| d.id == d3).unwrap().clone();
    assert_eq!(d1_row.attempts, 2, "the attempt count stays, so the next try scans for the marker");

    // d1 retries (due now), d3 fails.
    let past = ts(Utc::now() - Duration::seconds(1));
    outbox::finish(
        &store,
        &d1_row,
        &Outcome::Retry { next_attempt_at: past, error: "HTTP 502".into(), ambiguous: false },
    )
    .await
    .unwrap();
    outbox::finish(&store, &d3_row, &Outcome::Failed { error: "HTTP 422 ticket closed".into() }).await.unwrap();
    let retried = outbox::get(&store, d1).await.unwrap().unwrap();
    assert_eq!((retried.state.as_str(), retried.last_error.as_deref()), ("pending", Some("HTTP 502")));

    // d1 is delivered; then d2 (its ticket's next note) becomes claimable and dies.
    let d1_row = outbox::claim_due(&store, 10).await.unwrap().remove(0);
    assert_eq!(d1_row.id, d1);
    outbox::finish(&store, &d1_row, &Outcome::Delivered { remote_ref: "journal:9".into(), found_existing: false })
        .await
        .unwrap();
    let d2_row = outbox::claim_due(&store, 10).await.unwrap().remove(0);
    assert_eq!(d2_row.id, d2);
    outbox::finish(&store, &d2_row, &Outcome::Dead { error: "HTTP 404".into() }).await.unwrap();

    let state = |id| {
        let store = store.clone();
        async move { outbox::get(&store, id).await.unwrap().unwrap() }
    };
    let delivered = state(d1).await;
    assert_eq!((delivered.state.as_str(), delivered.remote_ref.as_deref()), ("delivered", Some("journal:9")));
    assert!(delivered.delivered_at.is_some());
    assert_eq!(state(d2).await.state, "dead");
    assert_eq!(state(d3).await.state, "failed");
    assert!(outbox::get(&store, 999).await.unwrap().is_none());

    let ids = |state: Option<&'static str>| {
        let store = store.clone();
        async move { outbox::list(&store, state).await.unwrap().into_iter().map(|d| d.id).collect::<Vec<_>>() }
    };
    assert_eq!(ids(None).await, [d1, d2, d3]);
    assert_eq!(ids(Some("dead")).await, [d2]);
    assert_eq!(
        outbox::counts_by_state(&store).await.unwrap(),
        [("dead".to_string(), 1), ("delivered".to_string(), 1), ("failed".to_string(), 1)]
    );
    assert_eq!(outbox::next_due_at(&store).await.unwrap(), None);
    assert!(outbox::sinks_with_heads(&store).await.unwrap().is_empty());

    // Metrics: counts by sink and state, and no backlog left.
    let mut counts: Vec<(String, String, i64)> = reads::deliveries_by_sink_state(&store)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.sink, c.state, c.count))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("redmine".into(), "dead".into(), 1),
            ("redmine".into(), "delivered".into(), 1),
            ("webhook".into(), "failed".into(), 1)
        ]
    );
    assert!(reads::oldest_waiting_by_sink(&store).await.unwrap().iter().all(|b| b.oldest_waiting_at.is_none()));

    // The operator requeues the failed and the dead one; a delivered one stays.
    assert_eq!(outbox::requeue(&store, d3).await.unwrap().as_deref(), Some("pending"));
    assert_eq!(outbox::requeue(&store, d2).await.unwrap().as_deref(), Some("pending"));
    assert_eq!(outbox::requeue(&store, d1).await.unwrap().as_deref(), Some("delivered"));
    assert_eq!(outbox::requeue(&store, 999).await.unwrap(), None);
    let backlog = reads::oldest_waiting_by_sink(&store).await.unwrap();
    assert!(backlog.iter().all(|b| b.oldest_waiting_at.is_some()), "{backlog:?}");

    // `audit show` lists the ticket's deliveries with every attempt.
    let r = history::ticket_record(&store, "1").await.unwrap();
    assert_eq!(r.deliveries.iter().map(|d| d.delivery_id).collect::<Vec<_>>(), [d1, d2]);
    assert_eq!(r.attempts.iter().filter(|a| a.delivery_id == d1).count(), 3);

    assert_chain_ok(audit::verify(&store).await.unwrap());
}

#[tokio::test]
async fn a_stale_claim_is_taken_over_and_its_late_outcome_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    enqueue(&store, "redmine", "42", "m-takeover").await.unwrap();
    let first = outbox::claim_due(&store, 10).await.unwrap().pop().expect("claimed");
    assert_eq!((first.state.as_str(), first.attempts), ("sending", 1));
    // A claim younger than the cutoff is someone's request in flight: left alone.
    let past = ts(Utc::now() - Duration::hours(1));
    assert_eq!(outbox::recover_stale_sending(&store, &past).await.unwrap(), 0);
    assert!(outbox::claim_due(&store, 10).await.unwrap().is_empty(), "still sending");
    // Older than the cutoff: the instance that claimed it is gone; another takes it over.
    let future = ts(Utc::now() + Duration::hours(1));
    assert_eq!(outbox::recover_stale_sending(&store, &future).await.unwrap(), 1);
    let second = outbox::claim_due(&store, 10).await.unwrap().pop().expect("claimed again");
    assert_eq!((second.id, second.attempts), (first.id, 2));
    // The first claimer answers late: dropped, the take-over's claim stands.
    let delivered = Outcome::Delivered { remote_ref: "late".into(), found_existing: false };
    outbox::finish(&store, &first, &delivered).await.unwrap();
    let now = outbox::get(&store, first.id).await.unwrap().unwrap();
    assert_eq!((now.state.as_str(), now.attempts, now.remote_ref), ("sending", 2, None));
    let found = Outcome::Delivered { remote_ref: "j-1".into(), found_existing: true };
    outbox::finish(&store, &second, &found).await.unwrap();
    let done = outbox::get(&store, first.id).await.unwrap().unwrap();
    assert_eq!((done.state.as_str(), done.remote_ref.as_deref()), ("delivered", Some("j-1")));
}

#[tokio::test]
async fn grouped_claims_and_the_pipelined_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for m in ["g1", "g2", "g3"] {
        enqueue(&store, "zendesk", "5", m).await.unwrap();
    }
    enqueue(&store, "zendesk", "6", "h1").await.unwrap();
    // A batching sink takes a ticket's due notes in one group.
    let batch = HashMap::from([("zendesk".to_string(), 10usize)]);
    let groups = outbox::claim_due_grouped(&store, 10, &batch).await.unwrap();
    let mut sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 3]);

    // One step records the outcomes and claims again (nothing left to claim).
    let finished: Vec<(outbox::Delivery, Outcome)> = groups
        .into_iter()
        .flatten()
        .map(|d| (d, Outcome::Delivered { remote_ref: "c".into(), found_existing: true }))
        .collect();
    let claim = outbox::SinkClaim { sink: "zendesk", groups: 4, max_batch: 10 };
    let next = outbox::finish_and_claim(&store, &finished, &[claim], &ts(Utc::now())).await.unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].is_empty());
    let delivered = outbox::list(&store, Some("delivered")).await.unwrap();
    assert_eq!(delivered.len(), 4);
    // `deliveries --limit`: the most recent, oldest first, in the state asked for.
    let recent: Vec<i64> =
        outbox::list_recent(&store, Some("delivered"), 2).await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(recent, delivered[2..].iter().map(|d| d.id).collect::<Vec<_>>());
    assert!(outbox::list_recent(&store, Some("dead"), 2).await.unwrap().is_empty());
    assert_chain_ok(audit::verify(&store).await.unwrap());
}

#[tokio::test]
async fn tokens_save_load_discard_and_oauth_states() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let key = TokenKey::derive("teamviewer", &SecretString::from("client-secret".to_string()));
    assert!(tokens::load(&store, "teamviewer", &key).await.unwrap().is_none());
    assert!(matches!(tokens::load_checked(&store, "teamviewer", &key).await.unwrap(), Loaded::Missing));

    let (access, refresh) = (SecretString::from("acc-1".to_string()), SecretString::from("ref-1".to_string()));
    let g1 = tokens::save(
        &store,
        "teamviewer",
        &key,
        &access,
        Some(&refresh),
        "2030-01-01T00:00:00.000Z",
        Some("2030-06-01T00:00:00.000Z"),
        "authorize",
    )
    .await
    .unwrap();
    let t = tokens::load(&store, "teamviewer", &key).await.unwrap().unwrap();
    assert_eq!(t.access.as_ref().map(|s| s.expose_secret().to_string()).as_deref(), Some("acc-1"));
    assert_eq!(t.refresh.as_ref().map(|s| s.expose_secret().to_string()).as_deref(), Some("ref-1"));
    assert_eq!(t.generation, g1);

    // A refresh without a new refresh token keeps the stored one; the generation moves.
    let g2 = tokens::save(
        &store,
        "teamviewer",
        &key,
        &SecretString::from("acc-2".to_string()),
        None,
        "2030-01-02T00:00:00.000Z",
        None,
        "refresh",
    )
    .await
    .unwrap();
    assert!(g2 > g1);
    let (generation, sealed_refresh) = tokens::stored_refresh_enc(&store, "teamviewer").await.unwrap().unwrap();
    assert_eq!(generation, g2);
    assert_eq!(key.decrypt(&sealed_refresh.unwrap()).unwrap().expose_secret(), "ref-1");
    match tokens::load_checked(&store, "teamviewer", &key).await.unwrap() {
        Loaded::Tokens(t) => {
            assert_eq!(t.access.unwrap().expose_secret(), "acc-2");
            assert!(t.updated_at.is_some());
        }
        _ => panic!("tokens expected"),
    }

    // A conditional save (a replayed journal) never overwrites a newer generation.
    let stale = tokens::Sealed::new("teamviewer", &key, &access, None, "2029-01-01T00:00:00.000Z", None, "journal");
    assert_eq!(tokens::save_sealed(&store, &stale, Some(g1)).await.unwrap(), None);

    // doctor and metrics read the expiry dates, stored in clear.
    let e = reads::token_expiry(&store, "teamviewer").await.unwrap().unwrap();
    assert_eq!(
        (e.access_expires_at.as_deref(), e.refresh_expires_at.as_deref()),
        (Some("2030-01-02T00:00:00.000Z"), Some("2030-06-01T00:00:00.000Z"))
    );
    assert!(reads::token_expiry(&store, "zoom:helpdesk").await.unwrap().is_none());
    assert_eq!(reads::token_expiries(&store).await.unwrap(), [e]);

    // Another client secret cannot open the row: reported, then discarded by generation.
    let other = TokenKey::derive("teamviewer", &SecretString::from("rotated-secret".to_string()));
    let Loaded::Undecryptable { generation } = tokens::load_checked(&store, "teamviewer", &other).await.unwrap() else {
        panic!("undecryptable expected")
    };
    assert!(!tokens::discard(&store, "teamviewer", generation - 1, "stale generation").await.unwrap());
    assert!(tokens::discard(&store, "teamviewer", generation, "client secret changed").await.unwrap());
    assert!(tokens::load(&store, "teamviewer", &key).await.unwrap().is_none());

    // Authorization `state`s: issued per provider, consumed once.
    tokens::save_state(&store, "zoom:helpdesk", "st-1").await.unwrap();
    assert!(!tokens::take_state(&store, "teamviewer", "st-1").await.unwrap(), "another provider's state");
    tokens::save_state(&store, "zoom:helpdesk", "st-2").await.unwrap();
    assert!(tokens::take_fresh_state(&store, "zoom:helpdesk", "st-2").await.unwrap());
    assert!(!tokens::take_fresh_state(&store, "zoom:helpdesk", "st-2").await.unwrap(), "consumed");

    assert_chain_ok(audit::verify(&store).await.unwrap());
}

#[tokio::test]
async fn audit_append_head_verify_export_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert_eq!(audit::head(&store).await.unwrap(), format!("0:{}", audit::GENESIS));
    assert_eq!(reads::audit_rows(&store).await.unwrap(), 0);
    assert_eq!(audit::key_fits(&store, None).await.unwrap().unwrap(), None);

    let mut tx = store.begin().await.unwrap();
    let first =
        audit::append(&mut tx, Event { kind: "test_started", vendor: Some("teamviewer"), ..Default::default() })
            .await
            .unwrap();
    let second =
        audit::append(&mut tx, Event { kind: "test_note", ticket_id: Some("7"), ..Default::default() }).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(second, first + 1);
    // A rolled-back append leaves no row.
    let mut tx = store.begin().await.unwrap();
    audit::append(&mut tx, Event { kind: "rolled_back", ..Default::default() }).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(reads::audit_rows(&store).await.unwrap(), second);

    let head = audit::head(&store).await.unwrap();
    let (head_id, head_hash) = audit::parse_head(&head).unwrap();
    assert_eq!(head_id, second);
    assert_eq!(assert_chain_ok(audit::verify(&store).await.unwrap()), second as u64);

    // The export reads the head and the rows from one snapshot, in id order.
    let mut got_head = None;
    let mut events = Vec::new();
    let range = EventRange { from: "2000-01-01T00:00:00.000Z", to: "2100-01-01T00:00:00.000Z", vendor: None };
    history::export_events(&store, range, |item| {
        match item {
            ExportItem::Head(h) => got_head = Some(h),
            ExportItem::Event(e) => events.push(e.clone()),
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(got_head, Some(Some((head_id, head_hash.clone()))));
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["test_started", "test_note"]);
    assert_eq!(events.last().unwrap().hash, head_hash);
    assert!(events.iter().all(|e| e.hash_ok()), "each row re-hashes on its own");

    // By vendor: the event's own vendor only here (no sessions); an empty range has the head.
    let mut kinds = Vec::new();
    let by_vendor = EventRange { vendor: Some("teamviewer"), ..range };
    history::export_events(&store, by_vendor, |item| {
        if let ExportItem::Event(e) = item {
            kinds.push(e.kind.clone());
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(kinds, ["test_started"]);
    let mut n = 0;
    let empty = EventRange { from: "2000-01-01T00:00:00.000Z", to: "2000-01-02T00:00:00.000Z", vendor: None };
    history::export_events(&store, empty, |item| {
        n += 1;
        assert!(matches!(item, ExportItem::Head(Some(_))));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(n, 1);

    // A caller's error stops the stream and comes back.
    let err = history::export_events(&store, range, |_| Err(ticketsync::store::StoreError::Invalid("stop".into())))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "stop");
}

#[tokio::test]
async fn schema_doctor_and_metrics_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let latest = ticketsync::store::latest_schema_version();
    assert!(latest > 0);
    assert_eq!(store.schema_version().await.unwrap(), Some(latest), "opened means migrated");
    // SQLite's PRAGMA checks; PostgreSQL has none to report.
    let check = (store.dialect() == ticketsync::store::Dialect::Sqlite).then(|| "ok".to_string());
    let h = reads::database_health(&store).await.unwrap();
    assert_eq!((h.quick_check.clone(), h.schema_version, h.audit_rows), (check.clone(), Some(latest), 0));
    assert_eq!(store.integrity_check().await.unwrap(), check);

    // The metrics scrape reads every gauge's query (configured sinks without rows too).
    enqueue(&store, "redmine", "3", "k1").await.unwrap();
    ticketsync::metrics::refresh_from_store(&store, &["redmine".to_string(), "glpi".to_string()]).await.unwrap();
    let backlog = reads::oldest_waiting_by_sink(&store).await.unwrap();
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].sink, "redmine");
    assert!(backlog[0].oldest_waiting_at.is_some());

    // A read-only open (auditors' commands) answers the same reads and keeps the marker key.
    let key = store.marker_key().bytes().to_vec();
    store.close().await;
    let ro = Store::connect_read_only(&store.db.url, None).await.unwrap();
    assert_eq!(ro.schema_version().await.unwrap(), Some(latest));
    assert_eq!(reads::database_health(&ro).await.unwrap().audit_rows, reads::audit_rows(&ro).await.unwrap());
    assert_eq!(outbox::list(&ro, None).await.unwrap().len(), 1);
    assert_eq!(ro.marker_key().bytes(), key, "notes keep one marker key across opens");
    ro.close().await;
}

/// Every statement lives in the store crate (issue 16, point 5): a `sqlx::` path anywhere
/// else means SQL, a row type or a pool outside the store, which a second backend would not
/// see. The manifests say the same: only `crates/store` depends on sqlx or rusqlite (the
/// binary has them as dev-dependencies, for the tests' raw SQL).
#[test]
fn no_sqlx_outside_the_store() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("crates/store") {
                    walk(&path, found);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if line.contains("sqlx::") {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    walk(&root.join("src"), &mut found);
    walk(&root.join("crates"), &mut found);
    assert!(found.is_empty(), "sqlx outside crates/store:\n{}", found.join("\n"));
    for (krate, deps) in workspace_dependencies() {
        for db in ["sqlx", "rusqlite"] {
            assert!(krate == "ticketsync-store" || !deps.contains(&db.to_string()), "{krate} depends on {db}");
        }
    }
}

/// Each workspace member's name and the names in its `[dependencies]` (the root package
/// included; dev-dependencies left out: tests may reach anything).
fn workspace_dependencies() -> Vec<(String, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut manifests = vec![root.join("Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let m = entry.unwrap().path().join("Cargo.toml");
        if m.exists() {
            manifests.push(m);
        }
    }
    manifests
        .iter()
        .map(|m| {
            let t: toml::Table = toml::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
            let name = t["package"]["name"].as_str().unwrap().to_string();
            let deps = t
                .get("dependencies")
                .and_then(|d| d.as_table())
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            (name, deps)
        })
        .collect()
}

/// The crate graph is the pipeline (issue 16, point 1): each crate may depend only on the
/// crates below it, so a backward import does not compile. This test keeps the manifests
/// from growing an arrow upwards (Cargo refuses cycles, not a stage reaching up past one).
#[test]
fn the_crate_graph_runs_one_way() {
    // Each workspace crate and the ticketsync crates it may depend on.
    let allowed: &[(&str, &[&str])] = &[
        ("ticketsync-config", &[]),
        ("ticketsync-model", &[]),
        ("ticketsync-redact", &[]),
        ("ticketsync-sim", &[]),
        ("ticketsync-store", &["ticketsync-model", "ticketsync-redact"]),
        ("ticketsync-http", &["ticketsync-config", "ticketsync-model", "ticketsync-redact", "ticketsync-store"]),
        ("ticketsync-sinks", &["ticketsync-config", "ticketsync-http", "ticketsync-model", "ticketsync-redact"]),
        ("ticketsync-sources", &["ticketsync-config", "ticketsync-http", "ticketsync-model", "ticketsync-store"]),
        (
            "ticketsync-pipeline",
            &["ticketsync-http", "ticketsync-model", "ticketsync-sinks", "ticketsync-sources", "ticketsync-store"],
        ),
    ];
    let crates = workspace_dependencies();
    for (krate, deps) in &crates {
        if krate == "ticketsync" {
            continue; // the binary may use everything
        }
        let Some((_, may)) = allowed.iter().find(|(n, _)| n == krate) else {
            panic!("{krate}: not placed in the crate graph; add it to this table (and ARCHITECTURE.md)");
        };
        for d in deps.iter().filter(|d| d.starts_with("ticketsync")) {
            assert!(may.contains(&d.as_str()), "{krate} may not depend on {d} (allowed: {may:?})");
        }
    }
    assert!(crates.len() >= 5, "the workspace's crates were found: {crates:?}");
}

/// The matcher's batch, as `pipeline` runs it: read the waiting sessions and their links,
/// record the matches and queue their notes with the audit rows chained in memory, mark the
/// batch examined, all in one transaction.
#[tokio::test]
async fn matcher_batch_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let records: Vec<Result<NewSession, Rejected>> =
        (1..=3).map(|i| Ok(session("teamviewer", &format!("e{i}"), &format!("s{i}00"), true))).collect();
    page(&store, &records, "w1", "{}", None).await;
    let mut tx = store.begin().await.unwrap();
    links::insert(&mut tx, "teamviewer", "s100", "11", "created", None, Some("cli")).await.unwrap();
    links::insert(&mut tx, "teamviewer", "s200", "12", "created", None, Some("cli")).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let batch = sessions::to_match(&mut tx, 0, 500).await.unwrap();
    assert_eq!(batch.len(), 3);
    let codes: Vec<String> = batch.iter().filter_map(|s| s.session_code_norm.clone()).collect();
    let code_refs: Vec<&str> = codes.iter().map(String::as_str).collect();
    let by_code = links::for_codes(&mut tx, &code_refs).await.unwrap();
    let mut chain = audit::Chain::load(&mut tx).await.unwrap();
    let found: Vec<(i64, String)> = batch
        .iter()
        .filter_map(|s| {
            let l = by_code.get(s.session_code_norm.as_deref()?)?.first()?;
            Some((s.id, l.ticket_id.clone()))
        })
        .collect();
    let matches: Vec<links::NewMatch> = found
        .iter()
        .map(|(id, t)| links::NewMatch {
            session_id: *id,
            vendor: "teamviewer",
            ticket_id: t,
            rule: "link",
            detail: "created",
        })
        .collect();
    let recorded = links::record_matches_in(&mut tx, &mut chain, &matches).await.unwrap();
    assert_eq!(recorded.len(), 2);
    let markers: Vec<String> = found.iter().map(|(id, _)| format!("mk-{id}")).collect();
    let rows: Vec<outbox::NewDelivery> = found
        .iter()
        .zip(&markers)
        .map(|((id, t), m)| outbox::NewDelivery {
            sink: "redmine",
            ticket_id: t,
            session_id: *id,
            kind: outbox::NoteKind::SessionReport,
            marker: m,
            note_json: "{}",
        })
        .collect();
    let queued = outbox::enqueue_many_in(&mut tx, &mut chain, &rows).await.unwrap();
    assert!(queued.iter().all(Option::is_some));
    let ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
    sessions::mark_match_checked(&mut tx, &ids).await.unwrap();
    chain.flush(&mut tx).await.unwrap();
    tx.commit().await.unwrap();

    assert!(sessions::to_match_read(&store, 0, 500).await.unwrap().is_empty(), "the batch was examined");
    assert_eq!(sessions::unmatched_all(&store).await.unwrap().len(), 1);
    let mut tickets: Vec<String> =
        outbox::list(&store, Some("pending")).await.unwrap().into_iter().map(|d| d.ticket_id).collect();
    tickets.sort();
    assert_eq!(tickets, ["11", "12"]);
    // The same batch again queues nothing twice.
    let mut tx = store.begin().await.unwrap();
    let mut chain = audit::Chain::load(&mut tx).await.unwrap();
    assert!(links::record_matches_in(&mut tx, &mut chain, &matches).await.unwrap().is_empty());
    assert!(outbox::enqueue_many_in(&mut tx, &mut chain, &rows).await.unwrap().iter().all(Option::is_none));
    chain.flush(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(outbox::list(&store, None).await.unwrap().len(), 2);
    assert_chain_ok(audit::verify(&store).await.unwrap());
}

/// An audit key keys the chain from the next row on; the store then refuses no key.
#[tokio::test]
async fn audit_key_keys_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    enqueue(&store, "redmine", "1", "before-key").await.unwrap();
    let key = audit::AuditKey::new(&[7u8; 32]).unwrap();
    let status = audit::use_key(&store, Some(key.clone())).await.unwrap();
    let keyed_at = status.started_keyed_at.expect("a keying row");
    assert_eq!(status.head.0, keyed_at);
    assert_eq!(audit::key_fits(&store, Some(&key)).await.unwrap().unwrap(), Some(keyed_at));
    assert!(audit::key_fits(&store, None).await.unwrap().is_err(), "a keyed chain needs its key");
    let other = audit::AuditKey::new(&[8u8; 32]).unwrap();
    assert!(audit::key_fits(&store, Some(&other)).await.unwrap().is_err(), "another key cannot continue it");
    enqueue(&store, "redmine", "1", "after-key").await.unwrap();
    match audit::verify(&store).await.unwrap() {
        Verify::Ok { keyed_from, rows, .. } => assert_eq!((keyed_from, rows), (Some(keyed_at), keyed_at as u64 + 1)),
        other => panic!("audit chain not intact: {other:?}"),
    }
    // The same key again appends nothing.
    assert_eq!(audit::use_key(&store, Some(key)).await.unwrap().started_keyed_at, None);
}

/// `audit verify` finds a session or a note edited after the fact, and the history refuses
/// an edit of itself, on either backend. (Tampering needs SQL of the test's own, through the
/// `test-support` hook; everything else here goes through the store's API.)
#[tokio::test]
async fn verify_finds_edits_and_the_history_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    page(
        &store,
        &[Ok(session("teamviewer", "a", "s1", true)), Ok(session("teamviewer", "b", "s2", true))],
        "w1",
        "{}",
        None,
    )
    .await;
    let d = enqueue(&store, "redmine", "4", "t1").await.unwrap();
    match audit::verify(&store).await.unwrap() {
        Verify::Ok { checked_sessions, checked_deliveries, uncovered, .. } => {
            assert_eq!((checked_sessions, checked_deliveries, uncovered), (2, 1, 0))
        }
        other => panic!("audit chain not intact: {other:?}"),
    }

    for sql in ["UPDATE audit_events SET kind = 'x' WHERE id = 1", "DELETE FROM audit_events WHERE id = 1"] {
        let err = store.execute_raw(sql).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }

    assert_eq!(
        store.execute_raw("UPDATE sessions SET technician = 'Mallory' WHERE external_id = 'b'").await.unwrap(),
        1
    );
    match audit::verify(&store).await.unwrap() {
        Verify::Evidence { subject, row_id: Some(_), .. } => assert!(subject.starts_with("sessions row"), "{subject}"),
        other => panic!("the edited session is not reported: {other:?}"),
    }
    store.execute_raw("UPDATE sessions SET technician = 'Ana' WHERE external_id = 'b'").await.unwrap();
    assert_chain_ok(audit::verify(&store).await.unwrap());

    let edit = format!("UPDATE deliveries SET note_json = '{{\"body\":\"other\"}}' WHERE id = {d}");
    assert_eq!(store.execute_raw(&edit).await.unwrap(), 1);
    match audit::verify(&store).await.unwrap() {
        Verify::Evidence { subject, .. } => assert_eq!(subject, format!("deliveries row {d}")),
        other => panic!("the edited note is not reported: {other:?}"),
    }
}
