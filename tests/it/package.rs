//! What the .deb ships as /etc/ticketsync/ticketsync.toml (config/ticketsync.toml): valid as
//! installed with no secret anywhere, and every commented-out component block valid once
//! uncommented (with its credentials), so the operator's first edit is a working one
//! (issue 18: "the shipped config and unit cannot start").

use std::path::Path;
use std::process::Command;

const CONFFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ticketsync.toml");

fn check(config: &Path, credentials: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.args(["check", "--config"]).arg(config).env_remove("CREDENTIALS_DIRECTORY");
    for (k, _) in std::env::vars() {
        if k.starts_with("TICKETSYNC_") {
            cmd.env_remove(k);
        }
    }
    if let Some(dir) = credentials {
        cmd.env("CREDENTIALS_DIRECTORY", dir);
    }
    let out = cmd.output().expect("run ticketsync check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The store path of the shipped file points into /var/lib; tests write under a temp dir.
fn localize(text: &str, dir: &Path) -> String {
    text.replace("/var/lib/ticketsync", &dir.display().to_string())
}

#[test]
fn shipped_config_checks_with_nothing_enabled_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(CONFFILE).unwrap();
    let cfg = dir.path().join("ticketsync.toml");
    std::fs::write(&cfg, localize(&text, dir.path())).unwrap();
    let (ok, out) = check(&cfg, None);
    assert!(ok, "the shipped config must pass `check` as installed:\n{out}");
    assert!(out.contains("sources: (none)") && out.contains("sinks: (none)"), "nothing enabled:\n{out}");
}

#[test]
fn every_commented_component_of_the_shipped_config_is_valid_once_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(CONFFILE).unwrap();
    // Uncomment the lines that are TOML (a table header or `key = value`), not prose.
    let toml_line = regex::Regex::new(r"^#(\[\[?[a-z_.]+\]\]?|[a-z_]+ = .*)$").unwrap();
    let mut uncommented = 0;
    let mut credentials = Vec::new();
    let mut lines = Vec::new();
    for line in text.lines() {
        if let Some(c) = toml_line.captures(line) {
            uncommented += 1;
            lines.push(c[1].to_string());
        } else {
            if let Some(rest) = line.split("credential ").nth(1) {
                credentials.extend(
                    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|w| w.contains('_'))
                        .map(str::to_string),
                );
            }
            if let Some(rest) = line.split("credentials ").nth(1) {
                credentials.extend(
                    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .filter(|w| w.contains('_'))
                        .map(str::to_string),
                );
            }
            lines.push(line.to_string());
        }
    }
    assert!(uncommented > 20, "the blocks were found ({uncommented} lines)");
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    for name in &credentials {
        std::fs::write(creds.join(name), format!("canary-{name}-0123456789")).unwrap();
    }
    let cfg = dir.path().join("ticketsync.toml");
    std::fs::write(&cfg, localize(&lines.join("\n"), dir.path())).unwrap();
    let (ok, out) = check(&cfg, Some(&creds));
    assert!(ok, "every block uncommented (credentials {credentials:?}):\n{out}");
    for part in [
        "teamviewer",
        "splashtop",
        "zoom",
        "visioconference",
        "redmine",
        "zendesk",
        "freshservice",
        "jsm",
        "glpi",
        "webhook",
    ] {
        assert!(out.contains(part), "{part} enabled:\n{out}");
    }
    assert!(!out.contains("canary-"), "no secret in check's output:\n{out}");
}
