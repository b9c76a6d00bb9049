//! TeamViewer source over real HTTP against `ticketsync::sim::teamviewer`: paging and
//! resume, overlap re-reads, running sessions, vanished reports, quarantine, throttling,
//! OAuth refresh rotation, and service-case creation through to delivery.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use ticketsync::config::{Config, TeamViewerAuth, TeamViewerConfig};
use ticketsync::pipeline::ingest;
use ticketsync::sim::teamviewer::{token_fingerprint, Fault, RateLimit, RequestLog, SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;
use ticketsync::sources::teamviewer::{Cursor, TeamViewerApi, TeamViewerSource};
use ticketsync::sources::PollStats;
use ticketsync::store::tokens::{self, TokenKey};
use ticketsync::store::Store;

use crate::support::{temp_store, vdate};

const TOKEN: &str = "54213-2YotnFZFEjr1zCsicMWp";
const CLIENT_ID: &str = "12333-133Ea4Hdf3e9ec0543fX";
const CLIENT_SECRET: &str = "cs-7hQ2mZr4TbV9pLx1";
const CONNECTIONS: &str = "/api/v1/reports/connections";

/// Whole seconds, as the vendor writes dates.
fn now_s() -> DateTime<Utc> {
    let n = Utc::now();
    DateTime::from_timestamp(n.timestamp(), 0).expect("valid timestamp")
}

/// A connection record as the vendor sends it.
fn record(id: &str, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Value {
    let mut r = json!({
        "id": id, "userid": "u1234567", "username": "AMS Support", "deviceid": "987654321",
        "groupid": "g272032545", "groupname": "Helpdesk", "start_date": vdate(start),
        "fee": "0.00", "currency": "EUR", "billing_state": "Bill", "support_session_type": 1
    });
    if let Some(e) = end {
        r["end_date"] = json!(vdate(e));
    }
    r
}

async fn start_sim(opts: SimOptions) -> TeamViewerSim {
    TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..opts })
        .await
        .expect("start TeamViewer simulator")
}

fn script_cfg(sim: &TeamViewerSim) -> TeamViewerConfig {
    TeamViewerConfig {
        base_url: sim.base_url.clone(),
        token: Some(SecretString::from(TOKEN.to_string())),
        request_timeout_secs: 10,
        ..Default::default()
    }
}

fn oauth_cfg(sim: &TeamViewerSim) -> TeamViewerConfig {
    TeamViewerConfig {
        base_url: sim.base_url.clone(),
        auth: TeamViewerAuth::Oauth,
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SecretString::from(CLIENT_SECRET.to_string())),
        request_timeout_secs: 10,
        ..Default::default()
    }
}

fn source(cfg: &TeamViewerConfig, store: &Store, retries: usize) -> TeamViewerSource {
    TeamViewerSource::with_api(cfg, TeamViewerApi::new(cfg, store).expect("api").with_max_retries(retries))
}

async fn poll(src: &TeamViewerSource, store: &Store) -> PollStats {
    ingest::poll(src, store, &CancellationToken::new()).await.expect("poll")
}

fn conn_requests(sim: &TeamViewerSim) -> Vec<RequestLog> {
    sim.requests().into_iter().filter(|r| r.path == CONNECTIONS).collect()
}

