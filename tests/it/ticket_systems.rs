//! System-specific behaviour of the Zendesk, Freshservice, JSM and GLPI sinks beyond the
//! shared conformance suite: Zendesk's per-ticket batching and custom field, Freshservice's
//! no-retry rule for 4xx, JSM remote links and Data Center auth, GLPI session reuse and
//! re-init, Request Tracker's paired scan (simulator and real RT), custom-field lookups,
//! marker scans across pages, and routing to several sinks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use secrecy::SecretString;
use ticketsync::note::{Field, Link, Note, Visibility};
use ticketsync::pipeline::{deliver_due, DeliveryPolicy, Sinks};
use ticketsync::sim::freshservice::FreshserviceSim;
use ticketsync::sim::glpi::GlpiSim;
use ticketsync::sim::jsm::JsmSim;
use ticketsync::sim::rt::RtSim;
use ticketsync::sim::zendesk::ZendeskSim;
use ticketsync::sinks::freshservice::FreshserviceSink;
use ticketsync::sinks::glpi::GlpiSink;
use ticketsync::sinks::jsm::{global_id, JsmAuth, JsmSink};
use ticketsync::sinks::routing::Route;
use ticketsync::sinks::zendesk::{ZendeskAuth, ZendeskSink};
use ticketsync::sinks::TicketSink;
use ticketsync::store::outbox;
use ticketsync::store::Store;

use crate::faultproxy::{Fault, FaultProxy};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn http() -> reqwest::Client {
    ticketsync::http::client(Duration::from_secs(10))
}

fn note(code: &str, visibility: Visibility) -> Note {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Note {
        title: format!("TeamViewer session {code}"),
        fields: vec![Field { label: "Session code".into(), value: code.into() }],
        links: vec![Link { label: "Report".into(), url: format!("https://example.test/r/{id}") }],
        body: None,
        attachments: vec![],
        visibility,
        marker: format!("tsd:v1:test:{id}:report"),
    }
}

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        give_up_after: chrono::Duration::hours(1),
        concurrency: 2,
        sink_concurrency: Default::default(),
    }
}

async fn store(dir: &tempfile::TempDir) -> Store {
    crate::support::temp_store(dir.path()).await
}

async fn enqueue(store: &Store, sink: &str, ticket: &str, n: &Note) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let json = serde_json::to_string(n).unwrap();
    let id = outbox::enqueue(&mut tx, sink, ticket, None, None, outbox::NoteKind::SessionReport, &n.marker, &json)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id.expect("new delivery")
}

fn sinks(list: Vec<Arc<dyn TicketSink>>) -> Sinks {
    Arc::new(list.into_iter().map(|s| (s.name().to_string(), s)).collect::<HashMap<_, _>>())
}

async fn state(store: &Store, id: i64) -> String {
    outbox::get(store, id).await.unwrap().unwrap().state.to_string()
}

// ---------------------------------------------------------------------------------------
// Zendesk

fn zendesk(base: &str, field: Option<u64>) -> Arc<dyn TicketSink> {
    Arc::new(ZendeskSink::new(
        "zendesk",
        base,
        ZendeskAuth::ApiToken { email: "a@example.test".into(), token: secret("zd-token") },
        field,
        http(),
    ))
}

