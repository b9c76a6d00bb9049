//! Issue 14, forged markers and markup: a marker quoted in vendor text or typed by a person
//! never suppresses a delivery, a retry still finds its own note (v2 and v1 markers), and
//! hostile vendor text renders as text on the real Redmine. Real HTTP against the
//! simulators and the real Redmine, through the fault proxy; real SQLite.

use crate::support::SendJson;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use ticketsync::note::Note;
use ticketsync::pipeline::{deliver_due, DeliveryPolicy, Sinks};
use ticketsync::sim::freshservice::FreshserviceSim;
use ticketsync::sim::glpi::GlpiSim;
use ticketsync::sim::jsm::JsmSim;
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::rt::RtSim;
use ticketsync::sim::servicenow::ServiceNowSim;
use ticketsync::sim::zammad::ZammadSim;
use ticketsync::sim::zendesk::ZendeskSim;
use ticketsync::sinks::common::{decode_entities, html_to_text, unescape_html};
use ticketsync::sinks::TicketSink;
use ticketsync::store::sessions::StoredSession;
use ticketsync::store::{outbox, Store};

use crate::faultproxy::{Fault, FaultProxy};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn http() -> reqwest::Client {
    ticketsync::http::client(Duration::from_secs(5))
}

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        give_up_after: chrono::Duration::hours(1),
        concurrency: 1,
        sink_concurrency: Default::default(),
    }
}

/// A finished TeamViewer session as the store holds it; its note is built by the same
/// `report::session_note` the matcher uses.
fn session(external_id: &str, notes: Option<&str>) -> StoredSession {
    StoredSession {
        id: 1,
        vendor: "teamviewer".into(),
        external_id: external_id.into(),
        session_code: Some("s119-457-589".into()),
        session_code_norm: Some("s119457589".into()),
        technician: Some("Jon Snow".into()),
        device: Some("ACME-LT-042".into()),
        device_id: Some("1234567890".into()),
        group_name: None,
        started_at: "2026-11-23T10:00:00Z".parse().unwrap(),
        ended_at: Some("2026-11-23T10:15:00Z".parse().unwrap()),
        duration_s: Some(900),
        notes: notes.map(str::to_string),
        description: None,
        custom_api: None,
        customer_name: None,
        revision: 1,
        raw_json: "{}".into(),
    }
}

/// The ticket system under test, behind the fault proxy.
enum Backend {
    Redmine(RedmineSim),
    RealRedmine(crate::support::RedmineCi),
    Zendesk(ZendeskSim),
    Freshservice(FreshserviceSim),
    Jsm(JsmSim),
    Glpi(GlpiSim),
    Rt(RtSim),
    RealRt(crate::support::RtCi),
    Zammad(ZammadSim),
    ServiceNow(ServiceNowSim),
    ConnectWise(ticketsync::sim::connectwise::ConnectWiseSim),
    Autotask(ticketsync::sim::autotask::AutotaskSim),
    HaloPsa(ticketsync::sim::halopsa::HaloPsaSim),
}

struct System {
    backend: Backend,
    proxy: FaultProxy,
    sink: Arc<dyn TicketSink>,
    /// The HTTP method of the call that writes a note.
    write: &'static str,
}

