//! Tenants (issue 17, point 3): `[[tenants]]` with their own vendor accounts and ticket
//! systems, over real HTTP against the simulators, on either backend (`TestDb`). A session of
//! one tenant is never matched to, queued for, or delivered into another tenant's ticket
//! system, even when its session code and ticket number exist in both.

use serde_json::json;

use ticketsync::config::Config;
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::store::{audit, links, outbox, TenantName};

use crate::support::{test_store, tv_connection, vdate};

const TV_DEFAULT: &str = "54213-2YotnFZFEjr1zCsicMWp";
const TV_ACME: &str = "77001-AcmeTokenZZq8rT0kLm";

async fn tv(token: &str) -> TeamViewerSim {
    TeamViewerSim::start(SimOptions { script_tokens: vec![token.into()], ..Default::default() }).await.expect("sim")
}

fn config(store: &str, tv_d: &TeamViewerSim, tv_a: &TeamViewerSim, rm_d: &RedmineSim, rm_a: &RedmineSim) -> Config {
    Config::from_toml_with_env(
        &config_text(store, tv_d, tv_a, rm_d, rm_a),
        "tenants.toml",
        Vec::<(String, String)>::new(),
    )
    .expect("config")
}

fn config_text(
    store: &str,
    tv_d: &TeamViewerSim,
    tv_a: &TeamViewerSim,
    rm_d: &RedmineSim,
    rm_a: &RedmineSim,
) -> String {
    format!(
        r#"{store}
[sources.teamviewer]
base_url = "{tvd}"
token = "{TV_DEFAULT}"

[sinks.redmine]
url = "{rmd}"
api_key = "rm-default-key"

[[tenants]]
name = "acme"

[[tenants.sources]]
kind = "teamviewer"
name = "acme-tv"
base_url = "{tva}"
token = "{TV_ACME}"

[[tenants.sinks]]
kind = "redmine"
name = "acme-redmine"
url = "{rma}"
api_key = "rm-acme-key"
tickets = "^\\d+$"
"#,
        tvd = tv_d.base_url,
        tva = tv_a.base_url,
        rmd = rm_d.base_url,
        rma = rm_a.base_url,
    )
}