#[tokio::test]
async fn zendesk_writes_all_due_notes_of_a_ticket_in_one_update() {
    let sim = ZendeskSim::start("a@example.test", "zd-token", &[5, 6]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let s = sinks(vec![zendesk(&sim.base_url, Some(360001))]);
    let notes: Vec<Note> = (0..3).map(|i| note(&format!("s1-{i}"), Visibility::Internal)).collect();
    let mut ids = Vec::new();
    for n in &notes {
        ids.push(enqueue(&store, "zendesk", "5", n).await);
    }
    // A public note after them is not merged into the private comment.
    let public = note("s1-public", Visibility::Public);
    let pub_id = enqueue(&store, "zendesk", "5", &public).await;
    let other = enqueue(&store, "zendesk", "6", &note("s2-0", Visibility::Internal)).await;

    let stats = deliver_due(&store, &s, &policy()).await.unwrap();
    assert_eq!((stats.attempted, stats.delivered), (5, 5), "{stats:?}");
    for id in ids.iter().chain([&pub_id, &other]) {
        assert_eq!(state(&store, *id).await, "delivered");
    }
    // Ticket 5: one private update with the three notes, one public update; ticket 6: one.
    assert_eq!(sim.update_count(), 3);
    let c = sim.comments(5);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(!c[0].public && c[1].public);
    for n in &notes {
        assert!(c[0].plain_body.lines().any(|l| l == n.marker_line()), "{n:?} missing from the batched comment");
        // Links are clickable anchors in the HTML body.
        assert!(c[0].html_body.contains(&format!("<a href=\"{}\">", n.links[0].url)));
    }
    assert!(c[1].plain_body.contains(&public.marker_line()));
    // The session code of the last note went into the configured custom field.
    assert_eq!(sim.custom_field(5, 360001), Some(serde_json::json!("s1-public")));
    let z = zendesk(&sim.base_url, Some(360001));
    assert_eq!(z.find_ticket_by_session_code("s2-0").await.unwrap().as_deref(), Some("6"));
    assert_eq!(z.find_ticket_by_session_code("nope").await.unwrap(), None);
}

#[tokio::test]
async fn zendesk_batch_after_a_crash_skips_notes_already_on_the_ticket() {
    let sim = ZendeskSim::start("a@example.test", "zd-token", &[7]).await.unwrap();
    sim.seed_comments(7, 5);
    sim.set_max_per_page(2);
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let z = zendesk(&sim.base_url, None);
    let s = sinks(vec![z.clone()]);
    let first = note("s7-0", Visibility::Internal);
    let second = note("s7-1", Visibility::Internal);
    let a = enqueue(&store, "zendesk", "7", &first).await;
    let b = enqueue(&store, "zendesk", "7", &second).await;
    // Claimed together, the update lands, the process dies before committing.
    let groups = outbox::claim_due_grouped(&store, 10, &HashMap::from([("zendesk".to_string(), 20)])).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].len(), 2);
    z.post_notes("7", &[first.clone(), second.clone()]).await.unwrap();
    assert_eq!(outbox::recover_sending(&store).await.unwrap(), 2);

    let stats = deliver_due(&store, &s, &policy()).await.unwrap();
    assert_eq!((stats.attempted, stats.found_existing), (2, 2), "{stats:?}");
    assert_eq!((state(&store, a).await, state(&store, b).await), ("delivered".into(), "delivered".into()));
    assert_eq!(sim.update_count(), 1, "no second update");
    assert_eq!(sim.comments(7).len(), 6);
}

#[tokio::test]
async fn zendesk_per_ticket_limit_without_retry_after_backs_off() {
    let sim = ZendeskSim::start("a@example.test", "zd-token", &[8]).await.unwrap();
    sim.set_per_ticket_limit(0);
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let s = sinks(vec![zendesk(&sim.base_url, None)]);
    let id = enqueue(&store, "zendesk", "8", &note("s8", Visibility::Internal)).await;
    let stats = deliver_due(&store, &s, &policy()).await.unwrap();
    assert_eq!(stats.retrying, 1, "{stats:?}");
    let d = outbox::get(&store, id).await.unwrap().unwrap();
    assert_eq!(d.state, "pending");
    assert!(d.last_error.as_deref().unwrap_or_default().contains("HTTP 429"), "{d:?}");
    assert!(d.next_attempt_at > d.created_at, "backoff applies without Retry-After");
}

// ---------------------------------------------------------------------------------------
// Freshservice

#[tokio::test]
async fn freshservice_does_not_retry_4xx_other_than_429_and_scans_paged_conversations() {
    let sim = FreshserviceSim::start("fs-key", &[3, 4]).await.unwrap();
    let proxy = FaultProxy::start(&sim.base_url).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let fs: Arc<dyn TicketSink> = Arc::new(FreshserviceSink::new(
        "freshservice",
        &proxy.base_url,
        secret("fs-key"),
        Some("cf_session_code".into()),
        http(),
    ));
    let s = sinks(vec![fs.clone()]);

    proxy.push_on_path("POST", "/notes", Fault::status(408, &[], "{\"code\":\"timeout\"}"));
    let id = enqueue(&store, "freshservice", "INC-3", &note("s3", Visibility::Internal)).await;
    let stats = deliver_due(&store, &s, &policy()).await.unwrap();
    assert_eq!(stats.dead, 1, "a 408 costs rate-limit credit and is not repeated: {stats:?}");
    assert_eq!(state(&store, id).await, "dead");
    assert_eq!(deliver_due(&store, &s, &policy()).await.unwrap().attempted, 0);

    // The marker scan follows Link rel="next" across pages.
    sim.seed_conversations(4, 5);
    sim.set_max_per_page(2);
    let n = note("s4", Visibility::Internal);
    fs.post_note("4", &n).await.unwrap();
    assert!(fs.find_marker("4", &n.marker).await.unwrap().is_some(), "marker on page 3 not found");
    assert!(fs.find_marker("4", "tsd:v1:none").await.unwrap().is_none());
    let c = sim.conversations(4);
    assert!(c.last().unwrap().private && c.last().unwrap().body.contains("<a href=\"https://example.test/r/"));
    sim.set_session_code(4, "s4-code");
    assert_eq!(fs.find_ticket_by_session_code("s4-code").await.unwrap().as_deref(), Some("4"));
}

