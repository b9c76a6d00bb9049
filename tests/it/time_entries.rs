//! Billable time entries (issue 20): matched sessions grouped into entries by the time pass,
//! queued as deliveries of kind `time_entry`, written through the sinks' time-entry calls,
//! scanned for before any re-send; against the Redmine simulator and the real Redmine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::json;

use crate::support;
use ticketsync::matcher::Rule;
use ticketsync::pipeline::time::{close_groups, TimePolicies};
use ticketsync::pipeline::{deliver_due, match_pending, DeliveryPolicy, OutboxConfig, Sinks};
use ticketsync::session::NewSession;
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sinks::redmine::RedmineSink;
use ticketsync::sinks::TicketSink;
use ticketsync::store::{outbox, sessions, time, Store};
use ticketsync::time_entry::{DoNotBill, TimePolicy};

const KEY: &str = "sim-redmine-key";

fn ts(s: &str) -> DateTime<Utc> {
    ticketsync::session::parse_ts(s).unwrap()
}

/// An ended session of `vendor` for `ticket` (its `custom_api`), `minutes` long.
fn session(vendor: &str, id: &str, code: &str, ticket: &str, start: &str, minutes: i64, billing: &str) -> NewSession {
    let start = ts(start);
    let raw = json!({"id": id, "billing_state": billing, "username": "Jon Snow"}).to_string();
    NewSession {
        vendor: vendor.into(),
        external_id: id.into(),
        session_code: Some(code.into()),
        technician: Some("Jon Snow".into()),
        technician_id: Some("u1".into()),
        device: None,
        device_id: None,
        group_name: None,
        started_at: start,
        ended_at: Some(start + TimeDelta::minutes(minutes)),
        notes: None,
        description: None,
        custom_api: Some(json!({"ticket_id": ticket}).to_string()),
        customer_name: None,
        customer_email: None,
        raw_json: raw,
    }
}

async fn ingest_and_match(store: &Store, list: &[NewSession], sinks: &[&str]) {
    let mut tx = store.begin().await.unwrap();
    for s in list {
        sessions::upsert(&mut tx, s, Some("w")).await.unwrap();
    }
    tx.commit().await.unwrap();
    let rules = vec![Rule::CustomApi { json_key: "ticket_id".into() }];
    let names: Vec<String> = sinks.iter().map(|s| s.to_string()).collect();
    match_pending(store, &rules, &names, chrono_tz::UTC).await.unwrap();
}

fn policies(sink: &str, p: TimePolicy, techs: &[(&str, &str)]) -> TimePolicies {
    let map: BTreeMap<String, String> = techs.iter().map(|(t, u)| (t.to_lowercase(), u.to_string())).collect();
    HashMap::from([(sink.to_string(), (p, map))])
}

fn fast_policy() -> DeliveryPolicy {
    let mut p = DeliveryPolicy::from_config(&OutboxConfig::default());
    p.base_backoff = Duration::from_millis(1);
    p
}

fn redmine_sink(base: &str, key: &str, timeout: Duration, activity: Option<u64>) -> Sinks {
    let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let sink =
        RedmineSink::new("redmine", base, SecretString::from(key.to_string()), true, http).with_time_activity(activity);
    Arc::new(HashMap::from([("redmine".to_string(), Arc::new(sink) as Arc<dyn TicketSink>)]))
}

