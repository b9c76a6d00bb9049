//! `ticketsync demo`: the whole pipeline on one machine. Built-in simulators (TeamViewer,
//! Splashtop, Zoom, visioconference.me, Redmine, ConnectWise PSA, a webhook receiver) on 127.0.0.1, a real
//! config file and a real SQLite file in the state directory (or a PostgreSQL database,
//! `--store postgres://…`), two cycles (before and after a Zoom recording finishes), and a
//! summary of what landed where.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use serde_json::json;

use crate::app::App;
use crate::config::Config;
use crate::sim::connectwise::ConnectWiseSim;
use crate::sim::redmine::RedmineSim;
use crate::sim::splashtop::{SimOptions as SplashtopSimOptions, SplashtopSim};
use crate::sim::teamviewer::{SimOptions, TeamViewerSim};
use crate::sim::visio::{VisioShape, VisioSim};
use crate::sim::webhook::WebhookSim;
use crate::sim::zoom::{ZoomSim, ZoomSimOptions};

const TICKETS: &[u64] = &[101, 102, 103, 104, 105, 106];
/// Tenant acme's Redmine: tickets of its own.
const ACME_TICKETS: &[u64] = &[201];
/// The ConnectWise service ticket a technician names in a session's notes.
const CW_TICKET: u64 = 5012;

pub async fn run(state_dir: &Path) -> Result<()> {
    run_on(state_dir, None).await
}