impl System {
    async fn start(kind: &str) -> System {
        let (backend, upstream) = match kind {
            "redmine" => {
                let sim = RedmineSim::start("rm-key", &(1..50).collect::<Vec<_>>()).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::Redmine(sim), u)
            }
            "redmine_real" => {
                let ci = crate::support::redmine_ci().expect("real Redmine");
                let u = ci.url.clone();
                (Backend::RealRedmine(ci), u)
            }
            "zendesk" => {
                let sim = ZendeskSim::start("a@example.test", "zd-token", &(1..50).collect::<Vec<_>>()).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::Zendesk(sim), u)
            }
            "freshservice" => {
                let sim = FreshserviceSim::start("fs-key", &(1..50).collect::<Vec<_>>()).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::Freshservice(sim), u)
            }
            "jsm" => {
                let keys: Vec<String> = (1..50).map(|i| format!("HELP-{i}")).collect();
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let sim = JsmSim::start("Bearer jsm-pat", &refs).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::Jsm(sim), u)
            }
            "glpi" => {
                let sim = GlpiSim::start("glpi-user", None, &(1..50).collect::<Vec<_>>()).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::Glpi(sim), u)
            }
            "rt" => {
                let sim = RtSim::start("1-14-rtsimtoken0123456789abcdef", &(1..50).collect::<Vec<_>>()).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::Rt(sim), u)
            }
            "rt_real" => {
                let ci = crate::support::rt_ci().expect("real RT");
                let u = ci.url.clone();
                (Backend::RealRt(ci), u)
            }
            "servicenow" => {
                let numbers: Vec<String> = (1..50).map(|i| format!("INC{:07}", 10_000 + i)).collect();
                let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
                let sim = ServiceNowSim::start("ticketsync.api", "sn-pw", &refs).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::ServiceNow(sim), u)
            }
            "zammad" => {
                let sim = ZammadSim::start("Token token=zm-token", &(1..50).collect::<Vec<_>>()).await.unwrap();
                let u = sim.base_url.clone();
                (Backend::Zammad(sim), u)
            }
            "connectwise" => {
                let sim = ticketsync::sim::connectwise::ConnectWiseSim::start(
                    "acme",
                    "pub",
                    "cw-private",
                    "cw-client",
                    &(1..50).collect::<Vec<_>>(),
                )
                .await
                .unwrap();
                sim.set_max_per_page(2);
                let u = sim.base_url.clone();
                (Backend::ConnectWise(sim), u)
            }
            "autotask" => {
                let sim = ticketsync::sim::autotask::AutotaskSim::start(
                    "api@x.test",
                    "CODE",
                    "at-secret",
                    &(1..50).collect::<Vec<_>>(),
                )
                .await
                .unwrap();
                sim.set_max_per_page(2);
                let u = sim.base_url.clone();
                (Backend::Autotask(sim), u)
            }
            "halopsa" => {
                let sim = ticketsync::sim::halopsa::HaloPsaSim::start(
                    "halo-id",
                    "halo-secret",
                    None,
                    &(1..50).collect::<Vec<_>>(),
                )
                .await
                .unwrap();
                let u = sim.base_url.clone();
                (Backend::HaloPsa(sim), u)
            }
            k => panic!("unknown system {k}"),
        };
        let proxy = FaultProxy::start(&upstream).await;
        if let Backend::Autotask(sim) = &backend {
            sim.set_zone_url(&format!("{}/atservicesrest/", proxy.base_url));
        }
        let base = match &backend {
            Backend::Glpi(_) => format!("{}/apirest.php", proxy.base_url),
            _ => proxy.base_url.clone(),
        };
        let (sink, write): (Arc<dyn TicketSink>, &'static str) = match &backend {
            Backend::Redmine(_) => (
                Arc::new(ticketsync::sinks::redmine::RedmineSink::new("t", &base, secret("rm-key"), true, http())),
                "PUT",
            ),
            Backend::RealRedmine(ci) => (
                Arc::new(ticketsync::sinks::redmine::RedmineSink::new("t", &base, secret(&ci.api_key), true, http())),
                "PUT",
            ),
            Backend::Zendesk(_) => (
                Arc::new(ticketsync::sinks::zendesk::ZendeskSink::new(
                    "t",
                    &base,
                    ticketsync::sinks::zendesk::ZendeskAuth::ApiToken {
                        email: "a@example.test".into(),
                        token: secret("zd-token"),
                    },
                    None,
                    http(),
                )),
                "PUT",
            ),
            Backend::Freshservice(_) => (
                Arc::new(ticketsync::sinks::freshservice::FreshserviceSink::new(
                    "t",
                    &base,
                    secret("fs-key"),
                    None,
                    http(),
                )),
                "POST",
            ),
            Backend::Jsm(_) => (
                Arc::new(ticketsync::sinks::jsm::JsmSink::new(
                    "t",
                    &base,
                    ticketsync::sinks::jsm::JsmAuth::DataCenter { pat: secret("jsm-pat") },
                    false,
                    None,
                    http(),
                )),
                "POST",
            ),
            Backend::Glpi(_) => (
                Arc::new(ticketsync::sinks::glpi::GlpiSink::new("t", &base, secret("glpi-user"), None, None, http())),
                "POST",
            ),
            Backend::Rt(_) => (
                Arc::new(ticketsync::sinks::rt::RtSink::new(
                    "t",
                    &base,
                    secret("1-14-rtsimtoken0123456789abcdef"),
                    None,
                    http(),
                )),
                "POST",
            ),
            Backend::RealRt(ci) => {
                (Arc::new(ticketsync::sinks::rt::RtSink::new("t", &base, secret(&ci.token), None, http())), "POST")
            }
            Backend::Zammad(_) => (
                Arc::new(ticketsync::sinks::zammad::ZammadSink::new(
                    "t",
                    &base,
                    ticketsync::sinks::zammad::ZammadAuth::Token(secret("zm-token")),
                    None,
                    http(),
                )),
                "POST",
            ),
            Backend::ServiceNow(_) => (
                Arc::new(ticketsync::sinks::servicenow::ServiceNowSink::new(
                    "t",
                    &base,
                    ticketsync::sinks::servicenow::ServiceNowAuth::Basic {
                        user: "ticketsync.api".into(),
                        password: secret("sn-pw"),
                    },
                    "incident",
                    None,
                    http(),
                )),
                "PATCH",
            ),
            Backend::ConnectWise(_) => (
                Arc::new(ticketsync::sinks::connectwise::ConnectWiseSink::new(
                    "t",
                    &base,
                    ticketsync::sinks::connectwise::ConnectWiseKeys {
                        company: "acme".into(),
                        public_key: "pub".into(),
                        private_key: secret("cw-private"),
                        client_id: "cw-client".into(),
                    },
                    ticketsync::sim::connectwise::API_MEMBER,
                    http(),
                )),
                "POST",
            ),
            Backend::Autotask(_) => (
                Arc::new(ticketsync::sinks::autotask::AutotaskSink::new(
                    "t",
                    &base,
                    None,
                    ticketsync::sinks::autotask::AutotaskCredentials {
                        username: "api@x.test".into(),
                        integration_code: "CODE".into(),
                        secret: secret("at-secret"),
                    },
                    Default::default(),
                    http(),
                )),
                "POST",
            ),
            Backend::HaloPsa(_) => (
                Arc::new(ticketsync::sinks::halopsa::HaloPsaSink::new(
                    "t",
                    &base,
                    ticketsync::sinks::halopsa::HaloCredentials {
                        client_id: "halo-id".into(),
                        client_secret: secret("halo-secret"),
                        tenant: None,
                        auth_url: None,
                    },
                    Default::default(),
                    http(),
                )),
                "POST",
            ),
        };
        System { backend, proxy, sink, write }
    }

    async fn ticket(&self, n: u64) -> String {
        match &self.backend {
            Backend::Jsm(_) => format!("HELP-{n}"),
            Backend::ServiceNow(_) => format!("INC{:07}", 10_000 + n),
            Backend::RealRedmine(ci) => ci.new_issue("ticketsync forged markers").await.to_string(),
            Backend::RealRt(ci) => ci.new_ticket("ticketsync forged markers").await.to_string(),
            _ => n.to_string(),
        }
    }

    /// A note typed by a person (not the API user) on the ticket.
    async fn person_writes(&self, ticket: &str, text: &str) {
        let html = format!("<p>{}</p>", text.replace('\n', "<br>"));
        match &self.backend {
            Backend::Redmine(sim) => sim.add_person_note(ticket.parse().unwrap(), text),
            Backend::RealRedmine(ci) => {
                // The customer user of the CI project: another author than the API key's.
                let r = http()
                    .put(format!("{}/issues/{ticket}.json", ci.url))
                    .header("X-Redmine-API-Key", &ci.customer_api_key)
                    .json(&json!({"issue": {"notes": text}}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "the customer adds a note: {}", r.status());
            }
            Backend::Zendesk(sim) => sim.add_person_comment(ticket.parse().unwrap(), &html),
            Backend::Freshservice(sim) => sim.add_person_note(ticket.parse().unwrap(), &html),
            Backend::Jsm(sim) => sim.add_person_comment(ticket, text),
            Backend::Glpi(sim) => sim.add_person_followup(ticket.parse().unwrap(), &html),
            Backend::Rt(sim) => sim.add_person_comment(ticket.parse().unwrap(), text),
            Backend::RealRt(ci) => ci.person_comments(ticket, text).await,
            Backend::Zammad(sim) => sim.add_person_note(ticket.parse().unwrap(), &html),
            Backend::ServiceNow(sim) => sim.add_person_work_note(ticket, text),
            Backend::ConnectWise(sim) => sim.add_person_note(ticket.parse().unwrap(), text),
            Backend::Autotask(sim) => sim.add_person_note(ticket.parse().unwrap(), text),
            Backend::HaloPsa(sim) => sim.add_person_note(ticket.parse().unwrap(), &html),
        }
    }

    /// Every note on the ticket as its reader sees the text.
    async fn texts(&self, ticket: &str) -> Vec<String> {
        match &self.backend {
            Backend::Redmine(sim) => {
                sim.journals(ticket.parse().unwrap()).into_iter().map(|j| decode_entities(&j.notes)).collect()
            }
            Backend::RealRedmine(ci) => {
                let v: Value = http()
                    .get(format!("{}/issues/{ticket}.json?include=journals", ci.url))
                    .header("X-Redmine-API-Key", &ci.api_key)
                    .send_json()
                    .await;
                v["issue"]["journals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|j| j["notes"].as_str().filter(|n| !n.is_empty()).map(decode_entities))
                    .collect()
            }
            Backend::Zendesk(sim) => {
                sim.comments(ticket.parse().unwrap()).into_iter().map(|c| html_to_text(&c.html_body)).collect()
            }
            Backend::Freshservice(sim) => {
                sim.conversations(ticket.parse().unwrap()).into_iter().map(|c| html_to_text(&c.body)).collect()
            }
            Backend::Jsm(sim) => sim.comments(ticket).into_iter().map(|c| c.body).collect(),
            Backend::Glpi(sim) => sim
                .followups(ticket.parse().unwrap())
                .into_iter()
                .map(|f| html_to_text(&unescape_html(&f.content)))
                .collect(),
            Backend::Rt(sim) => sim.messages(ticket.parse().unwrap()).into_iter().map(|t| t.text()).collect(),
            Backend::RealRt(ci) => ci.messages(ticket).await.into_iter().map(|(_, _, text)| text).collect(),
            Backend::Zammad(sim) => {
                sim.articles(ticket.parse().unwrap()).into_iter().map(|a| html_to_text(&a.body)).collect()
            }
            Backend::ServiceNow(sim) => sim.journal(ticket).into_iter().map(|j| j.value).collect(),
            Backend::ConnectWise(sim) => sim.notes(ticket.parse().unwrap()).into_iter().map(|n| n.text).collect(),
            Backend::Autotask(sim) => sim.notes(ticket.parse().unwrap()).into_iter().map(|n| n.description).collect(),
            Backend::HaloPsa(sim) => {
                sim.actions(ticket.parse().unwrap()).into_iter().map(|a| html_to_text(&a.note_html)).collect()
            }
        }
    }

    /// How many of our session notes on the ticket end with this marker line (a person's
    /// quote of it is not a copy).
    async fn copies(&self, ticket: &str, marker: &str) -> usize {
        self.texts(ticket)
            .await
            .iter()
            .filter(|t| t.contains("Vendor: TeamViewer") && ticketsync::marker::ends_with_marker(t, marker))
            .count()
    }
}

async fn enqueue(store: &Store, ticket: &str, n: &Note) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let json = serde_json::to_string(n).unwrap();
    let id = outbox::enqueue(&mut tx, "t", ticket, None, None, outbox::NoteKind::SessionReport, &n.marker, &json)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id.expect("new delivery")
}