/// Deliver until nothing is due any more (retries scheduled a few ms ahead included).
async fn settle(store: &Store, sinks: &Sinks, policy: &DeliveryPolicy) {
    for _ in 0..200 {
        deliver_due(store, sinks, policy).await.unwrap();
        let pending = outbox::list(store, Some("pending")).await.unwrap();
        let sending = outbox::list(store, Some("sending")).await.unwrap();
        if pending.is_empty() && sending.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("deliveries did not settle");
}

fn time_deliveries(all: &[outbox::Delivery]) -> Vec<&outbox::Delivery> {
    all.iter().filter(|d| d.kind == outbox::NoteKind::TimeEntry).collect()
}

/// Reconnects of one code within the gap are one entry (time in the sessions, rounded up),
/// another code its own; the entries land once on the simulated Redmine with the marker at
/// the end of their comment, and a timeout after the write is found by the scan, not re-sent.
#[tokio::test]
async fn reconnects_merge_round_up_and_land_once_on_redmine_sim() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::test_store(dir.path()).await;
    let sim = RedmineSim::start(KEY, &[101, 102]).await.unwrap();
    let list = [
        session("teamviewer", "a1", "s119-457-589", "101", "2026-11-02T09:00:00Z", 10, "Bill"),
        // Reconnect 5 minutes after the first ended: same entry.
        session("teamviewer", "a2", "s119-457-589", "101", "2026-11-02T09:15:00Z", 12, "Bill"),
        // 30 minutes later: a new entry.
        session("teamviewer", "a3", "s119-457-589", "101", "2026-11-02T09:57:00Z", 3, "Bill"),
        session("teamviewer", "b1", "s200-000-001", "102", "2026-11-02T10:00:00Z", 47, "Billed"),
    ];
    ingest_and_match(&store, &list, &["redmine"]).await;
    // The notes first, so that the entries are the heads of their tickets' queues below.
    settle(&store, &redmine_sink(&sim.base_url, KEY, Duration::from_secs(5), Some(9)), &fast_policy()).await;
    let pol = policies("redmine", TimePolicy::default(), &[]);
    let now = ts("2026-11-03T00:00:00Z");
    let stats = close_groups(&store, &pol, chrono_tz::UTC, now).await.unwrap();
    assert_eq!((stats.queued, stats.waiting, stats.skipped), (3, 0, 0));
    // A second pass decides nothing more: every session is counted once.
    let again = close_groups(&store, &pol, chrono_tz::UTC, now).await.unwrap();
    assert_eq!(again.queued, 0);
    let rows = time::list(&store, None, None).await.unwrap();
    let merged = rows.iter().find(|r| r.external_id == "a1").expect("a1's group");
    assert_eq!((merged.sessions, merged.raw_seconds, merged.minutes_billed), (2, 22 * 60, 30));
    let alone = rows.iter().find(|r| r.external_id == "a3").unwrap();
    assert_eq!((alone.sessions, alone.minutes_billed), (1, 15), "3 minutes: the 15-minute minimum");
    let long = rows.iter().find(|r| r.external_id == "b1").unwrap();
    assert_eq!(long.minutes_billed, 60, "47 minutes rounded up to the quarter hour");

    // The first write is applied but its answer comes after the client gave up.
    sim.set_delay(Duration::from_millis(800));
    let sinks = redmine_sink(&sim.base_url, KEY, Duration::from_millis(300), Some(9));
    deliver_due(&store, &sinks, &fast_policy()).await.unwrap();
    sim.set_delay(Duration::ZERO);
    let sinks = redmine_sink(&sim.base_url, KEY, Duration::from_secs(5), Some(9));
    settle(&store, &sinks, &fast_policy()).await;

    let all = outbox::list(&store, None).await.unwrap();
    assert!(all.iter().all(|d| d.state == outbox::DeliveryState::Delivered), "{all:#?}");
    let entries = sim.time_entries();
    assert_eq!(entries.len(), 3, "one entry per group, none twice: {entries:#?}");
    for d in time_deliveries(&all) {
        let on = entries.iter().filter(|e| ticketsync::time_entry::ends_with_marker(&e.comments, &d.marker));
        assert_eq!(on.count(), 1, "{}", d.marker);
    }
    let e101: Vec<_> = entries.iter().filter(|e| e.issue == 101).collect();
    assert_eq!(e101.iter().map(|e| e.hours).sum::<f64>(), 0.75);
    assert!(e101.iter().all(|e| e.activity_id == 9 && e.spent_on == "2026-11-02"));
    let c = &e101.iter().find(|e| e.hours == 0.5).unwrap().comments;
    assert!(c.starts_with("TeamViewer session s119-457-589: 2 connections, 2026-11-02 09:00–09:27"), "{c}");
    assert!(c.contains("Technician Jon Snow has no user here: posted as the API user."), "{c}");
    let found_existing = all.iter().filter(|d| d.attempts > 1 && d.kind == outbox::NoteKind::TimeEntry).count();
    assert!(found_existing >= 1, "the timed-out entry was scanned for, not re-sent");
    // Notes were not affected: one per session.
    assert_eq!(sim.journals(101).len(), 3);
}