/// The demo, its history in the SQLite file of `state_dir`, or with `store` a PostgreSQL
/// URL, in that database: created if missing (the user needs CREATEDB), replaced if an
/// earlier demo created it, used if it holds no ticketsync history, refused otherwise.
pub async fn run_on(state_dir: &Path, store: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("--state-dir {}", state_dir.display()))?;
    let state_dir = state_dir.canonicalize()?;
    let db = state_dir.join("ticketsync.db");
    // Each demo run starts from an empty history so the (fresh) simulators and the
    // database agree; the files (or the demo's database) of the last run are replaced.
    let pg = match store {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            fresh_postgres(url).await?;
            Some(url.to_string())
        }
        Some(url) => anyhow::bail!(
            "--store {}: the demo's store is a postgres:// URL (without it, a SQLite file in --state-dir)",
            crate::store::scrub_url(url)
        ),
        None => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            None
        }
    };
    let store_line = match &pg {
        // `path` too: on PostgreSQL the OAuth token journal goes beside it, in the state dir.
        Some(url) => format!("url = {}\npath = {}", toml_str(url), toml_str(&db.display().to_string())),
        None => format!("path = {}", toml_str(&db.display().to_string())),
    };
    let secrets = state_dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    let write_secret = |name: &str| -> Result<(String, std::path::PathBuf)> {
        let value = format!("demo-{name}-{}", uuid::Uuid::new_v4().simple());
        let p = secrets.join(name);
        std::fs::write(&p, &value)?;
        restrict(&p)?;
        Ok((value, p))
    };
    let (tv_token, tv_token_file) = write_secret("teamviewer_token")?;
    let (st_token, st_token_file) = write_secret("splashtop_token")?;
    let (rm_key, rm_key_file) = write_secret("redmine_api_key")?;
    let (wh_secret, wh_secret_file) = write_secret("webhook_secret")?;
    let (zoom_secret, zoom_secret_file) = write_secret("zoom_helpdesk_client_secret")?;
    let (visio_token, visio_token_file) = write_secret("visioconference_token")?;
    // The second tenant's own TeamViewer account and Redmine (issue 17, `[[tenants]]`).
    let (acme_tv_token, acme_tv_token_file) = write_secret("acme_teamviewer_token")?;
    let (acme_rm_key, acme_rm_key_file) = write_secret("acme_redmine_api_key")?;
    let (cw_key, cw_key_file) = write_secret("connectwise_private_key")?;

    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![tv_token], page_size: 3, ..Default::default() }).await?;
    let st = SplashtopSim::start(SplashtopSimOptions { api_tokens: vec![st_token], ..Default::default() }).await?;
    let redmine = RedmineSim::start(&rm_key, TICKETS).await?;
    let hook = WebhookSim::start(&wh_secret, "X-Ticketsync-Signature").await?;
    let zoom = ZoomSim::start(ZoomSimOptions { client_secret: zoom_secret, ..Default::default() }).await?;
    let visio = VisioSim::start(&visio_token, VisioShape::Current).await?;
    let acme_tv = TeamViewerSim::start(SimOptions { script_tokens: vec![acme_tv_token], ..Default::default() }).await?;
    let acme_redmine = RedmineSim::start(&acme_rm_key, ACME_TICKETS).await?;
    let cw = ConnectWiseSim::start("acme", "demoPublicKey", &cw_key, "demo-client-id", &[CW_TICKET]).await?;

    let now = Utc::now();
    let t = |mins: i64| now - Duration::minutes(mins);
    let date = |d: chrono::DateTime<Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // 101: the ticket id travels in custom_api (a service case created elsewhere).
    tv.add_connection(json!({
        "id": "0755a8dd-df19-4ea7-af47-cabb6b2a97e4", "userid": "u11293276", "username": "Jon Snow",
        "deviceid": "1234567890", "devicename": "ACME-LT-042", "groupid": "g272032545", "groupname": "Helpdesk",
        "start_date": date(t(190)), "end_date": date(t(171)), "fee": "0.00", "currency": "EUR", "billing_state": "Bill",
        "notes": "Printer driver reinstalled", "support_session_type": 2, "session_code": "s119-457-589",
        "session_note": "Printer offline", "custom_api": "{\"ticket_id\":\"101\"}",
        "end_customer": {"name": "Peter Niedhelp", "email": "helpme@example.com"}
    }));
    // 102: the technician typed the ticket number in the connection notes.
    tv.add_connection(json!({
        "id": "5ae6d2a9-57e9-4c62-b236-280390954b6f", "userid": "u1234567", "username": "Arya Stark",
        "deviceid": "987654321", "groupid": "", "groupname": "", "start_date": date(t(150)), "end_date": date(t(146)),
        "billing_state": "Bill", "support_session_type": 1, "notes": "VPN reset, see #102"
    }));
    // No ticket reference at all: stays unmatched until someone links it.
    tv.add_connection(json!({
        "id": "9c1b7e52-3f0a-4a8e-9d61-2f4b8a7c5e10", "userid": "u1234567", "username": "Arya Stark",
        "deviceid": "55501234", "start_date": date(t(120)), "end_date": date(t(100)), "billing_state": "DoNotBill",
        "support_session_type": 1
    }));
    // Still running: stored, re-read on every poll until it ends, no note yet.
    tv.add_connection(json!({
        "id": "d3e0c6a1-7b25-4f38-8e9c-1a2b3c4d5e6f", "userid": "u11293276", "username": "Jon Snow",
        "deviceid": "1234567890", "start_date": date(t(10)), "support_session_type": 1
    }));
    // 5012: a ConnectWise service ticket named in the notes (routed to ConnectWise).
    tv.add_connection(json!({
        "id": "3f6c2a8e-1d4b-4c7a-9e2f-8b5a6c7d9e01", "userid": "u11293276", "username": "Jon Snow",
        "deviceid": "1234567890", "devicename": "ACME-LT-042", "start_date": date(t(95)), "end_date": date(t(71)),
        "billing_state": "Bill", "support_session_type": 1, "notes": "Outlook profile rebuilt, see #5012"
    }));
    // Malformed (no id): quarantined with its reason, the rest of the page is stored.
    tv.add_connection(json!({"userid": "u1", "username": "broken", "start_date": date(t(60))}));
    // Tenant acme: the same session code as #101's above, in acme's own TeamViewer account;
    // its note goes to acme's Redmine #201 only.
    acme_tv.add_connection(json!({
        "id": "a3c9e1f0-2b4d-4e6f-8a1c-3e5f7a9b1c2d", "userid": "u7700", "username": "Acme Tech",
        "deviceid": "7700770077", "devicename": "ACME-HQ-001", "groupid": "g1", "groupname": "Acme",
        "start_date": date(t(80)), "end_date": date(t(65)), "billing_state": "Bill", "support_session_type": 2,
        "session_code": "s119-457-589", "custom_api": "{\"ticket_id\":\"201\"}"
    }));

    let cfg_path = state_dir.join("ticketsync.toml");
    let cfg_text = format!(
        r##"# Written by `ticketsync demo`: the simulators' addresses change on every run.
[store]
{store_line}

[notes]
timezone = "Europe/Paris"

[outbox]
base_backoff_secs = 1

[sources.teamviewer]
base_url = "{tv}"
schedule = "*/5 * * * *"
auth = "script"
token_file = "{tvf}"
group_name = "Helpdesk"

[sources.splashtop]
region = "us"
base_url = "{st}"
console_url = "{st}"
schedule = "*/5 * * * *"
auth = "token"
token_file = "{stf}"
page_size = 2

[sources.zoom]
api_url = "{zapi}"
oauth_url = "{zoauth}"
schedule = "*/10 * * * *"

[[sources.zoom.accounts]]
name = "helpdesk"
auth = "oauth"
client_id = "zoom-client"
client_secret_file = "{zsf}"

[rooms.visioconference]
api_url = "{visio}"
token_file = "{vtf}"
agent_name = "Jon Snow"

[[match.rules]]
kind = "manual"

[[match.rules]]
kind = "custom_api"

[[match.rules]]
kind = "session_code"

[[match.rules]]
kind = "notes_regex"
pattern = "#(\\d+)"

[sinks.redmine]
url = "{rm}"
api_key_file = "{rmf}"
tickets = '^10\d$'
time_entries = true
time_activity_id = 9

[sinks.connectwise]
url = "{cw}"
company = "acme"
public_key = "demoPublicKey"
private_key_file = "{cwf}"
client_id = "demo-client-id"
member = "ticketsync"
tickets = '^50\d\d$'
time_entries = true
time_technicians = ["Jon Snow = jsnow"]

[sinks.webhook]
url = "{wh}"
secret_file = "{whf}"

# A second tenant (issue 17): its own TeamViewer account and its own Redmine. The sections
# above are the tenant "default".
[[tenants]]
name = "acme"

[[tenants.sources]]
kind = "teamviewer"
name = "acme-tv"
base_url = "{acme_tv}"
schedule = "*/5 * * * *"
token_file = "{acme_tvf}"

[[tenants.sinks]]
kind = "redmine"
name = "acme-redmine"
url = "{acme_rm}"
api_key_file = "{acme_rmf}"
"##,
        tv = tv.base_url,
        tvf = tv_token_file.display(),
        st = st.base_url,
        stf = st_token_file.display(),
        rm = redmine.base_url,
        rmf = rm_key_file.display(),
        cw = cw.base_url,
        cwf = cw_key_file.display(),
        wh = hook.url,
        whf = wh_secret_file.display(),
        zapi = zoom.api_url(),
        zoauth = zoom.base_url,
        zsf = zoom_secret_file.display(),
        visio = visio.api_url,
        vtf = visio_token_file.display(),
        acme_tv = acme_tv.base_url,
        acme_tvf = acme_tv_token_file.display(),
        acme_rm = acme_redmine.base_url,
        acme_rmf = acme_rm_key_file.display(),
    );
    std::fs::write(&cfg_path, cfg_text)?;
    let config = Config::load(&cfg_path)?;
    let app = App::build(config).await?;

    println!("ticketsync demo");
    println!("  TeamViewer simulator  {}", tv.base_url);
    println!("  Splashtop simulator   {}", st.base_url);
    println!("  Redmine simulator     {}", redmine.base_url);
    println!("  ConnectWise simulator {}", cw.base_url);
    println!("  webhook receiver      {}", hook.url);
    println!("  Zoom simulator        {}", zoom.base_url);
    println!("  visioconference.me    {}", visio.api_url);
    println!();
    authorize_zoom(&app).await?;
    println!("authorized Zoom account \"helpdesk\" (OAuth; the simulator approves at once)");

    // 103: a service case created from the ticket; the technician then uses its code.
    let created =
        crate::launchers::create_session(&app, "teamviewer", "103", Some("Peter Niedhelp"), Some("helpme@example.com"))
            .await?;
    println!("created TeamViewer service case {} for ticket #103", created.code);
    tv.connect_session(&created.code, "Jon Snow", t(40), Some(t(25)), Some("Outlook profile rebuilt"));

    // 104: a Splashtop support session created from the ticket; its log carries the file
    // transfers and the chat transcript.
    let created = crate::launchers::create_session(&app, "splashtop", "104", Some("Maria Gonzalez"), None).await?;
    println!("created Splashtop support session {} for ticket #104", created.code);
    st.connect_session(
        &created.code,
        "sam@example.com",
        t(70),
        Some(t(52)),
        json!([
            {"file_name": "eventlog.evtx", "size": 4_718_592, "direction": "download", "time": date(t(65))},
            {"file_name": "fix-dns.ps1", "size": 2_310, "direction": "upload", "time": date(t(60))}
        ]),
        Some(json!([
            {"time": date(t(69)), "from": "sam@example.com", "text": "Hello Maria, I am connected now."},
            {"time": date(t(68)), "from": "Maria Gonzalez", "text": "Thanks! The network drive is gone again."},
            {"time": date(t(53)), "from": "sam@example.com", "text": "Fixed: DNS suffix reset. Please reboot once."}
        ])),
        Some("DNS suffix list reset"),
    );
    // An unattended Splashtop session whose note names ticket #102.
    st.add_log(json!({
        "session_id": "77120931", "user_email": "arya@example.com", "src_name": "TECH-LAPTOP", "src_ip": "203.0.113.5",
        "dst_name": "FILESRV-02", "dst_ip": "198.51.100.20", "start_time": date(t(130)), "end_time": date(t(122)),
        "session_type": "unattended", "connection_type": "remote", "note": "Share permissions fixed for #102"
    }));

    // 105: a Zoom meeting for the ticket; it is held, its cloud recording is still processing.
    let meeting = crate::launchers::create_session(&app, "zoom", "105", None, None).await?;
    println!("created Zoom meeting {} for ticket #105", meeting.code);
    let meeting_id: i64 = meeting.code.parse()?;
    let people = [("Jon Snow", "tech@example.com", 30, 18), ("Peter Niedhelp", "helpme@example.com", 29, 20)];
    let participants =
        people.iter().map(|(n, e, from, to)| crate::sim::zoom::participant(n, e, t(*from), t(*to))).collect();
    zoom.end_meeting(meeting_id, None, t(30), t(18), participants);
    zoom.add_recording(meeting_id, false);
    // 106: a visioconference.me room (no report API: the creation is the record).
    let room = crate::launchers::create_session(&app, "visioconference", "106", None, None).await?;
    println!("created visioconference.me room {} for ticket #106", room.code);

    let report = app.cycle().await?;
    print_cycle(&report);
    zoom.publish_recording(meeting_id);
    println!("(the Zoom cloud recording finished processing)");
    let report = app.cycle().await?;
    print_cycle(&report);

    println!();
    println!("What landed on which ticket (Redmine):");
    for id in TICKETS {
        let js = redmine.journals(*id);
        if js.is_empty() {
            println!("  #{id}: (nothing)");
        }
        for j in js {
            // As the agent reads it: vendor text is entity-escaped for Textile/Markdown.
            let notes = crate::sinks::common::decode_entities(&j.notes);
            let first = notes.lines().next().unwrap_or("");
            println!("  #{id}: {} note — {first}", if j.private_notes { "private" } else { "public" });
        }
    }
    for t in cw.time_entries(CW_TICKET) {
        println!(
            "ConnectWise ticket {CW_TICKET}: time entry for {}, {} h ({}), {} to {}",
            t.member, t.actual_hours, t.billable_option, t.time_start, t.time_end
        );
    }
    for n in cw.notes(CW_TICKET) {
        let kind = if n.internal { "internal analysis" } else { "discussion" };
        println!(
            "ConnectWise ticket {CW_TICKET}: {kind} note by {} — {}",
            n.created_by,
            n.text.lines().next().unwrap_or("")
        );
    }
    println!("Webhook receiver got {} notes (signature verified).", hook.accepted().len());
    println!();
    println!("Time entries (view v_time_entries; Redmine's time tracking, ConnectWise's above):");
    let entries = crate::store::time::list(&app.store, None, None).await?;
    if entries.is_empty() {
        println!("  (none yet: a session's group closes once its reconnect gap has elapsed)");
    }
    for e in &entries {
        println!(
            "  ticket #{:<4} {} {}: {} s in session → {} min billed{}, {} ({})",
            e.ticket_id,
            e.vendor,
            e.session_code.as_deref().unwrap_or(&e.external_id),
            e.raw_seconds,
            e.minutes_billed,
            if e.billable == 1 { "" } else { " (non-billable)" },
            e.technician.as_deref().unwrap_or("no technician"),
            e.state
        );
    }
    if let Some(t) = redmine.time_entries().first() {
        println!(
            "The time entry on ticket #{} ({} h, activity {}, spent on {}):",
            t.issue, t.hours, t.activity_id, t.spent_on
        );
        for l in t.comments.lines() {
            println!("  | {l}");
        }
    }
    println!();
    println!("Tenant acme, on its own Redmine (the same session code as the default tenant's #101):");
    for id in ACME_TICKETS {
        let js = acme_redmine.journals(*id);
        if js.is_empty() {
            println!("  acme #{id}: (nothing)");
        }
        for j in js {
            let notes = crate::sinks::common::decode_entities(&j.notes);
            let first = notes.lines().next().unwrap_or("");
            println!("  acme #{id}: {} note — {first}", if j.private_notes { "private" } else { "public" });
        }
    }

    let rows = crate::store::reads::matches_by_ticket(&app.store).await?;
    println!();
    println!("Matches (view v_sessions_by_ticket):");
    for m in rows {
        println!("  ticket {:<5} ← {} {} (rule: {})", m.ticket_id, m.vendor, m.code, m.rule);
    }
    let unmatched = crate::store::sessions::unmatched_all(&app.store).await?;
    println!("Unmatched: {} ({} running)", unmatched.len(), unmatched.iter().filter(|s| s.ended_at.is_none()).count());
    for reason in crate::store::reads::quarantine_reasons(&app.store).await? {
        println!("Quarantined: {reason}");
    }
    if let Some(j) = redmine.journals(101).first() {
        println!();
        println!("The note on ticket #101:");
        for l in crate::sinks::common::decode_entities(&j.notes).lines() {
            println!("  | {l}");
        }
    }
    if let Some(j) = redmine.journals(104).iter().find(|j| j.notes.starts_with("Splashtop session")) {
        println!();
        println!("The Splashtop note on ticket #104 (transcript inline: Redmine uploads are public):");
        for l in crate::sinks::common::decode_entities(&j.notes).lines() {
            println!("  | {l}");
        }
    }
    if let Some(j) = redmine.journals(105).iter().find(|j| j.notes.starts_with("Zoom session")) {
        println!();
        println!("The Zoom note on ticket #105:");
        for l in crate::sinks::common::decode_entities(&j.notes).lines() {
            println!("  | {l}");
        }
    }
    println!();
    match &pg {
        Some(url) => {
            let shown = crate::store::scrub_url(url);
            println!("Database: {shown}");
            println!("Config:   {}", cfg_path.display());
            println!("Try:      psql '{shown}' -c 'SELECT * FROM v_deliveries'");
        }
        None => {
            println!("Database: {}", db.display());
            println!("Config:   {}", cfg_path.display());
            println!("Try:      sqlite3 {} 'SELECT * FROM v_deliveries'", db.display());
        }
    }
    tv.shutdown().await;
    st.shutdown().await;
    redmine.shutdown();
    hook.shutdown();
    zoom.shutdown();
    visio.shutdown();
    Ok(())
}

fn print_cycle(report: &crate::app::CycleReport) {
    println!("{report}");
}

/// What `ticketsync auth zoom` does, with the simulator's authorize page as the browser.
async fn authorize_zoom(app: &App) -> Result<()> {
    let cfg = app.config.sources.zoom.as_ref().context("[sources.zoom]")?;
    let oauth = crate::sources::zoom::oauth_client(
        cfg,
        0,
        &app.store,
        crate::http::client(std::time::Duration::from_secs(10)),
    )?;
    let (url, state) = oauth.authorize_url().await?;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let resp = browser.get(&url).send().await?;
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).context("no redirect")?;
    let cb = crate::oauth::parse_callback(location, Some(&state))?;
    oauth.complete_authorization(&cb.code, &state).await?;
    Ok(())
}

fn restrict(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Make the database of `url` an empty one for this run (see [`run_on`]).
async fn fresh_postgres(url: &str) -> Result<()> {
    crate::store::demo_db::fresh(url).await.with_context(|| format!("--store {}", crate::store::scrub_url(url)))
}