// ---------------------------------------------------------------------------------------
// Jira Service Management

#[tokio::test]
async fn jsm_remote_link_is_upserted_by_global_id_and_data_center_uses_a_pat() {
    let sim = JsmSim::start("Bearer dc-pat", &["HELP-1"]).await.unwrap();
    let proxy = FaultProxy::start(&sim.base_url).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let jsm = Arc::new(JsmSink::new(
        "jsm",
        &proxy.base_url,
        JsmAuth::DataCenter { pat: secret("dc-pat") },
        true,
        Some(10050),
        http(),
    ));
    let s = sinks(vec![jsm.clone() as Arc<dyn TicketSink>]);
    let n = note("sj-1", Visibility::Internal);
    // The comment answer is lost twice (503 after the link was written, then a 503 again).
    proxy.push_on_path("POST", "/servicedeskapi/", Fault::status(503, &[], "down"));
    proxy.push_on_path("POST", "/servicedeskapi/", Fault::status(503, &[], "down"));
    let id = enqueue(&store, "jsm", "HELP-1", &n).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while state(&store, id).await == "pending" {
        deliver_due(&store, &s, &policy()).await.unwrap();
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state(&store, id).await, "delivered");
    let links = sim.remote_links("HELP-1");
    assert_eq!(links.len(), 1, "three attempts, one link: {links:?}");
    assert_eq!(links[0].global_id.as_deref(), Some(global_id(&n.marker).as_str()));
    assert_eq!(links[0].object["url"], serde_json::json!(n.links[0].url));
    let comments = sim.comments("HELP-1");
    assert_eq!(comments.len(), 1);
    assert!(!comments[0].public, "internal comment");
    assert!(comments[0].body.contains(&format!("[{}|{}]", n.links[0].label, n.links[0].url)), "clickable wiki link");
    sim.set_session_code("HELP-1", "sj-1");
    assert_eq!(jsm.find_ticket_by_session_code("sj-1").await.unwrap().as_deref(), Some("HELP-1"));
    // A Cloud-style Basic header is refused by this Data Center simulator: 401 → Auth.
    let cloud = JsmSink::new(
        "jsm",
        &sim.base_url,
        JsmAuth::Cloud { email: "x@example.test".into(), api_token: secret("dc-pat") },
        true,
        None,
        http(),
    );
    let err = cloud.check().await.unwrap_err();
    assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Auth);
    let _ = base64::engine::general_purpose::STANDARD.encode("unused");
}

// ---------------------------------------------------------------------------------------
// GLPI