/// A group closes only once its gap has elapsed since its last end and no reconnect of its
/// code is running; DoNotBill sessions are non-billable, or skipped; a source can be made
/// non-billable; a mapped technician is written as their user.
#[tokio::test]
async fn groups_close_after_their_gap_and_billing_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::test_store(dir.path()).await;
    let list = [
        session("teamviewer", "c1", "s1", "201", "2026-11-02T09:00:00Z", 20, "Bill"),
        session("teamviewer", "d1", "s2", "202", "2026-11-02T09:00:00Z", 20, "DoNotBill"),
        session("zoom", "z1", "9999", "203", "2026-11-02T09:00:00Z", 20, ""),
    ];
    ingest_and_match(&store, &list, &["redmine"]).await;
    // A reconnect of s1 still running, started within the gap.
    let mut running = session("teamviewer", "c2", "s1", "201", "2026-11-02T09:25:00Z", 0, "Bill");
    running.ended_at = None;
    let mut tx = store.begin().await.unwrap();
    sessions::upsert(&mut tx, &running, Some("w")).await.unwrap();
    tx.commit().await.unwrap();

    let p = TimePolicy { non_billable_sources: vec!["zoom".into()], ..TimePolicy::default() };
    let pol = policies("redmine", p.clone(), &[("Jon Snow", "12")]);
    let early = close_groups(&store, &pol, chrono_tz::UTC, ts("2026-11-02T09:25:00Z")).await.unwrap();
    assert_eq!((early.queued, early.waiting), (0, 3), "the gap has not elapsed");
    let later = close_groups(&store, &pol, chrono_tz::UTC, ts("2026-11-02T10:00:00Z")).await.unwrap();
    assert_eq!((later.queued, later.waiting), (2, 1), "s1 waits for its running reconnect");
    let rows = time::list(&store, None, None).await.unwrap();
    let by = |id: &str| rows.iter().find(|r| r.external_id == id).unwrap().clone();
    assert_eq!(by("d1").billable, 0, "DoNotBill: a non-billable entry");
    assert_eq!(by("z1").billable, 0, "zoom is listed non-billable");
    assert_eq!(by("d1").ticket_user.as_deref(), Some("12"), "Jon Snow mapped to user 12");

    // The reconnect ends: the group of s1 (both sessions) closes.
    let mut ended = running.clone();
    ended.ended_at = Some(ts("2026-11-02T09:40:00Z"));
    ended.raw_json = json!({"id": "c2", "billing_state": "Bill", "username": "Jon Snow", "v": 2}).to_string();
    ingest_and_match(&store, &[ended], &["redmine"]).await;
    let closed = close_groups(&store, &pol, chrono_tz::UTC, ts("2026-11-02T11:00:00Z")).await.unwrap();
    assert_eq!(closed.queued, 1);
    let rows = time::list(&store, None, None).await.unwrap();
    let s1 = rows.iter().find(|r| r.external_id == "c1").unwrap();
    assert_eq!((s1.sessions, s1.raw_seconds, s1.minutes_billed), (2, 35 * 60, 45));

    // Under `skip`, a DoNotBill session gets no entry at all.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = support::test_store(dir2.path()).await;
    ingest_and_match(
        &store2,
        &[session("teamviewer", "e1", "s3", "204", "2026-11-02T09:00:00Z", 5, "DoNotBill")],
        &["redmine"],
    )
    .await;
    let skip = policies("redmine", TimePolicy { do_not_bill: DoNotBill::Skip, ..TimePolicy::default() }, &[]);
    let s = close_groups(&store2, &skip, chrono_tz::UTC, ts("2026-11-03T00:00:00Z")).await.unwrap();
    assert_eq!((s.queued, s.skipped), (0, 1));
    let states = time::session_states(&store2).await.unwrap();
    assert_eq!(states[0].2, "skipped");
}

/// A sink without a policy bills nothing: its waiting sessions are turned off, so turning
/// the policy on later bills new matches only.
#[tokio::test]
async fn a_sink_without_a_policy_bills_nothing_even_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::test_store(dir.path()).await;
    ingest_and_match(&store, &[session("splashtop", "f1", "123", "301", "2026-11-02T09:00:00Z", 20, "")], &["redmine"])
        .await;
    let none = TimePolicies::new();
    close_groups(&store, &none, chrono_tz::UTC, ts("2026-11-03T00:00:00Z")).await.unwrap();
    let pol = policies("redmine", TimePolicy::default(), &[]);
    let s = close_groups(&store, &pol, chrono_tz::UTC, ts("2026-11-03T00:00:00Z")).await.unwrap();
    assert_eq!(s.queued, 0);
    assert_eq!(time::session_states(&store).await.unwrap()[0].2, "off");
}

