//! `ticketsync init` as an operator runs it without a terminal: flags for the choices, secrets
//! from a file, the environment or stdin (never the command line), against the TeamViewer and
//! Redmine simulators so that its `check` and `doctor` really reach them (issue 18, point 2).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};

const TV: &str = "54213-CanaryTvToken0123456";
const RM: &str = "canary-redmine-key-0123456789abcdef";

struct Out {
    ok: bool,
    code: i32,
    text: String,
}

async fn init(config: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.arg("--config").arg(config).arg("init").args(args).env_clear();
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn ticketsync init");
    if let Some(s) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut i = child.stdin.take().unwrap();
        i.write_all(s.as_bytes()).await.unwrap();
        drop(i);
    }
    let o = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("init finished in 30 s")
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    Out { ok: o.status.success(), code: o.status.code().unwrap_or(-1), text }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_config_credentials_and_dropin_then_check_and_doctor_pass() {
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TV.into()], ..SimOptions::default() }).await.unwrap();
    let rm = RedmineSim::start(RM, &[101]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("etc/ticketsync.toml");
    let creds = dir.path().join("etc/credentials");
    let dropin = dir.path().join("systemd/ticketsync.service.d/credentials.conf");
    let tv_file = dir.path().join("tv-token");
    std::fs::write(&tv_file, format!("{TV}\n")).unwrap();
    let db = dir.path().join("state/ticketsync.db");
    let out = init(
        &cfg,
        &[
            "--source",
            "teamviewer",
            "--sink",
            "redmine",
            "--set",
            &format!("redmine.url={}", rm.base_url),
            "--set",
            &format!("sources.teamviewer.base_url={}", tv.base_url),
            "--set",
            &format!("store.path={}", db.display()),
            "--set",
            "http.listen=127.0.0.1:0",
            // Typed keys: written as the integer and boolean they are, not as strings.
            "--set",
            "daemon.delivery_interval_secs=30",
            "--set",
            "sources.teamviewer.initial_lookback_days=3",
            "--set",
            "sinks.redmine.private_notes=true",
            "--secret",
            &format!("teamviewer_token=@{}", tv_file.display()),
            "--secret",
            "redmine_api_key=env:RM_KEY",
            "--credentials-dir",
            creds.to_str().unwrap(),
            "--unit-dropin",
            dropin.to_str().unwrap(),
        ],
        &[("RM_KEY", RM)],
        None,
    )
    .await;
    assert!(out.ok, "init failed:\n{}", out.text);
    assert!(
        out.text.contains("OK") && out.text.contains("sources: teamviewer") && out.text.contains("sinks: redmine"),
        "check ran:\n{}",
        out.text
    );
    assert!(out.text.contains("$ ticketsync doctor"), "doctor ran:\n{}", out.text);
    assert!(!out.text.contains("FAIL"), "doctor found nothing wrong:\n{}", out.text);
    assert!(!out.text.contains(TV) && !out.text.contains(RM), "no secret printed:\n{}", out.text);

    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains(TV) && !text.contains(RM), "no secret in the config:\n{text}");
    assert!(text.contains("[sinks.redmine]") && text.contains(&rm.base_url), "{text}");
    assert!(text.contains("delivery_interval_secs = 30\n") && text.contains("initial_lookback_days = 3\n"), "{text}");
    assert_eq!(mode(&creds), 0o700, "credentials directory");
    for (name, secret) in [("teamviewer_token", TV), ("redmine_api_key", RM)] {
        let p = creds.join(name);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), secret, "{name}: the secret, newline removed");
        assert_eq!(mode(&p), 0o600, "{name}");
    }
    let d = std::fs::read_to_string(&dropin).unwrap();
    assert!(d.contains("[Service]"), "{d}");
    for name in ["teamviewer_token", "redmine_api_key"] {
        assert!(d.contains(&format!("LoadCredential={name}:{}", creds.join(name).display())), "{d}");
    }
    assert_eq!(d.matches("LoadCredential=").count(), 2, "only what the config uses:\n{d}");

    // A second init does not overwrite the operator's file without --force; with it, a copy stays.
    let again = init(
        &cfg,
        &[
            "--source",
            "splashtop",
            "--secret",
            "splashtop_token=-",
            "--no-unit-dropin",
            "--no-doctor",
            "--credentials-dir",
            creds.to_str().unwrap(),
        ],
        &[],
        Some("st-token-canary-123\n"),
    )
    .await;
    assert!(!again.ok && again.text.contains("--force"), "{}", again.text);
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_reports_every_gap_at_once_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    let out = init(
        &cfg,
        &[
            "--source",
            "zoom",
            "--sink",
            "glpi",
            "--no-unit-dropin",
            "--credentials-dir",
            dir.path().join("c").to_str().unwrap(),
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.text);
    for gap in ["zoom.client_id", "zoom_helpdesk_client_secret", "glpi.url", "glpi_user_token", "glpi_app_token"] {
        assert!(out.text.contains(gap), "{gap} named:\n{}", out.text);
    }
    assert!(!cfg.exists() && !dir.path().join("c").exists(), "nothing written");

    let out = init(&cfg, &["--sink", "redmine", "--secret", "redmine_api_key=hunter2hunter2"], &[], None).await;
    assert!(
        !out.ok && out.text.contains("never goes on the command line") && !out.text.contains("hunter2"),
        "{}",
        out.text
    );
    let out = init(&cfg, &["--sink", "teamviewer"], &[], None).await;
    assert!(
        !out.ok && out.text.contains("not a ticket system") && out.text.contains("redmine, zendesk"),
        "{}",
        out.text
    );
    let out = init(&cfg, &["--source", "splashtop", "--set", "splashtop.region=mars"], &[], None).await;
    assert!(!out.ok && out.text.contains("mars") && out.text.contains("us, eu"), "{}", out.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_replaces_the_shipped_config_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, ticketsync::init::SHIPPED_CONFIG).unwrap();
    let db = dir.path().join("t.db");
    let out = init(
        &cfg,
        &[
            "--sink",
            "webhook",
            "--set",
            "webhook.url=http://127.0.0.1:9/hook",
            "--set",
            &format!("store.path={}", db.display()),
            "--secret",
            "webhook_secret=-",
            "--no-unit-dropin",
            "--no-doctor",
            "--credentials-dir",
            dir.path().join("c").to_str().unwrap(),
        ],
        &[],
        Some("whsec-canary-0123456789\n"),
    )
    .await;
    assert!(out.ok, "{}", out.text);
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("[sinks.webhook]"));
    assert!(!out.text.contains("whsec-canary"), "{}", out.text);
}