#[tokio::test]
async fn glpi_reuses_its_session_and_reopens_it_after_expiry() {
    let sim = GlpiSim::start("glpi-user", Some("glpi-app"), &[1, 2, 3]).await.unwrap();
    sim.set_max_per_page(2);
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let glpi = Arc::new(GlpiSink::new(
        "glpi",
        &sim.base_url,
        secret("glpi-user"),
        Some(secret("glpi-app")),
        Some(76665),
        http(),
    ));
    let s = sinks(vec![glpi.clone() as Arc<dyn TicketSink>]);
    for t in ["1", "2"] {
        enqueue(&store, "glpi", t, &note(&format!("g{t}"), Visibility::Internal)).await;
    }
    let stats = deliver_due(&store, &s, &policy()).await.unwrap();
    assert_eq!(stats.delivered, 2, "{stats:?}");
    assert_eq!(sim.sessions_opened(), 1, "one session for several calls");

    sim.expire_sessions();
    let n = note("g3", Visibility::Internal);
    let id = enqueue(&store, "glpi", "3", &n).await;
    deliver_due(&store, &s, &policy()).await.unwrap();
    assert_eq!(state(&store, id).await, "delivered");
    assert_eq!(sim.sessions_opened(), 2, "the expired session was replaced once");
    let f = sim.followups(3);
    assert_eq!(f.len(), 1);
    assert!(f[0].is_private);

    // Paged scan (range + Content-Range) finds a marker behind other follow-ups.
    sim.seed_followups(1, 5);
    let later = note("g1-late", Visibility::Internal);
    glpi.post_note("1", &later).await.unwrap();
    assert!(glpi.find_marker("1", &later.marker).await.unwrap().is_some());
    assert!(glpi.find_marker("1", "tsd:v1:none").await.unwrap().is_none());

    sim.set_session_code(2, "g2-code");
    assert_eq!(glpi.find_ticket_by_session_code("g2-code").await.unwrap().as_deref(), Some("2"));

    glpi.close().await;
    assert_eq!(sim.sessions_killed(), 1, "killSession at close");

    // A wrong App-Token is a credentials problem, not a dead note.
    let bad = GlpiSink::new("glpi", &sim.base_url, secret("glpi-user"), Some(secret("wrong")), None, http());
    let err = bad.post_note("1", &note("x", Visibility::Internal)).await.unwrap_err();
    assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Auth, "{err}");
}

// ---------------------------------------------------------------------------------------
// Routing