/// A ticket closed for time entries (its project closed) kills the entry with Redmine's own
/// reason while the note landed; a 429 on an entry waits for its Retry-After and lands once;
/// a mapped technician who is gone falls back to the API user, said in the comment.
#[tokio::test]
async fn closed_project_kills_the_entry_not_the_note_and_429_waits_on_redmine_sim() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::test_store(dir.path()).await;
    let sim = RedmineSim::start(KEY, &[401, 402]).await.unwrap();
    ingest_and_match(
        &store,
        &[
            session("teamviewer", "g1", "s4", "401", "2026-11-02T09:00:00Z", 20, "Bill"),
            session("teamviewer", "h1", "s5", "402", "2026-11-02T09:00:00Z", 20, "Bill"),
        ],
        &["redmine"],
    )
    .await;
    let sinks = redmine_sink(&sim.base_url, KEY, Duration::from_secs(5), Some(9));
    settle(&store, &sinks, &fast_policy()).await;
    assert_eq!(sim.journals(401).len(), 1, "the note landed");
    sim.close_project_of(401);
    sim.remove_user(12);
    sim.throttle_time_entries(1, 1);
    let pol = policies("redmine", TimePolicy::default(), &[("jon snow", "12")]);
    close_groups(&store, &pol, chrono_tz::UTC, ts("2026-11-03T00:00:00Z")).await.unwrap();
    settle(&store, &sinks, &fast_policy()).await;
    let all = outbox::list(&store, None).await.unwrap();
    let t = time_deliveries(&all);
    let dead: Vec<_> = t.iter().filter(|d| d.state == outbox::DeliveryState::Dead).collect();
    assert_eq!(dead.len(), 1, "{t:#?}");
    assert_eq!(dead[0].ticket_id, "401");
    let err = dead[0].last_error.as_deref().unwrap();
    assert!(err.contains("Issue is invalid") && err.contains("closed"), "{err}");
    let ok: Vec<_> = t.iter().filter(|d| d.state == outbox::DeliveryState::Delivered).collect();
    assert_eq!(ok.len(), 1);
    let entries = sim.time_entries();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0].user_id, 1, "user 12 is gone: posted as the API user");
    assert!(entries[0].comments.contains("posted as the API user"), "{}", entries[0].comments);
    let posts: Vec<_> = sim.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert!(posts.iter().any(|r| r.status == 429), "{posts:?}");
    // The note on the closed project's issue was not touched again.
    assert_eq!(sim.journals(401).len(), 1);
}

