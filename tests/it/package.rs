//! What the .deb ships as /etc/ticketsync/ticketsync.toml (config/ticketsync.toml): valid as
//! installed with no secret anywhere, and every commented-out component block valid once
//! uncommented (with its credentials), so the operator's first edit is a working one
//! (issue 18: "the shipped config and unit cannot start").

use std::path::Path;
use std::process::Command;

const CONFFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ticketsync.toml");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `[package.metadata.deb]` of the root manifest.
fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap().parse().unwrap();
    manifest["package"]["metadata"]["deb"].as_table().expect("[package.metadata.deb]").clone()
}

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

/// `cargo deb` in a fresh checkout builds the binary and nothing else: every other asset must
/// be in the repository (the man pages were generated into target/man by .ci/deb.sh only, so
/// a plain `cargo deb` stopped at "Can't resolve asset: target/man/*.1.gz").
#[test]
fn every_deb_asset_but_the_binary_is_in_the_repository() {
    let meta = deb_metadata();
    let assets = meta["assets"].as_array().expect("assets");
    for asset in assets {
        let source = asset[0].as_str().unwrap();
        if source == "target/release/ticketsync" {
            continue;
        }
        assert!(!source.starts_with("target/"), "{source}: built outside `cargo deb`; commit it instead");
        let path = Path::new(ROOT).join(source);
        let found = match source.rsplit_once("/*") {
            // `dir/*suffix`: the only glob form the manifest uses.
            Some((dir, suffix)) => std::fs::read_dir(Path::new(ROOT).join(dir))
                .unwrap_or_else(|e| panic!("{source}: {e}"))
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(suffix)),
            None => path.is_file(),
        };
        assert!(found, "{source}: no such file in the repository");
    }
}

/// The committed man pages are what the binary generates: run
/// `cargo run -- man --dir man` after changing the command line.
#[test]
fn committed_man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ticketsync")).args(["man", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        v.sort();
        v
    };
    let committed = Path::new(ROOT).join("man");
    assert_eq!(list(&committed), list(dir.path()), "man/ differs: run `cargo run -- man --dir man`");
    for name in list(dir.path()) {
        let want = std::fs::read_to_string(dir.path().join(&name)).unwrap();
        let have = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert!(want == have, "man/{name} is stale: run `cargo run -- man --dir man`");
    }
}

/// The vendor clients verify TLS against the system's roots: without ca-certificates (absent
/// from a minimal Debian) every https call fails and doctor FAILs every vendor and sink.
/// `curl` is what the documented readiness checks use; a minimal Debian lacks it too.
#[test]
fn the_package_depends_on_the_system_roots_and_recommends_curl() {
    let meta = deb_metadata();
    let depends = meta["depends"].as_str().unwrap();
    assert!(depends.split(',').any(|d| d.trim() == "ca-certificates"), "depends = {depends:?}");
    let recommends = meta["recommends"].as_str().unwrap();
    assert!(recommends.split(',').any(|d| d.trim() == "curl"), "recommends = {recommends:?}");
}