#[tokio::test]
async fn routes_send_each_session_to_the_sinks_that_accept_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let mut tx = store.begin().await.unwrap();
    for (ext, ticket) in [("a", "HELP-9"), ("b", "42")] {
        let s = ticketsync::session::NewSession {
            vendor: "teamviewer".into(),
            external_id: ext.into(),
            session_code: None,
            technician: None,
            technician_id: None,
            device: None,
            device_id: None,
            group_name: None,
            started_at: chrono::Utc::now() - chrono::Duration::minutes(10),
            ended_at: Some(chrono::Utc::now()),
            notes: None,
            description: None,
            custom_api: Some(format!("{{\"ticket_id\":\"{ticket}\"}}")),
            customer_name: None,
            customer_email: None,
            raw_json: format!("{{\"id\":\"{ext}\"}}"),
        };
        ticketsync::store::sessions::upsert(&mut tx, &s, None).await.unwrap();
    }
    tx.commit().await.unwrap();
    let routes = vec![
        Route::new("jsm", Some(r"^HELP-\d+$"), None).unwrap(),
        Route::new("zendesk", Some(r"^\d+$"), Some(&["teamviewer".to_string()])).unwrap(),
        Route::new("glpi", None, Some(&["splashtop".to_string()])).unwrap(),
        Route::all("webhook"),
    ];
    let rules = ticketsync::matcher::compile_all(&ticketsync::config::MatchConfig::default().rules).unwrap();
    let m = ticketsync::pipeline::match_pending_routed(&store, &rules, &routes, chrono_tz::UTC).await.unwrap();
    assert_eq!((m.matched, m.enqueued), (2, 4), "{m:?}");
    let mut got: Vec<(String, String)> =
        outbox::list(&store, None).await.unwrap().into_iter().map(|d| (d.sink, d.ticket_id)).collect();
    got.sort();
    assert_eq!(
        got,
        [("jsm", "HELP-9"), ("webhook", "42"), ("webhook", "HELP-9"), ("zendesk", "42")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[tokio::test]
async fn ticket_field_rule_matches_through_a_sink_lookup() {
    let sim = GlpiSim::start("glpi-user", None, &[77]).await.unwrap();
    sim.set_session_code(77, "s123-456-789");
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let glpi: Arc<dyn TicketSink> =
        Arc::new(GlpiSink::new("glpi", &sim.base_url, secret("glpi-user"), None, Some(76665), http()));
    let s = sinks(vec![glpi]);
    let mut tx = store.begin().await.unwrap();
    let session = ticketsync::session::NewSession {
        vendor: "teamviewer".into(),
        external_id: "r-1".into(),
        session_code: Some("s123-456-789".into()),
        technician: None,
        technician_id: None,
        device: None,
        device_id: None,
        group_name: None,
        started_at: chrono::Utc::now() - chrono::Duration::minutes(5),
        ended_at: Some(chrono::Utc::now()),
        notes: None,
        description: None,
        custom_api: None,
        customer_name: None,
        customer_email: None,
        raw_json: "{\"id\":\"r-1\"}".into(),
    };
    ticketsync::store::sessions::upsert(&mut tx, &session, None).await.unwrap();
    tx.commit().await.unwrap();
    let rule = |kind: &str| -> ticketsync::config::RuleConfig {
        toml::from_str(&format!("kind = \"{kind}\"")).expect("rule config")
    };
    // Without the rule nothing is asked and nothing matches.
    let default_rules = ticketsync::matcher::compile_all(&[rule("manual")]).unwrap();
    assert!(ticketsync::pipeline::lookup_ticket_fields(&store, &default_rules, &s).await.unwrap().is_empty());
    let rules = ticketsync::matcher::compile_all(&[rule("ticket_field")]).unwrap();
    let hits = ticketsync::pipeline::lookup_ticket_fields(&store, &rules, &s).await.unwrap();
    assert_eq!(hits.len(), 1);
    let m = ticketsync::pipeline::match_pending_with(&store, &rules, &[Route::all("glpi")], &hits, chrono_tz::UTC)
        .await
        .unwrap();
    assert_eq!((m.matched, m.enqueued), (1, 1));
    let d = outbox::list(&store, None).await.unwrap();
    assert_eq!((d[0].sink.as_str(), d[0].ticket_id.as_str()), ("glpi", "77"));
    let rule_used: String =
        sqlx::query_scalar("SELECT rule FROM matches").fetch_one(store.sqlite_pool()).await.unwrap();
    assert_eq!(rule_used, "ticket_field");
}

// ---------------------------------------------------------------------------------------
// Request Tracker

const RT_TOKEN: &str = "1-14-0a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn rt(base: &str, field: Option<&str>) -> ticketsync::sinks::rt::RtSink {
    ticketsync::sinks::rt::RtSink::new("rt", base, secret(RT_TOKEN), field.map(str::to_string), http())
}

#[tokio::test]
async fn rt_scan_walks_pages_and_pairs_attachments_with_history() {
    let sim = RtSim::start(RT_TOKEN, &[1, 2]).await.unwrap();
    let sink = rt(&sim.base_url, Some("Session code"));
    // More comments than one page of attachments (100) and of history.
    sim.seed_comments(1, 150);
    let n = note("rt-1", Visibility::Internal);
    let posted = sink.post_note("1", &n).await.unwrap();
    sim.seed_comments(1, 120);
    let found = sink.find_marker("#1", &n.marker).await.unwrap();
    assert_eq!(found, Some(posted.clone()), "the scan finds the note behind 120 newer comments");
    assert!(posted.starts_with("ticket/1/transaction/"), "{posted}");
    // A person's comment ending with another note's marker line proves nothing.
    let other = note("rt-2", Visibility::Internal);
    sim.add_person_comment(1, &format!("quoting it\n{}", other.marker_line()));
    assert_eq!(sink.find_marker("1", &other.marker).await.unwrap(), None);
    // A public note is a reply (correspondence), found by the scan too.
    let public = note("rt-3", Visibility::Public);
    sink.post_note("2", &public).await.unwrap();
    let m = sim.messages(2);
    assert_eq!((m.len(), m[0].kind.as_str()), (1, "Correspond"));
    assert!(sink.find_marker("2", &public.marker).await.unwrap().is_some());
    // ticket_field: TicketSQL on the custom field.
    sim.set_custom_field(2, "Session code", "s-77");
    assert_eq!(sink.find_ticket_by_session_code("s-77").await.unwrap().as_deref(), Some("2"));
    assert_eq!(sink.find_ticket_by_session_code("nope").await.unwrap(), None);
    // Not an RT ticket number: dead, no request.
    let err = sink.post_note("INC0010001", &n).await.unwrap_err();
    assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Permanent, "{err}");
}