/// The same on the real Redmine: a time entry lands once on an issue of a project with time
/// tracking (its comment keeps the marker line, found by the scan), and on a closed
/// project's issue it is dead with Redmine's reason while the note landed.
#[tokio::test]
async fn real_redmine_takes_the_entry_once_and_refuses_a_closed_project() {
    let Some(ci) = support::redmine_ci() else { return };
    let http = reqwest::Client::new();
    let h = ("X-Redmine-API-Key", ci.api_key.clone());
    let ident = format!("ts-time-{}", uuid::Uuid::new_v4().simple());
    let mut ids = Vec::new();
    for suffix in ["open", "closed"] {
        let r = http
            .post(format!("{}/projects.json", ci.url))
            .header(h.0, &h.1)
            .json(&json!({"project": {"name": format!("{ident}-{suffix}"), "identifier": format!("{ident}-{suffix}"),
                "enabled_module_names": ["issue_tracking", "time_tracking"], "tracker_ids": [1]}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "creating a project on the real Redmine");
        let r = http
            .post(format!("{}/issues.json", ci.url))
            .header(h.0, &h.1)
            .json(&json!({"issue": {"project_id": format!("{ident}-{suffix}"), "subject": "time entry test"}}))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        ids.push(v["issue"]["id"].as_u64().unwrap().to_string());
    }
    let activity = http
        .get(format!("{}/enumerations/time_entry_activities.json", ci.url))
        .header(h.0, &h.1)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["time_entry_activities"][0]["id"]
        .as_u64();
    let dir = tempfile::tempdir().unwrap();
    let store = support::test_store(dir.path()).await;
    let sid = uuid::Uuid::new_v4().simple().to_string();
    ingest_and_match(
        &store,
        &[
            session("teamviewer", &format!("{sid}-o"), "s9", &ids[0], "2026-11-02T09:00:00Z", 20, "Bill"),
            session("teamviewer", &format!("{sid}-c"), "s9", &ids[1], "2026-11-02T09:00:00Z", 20, "Bill"),
        ],
        &["redmine"],
    )
    .await;
    let sinks = redmine_sink(&ci.url, &ci.api_key, Duration::from_secs(30), activity);
    settle(&store, &sinks, &fast_policy()).await;
    let r = http
        .post(format!("{}/projects/{ident}-closed/close.json", ci.url))
        .header(h.0, &h.1)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "closing the project: {}", r.status());
    let pol = policies("redmine", TimePolicy::default(), &[]);
    assert_eq!(close_groups(&store, &pol, chrono_tz::UTC, Utc::now()).await.unwrap().queued, 2);
    settle(&store, &sinks, &fast_policy()).await;
    let all = outbox::list(&store, None).await.unwrap();
    let notes: Vec<_> = all.iter().filter(|d| d.kind == outbox::NoteKind::SessionReport).collect();
    assert!(notes.iter().all(|d| d.state == outbox::DeliveryState::Delivered), "{notes:#?}");
    let t = time_deliveries(&all);
    let open = t.iter().find(|d| d.ticket_id == ids[0]).unwrap();
    let closed = t.iter().find(|d| d.ticket_id == ids[1]).unwrap();
    assert_eq!(open.state, outbox::DeliveryState::Delivered, "{open:#?}");
    assert_eq!(closed.state, outbox::DeliveryState::Dead, "{closed:#?}");
    let err = closed.last_error.as_deref().unwrap();
    assert!(err.contains("Issue is invalid"), "Redmine's own reason: {err}");
    // On the real Redmine the comment keeps its marker line, and the scan finds it.
    let sink = sinks["redmine"].clone();
    let found = sink.find_time_entry(&ids[0], &open.marker).await.unwrap();
    assert!(found.is_some_and(|f| f.contains("#time-entry-")));
    let listed: serde_json::Value = http
        .get(format!("{}/time_entries.json?issue_id={}", ci.url, ids[0]))
        .header(h.0, &h.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = listed["time_entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed}");
    assert_eq!(entries[0]["hours"].as_f64(), Some(0.5), "20 minutes billed as 30");
    assert!(entries[0]["comments"].as_str().unwrap().ends_with(&format!("ticketsync-marker: {}", open.marker)));
}

/// `ticketsync audit export --kind time-entries --from --to --format csv`: one row per entry
/// whose work started in the range, with raw and billed minutes, billable flag and state.
#[tokio::test]
async fn audit_export_writes_the_time_entries_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::temp_store(dir.path()).await;
    ingest_and_match(
        &store,
        &[
            session("teamviewer", "k1", "s7", "501", "2026-11-02T09:00:00Z", 20, "Bill"),
            session("teamviewer", "k2", "s8", "502", "2026-11-05T09:00:00Z", 7, "DoNotBill"),
            session("teamviewer", "k3", "s9", "503", "2026-12-01T09:00:00Z", 7, "Bill"),
        ],
        &["redmine"],
    )
    .await;
    let pol = policies("redmine", TimePolicy::default(), &[]);
    assert_eq!(close_groups(&store, &pol, chrono_tz::UTC, ts("2026-12-03T00:00:00Z")).await.unwrap().queued, 3);
    store.close().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
        .args(["audit", "export", "--kind", "time-entries", "--from", "2026-11-01", "--to", "2026-11-30"])
        .args(["--format", "csv", "--db"])
        .arg(dir.path().join("t.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let head: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(head, ticketsync::export::TIME_ENTRY_COLUMNS);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "December's entry is outside the range: {text}");
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("ticket_id")], "501");
    assert_eq!(&rows[0][col("minutes_raw")], "20.00");
    assert_eq!(&rows[0][col("minutes_billed")], "30");
    assert_eq!(&rows[0][col("billable")], "true");
    assert_eq!(&rows[0][col("state")], "pending");
    assert_eq!(&rows[1][col("billable")], "false", "DoNotBill");
    assert_eq!(&rows[1][col("minutes_billed")], "15");
}

/// A time entry whose first attempt reached the system before the process died (claimed,
/// written, never recorded): after the restart the scan finds it, and it is not written
/// again. `count` says how many entries the system holds for the ticket.
async fn entry_lands_once_after_a_crash<F, Fut>(sink: Arc<dyn TicketSink>, ticket: &str, count: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = support::test_store(dir.path()).await;
    let name = sink.name().to_string();
    let sinks: Sinks = Arc::new(HashMap::from([(name.clone(), sink.clone())]));
    let id = format!("x-{}", uuid::Uuid::new_v4().simple());
    ingest_and_match(&store, &[session("teamviewer", &id, "s1", ticket, "2026-11-02T09:00:00Z", 20, "Bill")], &[&name])
        .await;
    settle(&store, &sinks, &fast_policy()).await;
    let pol = policies(&name, TimePolicy::default(), &[]);
    assert_eq!(close_groups(&store, &pol, chrono_tz::UTC, Utc::now()).await.unwrap().queued, 1);
    let claimed = outbox::claim_due(&store, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    assert_eq!(d.kind, outbox::NoteKind::TimeEntry);
    let entry: ticketsync::time_entry::TimeEntry = serde_json::from_str(&d.note_json).unwrap();
    sink.post_time_entry(ticket, &entry).await.expect("the first attempt lands");
    assert_eq!(count().await, 1);
    // kill -9 here: the row stays `sending`; the restart puts it back, and the next attempt scans.
    assert_eq!(outbox::recover_sending(&store).await.unwrap(), 1);
    settle(&store, &sinks, &fast_policy()).await;
    let after = outbox::get(&store, d.id).await.unwrap().unwrap();
    assert_eq!(after.state, outbox::DeliveryState::Delivered);
    assert_eq!(count().await, 1, "found by its marker, not written twice");
    let attempts = outbox::list(&store, None).await.unwrap().into_iter().find(|x| x.id == d.id).unwrap().attempts;
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn rt_sim_time_entry_is_a_comment_with_time_taken_once() {
    use ticketsync::sim::rt::RtSim;
    let sim = RtSim::start("1-14-5e1d0c0ffee0123456789abcdef01234", &[601]).await.unwrap();
    let http = reqwest::Client::new();
    let sink = ticketsync::sinks::rt::RtSink::new(
        "rt",
        &sim.base_url,
        SecretString::from("1-14-5e1d0c0ffee0123456789abcdef01234".to_string()),
        None,
        http,
    );
    let count = || async { sim.messages(601).iter().filter(|t| t.text().contains("Technician Jon Snow")).count() };
    entry_lands_once_after_a_crash(Arc::new(sink), "601", count).await;
    assert_eq!(sim.time_worked(601), 30);
}

#[tokio::test]
async fn rt_real_time_entry_adds_to_time_worked_once() {
    let Some(ci) = support::rt_ci() else { return };
    let ticket = ci.new_ticket("time entry test").await.to_string();
    let sink = ticketsync::sinks::rt::RtSink::new(
        "rt",
        &ci.url,
        SecretString::from(ci.token.clone()),
        None,
        reqwest::Client::new(),
    );
    let http = reqwest::Client::new();
    let worked = || async {
        let v: serde_json::Value = http
            .get(format!("{}/ticket/{ticket}", ci.rest()))
            .header("Authorization", format!("token {}", ci.token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["TimeWorked"].as_str().and_then(|t| t.parse::<usize>().ok()).unwrap_or(0) / 30
    };
    entry_lands_once_after_a_crash(Arc::new(sink), &ticket, worked).await;
}

#[tokio::test]
async fn zammad_sim_time_entry_is_an_article_with_time_unit_once() {
    use ticketsync::sim::zammad::ZammadSim;
    let sim = ZammadSim::start("Token token=zammad-token", &[701]).await.unwrap();
    let sink = ticketsync::sinks::zammad::ZammadSink::new(
        "zammad",
        &sim.base_url,
        ticketsync::sinks::zammad::ZammadAuth::Token(SecretString::from("zammad-token".to_string())),
        None,
        reqwest::Client::new(),
    );
    let count = || async { sim.time_accountings(701).len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "701", count).await;
    assert_eq!(sim.time_accountings(701)[0].1, "30");
}

/// `doctor` asks the ticket system about each technician mapping: one whose user is gone is
/// a FAIL naming the key to fix.
#[tokio::test]
async fn doctor_reports_a_technician_mapping_that_no_longer_exists() {
    let sim = RedmineSim::start(KEY, &[101]).await.unwrap();
    sim.remove_user(12);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("d.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = \"{}\"\n\n[sinks.redmine]\nurl = \"{}\"\napi_key = \"{KEY}\"\nallow_insecure_http = true\n\
             time_entries = true\ntime_technicians = [\"Jon Snow = 12\", \"admin@example.net = 1\"]\n",
            dir.path().join("t.db").display(),
            sim.base_url
        ),
    )
    .unwrap();
    let checks = ticketsync::doctor::checks(&cfg).await;
    let find = |n: &str| checks.iter().find(|c| c.name == n).unwrap_or_else(|| panic!("{n}: {checks:#?}"));
    let gone = find("sink redmine technician jon snow");
    assert_eq!(gone.status.as_str(), "FAIL", "{gone:?}");
    assert!(gone.detail.contains("user 12, who no longer exists"), "{gone:?}");
    assert!(gone.fix.as_deref().is_some_and(|f| f.contains("sinks.redmine.time_technicians")), "{gone:?}");
    assert_eq!(find("sink redmine technician admin@example.net").status.as_str(), "OK");
}

#[tokio::test]
async fn freshservice_sim_time_entry_lands_once_with_hh_mm_and_the_api_agent() {
    use ticketsync::sim::freshservice::FreshserviceSim;
    let sim = FreshserviceSim::start("fs-key", &[801]).await.unwrap();
    let sink = ticketsync::sinks::freshservice::FreshserviceSink::new(
        "freshservice",
        &sim.base_url,
        SecretString::from("fs-key".to_string()),
        None,
        reqwest::Client::new(),
    );
    let count = || async { sim.time_entries(801).len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "801", count).await;
    let e = &sim.time_entries(801)[0];
    assert_eq!(
        (e["time_spent"].as_str(), e["agent_id"].as_u64(), e["billable"].as_bool()),
        (Some("00:30"), Some(1), Some(true))
    );
    assert!(e["note"].as_str().unwrap().contains("posted as the API user"), "{e}");
}

#[tokio::test]
async fn jsm_sim_time_entry_is_a_worklog_once_adf_on_cloud_text_on_data_center() {
    use base64::Engine;
    use ticketsync::sim::jsm::JsmSim;
    use ticketsync::sinks::jsm::{JsmAuth, JsmSink};
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("a@example.com:tok"));
    let sim = JsmSim::start(&basic, &["HELP-1"]).await.unwrap();
    let cloud = JsmAuth::Cloud { email: "a@example.com".into(), api_token: SecretString::from("tok".to_string()) };
    let sink = JsmSink::new("jsm", &sim.base_url, cloud, false, None, reqwest::Client::new());
    let count = || async { sim.worklogs("HELP-1").len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "HELP-1", count).await;
    let (version, w) = &sim.worklogs("HELP-1")[0];
    assert_eq!((*version, w["timeSpentSeconds"].as_u64()), (3, Some(1800)));
    assert_eq!(w["comment"]["type"], "doc", "Cloud: an Atlassian Document");
    assert_eq!(w["started"], "2026-11-02T09:00:00.000+0000");

    let dc_sim = JsmSim::start("Bearer pat", &["HELP-2"]).await.unwrap();
    let dc = JsmAuth::DataCenter { pat: SecretString::from("pat".to_string()) };
    let sink = JsmSink::new("jsm", &dc_sim.base_url, dc, false, None, reqwest::Client::new());
    let count = || async { dc_sim.worklogs("HELP-2").len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "HELP-2", count).await;
    let (version, w) = &dc_sim.worklogs("HELP-2")[0];
    assert_eq!(*version, 2);
    assert!(w["comment"].as_str().unwrap().contains("ticketsync-marker: "), "Data Center: plain text");
}

#[tokio::test]
async fn glpi_sim_time_entry_is_a_private_ticket_task_with_actiontime_once() {
    use ticketsync::sim::glpi::GlpiSim;
    let sim = GlpiSim::start("glpi-user", Some("glpi-app"), &[901]).await.unwrap();
    let sink = ticketsync::sinks::glpi::GlpiSink::new(
        "glpi",
        &sim.base_url,
        SecretString::from("glpi-user".to_string()),
        Some(SecretString::from("glpi-app".to_string())),
        None,
        reqwest::Client::new(),
    );
    let count = || async { sim.tasks(901).len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "901", count).await;
    let t = &sim.tasks(901)[0];
    assert_eq!((t["actiontime"].as_u64(), t["is_private"].as_i64()), (Some(1800), Some(1)));
}

#[tokio::test]
async fn servicenow_sim_time_entry_is_a_task_time_worked_row_once() {
    use ticketsync::sim::servicenow::ServiceNowSim;
    use ticketsync::sinks::servicenow::{ServiceNowAuth, ServiceNowSink};
    let sim = ServiceNowSim::start("ts.integration", "sn-pw", &["INC0010001"]).await.unwrap();
    let auth =
        ServiceNowAuth::Basic { user: "ts.integration".into(), password: SecretString::from("sn-pw".to_string()) };
    let sink = ServiceNowSink::new("servicenow", &sim.base_url, auth, "incident", None, reqwest::Client::new());
    let count = || async { sim.time_worked("INC0010001").len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "INC0010001", count).await;
    let row = &sim.time_worked("INC0010001")[0];
    assert_eq!(row["time_worked"], "1970-01-01 00:30:00");
}

#[tokio::test]
async fn zendesk_sim_time_entry_is_a_private_comment_raising_the_total_field_once() {
    use ticketsync::sim::zendesk::ZendeskSim;
    use ticketsync::sinks::zendesk::{ZendeskAuth, ZendeskSink};
    let sim = ZendeskSim::start("agent@example.com", "zd-token", &[1001]).await.unwrap();
    let auth =
        ZendeskAuth::ApiToken { email: "agent@example.com".into(), token: SecretString::from("zd-token".to_string()) };
    let sink =
        ZendeskSink::new("zendesk", &sim.base_url, auth, None, reqwest::Client::new()).with_time_field(Some(555));
    assert!(sink.supports_time_entries());
    let count = || async { sim.comments(1001).iter().filter(|c| c.plain_body.contains("min billed")).count() };
    entry_lands_once_after_a_crash(Arc::new(sink), "1001", count).await;
    assert_eq!(sim.custom_field(1001, 555), Some(json!(1800)), "the total raised once");
    let no_field = ZendeskSink::new(
        "zendesk",
        &sim.base_url,
        ZendeskAuth::OAuth { token: SecretString::from("t".to_string()) },
        None,
        reqwest::Client::new(),
    );
    assert!(!no_field.supports_time_entries(), "Zendesk has no time tracking without the field");
}

/// A session moved to another ticket (`relink` queues its report there) is billed once,
/// where it is now; one already counted stays counted where it was.
#[tokio::test]
async fn a_relinked_session_is_billed_once_where_it_is_now() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::test_store(dir.path()).await;
    ingest_and_match(
        &store,
        &[session("teamviewer", "r1", "s1", "1101", "2026-11-02T09:00:00Z", 20, "Bill")],
        &["redmine"],
    )
    .await;
    let sid = time::session_states(&store).await.unwrap()[0].1;
    let mut tx = store.begin().await.unwrap();
    outbox::enqueue(&mut tx, "redmine", "1102", Some(sid), None, outbox::NoteKind::SessionReport, "m-relinked", "{}")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let pol = policies("redmine", TimePolicy::default(), &[]);
    assert_eq!(close_groups(&store, &pol, chrono_tz::UTC, ts("2026-11-03T00:00:00Z")).await.unwrap().queued, 1);
    let rows = time::list(&store, None, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].ticket_id, "1102", "billed on the ticket it was moved to");
    // Moved again after its entry was queued: not billed a second time.
    let mut tx = store.begin().await.unwrap();
    outbox::enqueue(&mut tx, "redmine", "1103", Some(sid), None, outbox::NoteKind::SessionReport, "m-again", "{}")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(close_groups(&store, &pol, chrono_tz::UTC, ts("2026-11-03T00:00:00Z")).await.unwrap().queued, 0);
    let states = time::session_states(&store).await.unwrap();
    assert_eq!(states.iter().filter(|s| s.2 == "entered").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| s.2 == "skipped").count(), 2, "{states:?}");
}

