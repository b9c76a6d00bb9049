//! The three PSAs beyond the shared conformance suite (issue 20 pt 3): their time entries
//! (the technician found by e-mail or the API user said so, one entry found again by its
//! marker and never by a person's copy, a closed ticket refused with the system's own
//! words), Autotask's zone discovery (once per process, never to a host outside the
//! discovery server's domain) and ticket numbers, HaloPSA's token (tenant, `scope=all`,
//! renewed after a revocation). Real HTTP against the simulators.

use std::time::Duration;

use chrono::NaiveDate;
use secrecy::SecretString;
use ticketsync::note::{Field, Note, Visibility};
use ticketsync::sinks::{SinkErrorKind, TicketSink, TimeEntry};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn http() -> reqwest::Client {
    ticketsync::http::client(Duration::from_secs(10))
}

fn entry(email: Option<&str>, billable: bool) -> TimeEntry {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TimeEntry {
        started_at: "2026-12-01T09:00:00Z".parse().unwrap(),
        ended_at: "2026-12-01T09:22:00Z".parse().unwrap(),
        spent_on: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        raw_seconds: 22 * 60,
        minutes: 30,
        billable,
        technician: Some("Jon Snow".into()),
        technician_email: email.map(str::to_string),
        user: None,
        summary: format!("TeamViewer session s{}", &id[..6]),
        marker: format!("tsd:v2:teamviewer:{id}:time:00112233445566778899aabbccddeeff"),
    }
}

fn note() -> Note {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Note {
        title: format!("Session {}", &id[..8]),
        fields: vec![Field { label: "Technician".into(), value: "Jon Snow".into() }],
        links: vec![],
        body: None,
        attachments: vec![],
        visibility: Visibility::Internal,
        marker: format!("tsd:v1:psa:{id}:report"),
    }
}

#[tokio::test]
async fn connectwise_time_entries_land_once_for_the_technician_and_a_closed_ticket_is_refused() {
    use ticketsync::sim::connectwise::{ConnectWiseSim, API_MEMBER, TECHNICIAN, TECHNICIAN_EMAIL};
    use ticketsync::sinks::connectwise::{ConnectWiseKeys, ConnectWiseSink};
    let sim = ConnectWiseSim::start("acme", "pub", "priv", "cid", &[1, 2, 3]).await.unwrap();
    sim.set_max_per_page(1);
    let keys = ConnectWiseKeys {
        company: "acme".into(),
        public_key: "pub".into(),
        private_key: secret("priv"),
        client_id: "cid".into(),
    };
    let cw = ConnectWiseSink::new("connectwise", &sim.base_url, keys, API_MEMBER, http());
    assert!(cw.supports_time_entries());

    let e = entry(Some(TECHNICIAN_EMAIL), true);
    let r = cw.post_time_entry("1", &e).await.unwrap();
    let other = entry(None, false);
    cw.post_time_entry("1", &other).await.unwrap();
    // A member copies the first entry's comment into an entry of their own, and types one
    // ending with a marker nobody wrote.
    sim.add_person_time_entry(1, &e.comment(false));
    let stray = entry(None, true);
    sim.add_person_time_entry(1, &stray.comment(false));

    let t = sim.time_entries(1);
    assert_eq!(t.len(), 4, "{t:?}");
    let mine = &t[0];
    assert!(ticketsync_model::time_entry::ends_with_marker(&mine.notes, &e.marker), "{mine:?}");
    assert_eq!(mine.member, TECHNICIAN, "found by e-mail: {mine:?}");
    assert!(!mine.notes.contains("posted as the API user"), "{mine:?}");
    assert_eq!((mine.billable_option.as_str(), mine.actual_hours), ("Billable", 0.5));
    assert_eq!((mine.time_start.as_str(), mine.time_end.as_str()), ("2026-12-01T09:00:00Z", "2026-12-01T09:22:00Z"));
    assert_eq!((t[1].member.as_str(), t[1].billable_option.as_str()), (API_MEMBER, "DoNotBill"));
    assert!(t[1].notes.contains("Technician Jon Snow has no user here: posted as the API user."), "{:?}", t[1]);

    // Found again (walking pages of one), and only our own.
    assert_eq!(cw.find_time_entry("1", &e.marker).await.unwrap(), Some(r));
    assert!(cw.find_time_entry("1", &stray.marker).await.unwrap().is_none(), "a person's entry is not ours");
    assert!(cw.find_time_entry("2", &e.marker).await.unwrap().is_none(), "another ticket's entries");

    sim.close_ticket(3);
    let err = cw.post_time_entry("3", &entry(None, true)).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Permanent, "{err}");
    assert!(err.message.contains("Time cannot be entered against a closed ticket"), "{err}");
    // The note still lands on the closed ticket.
    cw.post_note("3", &note()).await.unwrap();
    assert_eq!(sim.notes(3).len(), 1);

    assert_eq!(cw.user_exists(TECHNICIAN).await.unwrap(), Some(true));
    assert_eq!(cw.user_exists("ghost").await.unwrap(), Some(false));
    assert_eq!(cw.user_by_email("nobody@example.test").await.unwrap(), None);
    cw.check().await.unwrap();
}

