//! The page-at-a-time store paths: `sessions::upsert_many` (one lookup, multi-row inserts,
//! audit rows chained in memory) and the batched matcher must record exactly what the
//! row-by-row paths did: one session per (vendor, id), one audit row per state change, an
//! intact chain.

use chrono::{Duration, Utc};
use ticketsync::session::NewSession;
use ticketsync::store::audit::{self, Verify};
use ticketsync::store::sessions::{self, Upsert};

use crate::support::temp_store;

fn session(ext: &str, notes: &str) -> NewSession {
    let start = Utc::now() - Duration::hours(2);
    NewSession {
        vendor: "teamviewer".into(),
        external_id: ext.into(),
        session_code: Some(format!("s{ext}")),
        technician: Some("Ana".into()),
        technician_id: None,
        device: Some("PC".into()),
        device_id: None,
        group_name: None,
        started_at: start,
        ended_at: Some(start + Duration::minutes(30)),
        notes: Some(notes.into()),
        description: None,
        custom_api: None,
        customer_name: None,
        customer_email: None,
        raw_json: format!("{{\"id\":\"{ext}\",\"notes\":\"{notes}\"}}"),
    }
}

async fn audit_kinds(pool: &sqlx::SqlitePool) -> Vec<(String, Option<i64>)> {
    // v_audit shows each session of a page's `sessions_seen` row as its `session_seen` event.
    sqlx::query_as("SELECT kind, session_id FROM v_audit ORDER BY id, session_id").fetch_all(pool).await.unwrap()
}

async fn chain_rows(pool: &sqlx::SqlitePool, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE kind = ?").bind(kind).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_page_upsert_records_each_state_change_once_and_keeps_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;

    // First page: two new sessions, the second one repeated later in the page with new content.
    let (a, b, b2) = (session("1", "x"), session("2", "y"), session("2", "y changed"));
    let mut tx = store.begin().await.unwrap();
    let out = sessions::upsert_many(&mut tx, &[&a, &b, &b2], Some("w1"), false).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(out.iter().map(|o| o.1).collect::<Vec<_>>(), [Upsert::Inserted, Upsert::Inserted, Upsert::Updated]);
    assert_eq!(out[1].0, out[2].0, "a repeat in the page updates the row it inserted");
    assert_ne!(out[0].0, out[1].0);

    // The vendor stops returning #1; it is marked vanished, then comes back unchanged.
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE sessions SET vanished_at = '2026-01-01T00:00:00.000Z' WHERE external_id = '1'")
        .execute(tx.sqlite_conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Second page: #1 reappears unchanged, #2 unchanged, #3 new.
    let c = session("3", "z");
    let mut tx = store.begin().await.unwrap();
    let out2 = sessions::upsert_many(&mut tx, &[&a, &b2, &c], Some("w2"), false).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(out2.iter().map(|o| o.1).collect::<Vec<_>>(), [Upsert::Unchanged, Upsert::Unchanged, Upsert::Inserted]);
    assert_eq!((out2[0].0, out2[1].0), (out[0].0, out[1].0));

    let rows: Vec<(String, String, i64, Option<String>, String)> = sqlx::query_as(
        "SELECT external_id, notes, revision, vanished_at, last_walk_id FROM sessions ORDER BY external_id",
    )
    .fetch_all(store.sqlite_pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("1".into(), "x".into(), 1, None, "w2".into()),
            ("2".into(), "y changed".into(), 2, None, "w2".into()),
            ("3".into(), "z".into(), 1, None, "w2".into()),
        ]
    );
    let (id1, id2, id3) = (out[0].0, out[1].0, out2[2].0);
    assert_eq!(
        audit_kinds(store.sqlite_pool()).await,
        [
            ("session_seen".to_string(), Some(id1)),
            ("session_seen".to_string(), Some(id2)),
            ("session_updated".to_string(), Some(id2)),
            ("session_seen".to_string(), Some(id3)),
            ("session_reappeared".to_string(), Some(id1)),
        ]
    );
    // Chain rows: a page row for #1 and #2, the update, a page row for #3, the reappearance.
    assert_eq!(chain_rows(store.sqlite_pool(), "sessions_seen").await, 2);
    assert!(matches!(audit::verify(&store).await.unwrap(), Verify::Ok { rows: 4, checked_sessions: 3, .. }));
}