#[tokio::test]
async fn connectwise_sim_time_entry_lands_once_after_a_crash() {
    use ticketsync::sim::connectwise::{ConnectWiseSim, API_MEMBER};
    use ticketsync::sinks::connectwise::{ConnectWiseKeys, ConnectWiseSink};
    let sim = ConnectWiseSim::start("acme", "pub", "priv", "cid", &[601]).await.unwrap();
    let keys = ConnectWiseKeys {
        company: "acme".into(),
        public_key: "pub".into(),
        private_key: SecretString::from("priv".to_string()),
        client_id: "cid".into(),
    };
    let sink = ConnectWiseSink::new("connectwise", &sim.base_url, keys, API_MEMBER, reqwest::Client::new());
    let count = || async { sim.time_entries(601).len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "601", count).await;
    let t = &sim.time_entries(601)[0];
    assert_eq!((t.actual_hours, t.billable_option.as_str()), (0.5, "Billable"), "{t:?}");
}

#[tokio::test]
async fn autotask_sim_time_entry_lands_once_after_a_crash() {
    use ticketsync::sim::autotask::AutotaskSim;
    use ticketsync::sinks::autotask::{AutotaskCredentials, AutotaskSink, NoteKinds, TimeSettings};
    let sim = AutotaskSim::start("api@x.test", "CODE", "at-secret", &[601]).await.unwrap();
    let creds = AutotaskCredentials {
        username: "api@x.test".into(),
        integration_code: "CODE".into(),
        secret: SecretString::from("at-secret".to_string()),
    };
    let sink = AutotaskSink::new("autotask", &sim.base_url, None, creds, NoteKinds::default(), reqwest::Client::new())
        .with_time_entries(TimeSettings { role_id: 29_683_000, billing_code_id: None });
    let count = || async { sim.time_entries(601).len() };
    entry_lands_once_after_a_crash(Arc::new(sink), "601", count).await;
    assert_eq!(sim.time_entries(601)[0].hours_worked, 0.5);
}

#[tokio::test]
async fn halopsa_sim_time_entry_lands_once_after_a_crash() {
    use ticketsync::sim::halopsa::HaloPsaSim;
    use ticketsync::sinks::halopsa::{HaloCredentials, HaloPsaSink, Outcomes};
    let sim = HaloPsaSim::start("hid", "hsecret", None, &[601]).await.unwrap();
    let creds = HaloCredentials {
        client_id: "hid".into(),
        client_secret: SecretString::from("hsecret".to_string()),
        tenant: None,
        auth_url: None,
    };
    let sink = HaloPsaSink::new("halopsa", &sim.base_url, creds, Outcomes::default(), reqwest::Client::new());
    let count = || async { sim.actions(601).iter().filter(|a| a.time_taken > 0.0).count() };
    entry_lands_once_after_a_crash(Arc::new(sink), "601", count).await;
    assert_eq!(sim.actions(601).iter().map(|a| a.time_taken).sum::<f64>(), 0.5);
}