#[tokio::test]
async fn autotask_time_entries_zone_once_and_ticket_numbers() {
    use ticketsync::sim::autotask::{
        ticket_number, AutotaskSim, API_RESOURCE_ID, TECHNICIAN_EMAIL, TECHNICIAN_RESOURCE_ID,
    };
    use ticketsync::sinks::autotask::{AutotaskCredentials, AutotaskSink, NoteKinds, TimeSettings};
    let sim = AutotaskSim::start("api@x.test", "CODE", "at-secret", &[1, 2, 3]).await.unwrap();
    sim.set_max_per_page(1);
    let creds = || AutotaskCredentials {
        username: "api@x.test".into(),
        integration_code: "CODE".into(),
        secret: secret("at-secret"),
    };
    let at = AutotaskSink::new("autotask", &sim.base_url, None, creds(), NoteKinds::default(), http())
        .with_time_entries(TimeSettings { role_id: 29_683_000, billing_code_id: Some(29_682_801) });
    assert!(at.supports_time_entries());

    // Notes and time by number and by id: one zone lookup in all.
    let n = note();
    at.post_note(&ticket_number(1), &n).await.unwrap();
    assert!(at.find_marker("1", &n.marker).await.unwrap().is_some());
    let e = entry(Some(TECHNICIAN_EMAIL), false);
    let r = at.post_time_entry(&ticket_number(1), &e).await.unwrap();
    let api = entry(None, true);
    at.post_time_entry("1", &api).await.unwrap();
    sim.add_person_time_entry(1, &e.comment(false));
    let stray = entry(None, true);
    sim.add_person_time_entry(1, &stray.comment(false));
    assert_eq!(sim.zone_lookups(), 1, "the zone is looked up once");

    let t = sim.time_entries(1);
    assert_eq!(t.len(), 4, "{t:?}");
    assert_eq!(
        (t[0].resource_id, t[0].role_id, t[0].hours_worked, t[0].is_non_billable),
        (TECHNICIAN_RESOURCE_ID, 29_683_000, 0.5, true)
    );
    assert!(ticketsync_model::time_entry::ends_with_marker(&t[0].summary_notes, &e.marker), "{:?}", t[0]);
    assert_eq!(t[1].resource_id, API_RESOURCE_ID);
    assert!(t[1].summary_notes.contains("posted as the API user"), "{:?}", t[1]);
    assert_eq!(at.find_time_entry(&ticket_number(1), &e.marker).await.unwrap(), Some(r));
    assert!(at.find_time_entry("1", &stray.marker).await.unwrap().is_none(), "a person's entry is not ours");

    sim.complete_ticket(3);
    let err = at.post_time_entry("3", &entry(None, true)).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Permanent, "{err}");
    assert!(err.message.contains("cannot be added to a ticket whose status is Complete"), "{err}");
    at.post_note("3", &note()).await.unwrap();

    let err = at.post_note("T20990101.0001", &note()).await.unwrap_err();
    assert!(err.message.contains("ticket not found") && err.kind == SinkErrorKind::Permanent, "{err}");
    assert_eq!(at.user_exists(&TECHNICIAN_RESOURCE_ID.to_string()).await.unwrap(), Some(true));
    assert_eq!(at.user_exists("12").await.unwrap(), Some(false));
    at.check().await.unwrap();

    // A zone answer naming another host never receives the credentials.
    sim.set_zone_url("http://evil.example/atservicesrest/");
    let fresh = AutotaskSink::new("autotask", &sim.base_url, None, creds(), NoteKinds::default(), http());
    let err = fresh.post_note("1", &note()).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Auth, "{err}");
    assert!(err.message.contains("no usable zone URL"), "{err}");
    // Without time_role_id the sink has no time entries (the section refuses time_entries).
    assert!(!fresh.supports_time_entries());
}