#[tokio::test]
async fn a_page_larger_than_one_insert_statement_stores_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    // 1 234 records: several multi-row INSERTs for the sessions and for their audit rows.
    let page: Vec<NewSession> = (0..1234).map(|i| session(&i.to_string(), "n")).collect();
    let refs: Vec<&NewSession> = page.iter().collect();
    let mut tx = store.begin().await.unwrap();
    let out = sessions::upsert_many(&mut tx, &refs, None, false).await.unwrap();
    tx.commit().await.unwrap();
    assert!(out.iter().all(|o| o.1 == Upsert::Inserted));
    let ids: std::collections::HashSet<i64> = out.iter().map(|o| o.0).collect();
    assert_eq!(ids.len(), 1234);
    // Each result's id is the row of that record, whatever order RETURNING gave them in.
    for (s, (id, _)) in page.iter().zip(&out) {
        let ext: String = sqlx::query_scalar("SELECT external_id FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
        assert_eq!(ext, s.external_id);
    }
    let kinds = audit_kinds(store.sqlite_pool()).await;
    assert_eq!(kinds.len(), 1234);
    assert!(kinds.iter().zip(&out).all(|((k, sid), (id, _))| k == "session_seen" && *sid == Some(*id)));
    // One chain row per 100 first sightings.
    assert_eq!(chain_rows(store.sqlite_pool(), "sessions_seen").await, 13);
    assert!(matches!(audit::verify(&store).await.unwrap(), Verify::Ok { rows: 13, checked_sessions: 1234, .. }));
}

