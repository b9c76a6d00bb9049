//! `ticketsync relink` end to end: the binary against the TeamViewer simulator and a Redmine
//! (the simulator, and the real one where the test says so): the correction note on the old
//! ticket, the session's note on the new one, each once, audited, and a second run a no-op.

use std::future::Future;
use std::pin::Pin;

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use crate::cli::{ticketsync, write};
use crate::support::SendJson;
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};

const TOKEN: &str = "54213-2YotnFZFEjr1zCsicMWp";
const RIGHT: &str = "ffffffff-0000-4000-8000-00000000a001";
const DEAD: &str = "ffffffff-0000-4000-8000-00000000a002";
const RULED: &str = "ffffffff-0000-4000-8000-00000000a003";

/// The notes on a ticket, oldest first, as its system shows them.
type Journals<'a> = Box<dyn Fn(&str) -> Pin<Box<dyn Future<Output = Vec<String>> + 'a>> + 'a>;

/// The tickets of a scenario: three that exist and one that does not.
struct Tickets {
    a: String,
    b: String,
    c: String,
    missing: String,
}

fn marker_of(note: &str) -> String {
    note.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// Session RIGHT is matched to `a` by its custom_api field but belongs to `b`; DEAD names
/// a ticket that does not exist (its note is refused) and belongs to `c`; RULED is matched
/// to `c` by rule.
async fn scenario(redmine_section: &str, t: &Tickets, journals: Journals<'_>) {
    let sim =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..SimOptions::default() }).await.unwrap();
    let now = Utc::now();
    let d = |m: i64| (now - TimeDelta::minutes(m)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    for (id, m, code, ticket) in
        [(RIGHT, 50, "s111-222-333", &t.a), (DEAD, 40, "s444-555-666", &t.missing), (RULED, 30, "s777-888-999", &t.c)]
    {
        sim.add_connection(json!({"id": id, "username": "Jon Snow", "start_date": d(m), "end_date": d(m - 5),
            "session_code": code, "custom_api": json!({"ticket_id": ticket}).to_string()}));
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let cfg = write(
        dir.path(),
        "c.toml",
        &format!(
            "[store]\npath = \"{}\"\n\n[sources.teamviewer]\nbase_url = \"{}\"\ntoken = \"{TOKEN}\"\n\n{redmine_section}",
            db.display(),
            sim.base_url
        ),
    );
    let r = ticketsync(&cfg, &["sync-once"], &[]).await.ok();
    assert!(r.stdout.contains("matched 3 sessions") && r.stdout.contains("1 dead"), "{}", r.stdout);
    let on_a = journals(&t.a).await;
    // The run's own summary beside the journals: a sink answering 5xx leaves the note to a
    // later pass, which this one-shot run then shows as a retry.
    assert_eq!(on_a.len(), 1, "{on_a:?}\n{}\n{}", r.stdout, r.stderr);
    let report_marker = marker_of(&on_a[0]);

    // Moved: a correction on a, the note on b, sent by the command itself.
    let r = ticketsync(
        &cfg,
        &["relink", "--session", RIGHT, "--ticket", &t.b, "--reason", "typo in the custom field"],
        &[("USER", "ana")],
    )
    .await
    .ok();
    assert!(r.stdout.contains(&format!("moved from ticket {} to ticket {}", t.a, t.b)), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("correction queued on ticket {} for: redmine", t.a)), "{}", r.stdout);
    assert!(r.stdout.contains("2 delivered"), "{}", r.stdout);
    let on_a = journals(&t.a).await;
    assert_eq!(on_a.len(), 2, "{on_a:?}");
    assert!(on_a[1].contains("Correction") && on_a[1].contains(&format!("belongs to ticket {}", t.b)), "{}", on_a[1]);
    assert!(on_a[1].contains("typo in the custom field"), "the reason is on the correction: {}", on_a[1]);
    let on_b = journals(&t.b).await;
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert!(on_b[0].contains("s111-222-333") && !on_b[0].contains("Correction"), "{}", on_b[0]);
    let markers = [report_marker.clone(), marker_of(&on_a[1]), marker_of(&on_b[0])];
    assert!(markers.iter().all(|m| m.starts_with("ticketsync-marker: tsd:v2:")), "{markers:?}");
    assert!(markers[0] != markers[1] && markers[1] != markers[2] && markers[0] != markers[2], "{markers:?}");

    // Again: nothing to do, nothing sent; a sync sends nothing more either.
    let r = ticketsync(&cfg, &["relink", "--session", RIGHT, "--ticket", &t.b], &[]).await.ok();
    assert!(r.stdout.contains("already relinked") && r.stdout.contains("nothing to do"), "{}", r.stdout);
    ticketsync(&cfg, &["sync-once"], &[]).await.ok();
    assert_eq!((journals(&t.a).await.len(), journals(&t.b).await.len()), (2, 1));

    // A session whose note never reached its (missing) ticket: no correction, the note on c.
    // Named by its session code, as an operator reads it.
    let r = ticketsync(&cfg, &["relink", "--session", "S444 555 666", "--ticket", &t.c], &[]).await.ok();
    assert!(r.stdout.contains("no correction on ticket"), "{}", r.stdout);
    assert_eq!(journals(&t.c).await.len(), 2, "RULED's note and DEAD's");
    // Its refused note for the missing ticket may not be requeued any more.
    let rows = ticketsync(&cfg, &["deliveries", "--json", "--state", "dead"], &[]).await.ok();
    let dead: Vec<Value> = rows.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead.len(), 1, "{}", rows.stdout);
    let r = ticketsync(&cfg, &["retry", &dead[0]["id"].to_string()], &[]).await.failed();
    assert!(r.stderr.contains("relinked") && r.stderr.contains(&t.c), "{}", r.stderr);

    // Back to a: a fresh note there (a new marker), a correction on b.
    let r = ticketsync(&cfg, &["relink", "--session", RIGHT, "--ticket", &t.a], &[]).await.ok();
    assert!(r.stdout.contains("2 delivered"), "{}", r.stdout);
    let (on_a, on_b) = (journals(&t.a).await, journals(&t.b).await);
    assert_eq!((on_a.len(), on_b.len()), (3, 2), "{on_a:?} {on_b:?}");
    assert!(on_b[1].contains(&format!("belongs to ticket {}", t.a)), "{}", on_b[1]);
    assert!(!markers.contains(&marker_of(&on_a[2])), "a new marker: {}", on_a[2]);

    // Errors: the ticket a rule matched it to, an unknown session, a bad ticket id, an
    // unmatched session.
    let r = ticketsync(&cfg, &["relink", "--session", RULED, "--ticket", &t.c], &[]).await.failed();
    assert!(r.stderr.contains("already matched to ticket") && r.stderr.contains("custom_api"), "{}", r.stderr);
    let r = ticketsync(&cfg, &["relink", "--session", "nope-0000", "--ticket", &t.c], &[]).await.failed();
    assert!(r.stderr.contains("no stored session"), "{}", r.stderr);
    let r = ticketsync(&cfg, &["relink", "--session", RULED, "--ticket", "../1"], &[]).await.failed();
    assert!(r.stderr.contains("not a valid ticket id"), "{}", r.stderr);

    // Audited, with who and why; the chain and the evidence hold.
    let r = ticketsync(&cfg, &["audit", "show", "--ticket", &t.b], &[]).await.ok();
    assert!(r.stdout.contains("session_relinked") && r.stdout.contains("session_unlinked"), "{}", r.stdout);
    assert!(r.stdout.contains("\"by\":\"ana\"") && r.stdout.contains("typo in the custom field"), "{}", r.stdout);
    assert!(r.stdout.contains("relink_correction"), "{}", r.stdout);
    let r = ticketsync(&cfg, &["audit", "show", "--ticket", &t.a], &[]).await.ok();
    assert!(r.stdout.contains("Sessions (1)") && r.stdout.contains("rule=relink"), "{}", r.stdout);
    ticketsync(&cfg, &["audit", "verify"], &[]).await.ok();
}