/// On the real RT: non-ASCII text arrives intact (the JSON form), a wrong token is a clear
/// `failed` naming the sink and its key, and a ticket RT does not have is found missing
/// through `GET /ticket/{id}` after RT's 400.
#[tokio::test]
async fn rt_real_keeps_non_ascii_and_explains_refusals() {
    let Some(ci) = crate::support::rt_ci() else { return };
    let sink = ticketsync::sinks::rt::RtSink::new("rt", &ci.url, secret(&ci.token), None, http());
    sink.check().await.unwrap();
    let ticket = ci.new_ticket("ticketsync non-ASCII").await.to_string();
    let mut n = note("rt-real-1", Visibility::Internal);
    n.title = "Sitzung für José ✓ 💻 — « déjà vu »".into();
    sink.post_note(&ticket, &n).await.unwrap();
    let messages = ci.messages(&ticket).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].2.starts_with("Sitzung für José ✓ 💻 — « déjà vu »\n"), "{:?}", messages[0].2);
    assert!(sink.find_marker(&ticket, &n.marker).await.unwrap().is_some());

    let wrong = ticketsync::sinks::rt::RtSink::new(
        "rt",
        &ci.url,
        secret("1-14-00000000000000000000000000000000"),
        None,
        http(),
    );
    let err = wrong.post_note(&ticket, &n).await.unwrap_err();
    assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Auth);
    let text = err.to_string();
    assert!(text.starts_with("rt: credentials rejected (HTTP 401)") && text.contains("sinks.rt.token"), "{text}");

    let err = sink.post_note("999999998", &n).await.unwrap_err();
    assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Permanent);
    assert!(err.message.contains("ticket not found (HTTP 404)"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Zammad

#[tokio::test]
async fn zammad_note_is_escaped_html_and_oauth_and_lookups_work() {
    use ticketsync::sim::zammad::ZammadSim;
    use ticketsync::sinks::zammad::{ZammadAuth, ZammadSink};
    let sim = ZammadSim::start("Bearer zm-oauth", &[4, 5]).await.unwrap();
    let sink = ZammadSink::new(
        "zammad",
        &sim.base_url,
        ZammadAuth::OAuth(secret("zm-oauth")),
        Some("session_code".into()),
        http(),
    );
    sink.check().await.unwrap();
    let mut n = note("z-1", Visibility::Internal);
    n.title = "Session <img src=x onerror=alert(1)> <a href=\"https://evil.example\">x</a>".into();
    n.body = Some(format!("[quote]\n{}", note("other", Visibility::Internal).marker_line()));
    sink.post_note("4", &n).await.unwrap();
    let a = &sim.articles(4)[0];
    assert!(a.internal && a.kind == "note" && a.content_type == "text/html", "{a:?}");
    assert!(
        a.body.contains("Session &lt;img src=x onerror=alert(1)&gt; &lt;a href=&quot;https://evil.example&quot;"),
        "{}",
        a.body
    );
    // The only anchor is the note's own link; the quoted marker line is neutralised.
    assert_eq!(a.body.matches("<a ").count(), 1, "{}", a.body);
    assert_eq!(a.body.matches("ticketsync-marker").count(), 1, "{}", a.body);
    assert!(sink.find_marker("4", &n.marker).await.unwrap().is_some());
    // A public note is an external note: shown to the customer, still no mail.
    sink.post_note("5", &note("z-2", Visibility::Public)).await.unwrap();
    assert!(!sim.articles(5)[0].internal);
    sim.set_field(5, "session_code", "s-99");
    assert_eq!(sink.find_ticket_by_session_code("s-99").await.unwrap().as_deref(), Some("5"));
    assert_eq!(sink.find_ticket_by_session_code("nope").await.unwrap(), None);
    // A token Zammad does not know (401 "Can't find User for Token"): failed, not dead.
    let wrong = ZammadSink::new("zammad", &sim.base_url, ZammadAuth::Token(secret("zm-wrong")), None, http());
    let err = wrong.post_note("4", &n).await.unwrap_err();
    assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Auth, "{err}");
    assert!(err.to_string().starts_with("zammad: credentials rejected (HTTP 401)"), "{err}");
}

// ---------------------------------------------------------------------------------------
// ServiceNow

const SN_NUMBERS: [&str; 4] = ["INC0010001", "INC0010002", "RITM0010001", "SCTASK0010001"];

fn servicenow(
    base: &str,
    auth: ticketsync::sinks::servicenow::ServiceNowAuth,
    field: Option<&str>,
) -> Arc<dyn TicketSink> {
    Arc::new(ticketsync::sinks::servicenow::ServiceNowSink::new(
        "servicenow",
        base,
        auth,
        "incident",
        field.map(str::to_string),
        http(),
    ))
}

fn sn_basic() -> ticketsync::sinks::servicenow::ServiceNowAuth {
    ticketsync::sinks::servicenow::ServiceNowAuth::Basic { user: "ticketsync.api".into(), password: secret("sn-pw") }
}

fn sn_oauth(
    grant: ticketsync::sinks::servicenow::Grant,
    client_secret: &str,
) -> ticketsync::sinks::servicenow::ServiceNowAuth {
    ticketsync::sinks::servicenow::ServiceNowAuth::OAuth(ticketsync::sinks::servicenow::OAuthSettings {
        client_id: "sn-client".into(),
        client_secret: secret(client_secret),
        grant,
        token_url: None,
    })
}

#[tokio::test]
async fn servicenow_resolves_numbers_once_per_table_and_keeps_vendor_text_plain() {
    use ticketsync::sim::servicenow::ServiceNowSim;
    let sim = ServiceNowSim::start("ticketsync.api", "sn-pw", &SN_NUMBERS).await.unwrap();
    let sn = servicenow(&sim.base_url, sn_basic(), None);
    let mut n = note("sn-1", Visibility::Internal);
    n.title = "Session [code]<img src=x onerror=alert(1)>[/code] done".into();
    sn.post_note("INC0010001", &n).await.unwrap();
    assert!(sn.find_marker("inc0010001", &n.marker).await.unwrap().is_some());
    sn.post_note("INC0010001", &note("sn-2", Visibility::Internal)).await.unwrap();
    assert_eq!(sim.reads("/api/now/table/incident"), 1, "the number was resolved once");
    let j = sim.journal("INC0010001");
    assert_eq!(j.len(), 2);
    assert!(j.iter().all(|e| e.element == "work_notes" && e.sys_created_by == "ticketsync.api"));
    assert!(j[0].value.starts_with("Session [ code]<img src=x onerror=alert(1)>[ /code] done\n"), "{}", j[0].value);
    // Request items and catalog tasks live on their own tables; a public note is a comment.
    sn.post_note("RITM0010001", &note("sn-3", Visibility::Internal)).await.unwrap();
    sn.post_note("SCTASK0010001", &note("sn-4", Visibility::Public)).await.unwrap();
    assert_eq!(sim.reads("/api/now/table/sc_req_item"), 1);
    assert_eq!(sim.journal("SCTASK0010001")[0].element, "comments");
    // A sys_id addresses the configured table without a lookup.
    let sys_id = sim.sys_id("INC0010002").unwrap();
    sn.post_note(&sys_id, &note("sn-5", Visibility::Internal)).await.unwrap();
    assert_eq!(sim.journal("INC0010002").len(), 1);
    assert_eq!(sim.reads("/api/now/table/incident"), 1);
    // A number the instance does not have: dead, nothing written; not a number at all: dead.
    let before = sim.patch_count();
    for (ticket, want) in [("INC0999999", "ticket not found (HTTP 404)"), ("42-x", "is not a ServiceNow record")] {
        let err = sn.post_note(ticket, &n).await.unwrap_err();
        assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Permanent, "{err}");
        assert!(err.message.contains(want), "{err}");
    }
    assert_eq!(sim.patch_count(), before);
}