/// The matcher in the page's transaction (`InlineMatch`, the store's page hook): new ended
/// sessions are matched and their notes queued as the page commits, each is marked examined,
/// and the matching pass afterwards has nothing to read; a running session, and a session
/// the vendor changes later, are left to the pass.
#[tokio::test]
async fn new_sessions_are_matched_in_their_page_and_the_pass_gets_only_what_waits() {
    use std::sync::Arc;
    use ticketsync::pipeline::{match_pending_routed, InlineMatch};
    use ticketsync::sinks::routing::Route;

    let dir = tempfile::tempdir().unwrap();
    let rules = ticketsync::matcher::compile_all(&ticketsync::config::MatchConfig::default().rules).unwrap();
    let routes = vec![Route::all("webhook")];
    let hook = InlineMatch::for_rules(&rules, &routes, chrono_tz::UTC).expect("default rules match inline");
    let store = temp_store(dir.path()).await.with_page_hook(Arc::new(hook));

    let mut with_ticket = session("1", "done");
    with_ticket.custom_api = Some(r#"{"ticket_id":"4711"}"#.into());
    let without = session("2", "nothing to go by");
    let mut running = session("3", "still on");
    running.custom_api = Some(r#"{"ticket_id":"4712"}"#.into());
    running.ended_at = None;
    let page: Vec<Result<NewSession, ticketsync::sources::Rejected>> =
        vec![Ok(with_ticket), Ok(without.clone()), Ok(running.clone())];
    let mut stats = ticketsync::sources::PollStats::default();
    ticketsync::sources::commit_page(&store, "teamviewer", &page, "w1", "{}", None, &mut stats).await.unwrap();
    assert_eq!((stats.inserted, stats.matched, stats.enqueued), (3, 1, 1), "{stats:?}");

    let rows: Vec<(String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT s.external_id, s.match_checked_rev, m.ticket_id FROM sessions s
         LEFT JOIN matches m ON m.session_id = s.id ORDER BY s.external_id",
    )
    .fetch_all(store.sqlite_pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [("1".into(), Some(1), Some("4711".into())), ("2".into(), Some(1), None), ("3".into(), None, None)],
        "ended sessions examined in the page; the running one waits"
    );
    let queued: Vec<(String, String)> =
        sqlx::query_as("SELECT sink, ticket_id FROM deliveries").fetch_all(store.sqlite_pool()).await.unwrap();
    assert_eq!(queued, [("webhook".into(), "4711".into())]);
    let m = match_pending_routed(&store, &rules, &routes, chrono_tz::UTC).await.unwrap();
    assert_eq!(m.examined, 0, "nothing left for the pass: {m:?}");

    // The running session ends and the vendor rewrites the unmatched one's notes: both are
    // changes, which the pass examines (and matches the one with a ticket) once.
    let mut ended = running;
    ended.ended_at = Some(ended.started_at + Duration::minutes(50));
    ended.raw_json = r#"{"id":"3","ended":true}"#.into();
    let mut changed = without;
    changed.notes = Some("ticket unknown".into());
    changed.raw_json = r#"{"id":"2","notes":"ticket unknown"}"#.into();
    let page = vec![Ok(ended), Ok(changed)];
    ticketsync::sources::commit_page(&store, "teamviewer", &page, "w2", "{}", None, &mut stats).await.unwrap();
    let m = match_pending_routed(&store, &rules, &routes, chrono_tz::UTC).await.unwrap();
    assert_eq!((m.examined, m.matched, m.enqueued), (2, 1, 1), "{m:?}");
    let m = match_pending_routed(&store, &rules, &routes, chrono_tz::UTC).await.unwrap();
    assert_eq!(m.examined, 0, "examined once: {m:?}");
    let tickets: Vec<String> = sqlx::query_scalar("SELECT ticket_id FROM deliveries ORDER BY id")
        .fetch_all(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(tickets, ["4711", "4712"]);
    let kinds = audit_kinds(store.sqlite_pool()).await;
    assert_eq!(kinds.len(), 9, "3 seen, 1 matched + 1 queued, 2 updated, 1 matched + 1 queued: {kinds:?}");
    // Chain rows: the 3 first sightings are one page row.
    assert_eq!(chain_rows(store.sqlite_pool(), "sessions_seen").await, 1);
    assert!(matches!(audit::verify(&store).await.unwrap(), Verify::Ok { rows: 7, .. }));
}

#[test]
fn the_ticket_field_rule_keeps_matching_out_of_the_page_transaction() {
    use ticketsync::config::{RuleConfig, RuleKind};
    let cfg = [RuleKind::TicketField, RuleKind::CustomApi].map(|kind| RuleConfig {
        kind,
        json_key: None,
        pattern: None,
        fields: None,
    });
    let rules = ticketsync::matcher::compile_all(&cfg).unwrap();
    assert!(ticketsync::pipeline::InlineMatch::for_rules(&rules, &[], chrono_tz::UTC).is_none());
}

/// Migration 0003 on a database written before it: a session changed after the matcher
/// examined it waits for the matcher again, a matched one is marked examined, the others
/// keep their marks; nothing else changes.
#[tokio::test]
async fn migration_0003_brings_the_match_marks_of_an_older_database_in_line() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    for f in ["0001_core.sql", "0002_auditor_views.sql"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/store/migrations").join(f),
            old.join(f),
        )
        .unwrap();
    }
    let path = dir.path().join("old.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
        // (external id, revision, match_checked_rev, matched)
        for (ext, rev, checked, matched) in [
            ("same", 1, Some(1), false),
            ("changed", 2, Some(1), false),
            ("new", 1, None, false),
            ("matched", 3, None, true),
        ] {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO sessions (vendor, external_id, started_at, ended_at, raw_json, content_hash, revision,
                 first_seen_at, last_seen_at, match_checked_rev)
                 VALUES ('teamviewer', ?, '2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', '{}', 'h', ?,
                 '2026-01-01T02:00:00.000Z', '2026-01-01T02:00:00.000Z', ?) RETURNING id",
            )
            .bind(ext)
            .bind(rev)
            .bind(checked)
            .fetch_one(&pool)
            .await
            .unwrap();
            if matched {
                sqlx::query(
                    "INSERT INTO matches (session_id, ticket_id, rule, matched_at) VALUES (?, '7', 'manual', 'x')",
                )
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            }
        }
        pool.close().await;
    }
    let store = ticketsync::store::Store::open(&path, std::time::Duration::from_secs(5)).await.unwrap();
    let marks: Vec<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT external_id, revision, match_checked_rev FROM sessions ORDER BY id")
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!(
        marks,
        [
            ("same".into(), 1, Some(1)),
            ("changed".into(), 2, None),
            ("new".into(), 1, None),
            ("matched".into(), 3, Some(3)),
        ]
    );
    let waiting: Vec<String> =
        sessions::to_match_read(&store, 0, 10).await.unwrap().into_iter().map(|s| s.external_id).collect();
    assert_eq!(waiting, ["changed", "new"]);
}

/// A new database gets 16 KiB pages; one created before (4 KiB, already in WAL mode) keeps
/// its size, is migrated and takes writes as before.
#[tokio::test]
async fn new_databases_get_16_kib_pages_and_existing_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |p: std::path::PathBuf| {
        rusqlite::Connection::open(p).unwrap().query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap()
    };

    let store = temp_store(dir.path()).await;
    store.close().await;
    assert_eq!(page_size(dir.path().join("t.db")), i64::from(ticketsync::store::PAGE_SIZE));
    assert_eq!(ticketsync::store::PAGE_SIZE, 16384);

    let old = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&old).unwrap();
        c.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE before_upgrade (x);")
            .unwrap();
    }
    let store = ticketsync::store::Store::open(&old, std::time::Duration::from_secs(5)).await.unwrap();
    let a = session("1", "x");
    let mut tx = store.begin().await.unwrap();
    sessions::upsert_many(&mut tx, &[&a], None, false).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(audit::verify(&store).await.unwrap(), Verify::Ok { rows: 1, .. }));
    store.close().await;
    assert_eq!(page_size(old), 4096, "an existing database keeps its page size");
}