#[tokio::test]
async fn halopsa_time_on_actions_tenant_scope_and_a_revoked_token() {
    use ticketsync::sim::halopsa::{HaloPsaSim, API_AGENT_ID, TECHNICIAN_AGENT_ID, TECHNICIAN_EMAIL};
    use ticketsync::sinks::halopsa::{HaloCredentials, HaloPsaSink, Outcomes};
    let sim = HaloPsaSim::start("hid", "hsecret", Some("acme"), &[1, 2, 3]).await.unwrap();
    let creds = HaloCredentials {
        client_id: "hid".into(),
        client_secret: secret("hsecret"),
        tenant: Some("acme".into()),
        auth_url: Some(format!("{}/auth", sim.base_url)),
    };
    let halo = HaloPsaSink::new("halopsa", &sim.base_url, creds, Outcomes::default(), http());
    halo.check().await.unwrap();
    assert_eq!(sim.token_requests(), [(Some("acme".to_string()), Some("all".to_string()))]);

    let e = entry(Some(TECHNICIAN_EMAIL), true);
    let r = halo.post_time_entry("1", &e).await.unwrap();
    halo.post_time_entry("1", &entry(None, false)).await.unwrap();
    let n = note();
    halo.post_note("1", &n).await.unwrap();
    let a = sim.actions(1);
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!((a[0].time_taken, a[0].agent_id, a[0].billable), (0.5, Some(TECHNICIAN_AGENT_ID), Some(true)));
    assert!(a[0].hidden_from_user && a[0].outcome == "Private Note", "{:?}", a[0]);
    assert_eq!((a[1].agent_id, a[1].billable), (None, Some(false)));
    assert!(a[1].note_html.contains("posted as the API user"), "{:?}", a[1]);
    assert_eq!(a[2].who_agentid, API_AGENT_ID);
    assert_eq!(halo.find_time_entry("1", &e.marker).await.unwrap(), Some(r));
    // The note is no time entry, and a time entry is no note.
    assert!(halo.find_time_entry("1", &n.marker).await.unwrap().is_none());
    assert!(halo.find_marker("1", &n.marker).await.unwrap().is_some());

    // A revoked token: the next call takes a new one and succeeds.
    sim.revoke_tokens();
    halo.post_note("2", &note()).await.unwrap();
    assert_eq!(sim.tokens_issued(), 2);

    sim.close_ticket(3);
    let err = halo.post_time_entry("3", &entry(None, true)).await.unwrap_err();
    assert_eq!(err.kind, SinkErrorKind::Permanent, "{err}");
    assert!(err.message.contains("is closed: time cannot be logged"), "{err}");
    halo.post_note("3", &note()).await.unwrap();

    assert_eq!(halo.user_exists(&TECHNICIAN_AGENT_ID.to_string()).await.unwrap(), Some(true));
    assert_eq!(halo.user_exists("99").await.unwrap(), Some(false));
}