#[tokio::test]
async fn servicenow_oauth_grants_refresh_and_renew_after_a_revoked_token() {
    use ticketsync::sim::servicenow::ServiceNowSim;
    use ticketsync::sinks::servicenow::Grant;
    let sim = ServiceNowSim::start("ticketsync.api", "sn-pw", &SN_NUMBERS).await.unwrap();
    sim.enable_oauth("sn-client", "sn-secret", 1799);
    let password = || Grant::Password { user: "ticketsync.api".into(), password: secret("sn-pw") };
    let sn = servicenow(&sim.base_url, sn_oauth(password(), "sn-secret"), None);
    sn.post_note("INC0010001", &note("o-1", Visibility::Internal)).await.unwrap();
    sn.post_note("INC0010001", &note("o-2", Visibility::Internal)).await.unwrap();
    assert_eq!(sim.grants(), ["password"], "one token for both calls");
    // The instance drops its tokens: the 401 brings a new one (the refresh token first).
    sim.revoke_access_tokens();
    sn.post_note("INC0010001", &note("o-3", Visibility::Internal)).await.unwrap();
    assert_eq!(sim.grants(), ["password", "refresh_token"]);
    assert_eq!(sim.journal("INC0010001").len(), 3);

    // A token that lives less than the renewal margin is renewed before every use.
    sim.enable_oauth("sn-client", "sn-secret", 30);
    let short = servicenow(&sim.base_url, sn_oauth(password(), "sn-secret"), None);
    short.check().await.unwrap();
    short.check().await.unwrap();
    assert_eq!(&sim.grants()[2..], ["password", "refresh_token"]);

    // Client credentials: no refresh token, the grant again; the writer is the client's user.
    let cc = servicenow(&sim.base_url, sn_oauth(Grant::ClientCredentials { user: None }, "sn-secret"), None);
    let n = note("o-4", Visibility::Internal);
    cc.post_note("INC0010002", &n).await.unwrap();
    assert!(cc.find_marker("INC0010002", &n.marker).await.unwrap().is_some());
    assert_eq!(sim.grants().last().map(String::as_str), Some("client_credentials"));

    // A refused token request is the operator's to fix, named by its keys, no secret in it.
    let wrong = servicenow(&sim.base_url, sn_oauth(password(), "sn-wrong-secret"), None);
    let err = wrong.post_note("INC0010001", &n).await.unwrap_err();
    assert_eq!(err.kind, ticketsync::sinks::SinkErrorKind::Auth, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("sinks.servicenow.client_id") && !text.contains("sn-wrong-secret") && !text.contains("sn-pw"),
        "{text}"
    );
}

