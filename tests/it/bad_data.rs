//! Fault suite, bad data (area 5): text a vendor sends broken, or far too big for a ticket.
//! Each bad record is quarantined with a reason naming its field; the rest of its page is
//! stored and delivered, and the poll goes on. (Zoom's case lives in `zoom.rs`, next to its
//! helpers; malformed dates and ids in `teamviewer.rs`.)

use std::time::Instant;

use crate::support::{tv_connection, vdate};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use ticketsync::app::App;
use ticketsync::config::Config;
use ticketsync::sim::splashtop::{SimOptions as StSimOptions, SplashtopSim};
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;
use ticketsync::sources::screen::TEXT_FIELD_MAX;

const SECRET: &str = "bad-data-secret";
const HEADER: &str = "X-Ticketsync-Signature";
const MB: usize = 1 << 20;

/// An ended TeamViewer connection for `ticket`, `i` minutes after `t0`.
fn connection(ticket: u64, i: i64, t0: DateTime<Utc>) -> Value {
    let id = format!("dddddddd-0000-4000-8000-{ticket:012}");
    tv_connection(&id, &format!("s{ticket}-000-001"), &ticket.to_string(), t0 + TimeDelta::minutes(i * 10))
}

/// A daemon configuration with the given `[sources.*]` text and the webhook sink.
fn config(dir: &std::path::Path, sources: &str, hook_url: &str) -> Config {
    let whf = dir.join("wh");
    std::fs::write(&whf, SECRET).unwrap();
    let text = format!(
        r##"
[store]
path = "{db}"
{sources}
[[match.rules]]
kind = "custom_api"
[[match.rules]]
kind = "notes_regex"
pattern = "#(\\d+)"
[sinks.webhook]
url = "{hook_url}"
secret_file = "{whf}"
signature_header = "{HEADER}"
"##,
        db = dir.join("ts.db").display(),
        whf = whf.display(),
    );
    let p = dir.join("ticketsync.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p).expect("test config")
}

async fn quarantine(app: &App) -> Vec<(Option<String>, String, String)> {
    sqlx::query_as("SELECT external_id, reason, raw FROM quarantine ORDER BY id")
        .fetch_all(app.store.sqlite_pool())
        .await
        .unwrap()
}

async fn stored(app: &App) -> Vec<String> {
    sqlx::query_scalar("SELECT external_id FROM sessions ORDER BY started_at")
        .fetch_all(app.store.sqlite_pool())
        .await
        .unwrap()
}

fn tickets(hook: &WebhookSim) -> Vec<String> {
    let mut t: Vec<String> =
        hook.accepted().iter().map(|p| p["ticket_id"].as_str().unwrap_or_default().to_string()).collect();
    t.sort();
    t
}

/// Three pages of two: a Latin-1 `username`, a `devicename` cut inside a surrogate pair
/// (`\ud83d` alone, which serde_json refuses: before, that page failed every poll), and
/// 1 MB of `notes`. Each is quarantined naming its field; its page neighbours, one with
/// valid non-ASCII text, are stored and their notes delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_teamviewer_invalid_utf8_lone_surrogate_and_huge_notes_are_quarantined() {
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec!["bd-token".into()], page_size: 2, ..Default::default() })
            .await
            .unwrap();
    let hook = WebhookSim::start(SECRET, HEADER).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tv"), "bd-token").unwrap();
    let sources = format!(
        "[sources.teamviewer]\nbase_url = \"{}\"\nschedule = \"* * * * *\"\ntoken_file = \"{}\"\ninitial_lookback_days = 1\n",
        tv.base_url,
        dir.path().join("tv").display()
    );
    let app = App::build(config(dir.path(), &sources, &hook.url)).await.unwrap();

    let t0 = Utc::now() - TimeDelta::hours(3);
    let mut latin1 = connection(902, 1, t0);
    latin1["username"] = json!("José Latin");
    tv.mis_encode("José Latin", b"Jos\xe9 Latin");
    let mut surrogate = connection(903, 2, t0);
    surrogate["devicename"] = json!("LT-💻");
    tv.mis_encode("LT-💻", b"LT-\\ud83d");
    let mut unicode = connection(904, 3, t0);
    unicode["username"] = json!("Zoë 😀 Ünal");
    let mut huge = connection(905, 4, t0);
    let notes = "Printer #12 offline; reinstalled driver 3.4.1, rebooted twice.\n".repeat(MB / 32);
    huge["notes"] = json!(notes[..MB]);
    for r in [connection(901, 0, t0), latin1, surrogate, unicode, huge, connection(906, 5, t0)] {
        tv.add_connection(r);
    }

    let started = Instant::now();
    let r = app.cycle().await.expect("bad text does not fail the poll");
    let took = started.elapsed();
    let p = r.polled[0].1;
    assert_eq!((p.pages, p.records, p.inserted, p.quarantined, p.complete), (3, 6, 3, 3, true), "{r:?}");
    let id = |t: u64| format!("dddddddd-0000-4000-8000-{t:012}");
    assert_eq!(stored(&app).await, [id(901), id(904), id(906)]);

    let q = quarantine(&app).await;
    assert_eq!(q.len(), 3, "{q:?}");
    assert_eq!((q[0].0.clone(), q[0].1.as_str()), (Some(id(902)), "invalid UTF-8 in username"));
    assert_eq!((q[1].0.clone(), q[1].1.as_str()), (Some(id(903)), "a lone surrogate escape in devicename"));
    assert_eq!(q[2].0, Some(id(905)));
    let want = format!("notes: {} bytes, over the {TEXT_FIELD_MAX}-byte limit", MB);
    assert!(q[2].1.starts_with(&want), "{}", q[2].1);
    // The kept raw records: the bad text shows as U+FFFD; the huge field is cut, with its size.
    let raw: Vec<Value> = q.iter().map(|r| serde_json::from_str(&r.2).unwrap()).collect();
    assert_eq!(raw[0]["username"], "Jos\u{FFFD} Latin");
    assert_eq!(raw[1]["devicename"], "LT-\u{FFFD}");
    assert!(
        q[2].2.len() < 4096 && raw[2]["notes"].as_str().unwrap().ends_with("[cut by ticketsync: 1048576 bytes in all]")
    );

    assert_eq!(tickets(&hook), ["901", "904", "906"], "the good records' notes went out");
    let zoe = hook.accepted().into_iter().find(|p| p["ticket_id"] == "904").unwrap();
    assert!(zoe.to_string().contains("Zoë 😀 Ünal"), "valid non-ASCII text is kept as sent");
    println!(
        "bad data (teamviewer): 6 records on 3 pages, 3 stored and delivered, 3 quarantined: {:?}; cycle with 1 MB notes took {took:?}",
        q.iter().map(|r| &r.1[..r.1.len().min(60)]).collect::<Vec<_>>()
    );

    // The overlap re-read meets the same records: no second quarantine row, nothing sent again.
    app.cycle().await.unwrap();
    assert_eq!(quarantine(&app).await.len(), 3);
    assert_eq!(hook.accepted().len(), 3);
    tv.shutdown().await;
}