fn sim_journals(sim: &RedmineSim) -> Journals<'_> {
    Box::new(move |t: &str| {
        let id: u64 = t.parse().unwrap();
        Box::pin(async move { sim.journals(id).into_iter().map(|j| j.notes).collect() })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relink_moves_a_session_with_a_correction_once() {
    let redmine = RedmineSim::start("rm-key", &[101, 102, 103]).await.unwrap();
    let section = format!("[sinks.redmine]\nurl = \"{}\"\napi_key = \"rm-key\"\n", redmine.base_url);
    let t = Tickets { a: "101".into(), b: "102".into(), c: "103".into(), missing: "999".into() };
    scenario(&section, &t, sim_journals(&redmine)).await;
}

/// The same on a real Redmine (`bash .ci/redmine-ci.sh start`): what its journals show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relink_on_real_redmine() {
    let Some(ci) = crate::support::redmine_ci() else { return };
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(ci.new_issue(&format!("ticketsync relink {i}")).await.to_string());
    }
    let insecure = if ci.url.starts_with("http://") { "allow_insecure_http = true\n" } else { "" };
    let section = format!("[sinks.redmine]\nurl = \"{}\"\napi_key = \"{}\"\n{insecure}", ci.url, ci.api_key);
    let t = Tickets { a: ids[0].clone(), b: ids[1].clone(), c: ids[2].clone(), missing: "999999999".into() };
    let (url, key, http) = (&ci.url, &ci.api_key, &http);
    let journals: Journals<'_> = Box::new(move |t: &str| {
        let t = t.to_string();
        Box::pin(async move {
            let v = http
                .get(format!("{url}/issues/{t}.json?include=journals"))
                .header("X-Redmine-API-Key", key)
                .send_json()
                .await;
            v["issue"]["journals"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|j| j["notes"].as_str().filter(|n| !n.is_empty()).map(str::to_string))
                .collect()
        })
    });
    scenario(&section, &t, journals).await;
}