/// Deliver until `id` is delivered (or fail after 20 passes); how it ended.
async fn deliver(store: &Store, sinks: &Sinks, id: i64) -> outbox::Delivery {
    for _ in 0..200 {
        deliver_due(store, sinks, &policy()).await.unwrap();
        let d = outbox::get(store, id).await.unwrap().unwrap();
        if d.state == "delivered" || d.state == "dead" || d.state == "failed" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    panic!("delivery {id} never finished");
}

/// The whole scenario on one system. Prints its counts.
async fn forged_markers(kind: &str) {
    let sys = System::start(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::temp_store(dir.path()).await;
    let key = store.marker_key().clone();
    let sinks: Sinks = Arc::new([("t".to_string(), sys.sink.clone())].into_iter().collect());
    let tz = chrono_tz::UTC;
    let ticket = sys.ticket(1).await;
    let run = uuid::Uuid::new_v4().simple().to_string();

    // B's note, and A's whose TeamViewer `notes` field carries B's real marker line (as if
    // the technician had the key), plus a disguised copy (zero-width space, Cyrillic і).
    let b = ticketsync::report::session_note(&session(&format!("B-{run}"), None), tz, &key);
    let forged = format!(
        "fixed it\nticketsync-marker: {m}\nticket\u{200b}sync-marker: {m}\ntіcketsync-marker: {m}",
        m = b.marker
    );
    let a = ticketsync::report::session_note(&session(&format!("A-{run}"), Some(&forged)), tz, &key);
    let a_id = enqueue(&store, &ticket, &a).await;
    assert_eq!(deliver(&store, &sinks, a_id).await.state, "delivered");
    let a_text = sys.texts(&ticket).await.into_iter().find(|t| t.contains("fixed it")).expect("A's note landed");
    assert_eq!(a_text.matches("ticketsync-marker").count(), 1, "only A's own marker line: {a_text}");
    assert!(!a_text.contains(&format!("ticketsync-marker: {}", b.marker)), "{a_text}");

    // A person quotes B's marker as the last line of a comment, and one with a wrong MAC.
    sys.person_writes(&ticket, &format!("Colleague: this one is done\nticketsync-marker: {}", b.marker)).await;
    let wrong_mac = format!("{}{}", &b.marker[..b.marker.len() - 4], "0000");
    sys.person_writes(&ticket, &format!("ticketsync-marker: {wrong_mac}")).await;

    // B's first attempt never reaches the system (503): its retry scans, must not believe
    // A's note or the person's, and posts. B's note lands once.
    sys.proxy.push_on(sys.write, Fault::status(503, &[("Retry-After", "0")], "down"));
    let b_id = enqueue(&store, &ticket, &b).await;
    let d = deliver(&store, &sinks, b_id).await;
    assert_eq!(d.state, "delivered");
    assert!(d.attempts >= 2, "the retry scanned: {d:?}");
    let b_copies = sys.copies(&ticket, &b.marker).await;
    assert_eq!(b_copies, 1, "B's note lands once on {kind}");

    // C's answer is lost after the system applied it: the retry finds C's own note.
    let c = ticketsync::report::session_note(&session(&format!("C-{run}"), None), tz, &key);
    sys.proxy.push_on(sys.write, Fault::ForwardThenDrop);
    let c_id = enqueue(&store, &ticket, &c).await;
    let d = deliver(&store, &sinks, c_id).await;
    assert_eq!(d.state, "delivered");
    assert!(d.remote_ref.is_some());
    let c_copies = sys.copies(&ticket, &c.marker).await;
    assert_eq!(c_copies, 1, "C found by its own marker, not posted twice, on {kind}");

    // A delivery queued before issue 14 keeps its v1 marker: found after a lost answer...
    let mut v1 = ticketsync::report::session_note(&session(&format!("D-{run}"), None), tz, &key);
    v1.marker = ticketsync::marker::v1("teamviewer", &format!("D-{run}"), "report");
    sys.proxy.push_on(sys.write, Fault::ForwardThenDrop);
    let v1_id = enqueue(&store, &ticket, &v1).await;
    assert_eq!(deliver(&store, &sinks, v1_id).await.state, "delivered");
    let v1_copies = sys.copies(&ticket, &v1.marker).await;
    assert_eq!(v1_copies, 1, "v1 marker recognised on {kind}");
    // ...and a person's note ending with another v1 marker (no MAC to check) does not
    // suppress that delivery: the author is not the API user.
    let mut e = ticketsync::report::session_note(&session(&format!("E-{run}"), None), tz, &key);
    e.marker = ticketsync::marker::v1("teamviewer", &format!("E-{run}"), "report");
    sys.person_writes(&ticket, &format!("ticketsync-marker: {}", e.marker)).await;
    sys.proxy.push_on(sys.write, Fault::status(503, &[("Retry-After", "0")], "down"));
    let e_id = enqueue(&store, &ticket, &e).await;
    assert_eq!(deliver(&store, &sinks, e_id).await.state, "delivered");
    let e_copies = sys.texts(&ticket).await.iter().filter(|t| t.contains(&e.marker)).count();
    assert_eq!(e_copies, 2, "the person's quote and E's own note on {kind}");
    println!(
        "forged markers on {kind}: B landed {b_copies} (duplicates {}), C {c_copies}, v1 {v1_copies}, E notes {e_copies} (the person's quote and E's own)",
        b_copies + c_copies + v1_copies - 3
    );
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_redmine_sim() {
    forged_markers("redmine").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_redmine_real() {
    if crate::support::redmine_ci().is_none() {
        return;
    }
    forged_markers("redmine_real").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_zendesk() {
    forged_markers("zendesk").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_freshservice() {
    forged_markers("freshservice").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_jsm() {
    forged_markers("jsm").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_glpi() {
    forged_markers("glpi").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_rt() {
    forged_markers("rt").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_rt_real() {
    if crate::support::rt_ci().is_none() {
        return;
    }
    forged_markers("rt_real").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_zammad() {
    forged_markers("zammad").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_servicenow() {
    forged_markers("servicenow").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_connectwise() {
    forged_markers("connectwise").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_autotask() {
    forged_markers("autotask").await;
}

#[tokio::test]
async fn forged_marker_does_not_suppress_a_note_halopsa() {
    forged_markers("halopsa").await;
}

/// The marker key is generated once per store and shared by every instance opening it.
#[tokio::test]
async fn marker_key_is_kept_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let one = crate::support::temp_store(dir.path()).await;
    let two = crate::support::temp_store(dir.path()).await;
    let m1 = one.marker_key().marker("teamviewer", "x", "report");
    assert_eq!(m1, two.marker_key().marker("teamviewer", "x", "report"));
    let other = tempfile::tempdir().unwrap();
    let three = crate::support::temp_store(other.path()).await;
    assert_ne!(m1, three.marker_key().marker("teamviewer", "x", "report"), "each store its own key");
    assert!(two.marker_key().verify(&m1) && !three.marker_key().verify(&m1));
}

/// Hostile vendor text on the real Redmine: the rendered issue page shows it as text, with
/// no image and no link but the note's own http(s) link.
#[tokio::test]
async fn hostile_note_renders_as_text_on_real_redmine() {
    let Some(ci) = crate::support::redmine_ci() else { return };
    let sink = ticketsync::sinks::redmine::RedmineSink::new("redmine", &ci.url, secret(&ci.api_key), true, http());
    let ticket = ci.new_issue("ticketsync hostile markup").await.to_string();
    let evil = "!https://attacker.example/pixel.png! \"Reset password\":https://evil.example <img src=x onerror=alert(1)> </PRE> <pre> [[wiki]] {{collapse}} {{toc}} [t](https://evil.example/md) ![i](https://evil.example/i.png) <https://evil.example/auto> www.evil.example mail@evil.example #1 @admin attachment:x.png %{color:red}red% ==<b>raw</b>==";
    let note = Note {
        title: format!("h1. Session {evil}"),
        fields: vec![ticketsync::note::Field { label: "Technician".into(), value: evil.into() }],
        links: vec![
            ticketsync::note::Link { label: "Report".into(), url: "https://report.example.com/r/1".into() },
            ticketsync::note::Link { label: "Evil".into(), url: "javascript:alert(1)".into() },
        ],
        body: Some(format!(
            "Technician notes: {evil}\nbq. quoted\n* list\n| a | b |\n\nFile transfers (1):\n| Time | File |\n|---|---|\n| !https://attacker.example/t.png! | \"x\":https://evil.example {{{{toc}}}} |"
        )),
        attachments: vec![ticketsync::note::Attachment {
            filename: "chat.txt".into(),
            content_type: "text/plain".into(),
            text: format!("{evil}\n</PRE>\n<pre>\n{evil}"),
        }],
        visibility: ticketsync::note::Visibility::Internal,
        marker: format!("tsd:v1:hostile:{}:report", uuid::Uuid::new_v4().simple()),
    };
    sink.post_note(&ticket, &note).await.unwrap();
    let page = http()
        .get(format!("{}/issues/{ticket}", ci.url))
        .header("X-Redmine-API-Key", &ci.api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page.find("-notes\" class=\"wiki\">").expect("the note's journal on the page");
    let rest = &page[start..];
    let end = rest.find(&note.marker).expect("the marker on the page") + note.marker.len();
    let html = &rest[..end];
    let imgs = html.matches("<img").count();
    let hrefs: Vec<&str> = html.split("href=\"").skip(1).map(|h| h.split('"').next().unwrap_or("")).collect();
    println!("hostile note on the real Redmine: {imgs} <img>, links {hrefs:?}, {} bytes of HTML", html.len());
    assert_eq!(imgs, 0, "{html}");
    assert_eq!(hrefs, vec!["https://report.example.com/r/1"], "only the note's own link: {html}");
    assert!(!html.contains("<b>") && !html.contains("<h1") && !html.contains("<blockquote"), "{html}");
    assert!(html.contains("Reset password"), "the text is still there: {html}");
    assert!(html.contains("<table") && html.contains("<th"), "the file-transfer table stays a table: {html}");
    // The scan still finds the note (final line, API user).
    assert!(sink.find_marker(&ticket, &note.marker).await.unwrap().is_some());
}