/// A Splashtop session log.
fn log(i: u64, t0: DateTime<Utc>) -> Value {
    let start = t0 + TimeDelta::minutes(i as i64 * 10);
    json!({
        "session_id": format!("st-{i}"), "support_session_code": format!("{i}00100200"),
        "user_email": "tech@example.com", "src_name": "TECH-LAPTOP", "dst_name": format!("DESKTOP-{i}"),
        "start_time": vdate(start), "end_time": vdate(start + TimeDelta::minutes(5)),
        "session_type": "attended", "note": format!("Fixed Outlook, ticket #{}", 700 + i)
    })
}

/// Splashtop (API token; the OAuth path shares the same page decoder): a computer name in
/// Latin-1 bytes and a 1 MB `note` are quarantined naming the field; the other logs on
/// their page are stored and matched by their notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_splashtop_latin1_computer_name_and_huge_note_are_quarantined() {
    let st = SplashtopSim::start(StSimOptions { api_tokens: vec!["bd-st-token".into()], ..Default::default() })
        .await
        .unwrap();
    let hook = WebhookSim::start(SECRET, HEADER).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("st"), "bd-st-token").unwrap();
    let sources = format!(
        "[sources.splashtop]\nbase_url = \"{u}\"\nconsole_url = \"{u}\"\nschedule = \"* * * * *\"\ntoken_file = \"{}\"\npage_size = 10\ninitial_lookback_days = 1\n",
        dir.path().join("st").display(),
        u = st.base_url,
    );
    let app = App::build(config(dir.path(), &sources, &hook.url)).await.unwrap();
    let t0 = Utc::now() - TimeDelta::hours(3);
    let mut latin1 = log(2, t0);
    latin1["dst_name"] = json!("PC-Müller");
    st.mis_encode("PC-Müller", b"PC-M\xfcller");
    let mut huge = log(3, t0);
    huge["note"] = json!(format!("ticket #703 {}", "x".repeat(MB)));
    for l in [log(1, t0), latin1, huge, log(4, t0)] {
        st.add_log(l);
    }

    let r = app.cycle().await.expect("bad text does not fail the poll");
    let p = r.polled[0].1;
    assert_eq!((p.records, p.inserted, p.quarantined), (4, 2, 2), "{r:?}");
    assert_eq!(stored(&app).await, ["st-1", "st-4"]);
    let q = quarantine(&app).await;
    assert_eq!((q[0].0.as_deref(), q[0].1.as_str()), (Some("st-2"), "invalid UTF-8 in dst_name"));
    assert_eq!(q[1].0.as_deref(), Some("st-3"));
    assert!(q[1].1.starts_with(&format!("note: {} bytes, over the {TEXT_FIELD_MAX}-byte limit", MB + 12)), "{q:?}");
    assert_eq!(tickets(&hook), ["701", "704"]);
    println!("bad data (splashtop): 4 logs, 2 stored and delivered, 2 quarantined: {:?}", [&q[0].1, &q[1].1]);
    app.cycle().await.unwrap();
    assert_eq!(quarantine(&app).await.len(), 2, "not quarantined twice");
    st.shutdown().await;
}
