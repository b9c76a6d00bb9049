//! A ticket system is one folder and one registry line (issue 16 pt 2). The `fake-sink`
//! feature adds `[sinks.fake]` (crates/sinks/src/fake, an in-memory ticket system) by that
//! line alone; everything the binary does with a ticket system then reaches it: `init` offers
//! and writes it, the parse knows its shared keys, `check` resolves its credential and lists
//! it, `doctor` recognizes and checks it, the app builds and routes it, and a note is
//! delivered through it. Run with `cargo test --features fake-sink --test it -- registry`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ticketsync::config::{Config, OUTBOUND_SECTIONS, SINK_SECTIONS};
use ticketsync::note::{Note, Visibility};
use ticketsync::pipeline::ticket_links::CreatedSession;
use ticketsync::store::outbox::NoteKind;

const TOKEN: &str = "fake-sink-token-0123456789";

async fn ticketsync(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.arg("--config").arg(config).args(args).env_clear();
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let o = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("finished").unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_system_added_by_one_registry_line_is_everywhere() {
    // The lists read before any section is.
    assert!(SINK_SECTIONS.contains(&"sinks.fake") && OUTBOUND_SECTIONS.contains(&"sinks.fake"));
    assert!(ticketsync::config::secret_keys().contains(&"sinks.fake.token"));
    assert!(ticketsync::config::is_credential("fake_token"));

    // `init` offers it, asks for its key and credential, and writes a configuration that
    // `check` and `doctor` pass.
    let dir = tempfile::tempdir().unwrap();
    let (cfg, creds, secret) = (dir.path().join("t.toml"), dir.path().join("creds"), dir.path().join("secret"));
    std::fs::write(&secret, TOKEN).unwrap();
    let db = dir.path().join("t.db");
    let (ok, out) = ticketsync(&cfg, &["init", "--sink", "nope"], &[]).await;
    assert!(!ok && out.contains("fake"), "init lists it among the ticket systems:\n{out}");
    let (ok, out) = ticketsync(
        &cfg,
        &[
            "init",
            "--sink",
            "fake",
            "--set",
            "fake.url=https://fake.example",
            "--set",
            &format!("store.path={}", db.display()),
            "--secret",
            &format!("fake_token=@{}", secret.display()),
            "--credentials-dir",
            creds.to_str().unwrap(),
            "--no-unit-dropin",
        ],
        &[],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(creds.join("fake_token")).unwrap(), TOKEN);
    let env = [("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())];
    let (ok, out) = ticketsync(&cfg, &["check"], &env).await;
    assert!(ok && out.contains("sinks: fake"), "{out}");
    let (ok, out) = ticketsync(&cfg, &["doctor"], &env).await;
    let row = out.lines().find(|l| l.starts_with("sink fake")).unwrap_or_default();
    assert!(row.contains("OK"), "doctor checks it:\n{out}");
    let row = out.lines().find(|l| l.starts_with("secret fake_token")).unwrap_or_default();
    assert!(ok && row.contains("OK"), "doctor resolves its credential:\n{out}");

    // Its shared keys parse where every sink's do; its own checks run.
    let text = format!(
        "[store]\npath = \"{}\"\n[sinks.fake]\nurl = \"https://fake.example\"\ntoken = \"{TOKEN}\"\n\
         tickets = '^\\d+$'\nconcurrency = 2\nmax_response_bytes = 4096\n",
        db.display()
    );
    let config = Config::from_toml_with_env(&text, "t.toml", Vec::new()).unwrap();
    assert_eq!(config.sinks.concurrency()["fake"], 2);
    let err = Config::from_toml_with_env("[sinks.fake]\nurl = \"nope\"\n", "t.toml", Vec::new()).unwrap_err();
    assert!(err.to_string().contains("sinks.fake.url"), "{err}");

    // Built, routed, and a note delivered through it.
    let app = ticketsync::app::App::build(config).await.unwrap();
    assert_eq!(app.sink_names, ["fake"]);
    let note = Note {
        title: "A session for this ticket".into(),
        fields: vec![],
        links: vec![],
        body: None,
        attachments: vec![],
        visibility: Visibility::Internal,
        marker: app.store.marker_key().marker("teamviewer", "123456789", NoteKind::SessionLinks.as_str()),
    };
    let created = CreatedSession {
        vendor: "teamviewer",
        ticket: "4711",
        code: "123 456 789",
        also_known_as: None,
        details: &serde_json::json!({}),
        notes: &[(NoteKind::SessionLinks, &note)],
    };
    let queued = ticketsync::pipeline::ticket_links::record_created(&app.store, &app.routes, &created).await.unwrap();
    assert_eq!(queued.len(), 1);
    let delivered = ticketsync::pipeline::deliver_due(&app.store, &app.sinks, &app.policy).await.unwrap();
    assert_eq!(delivered.delivered, 1, "{delivered:?}");
    let on_ticket = ticketsync::sinks::fake::notes("https://fake.example", "4711");
    assert_eq!(on_ticket.iter().map(|n| n.marker.as_str()).collect::<Vec<_>>(), [note.marker.as_str()]);
}