fn param(q: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

async fn cursor(store: &Store) -> Cursor {
    let j: String = sqlx::query_scalar("SELECT cursor_json FROM source_cursors WHERE source = 'teamviewer'")
        .fetch_one(store.sqlite_pool())
        .await
        .expect("cursor row");
    serde_json::from_str(&j).expect("cursor json")
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(store.sqlite_pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// (revision, notes, ended_at, duration_s, vanished_at) of one session.
async fn session_row(store: &Store, ext: &str) -> (i64, Option<String>, Option<String>, Option<i64>, Option<String>) {
    sqlx::query_as("SELECT revision, notes, ended_at, duration_s, vanished_at FROM sessions WHERE vendor = 'teamviewer' AND external_id = ?")
        .bind(ext)
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap_or_else(|e| panic!("session {ext}: {e}"))
}

async fn audit_kinds_for(store: &Store, ext: &str) -> Vec<String> {
    sqlx::query_scalar(
        // v_session_events: a first sighting is an entry of the page's `sessions_seen` row.
        "SELECT kind FROM v_session_events WHERE session_id = (SELECT id FROM sessions WHERE external_id = ?)
         ORDER BY event_id",
    )
    .bind(ext)
    .fetch_all(store.sqlite_pool())
    .await
    .expect("audit")
}

/// A poll keeps a page transaction open for the next page only while that page is already
/// fetched: while the vendor is slow to answer, what was read is committed (and the write
/// lock free for the outbox), never held for the vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_are_committed_while_the_vendor_is_slow_with_the_next() {
    let sim = start_sim(SimOptions::default()).await;
    sim.generate(2500, 7, Utc::now() - TimeDelta::hours(12));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = std::sync::Arc::new(source(&script_cfg(&sim), &store, 0));
    // Page 1 passes; page 2 is answered after 6 s.
    sim.push_fault(Fault::new(CONNECTIONS, 0));
    sim.push_fault(Fault { delay: Some(Duration::from_secs(6)), ..Fault::new(CONNECTIONS, 0) });
    let polling = {
        let (src, store) = (src.clone(), store.clone());
        tokio::spawn(async move { ingest::poll(src.as_ref(), &store, &CancellationToken::new()).await })
    };
    let t = Instant::now();
    while count(&store, "SELECT COUNT(*) FROM sessions").await < 1000 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM sessions").await, 1000, "page 1 committed while page 2 is awaited");
    assert!(!polling.is_finished(), "page 2 is still on its way");
    let tx = store.begin().await.expect("the write lock is free");
    tx.rollback().await.unwrap();
    let stats = polling.await.unwrap().unwrap();
    assert!(stats.complete);
    assert_eq!((stats.pages, stats.inserted), (3, 2500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_follows_offset_id_and_resumes_after_a_failed_page() {
    let sim = start_sim(SimOptions::default()).await;
    sim.generate(2500, 7, Utc::now() - TimeDelta::hours(12));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = script_cfg(&sim);
    let src = source(&cfg, &store, 0);

    // Page 2 fails and max_retries is 0: the poll errors after page 1 committed. (A status-0
    // fault only passes the first request through, so the 500 hits the second.)
    sim.push_fault(Fault::new(CONNECTIONS, 0));
    sim.push_fault(Fault {
        body: r#"{"error":"internal_error","error_description":"boom","error_code":500}"#.into(),
        ..Fault::new(CONNECTIONS, 500)
    });
    let err = ingest::poll(&src, &store, &CancellationToken::new()).await.expect_err("page 2 fails");
    assert!(err.is_transient(), "{err}");
    let reqs = conn_requests(&sim);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(param(&reqs[0].query, "offset_id"), None);
    let first_offset = param(&reqs[1].query, "offset_id").expect("page 2 asks with offset_id");
    assert_eq!((reqs[0].status, reqs[1].status), (200, 500));
    assert_eq!(count(&store, "SELECT COUNT(*) FROM sessions").await, 1000);
    let cur = cursor(&store).await;
    let walk = cur.walk.clone().expect("a walk in progress is in the cursor");
    assert_eq!(walk.offset_id.as_deref(), Some(first_offset.as_str()));
    // The record named by offset_id is the last one of page 1, and it is stored.
    assert_eq!(count(&store, &format!("SELECT COUNT(*) FROM sessions WHERE external_id = '{first_offset}'")).await, 1);

    let stats = poll(&src, &store).await;
    assert!(stats.complete);
    assert_eq!((stats.pages, stats.records, stats.inserted, stats.updated), (2, 1500, 1500, 0));
    let reqs = conn_requests(&sim);
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    // Resumed where it stopped, with the walk's own from_date.
    assert_eq!(param(&reqs[2].query, "offset_id").as_deref(), Some(first_offset.as_str()));
    assert_eq!(reqs[2].status, 200);
    let second_offset = param(&reqs[3].query, "offset_id").expect("page 3 offset");
    assert_ne!(second_offset, first_offset);
    for r in &reqs {
        assert_eq!(
            param(&r.query, "from_date").as_deref(),
            Some(walk.from.get(..19).map(|s| format!("{s}Z")).unwrap().as_str())
        );
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM sessions").await, 2500);
    assert_eq!(count(&store, "SELECT COUNT(DISTINCT external_id) FROM sessions").await, 2500);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM sessions WHERE revision != 1").await, 0);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM v_audit WHERE kind = 'session_seen'").await, 2500);
    assert_eq!(count(&store, "SELECT COUNT(DISTINCT session_id) FROM v_audit WHERE kind = 'session_seen'").await, 2500);
    // One chain link per 100 first sightings of a page (pages of 1 000, 1 000 and 500), not
    // one per session.
    assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events WHERE kind = 'sessions_seen'").await, 25);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events WHERE kind = 'session_updated'").await, 0);
    let cur = cursor(&store).await;
    assert!(cur.walk.is_none(), "finished walk leaves only the watermark: {cur:?}");
    let max_start: String =
        sqlx::query_scalar("SELECT MAX(started_at) FROM sessions").fetch_one(store.sqlite_pool()).await.unwrap();
    assert_eq!(cur.high_watermark.as_deref(), Some(max_start.as_str()));
    assert_eq!(count(&store, "SELECT COUNT(*) FROM source_cursors WHERE last_success_at IS NOT NULL").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_reread_updates_changed_records_only() {
    let sim = start_sim(SimOptions::default()).await;
    let now = now_s();
    let a = "0755a8dd-df19-4ea7-af47-cabb6b2a97e4";
    let b = "5ae6d2a9-57e9-4c62-b236-280390954b6f";
    sim.add_connection(record(a, now - TimeDelta::minutes(50), Some(now - TimeDelta::minutes(40))));
    sim.add_connection(record(b, now - TimeDelta::minutes(30), Some(now - TimeDelta::minutes(20))));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = source(&script_cfg(&sim), &store, 2);

    let s1 = poll(&src, &store).await;
    assert_eq!((s1.inserted, s1.updated), (2, 0));
    sim.update_connection(a, json!({"notes": "Printer driver reinstalled, see #4711"}));
    let s2 = poll(&src, &store).await;
    assert_eq!((s2.records, s2.inserted, s2.updated), (2, 0, 1));
    // The second walk re-read the overlap: from_date = watermark − 120 min.
    let reqs = conn_requests(&sim);
    let hwm = now - TimeDelta::minutes(30);
    assert_eq!(param(&reqs[1].query, "from_date"), Some(vdate(hwm - TimeDelta::minutes(120))));

    let (rev_a, notes_a, ..) = session_row(&store, a).await;
    assert_eq!((rev_a, notes_a.as_deref()), (2, Some("Printer driver reinstalled, see #4711")));
    let raw: String = sqlx::query_scalar("SELECT raw_json FROM sessions WHERE external_id = ?")
        .bind(a)
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), sim.connection(a).unwrap());
    let (rev_b, ..) = session_row(&store, b).await;
    assert_eq!(rev_b, 1);
    assert_eq!(audit_kinds_for(&store, a).await, ["session_seen", "session_updated"]);
    assert_eq!(audit_kinds_for(&store, b).await, ["session_seen"]);

    // A third poll with nothing changed writes nothing.
    let s3 = poll(&src, &store).await;
    assert_eq!((s3.inserted, s3.updated), (0, 0));
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM v_audit WHERE kind IN ('session_seen', 'session_updated')").await,
        3
    );
}

/// A session keeps its record's text exactly as the vendor sent it, not the record parsed and
/// serialized again (here the vendor escapes a letter, as .NET serializers do with accents).
/// A database written before that holds records re-serialized: the next overlap read finds
/// the same content, so it is no change, and the stored text is never rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_json_is_the_vendors_text_and_a_reserialized_record_is_no_change() {
    use sha2::Digest;
    let sim = start_sim(SimOptions::default()).await;
    sim.mis_encode("\"AMS Support\"", b"\"AMS Supp\\u006frt\"");
    let now = now_s();
    let a = "0755a8dd-df19-4ea7-af47-cabb6b2a97e4";
    sim.add_connection(record(a, now - TimeDelta::minutes(50), Some(now - TimeDelta::minutes(40))));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = source(&script_cfg(&sim), &store, 2);
    assert_eq!(poll(&src, &store).await.inserted, 1);

    let stored = || async {
        sqlx::query_as::<_, (String, String, i64)>(
            "SELECT raw_json, content_hash, revision FROM sessions WHERE external_id = ?",
        )
        .bind(a)
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap()
    };
    let (raw, hash, _) = stored().await;
    assert!(raw.contains(r#""username":"AMS Supp\u006frt""#), "the vendor's text: {raw}");
    assert_eq!(hash, hex::encode(sha2::Sha256::digest(raw.as_bytes())));
    let tech: String = sqlx::query_scalar("SELECT technician FROM sessions WHERE external_id = ?")
        .bind(a)
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(tech, "AMS Support");

    // As an older version stored it: the same record, serialized again.
    let old = serde_json::from_str::<Value>(&raw).unwrap().to_string();
    assert_ne!(old, raw);
    let old_hash = hex::encode(sha2::Sha256::digest(old.as_bytes()));
    sqlx::query("UPDATE sessions SET raw_json = ?, content_hash = ? WHERE external_id = ?")
        .bind(&old)
        .bind(&old_hash)
        .bind(a)
        .execute(store.sqlite_pool())
        .await
        .unwrap();
    let s2 = poll(&src, &store).await;
    assert_eq!((s2.records, s2.updated), (1, 0), "{s2:?}");
    assert_eq!(stored().await, (old, old_hash, 1), "kept as stored");
    assert_eq!(audit_kinds_for(&store, a).await, ["session_seen"]);

    // A real change is still one.
    sim.update_connection(a, json!({"notes": "Printer driver reinstalled"}));
    assert_eq!(poll(&src, &store).await.updated, 1);
    assert_eq!(stored().await.2, 2);
    assert_eq!(audit_kinds_for(&store, a).await, ["session_seen", "session_updated"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_session_is_revisited_until_it_ends() {
    let sim = start_sim(SimOptions::default()).await;
    let now = now_s();
    let running = "11111111-2222-4333-8444-555555555555";
    let later = "66666666-7777-4888-9999-aaaaaaaaaaaa";
    let run_start = now - TimeDelta::hours(5);
    let later_start = now - TimeDelta::hours(3);
    sim.add_connection(record(running, run_start, None));
    sim.add_connection(record(later, later_start, Some(later_start + TimeDelta::minutes(10))));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = TeamViewerConfig { overlap_minutes: 60, ..script_cfg(&sim) };
    let src = source(&cfg, &store, 2);

    poll(&src, &store).await;
    let (_, _, ended, dur, _) = session_row(&store, running).await;
    assert_eq!((ended, dur), (None, None));
    assert_eq!(cursor(&store).await.high_watermark, Some(ticketsync::session::ts(later_start)));

    // Watermark − overlap is 4 h ago, after the running session's start: the window still
    // reaches back to it.
    poll(&src, &store).await;
    let reqs = conn_requests(&sim);
    assert_eq!(param(&reqs[1].query, "from_date"), Some(vdate(run_start)));

    let end = run_start + TimeDelta::minutes(47) + TimeDelta::seconds(11);
    sim.update_connection(running, json!({"end_date": vdate(end)}));
    let s = poll(&src, &store).await;
    assert_eq!(s.updated, 1);
    assert_eq!(param(&conn_requests(&sim)[2].query, "from_date"), Some(vdate(run_start)));
    let (rev, _, ended, dur, _) = session_row(&store, running).await;
    assert_eq!(rev, 2);
    assert_eq!(ended, Some(ticketsync::session::ts(end)));
    assert_eq!(dur, Some(47 * 60 + 11));
    assert_eq!(audit_kinds_for(&store, running).await, ["session_seen", "session_updated"]);

    // Ended: the next window is the plain overlap again.
    poll(&src, &store).await;
    assert_eq!(param(&conn_requests(&sim)[3].query, "from_date"), Some(vdate(later_start - TimeDelta::minutes(60))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_report_is_marked_vanished_never_deleted() {
    let sim = start_sim(SimOptions::default()).await;
    let now = now_s();
    let gone = "aaaaaaaa-0000-4000-8000-000000000001";
    let kept = "aaaaaaaa-0000-4000-8000-000000000002";
    let gone_rec = record(gone, now - TimeDelta::minutes(40), Some(now - TimeDelta::minutes(35)));
    sim.add_connection(gone_rec.clone());
    sim.add_connection(record(kept, now - TimeDelta::minutes(30), Some(now - TimeDelta::minutes(25))));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = source(&script_cfg(&sim), &store, 2);

    poll(&src, &store).await;
    sim.delete_connection(gone);
    let s = poll(&src, &store).await;
    assert_eq!(s.vanished, 1);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM sessions").await, 2);
    let (_, _, _, _, vanished) = session_row(&store, gone).await;
    assert!(vanished.is_some(), "vanished_at set");
    let (_, _, _, _, vanished_kept) = session_row(&store, kept).await;
    assert_eq!(vanished_kept, None);
    assert_eq!(audit_kinds_for(&store, gone).await, ["session_seen", "session_vanished"]);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events WHERE kind = 'session_vanished'").await, 1);

    // A later poll does not report it again; if the vendor brings it back, it reappears.
    assert_eq!(poll(&src, &store).await.vanished, 0);
    sim.add_connection(gone_rec);
    poll(&src, &store).await;
    assert_eq!(session_row(&store, gone).await.4, None);
    assert_eq!(audit_kinds_for(&store, gone).await, ["session_seen", "session_vanished", "session_reappeared"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_quarantined_with_field_and_raw_json() {
    let sim = start_sim(SimOptions::default()).await;
    let now = now_s();
    let t = now - TimeDelta::minutes(30);
    let good1 = record("bbbbbbbb-0000-4000-8000-000000000001", t, Some(t + TimeDelta::minutes(5)));
    let good2 =
        record("bbbbbbbb-0000-4000-8000-000000000002", t + TimeDelta::minutes(6), Some(t + TimeDelta::minutes(9)));
    let mut no_id = record("x", t + TimeDelta::minutes(1), Some(t + TimeDelta::minutes(2)));
    no_id.as_object_mut().unwrap().remove("id");
    let mut bad_date = record("bbbbbbbb-0000-4000-8000-000000000003", t, None);
    bad_date["start_date"] = json!("20130116T194014Z");
    let backwards =
        record("bbbbbbbb-0000-4000-8000-000000000004", t + TimeDelta::minutes(3), Some(t + TimeDelta::minutes(2)));
    let mut absurd = record("bbbbbbbb-0000-4000-8000-000000000005", t, None);
    absurd["start_date"] = json!("2999-01-01T00:00:00Z");
    for r in [&good1, &no_id, &bad_date, &backwards, &absurd, &good2] {
        sim.add_connection(r.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = source(&script_cfg(&sim), &store, 2);

    let s = poll(&src, &store).await;
    assert_eq!((s.pages, s.records, s.inserted, s.quarantined), (1, 6, 2, 4));
    let stored: Vec<String> = sqlx::query_scalar("SELECT external_id FROM sessions ORDER BY external_id")
        .fetch_all(store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!(stored, ["bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"]);

    let rows: Vec<(Option<String>, String, String)> =
        sqlx::query_as("SELECT external_id, reason, raw FROM quarantine WHERE source = 'teamviewer' ORDER BY id")
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let find = |prefix: &str| {
        rows.iter()
            .find(|r| r.1.starts_with(prefix))
            .unwrap_or_else(|| panic!("no quarantine reason {prefix:?} in {rows:?}"))
    };
    let cases = [
        ("id: missing", &no_id, None),
        ("start_date: not an ISO 8601 date", &bad_date, Some("bbbbbbbb-0000-4000-8000-000000000003")),
        ("end_date: before start_date", &backwards, Some("bbbbbbbb-0000-4000-8000-000000000004")),
        ("start_date: implausible", &absurd, Some("bbbbbbbb-0000-4000-8000-000000000005")),
    ];
    for (prefix, rec, ext) in cases {
        let row = find(prefix);
        assert_eq!(row.0.as_deref(), ext, "{prefix}");
        assert_eq!(serde_json::from_str::<Value>(&row.2).unwrap(), *rec, "raw JSON kept for {prefix}");
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events WHERE kind = 'record_quarantined'").await, 4);

    // Re-reading the overlap meets the same bad records again: they are not quarantined twice.
    poll(&src, &store).await;
    assert_eq!(count(&store, "SELECT COUNT(*) FROM quarantine").await, 4);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events WHERE kind = 'record_quarantined'").await, 4);
}

async fn five_records(sim: &TeamViewerSim) -> Vec<String> {
    let now = now_s();
    (0..5)
        .map(|i| {
            let id = format!("cccccccc-0000-4000-8000-00000000000{i}");
            let t = now - TimeDelta::minutes(50 - i * 5);
            sim.add_connection(record(&id, t, Some(t + TimeDelta::minutes(2))));
            id
        })
        .collect()
}

async fn assert_all_stored(store: &Store, ids: &[String]) {
    let stored: HashSet<String> = sqlx::query_scalar("SELECT external_id FROM sessions")
        .fetch_all(store.sqlite_pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stored, ids.iter().cloned().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_403_rate_limit_is_backed_off_and_nothing_lost() {
    let sim = start_sim(SimOptions { page_size: 2, ..SimOptions::default() }).await;
    let ids = five_records(&sim).await;
    sim.set_rate_limit(Some(RateLimit::Forbidden { every_nth: 2 }));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = source(&script_cfg(&sim), &store, 3);

    let s = poll(&src, &store).await;
    assert!(s.complete);
    assert_eq!((s.pages, s.inserted), (3, 5));
    assert_all_stored(&store, &ids).await;
    let statuses: Vec<u16> = conn_requests(&sim).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 403, 200, 403, 200]);
    // The retried request repeats the same offset_id.
    let reqs = conn_requests(&sim);
    assert_eq!(param(&reqs[1].query, "offset_id"), param(&reqs[2].query, "offset_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_429_honours_retry_after_and_nothing_lost() {
    let sim = start_sim(SimOptions { page_size: 2, ..SimOptions::default() }).await;
    let ids = five_records(&sim).await;
    sim.set_rate_limit(Some(RateLimit::TooMany { every_nth: 2, retry_after: Some("1".into()) }));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = source(&script_cfg(&sim), &store, 3);

    let t0 = Instant::now();
    let s = poll(&src, &store).await;
    let took = t0.elapsed();
    assert_eq!((s.pages, s.inserted), (3, 5));
    assert_all_stored(&store, &ids).await;
    let statuses: Vec<u16> = conn_requests(&sim).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 429, 200, 429, 200]);
    // Two answers said "Retry-After: 1": the client waited at least that long each time.
    assert!(took >= Duration::from_millis(1900), "Retry-After not honoured: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_once_is_retried() {
    let sim = start_sim(SimOptions { page_size: 2, ..SimOptions::default() }).await;
    let ids = five_records(&sim).await;
    sim.push_fault(Fault {
        body: r#"{"error":"internal_error","error_description":"try later","error_code":9}"#.into(),
        ..Fault::new(CONNECTIONS, 503)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let src = source(&script_cfg(&sim), &store, 3);

    let s = poll(&src, &store).await;
    assert_eq!((s.pages, s.inserted), (3, 5));
    assert_all_stored(&store, &ids).await;
    let statuses: Vec<u16> = conn_requests(&sim).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200, 200, 200]);

    // A permanent error (403 without rate_limit_reached) is not retried.
    sim.push_fault(Fault {
        body: r#"{"error":"invalid_permission","error_description":"no Connections.Read","error_code":7}"#.into(),
        ..Fault::new(CONNECTIONS, 403)
    });
    let err = ingest::poll(&src, &store, &CancellationToken::new()).await.expect_err("403");
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(msg.contains("invalid_permission") && msg.contains("no Connections.Read"), "{msg}");
    assert_eq!(conn_requests(&sim).len(), 5);
}

async fn stored_tokens(store: &Store) -> tokens::Tokens {
    let key = TokenKey::derive("teamviewer", &SecretString::from(CLIENT_SECRET.to_string()));
    tokens::load(store, "teamviewer", &key).await.expect("load tokens").expect("tokens stored")
}

async fn generation(store: &Store) -> i64 {
    count(store, "SELECT generation FROM oauth_tokens WHERE provider = 'teamviewer'").await
}

fn db_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["t.db", "t.db-wal", "t.db-journal"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    assert!(!all.is_empty());
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn oauth_sim() -> TeamViewerSim {
    start_sim(SimOptions { oauth_client: Some((CLIENT_ID.into(), CLIENT_SECRET.into())), ..SimOptions::default() })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_expired_token_is_refreshed_once_and_rotation_committed() {
    let sim = oauth_sim().await;
    five_records(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = oauth_cfg(&sim);
    let src = source(&cfg, &store, 2);
    let oauth = src.api().oauth().expect("oauth auth").clone();

    // Not authorized yet: a clear error, no request with a token.
    let err = ingest::poll(&src, &store, &CancellationToken::new()).await.expect_err("no tokens yet");
    assert!(err.to_string().contains("ticketsync auth teamviewer"), "{err}");

    oauth.exchange_code(&sim.authorization_code()).await.expect("exchange code");
    assert_eq!(generation(&store).await, 1);
    let t1 = stored_tokens(&store).await;
    let (a1, r1) = (t1.access.unwrap().expose_secret().to_string(), t1.refresh.unwrap().expose_secret().to_string());

    assert_eq!(poll(&src, &store).await.inserted, 5);
    assert!(conn_requests(&sim).iter().all(|r| r.token.as_deref() == Some(token_fingerprint(&a1).as_str())));
    assert_eq!(sim.refresh_count(), 0);

    sim.expire_access_tokens();
    sim.clear_requests();
    let s = poll(&src, &store).await;
    assert!(s.complete);
    assert_eq!(sim.refresh_count(), 1);
    assert_eq!(generation(&store).await, 2);
    let t2 = stored_tokens(&store).await;
    let (a2, r2) = (t2.access.unwrap().expose_secret().to_string(), t2.refresh.unwrap().expose_secret().to_string());
    assert_ne!(a1, a2);
    assert_ne!(r1, r2, "refresh token rotated and the new one committed");
    let reqs: Vec<(String, u16, Option<String>)> =
        sim.requests().into_iter().map(|r| (r.path, r.status, r.token)).collect();
    assert_eq!(
        reqs,
        [
            (CONNECTIONS.to_string(), 401, Some(token_fingerprint(&a1))),
            ("/api/v1/oauth2/token".to_string(), 200, None),
            (CONNECTIONS.to_string(), 200, Some(token_fingerprint(&a2))),
        ]
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events WHERE kind = 'token_saved'").await, 2);

    // The old refresh token is spent at the vendor.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/oauth2/token", sim.api_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r1.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(sim.refresh_count(), 1);

    // Tokens at rest are encrypted: none of them, nor the client secret, is in the file.
    let enc: (String, String) = sqlx::query_as("SELECT access_token_enc, refresh_token_enc FROM oauth_tokens")
        .fetch_one(store.sqlite_pool())
        .await
        .unwrap();
    assert!(enc.0.starts_with("v1:") && enc.1.starts_with("v1:"));
    drop(src);
    drop(oauth);
    store.close().await;
    let bytes = db_bytes(dir.path());
    for secret in [&a1, &r1, &a2, &r2, &CLIENT_SECRET.to_string()] {
        assert!(!contains(&bytes, secret), "a token or the client secret is in the database in clear");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_spend_the_refresh_token_once() {
    let sim = oauth_sim().await;
    five_records(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = oauth_cfg(&sim);
    let src = source(&cfg, &store, 2);
    src.api().oauth().unwrap().exchange_code(&sim.authorization_code()).await.unwrap();
    poll(&src, &store).await;

    // Two polls through the same client: one refresh, the other uses its result.
    sim.expire_access_tokens();
    let cancel = CancellationToken::new();
    let (p1, p2) = tokio::join!(ingest::poll(&src, &store, &cancel), ingest::poll(&src, &store, &cancel));
    p1.expect("poll 1");
    p2.expect("poll 2");
    assert_eq!(sim.refresh_count(), 1);
    assert_eq!(generation(&store).await, 2);

    // Two clients on the same store (the daemon and a CLI command): still one refresh,
    // and neither is locked out by the other spending the single-use refresh token.
    sim.expire_access_tokens();
    let api1 = TeamViewerApi::new(&cfg, &store).unwrap().with_max_retries(0);
    let api2 = TeamViewerApi::new(&cfg, &store).unwrap().with_max_retries(0);
    let from = Utc::now() - TimeDelta::hours(2);
    let (r1, r2) = tokio::join!(api1.connections_page(from, None), api2.connections_page(from, None));
    assert_eq!(r1.expect("client 1").records.len(), 5);
    assert_eq!(r2.expect("client 2").records.len(), 5);
    assert_eq!(sim.refresh_count(), 2);
    assert_eq!(generation(&store).await, 3);
    // The committed refresh token is the live one.
    let t = stored_tokens(&store).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/oauth2/token", sim.api_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t.refresh.unwrap().expose_secret()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_session_is_matched_by_custom_api_and_delivered() {
    let sim = start_sim(SimOptions::default()).await;
    let hook = WebhookSim::start("whsec-test", "X-Ticketsync-Signature").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[store]
path = "{db}"

[sources.teamviewer]
base_url = "{tv}"
token = "{TOKEN}"
group_name = "Helpdesk"
description_template = "Ticket #{{ticket}}"

[sinks.webhook]
url = "{hook}"
secret = "whsec-test"
"#,
        db = dir.path().join("t.db").display(),
        tv = sim.base_url,
        hook = hook.url,
    );
    let config = Config::from_toml_with_env(&toml, "test.toml", Vec::<(String, String)>::new()).expect("config");
    let store = temp_store(dir.path()).await;
    let app = ticketsync::app::App::with_store(config, store.clone()).expect("app");

    let created = ticketsync::launchers::create_session(
        &app,
        "teamviewer",
        "4242",
        Some("Peter Niedhelp"),
        Some("helpme@example.com"),
    )
    .await
    .expect("create");
    assert_eq!(created.ticket, "4242");
    assert_eq!(created.deliveries.len(), 2, "session links + customer link for the webhook");
    let posts: Vec<RequestLog> =
        sim.requests().into_iter().filter(|r| r.method == "POST" && r.path == "/api/v1/sessions").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].status, 200);
    let sessions = sim.sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s["code"].as_str(), Some(created.code.as_str()));
    assert_eq!(serde_json::from_str::<Value>(s["custom_api"].as_str().unwrap()).unwrap(), json!({"ticket_id": "4242"}));
    assert_eq!(s["groupid"], "g272032545", "groupname Helpdesk resolved by the vendor");
    assert_eq!(s["description"], "Ticket #4242");
    assert_eq!(s["end_customer"], json!({"name": "Peter Niedhelp", "email": "helpme@example.com"}));

    let link: (String, String, String, Option<String>) =
        sqlx::query_as("SELECT session_code, ticket_id, kind, details_json FROM ticket_links")
            .fetch_one(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!((link.0.as_str(), link.1.as_str(), link.2.as_str()), (created.code.as_str(), "4242", "created"));
    let details: Value = serde_json::from_str(link.3.as_deref().unwrap()).unwrap();
    assert_eq!(details["end_customer_link"], s["end_customer_link"]);

    // The technician connects with the code; the next cycle picks the report up.
    let start = now_s() - TimeDelta::minutes(30);
    let report_id = sim.connect_session(
        &created.code,
        "Jon Snow",
        start,
        Some(start + TimeDelta::minutes(12)),
        Some("Printer driver reinstalled"),
    );
    let report = app.cycle().await.expect("cycle");
    assert_eq!(report.polled[0].1.inserted, 1);
    assert_eq!(report.matched.matched, 1);
    assert_eq!(report.matched.enqueued, 1);
    assert_eq!(report.delivered.delivered, 3);

    let m: (String, String, String) = sqlx::query_as(
        "SELECT m.ticket_id, m.rule, s.group_name FROM matches m JOIN sessions s ON s.id = m.session_id WHERE s.external_id = ?",
    )
    .bind(report_id.to_lowercase())
    .fetch_one(store.sqlite_pool())
    .await
    .unwrap();
    assert_eq!((m.0.as_str(), m.1.as_str(), m.2.as_str()), ("4242", "custom_api", "Helpdesk"));
    let kinds: Vec<(String, String, String)> =
        sqlx::query_as("SELECT kind, ticket_id, state FROM deliveries ORDER BY id")
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!(
        kinds,
        [
            ("session_links".into(), "4242".into(), "delivered".into()),
            ("customer_link".into(), "4242".into(), "delivered".into()),
            ("session_report".into(), "4242".into(), "delivered".into()),
        ]
    );
    let accepted = hook.accepted();
    assert_eq!(accepted.len(), 3);
    assert!(accepted.iter().all(|p| p["ticket_id"] == "4242"));
    assert_eq!(hook.bad_signatures(), 0);
    let text = accepted[2]["text"].as_str().unwrap();
    assert!(text.contains("Printer driver reinstalled") && text.contains("12m"), "{text}");
}

/// A 429 with `Retry-After` holds the whole account, not the one call that got it: a second
/// client of the same account (another task, `doctor`, a launcher) sends nothing until the
/// hold ends, then both go on (issue 15: "a 429 on one path was honoured for that path only").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_429_holds_every_call_to_the_account() {
    let sim = start_sim(SimOptions { page_size: 2, ..SimOptions::default() }).await;
    five_records(&sim).await;
    sim.push_fault(Fault {
        headers: vec![("Retry-After".into(), "2".into())],
        body: r#"{"error":"rate_limit_reached","error_description":"slow down","error_code":7}"#.into(),
        ..Fault::new(CONNECTIONS, 429)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = script_cfg(&sim);
    let from = Utc::now() - TimeDelta::hours(2);
    let a = TeamViewerApi::new(&cfg, &store).unwrap().with_max_retries(1);
    let b = TeamViewerApi::new(&cfg, &store).unwrap().with_max_retries(1);
    let first = tokio::spawn(async move { a.connections_page(from, None).await.map(|p| p.records.len()) });
    // Once the first client has read the 429 (the hold is in place: the simulator logs the
    // answer before the client reads it, and a request sent before that cannot be held by
    // anyone), the other client asks for the same account's data.
    let probe = || reqwest::Client::new().get(&sim.base_url).bearer_auth(TOKEN);
    while ticketsync::holds::held(probe()).is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(conn_requests(&sim).iter().any(|r| r.status == 429), "the hold comes from the vendor's 429");
    let second = tokio::spawn(async move { b.connections_page(from, None).await.map(|p| p.records.len()) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(conn_requests(&sim).len(), 1, "a request reached TeamViewer during the account's hold");
    assert_eq!(first.await.unwrap().expect("first client after the hold"), 2);
    assert_eq!(second.await.unwrap().expect("second client after the hold"), 2);
    let statuses: Vec<u16> = conn_requests(&sim).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200, 200]);
}

/// Issue 16: TeamViewer's own error code reaches the caller typed (it used to be flattened
/// into the message), with the status and the error kind the vendor client classified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_error_code_is_kept_typed() {
    let sim = start_sim(SimOptions::default()).await;
    sim.push_fault(Fault {
        body: r#"{"error":"invalid_permission","error_description":"no Connections.Read","error_code":7}"#.into(),
        ..Fault::new(CONNECTIONS, 403)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let err =
        ingest::poll(&source(&script_cfg(&sim), &store, 0), &store, &CancellationToken::new()).await.expect_err("403");
    let ticketsync::sources::SourceError::Api(e) = err else { panic!("expected a typed vendor error, got {err:?}") };
    assert_eq!(
        (e.kind, e.status, e.error.as_deref(), e.transient),
        (ticketsync::http::ErrorKind::NotAllowed, Some(403), Some("invalid_permission"), false)
    );
    assert_eq!(e.message, "no Connections.Read");
}