/// An ended connection without a ticket in `custom_api`: only a link can match it.
fn unlinked(id: &str, code: &str, start: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    json!({
        "id": id, "userid": "u1", "username": "Jon Snow", "deviceid": "1234567890", "devicename": "PC-7",
        "groupid": "g1", "groupname": "Helpdesk", "start_date": vdate(start),
        "end_date": vdate(start + chrono::TimeDelta::minutes(4)), "billing_state": "Bill",
        "support_session_type": 2, "session_code": code
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_one_tenant_never_reaches_another_tenants_ticket_system() {
    let (tv_d, tv_a) = (tv(TV_DEFAULT).await, tv(TV_ACME).await);
    // Ticket 101 exists in both tenants' Redmines; 202 only in default's, 303 only in acme's.
    let rm_d = RedmineSim::start("rm-default-key", &[101, 202]).await.unwrap();
    let rm_a = RedmineSim::start("rm-acme-key", &[101, 303]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path()).await;
    let cfg = config(&store.db.store_section(), &tv_d, &tv_a, &rm_d, &rm_a);
    assert_eq!(cfg.tenant_names().iter().map(TenantName::as_str).collect::<Vec<_>>(), ["default", "acme"]);
    let app = ticketsync::app::App::with_store(cfg, store.store.clone()).expect("app");

    let start = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    // The same session code and ticket number in both tenants.
    tv_d.add_connection(tv_connection("d0000000-0000-4000-8000-000000000001", "s111-111-111", "101", start));
    tv_a.add_connection(tv_connection("a0000000-0000-4000-8000-000000000001", "s111-111-111", "101", start));
    // A ticket only the other tenant has: queued nowhere (acme's route and sinks only).
    tv_a.add_connection(tv_connection("a0000000-0000-4000-8000-000000000002", "s222-222-222", "202", start));
    tv_d.add_connection(tv_connection("d0000000-0000-4000-8000-000000000003", "s333-333-333", "303", start));
    // A code the default tenant linked to its ticket 202: acme's session with that code
    // must not be matched by default's link.
    {
        let mut tx = store.begin().await.unwrap();
        links::insert(&mut tx, "teamviewer", "s999-999-999", "202", "manual", None, Some("test")).await.unwrap();
        tx.commit().await.unwrap();
    }
    tv_a.add_connection(unlinked("a0000000-0000-4000-8000-000000000009", "s999-999-999", start));

    let first = app.cycle().await.expect("cycle");
    let again = app.cycle().await.expect("second cycle");
    assert_eq!(again.delivered.attempted, 0, "nothing left to send: {again:?}");
    assert_eq!(first.polled.len(), 2, "one source per tenant: {:?}", first.polled);

    // Every session stored once, under its own tenant.
    let tenants: Vec<(String, String)> = {
        let mut v = Vec::new();
        for ext in [
            "d0000000-0000-4000-8000-000000000001",
            "a0000000-0000-4000-8000-000000000001",
            "a0000000-0000-4000-8000-000000000002",
            "d0000000-0000-4000-8000-000000000003",
            "a0000000-0000-4000-8000-000000000009",
        ] {
            let n = store
                .query_i64(&format!("SELECT COUNT(*) FROM sessions WHERE external_id = '{ext}' AND tenant = 'acme'"))
                .await
                .unwrap();
            v.push((ext[..1].to_string(), if n == 1 { "acme".into() } else { "default".into() }));
        }
        v
    };
    assert!(tenants.iter().all(|(who, t)| (who == "a") == (t == "acme")), "{tenants:?}");
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM sessions").await.unwrap(), 5);

    // Each tenant's 101 got exactly its own tenant's note, and nothing else landed anywhere.
    let d101 = rm_d.journals(101);
    let a101 = rm_a.journals(101);
    assert_eq!(d101.len(), 1, "{d101:?}");
    assert_eq!(a101.len(), 1, "{a101:?}");
    assert!(
        d101[0].notes.contains("tsd:v2:teamviewer:d0000000"),
        "default's marker, as before tenants: {}",
        d101[0].notes
    );
    assert!(!d101[0].notes.contains("a0000000"), "nothing of acme's session on default's ticket");
    assert!(a101[0].notes.contains("tsd:v2:acme:teamviewer:a0000000"), "acme's marker names acme: {}", a101[0].notes);
    assert!(!a101[0].notes.contains("d0000000"), "nothing of default's session on acme's ticket");
    assert!(rm_d.journals(202).is_empty(), "acme's ticket 202 is not default's 202");
    assert!(rm_a.journals(303).is_empty(), "default's ticket 303 is not acme's 303");
    assert!(rm_a.journals(202).is_empty() && rm_d.journals(303).is_empty());

    // The rows say the same: matches and deliveries carry their session's tenant; acme's
    // s999 session is unmatched (default's link is not acme's).
    let crossing = store
        .query_i64(
            "SELECT COUNT(*) FROM deliveries d JOIN sessions s ON s.id = d.session_id WHERE d.tenant <> s.tenant",
        )
        .await
        .unwrap();
    assert_eq!(crossing, 0);
    assert_eq!(
        store
            .query_i64(
                "SELECT COUNT(*) FROM matches m JOIN sessions s ON s.id = m.session_id WHERE m.tenant <> s.tenant"
            )
            .await
            .unwrap(),
        0
    );
    let acme_deliveries = outbox::list(&store.for_tenant(&TenantName::new("acme").unwrap()), None).await.unwrap();
    assert!(acme_deliveries.iter().all(|d| d.tenant == "acme"), "{acme_deliveries:?}");
    assert!(acme_deliveries.iter().all(|d| d.sink == "acme-redmine"), "{acme_deliveries:?}");
    // Acme's ticket 202 does not exist in acme's Redmine: the note died there, with acme's
    // system's 404, and was never offered to default's Redmine, which has a 202.
    let a202: Vec<_> = acme_deliveries.iter().filter(|d| d.ticket_id == "202").collect();
    assert_eq!(a202.len(), 1);
    assert_eq!(a202[0].state, "dead");
    assert!(a202[0].last_error.as_deref().unwrap_or("").contains("404"), "{:?}", a202[0]);
    let a101: Vec<_> = acme_deliveries.iter().filter(|d| d.ticket_id == "101").collect();
    assert!(a101.len() == 1 && a101[0].state == "delivered", "{a101:?}");
    let everyone = outbox::list(&store, None).await.unwrap();
    assert_eq!(everyone.len(), 4, "the unscoped view lists every tenant's: {everyone:?}");
    let s999_matched = store
        .query_i64(
            "SELECT COUNT(*) FROM matches m JOIN sessions s ON s.id = m.session_id WHERE s.session_code_norm = 's999999999'",
        )
        .await
        .unwrap();
    assert_eq!(s999_matched, 0, "acme's session is not matched by default's link");
    // Cursors are the account's own; the default tenant's key is as before.
    assert_eq!(
        store
            .query_i64("SELECT COUNT(*) FROM source_cursors WHERE source IN ('teamviewer', 'acme/acme-tv/teamviewer')")
            .await
            .unwrap(),
        2
    );
    // Audit rows of acme's work name acme, and the chain verifies.
    assert!(store.query_i64("SELECT COUNT(*) FROM audit_events WHERE tenant = 'acme'").await.unwrap() > 0);
    assert!(matches!(audit::verify(&store).await.unwrap(), audit::Verify::Ok { .. }));

    // The operator's views, per tenant (`--tenant`) and all together.
    let cfg_path = dir.path().join("tenants.toml");
    std::fs::write(&cfg_path, config_text(&store.db.store_section(), &tv_d, &tv_a, &rm_d, &rm_a)).unwrap();
    let run = |args: &'static [&'static str]| {
        let cfg_path = cfg_path.clone();
        async move {
            let out = crate::support::ticketsync(&cfg_path, args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let acme: Vec<serde_json::Value> = run(&["deliveries", "--json", "--tenant", "acme"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(acme.len(), 2, "{acme:?}");
    assert!(acme.iter().all(|d| d["tenant"] == "acme" && d["sink"] == "acme-redmine"), "{acme:?}");
    let all = run(&["deliveries", "--json"]).await;
    assert_eq!(all.lines().count(), 4, "{all}");
    let unmatched = run(&["unmatched", "--json", "--tenant", "default"]).await;
    assert!(!unmatched.contains("s999"), "acme's unmatched session is not default's: {unmatched}");
    let unmatched = run(&["unmatched", "--json", "--tenant", "acme"]).await;
    assert!(unmatched.contains("s999-999-999"), "{unmatched}");
    let show = run(&["audit", "show", "--ticket", "101", "--tenant", "acme"]).await;
    assert!(show.contains("acme-redmine") && !show.contains("d0000000"), "{show}");
    let show_all = run(&["audit", "show", "--ticket", "101"]).await;
    assert!(show_all.contains("acme-redmine") && show_all.contains("d0000000"), "{show_all}");
    let export = run(&[
        "audit",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "jsonl",
        "--tenant",
        "acme",
    ])
    .await;
    let everything = run(&["audit", "export", "--from", "2000-01-01", "--to", "2100-01-01", "--format", "jsonl"]).await;
    assert!(export.lines().count() > 1 && export.lines().count() < everything.lines().count());
    assert!(export.lines().filter(|l| l.contains("\"kind\":\"delivery")).all(|l| !l.contains("\"sink\":\"redmine\"")));
}

/// A vendor id already stored for another tenant is quarantined for the second tenant, and
/// the first tenant's session is left as it was.
#[tokio::test]
async fn a_vendor_id_of_another_tenant_is_quarantined_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path()).await;
    let start = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let rec = |notes: &str| ticketsync::session::NewSession {
        vendor: "teamviewer".into(),
        external_id: "same-id".into(),
        session_code: Some("s1".into()),
        technician: None,
        technician_id: None,
        device: None,
        device_id: None,
        group_name: None,
        started_at: start,
        ended_at: Some(start + chrono::TimeDelta::minutes(5)),
        notes: Some(notes.into()),
        description: None,
        custom_api: None,
        customer_name: None,
        customer_email: None,
        raw_json: format!("{{\"id\":\"same-id\",\"notes\":\"{notes}\"}}"),
    };
    let (a, b) = (rec("default's"), rec("acme's"));
    let mut tx = store.begin().await.unwrap();
    let first = ticketsync::store::sessions::upsert_many(&mut tx, &[&a], Some("w1"), false).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first[0].1, ticketsync::store::sessions::Upsert::Inserted);
    let acme = store.for_tenant(&TenantName::new("acme").unwrap());
    let mut tx = acme.begin().await.unwrap();
    let second = ticketsync::store::sessions::upsert_many(&mut tx, &[&b], Some("w2"), false).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(second[0].1, ticketsync::store::sessions::Upsert::Refused);
    assert_eq!(
        store
            .query_i64("SELECT COUNT(*) FROM sessions WHERE tenant = 'default' AND notes = 'default''s'")
            .await
            .unwrap(),
        1,
        "the first tenant's session is unchanged"
    );
    assert_eq!(
        store
            .query_i64("SELECT COUNT(*) FROM quarantine WHERE tenant = 'acme' AND reason LIKE '%another tenant%'")
            .await
            .unwrap(),
        1
    );
    assert!(matches!(audit::verify(&store).await.unwrap(), audit::Verify::Ok { .. }));
}

/// A tenant's secret comes from its entry, never from the default tenant's credential named
/// after the key (`redmine_api_key` in `$CREDENTIALS_DIRECTORY`).
#[tokio::test]
async fn a_tenants_secret_is_never_the_default_tenants_credential() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("redmine_api_key"), "default-tenant-redmine-key").unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\npath = \"{}\"\n\n[sinks.redmine]\nurl = \"https://redmine.default.example\"\n\n\
             [[tenants]]\nname = \"acme\"\n[[tenants.sinks]]\nkind = \"redmine\"\nname = \"acme-redmine\"\n\
             url = \"https://redmine.acme.example\"\n",
            dir.path().join("t.db").display()
        ),
    )
    .unwrap();
    let out = crate::support::ticketsync(&cfg, &["check"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("tenants[0].sinks[0].api_key") && text.contains("default tenant's"), "{text}");
    assert!(!text.contains("sinks.redmine.api_key"), "the default tenant's own use is fine: {text}");
}

/// Bad `[[tenants]]`: each error names its key and line, and the rest is still checked.
#[test]
fn tenant_config_errors_name_the_key_and_line() {
    let toml = r#"
[[tenants]]
name = "acme"

[[tenants.sinks]]
kind = "redmine"
name = "rm"
url = "https://redmine.acme.example"
api_key = "k-acme-0123456789"

[[tenants.sinks]]
kind = "redmine"
name = "rm"
url = "https://redmine2.acme.example"
api_key = "k-acme-0123456789"

[[tenants.sinks]]
kind = "jira-ish"
name = "other"

[[tenants.sinks]]
kind = "redmine"
name = "rm-time"
url = "https://redmine3.acme.example"
api_key = "k-acme-0123456789"
time_entries = true

[[tenants]]
name = "acme"

[[tenants]]
name = "Bad Name"

[[tenants]]
name = "beta"
[[tenants.sources]]
kind = "teamviewer"
name = "beta-tv"
token = "tv-beta-0123456789"
no_such_key = 1
[[tenants.sources]]
kind = "teamviewer"
name = "beta-oauth"
auth = "oauth"
client_id = "beta-client"
client_secret = "beta-secret-0123456789"
"#;
    let (_, errors) = Config::parse_all(toml, "t.toml", Vec::<(String, String)>::new()).expect("parses");
    let line = |key: &str| {
        errors
            .iter()
            .find(|d| d.key == key)
            .map(|d| (d.to_string(), matches!(d.origin, ticketsync::config::Origin::File { .. })))
            .unwrap_or_else(|| panic!("no error for {key}: {errors:#?}"))
    };
    let (dup_sink, at) = line("tenants[0].sinks[1].name");
    assert!(dup_sink.contains("duplicate sink name \"rm\"") && at, "{dup_sink}");
    assert!(dup_sink.contains("line 13"), "{dup_sink}");
    let (kind, at) = line("tenants[0].sinks[2].kind");
    assert!(kind.contains("unknown kind \"jira-ish\"") && kind.contains("redmine") && at, "{kind}");
    assert!(kind.contains("line 18"), "{kind}");
    let (dup, _) = line("tenants[1].name");
    assert!(dup.contains("duplicate tenant name \"acme\""), "{dup}");
    let (bad, _) = line("tenants[2].name");
    assert!(bad.contains("lower-case"), "{bad}");
    let (unknown, at) = line("tenants[3].sources[0].no_such_key");
    assert!(unknown.contains("unknown key") && unknown.contains("line 40") && at, "{unknown}");
    let (oauth, _) = line("tenants[3].sources[1].auth");
    assert!(oauth.contains("not kept per tenant"), "{oauth}");
    // Time entries are the top-level sinks' only (so far): refused, not silently never sent.
    let (time, _) = line("tenants[0].sinks[3].time_entries");
    assert!(time.contains("not kept for [[tenants.sinks]]"), "{time}");
}