/// Issue 19 pt 5: the incident number reaches ServiceNow by a `ticket_field` lookup (the
/// number whose field holds the session code) or by a notes regex, and routes by pattern.
#[tokio::test]
async fn servicenow_numbers_match_by_ticket_field_and_notes_regex() {
    use ticketsync::sim::servicenow::ServiceNowSim;
    let sim = ServiceNowSim::start("ticketsync.api", "sn-pw", &SN_NUMBERS).await.unwrap();
    sim.set_field("INC0010002", "u_session_code", "s555-666-777");
    let s = sinks(vec![servicenow(&sim.base_url, sn_basic(), Some("u_session_code"))]);
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let mut tx = store.begin().await.unwrap();
    for (ext, code, notes) in [("f-1", Some("s555-666-777"), None), ("r-1", None, Some("Fixed, see INC0010001"))] {
        let session = ticketsync::session::NewSession {
            vendor: "teamviewer".into(),
            external_id: ext.into(),
            session_code: code.map(str::to_string),
            technician: None,
            technician_id: None,
            device: None,
            device_id: None,
            group_name: None,
            started_at: chrono::Utc::now() - chrono::Duration::minutes(5),
            ended_at: Some(chrono::Utc::now()),
            notes: notes.map(str::to_string),
            description: None,
            custom_api: None,
            customer_name: None,
            customer_email: None,
            raw_json: format!("{{\"id\":\"{ext}\"}}"),
        };
        ticketsync::store::sessions::upsert(&mut tx, &session, None).await.unwrap();
    }
    tx.commit().await.unwrap();
    let rules: Vec<ticketsync::config::RuleConfig> = vec![
        toml::from_str("kind = \"ticket_field\"").unwrap(),
        toml::from_str("kind = \"notes_regex\"\npattern = '(INC\\d{7})'").unwrap(),
    ];
    let rules = ticketsync::matcher::compile_all(&rules).unwrap();
    let hits = ticketsync::pipeline::lookup_ticket_fields(&store, &rules, &s).await.unwrap();
    let routes = [Route::new("servicenow", Some(r"^(INC|RITM|SCTASK)\d{7}$"), None).unwrap()];
    let m = ticketsync::pipeline::match_pending_with(&store, &rules, &routes, &hits, chrono_tz::UTC).await.unwrap();
    assert_eq!((m.matched, m.enqueued), (2, 2), "{m:?}");
    let mut got: Vec<String> = outbox::list(&store, None).await.unwrap().into_iter().map(|d| d.ticket_id).collect();
    got.sort();
    assert_eq!(got, ["INC0010001", "INC0010002"]);
    let stats = deliver_due(&store, &s, &policy()).await.unwrap();
    assert_eq!(stats.delivered, 2, "{stats:?}");
    // The lookup already gave INC0010002's sys_id: besides it, only INC0010001 was resolved.
    assert_eq!(sim.reads("/api/now/table/incident"), 2);
    assert_eq!(sim.journal("INC0010002").len(), 1);
    assert_eq!(sim.journal("INC0010001").len(), 1);
}
