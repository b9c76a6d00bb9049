//! `ticketsync doctor`: every check an operator would otherwise do by hand, each with a
//! harmless call, printed as a table of OK/FAIL with the fix for each failure.
//!
//! Run as root outside the service, the secrets that systemd would hand over with
//! `LoadCredential=` are read from the same files (`/etc/ticketsync/credentials/<name>`),
//! so the vendor and sink calls use the credentials the service will get.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, TeamViewerAuth};
use crate::store::Store;

/// Where the shipped unit's `LoadCredential=` lines read the secrets from.
pub const CREDENTIALS_SOURCE: &str = "/etc/ticketsync/credentials";
const CREDENTIALS: [&str; 4] = ["teamviewer_token", "teamviewer_client_secret", "redmine_api_key", "webhook_secret"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

fn ok(name: &str, detail: impl Into<String>) -> Check {
    Check { name: name.into(), status: Status::Ok, detail: detail.into(), fix: None }
}
fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) }
}
fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
}

/// Run every check and print the table; true when nothing failed.
pub async fn run(config_path: &Path, out: &mut dyn Write) -> bool {
    let checks = checks(config_path).await;
    print_table(&checks, out);
    !checks.iter().any(|c| c.status == Status::Fail)
}

pub async fn checks(config_path: &Path) -> Vec<Check> {
    let mut checks = vec![credentials_dir()];
    let cfg = match Config::load(config_path) {
        Ok(c) => {
            checks.push(ok("configuration", format!("{} loaded and valid", config_path.display())));
            c
        }
        Err(e) => {
            checks.push(fail(
                "configuration",
                e.to_string(),
                format!("fix the named key; `ticketsync check --config {}` repeats this check", config_path.display()),
            ));
            return checks;
        }
    };
    checks.extend(secrets(&cfg));
    let (db_check, store) = database(&cfg).await;
    checks.push(db_check);
    checks.extend(teamviewer(&cfg, store.as_ref()).await);
    checks.extend(sinks(&cfg).await);
    if let Some(s) = store {
        s.pool.close().await;
    }
    checks
}

fn credentials_dir() -> Check {
    let name = "systemd credentials";
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let dir = Path::new(&dir);
        return match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut names: Vec<String> =
                    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                ok(name, format!("$CREDENTIALS_DIRECTORY={} holds: {}", dir.display(), names.join(", ")))
            }
            Err(e) => fail(
                name,
                format!("$CREDENTIALS_DIRECTORY={} is not readable: {e}", dir.display()),
                "run doctor as the service user, or unset CREDENTIALS_DIRECTORY",
            ),
        };
    }
    let src = Path::new(CREDENTIALS_SOURCE);
    if !src.is_dir() {
        return warn(
            name,
            format!("{CREDENTIALS_SOURCE} does not exist (the unit's LoadCredential= lines read from it)"),
            format!("install -d -m 0700 {CREDENTIALS_SOURCE}; put each secret in a file named after its credential"),
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(src) {
            if m.permissions().mode() & 0o077 != 0 {
                return fail(
                    name,
                    format!(
                        "{CREDENTIALS_SOURCE} is readable by group or others (mode {:o})",
                        m.permissions().mode() & 0o777
                    ),
                    format!("chmod 0700 {CREDENTIALS_SOURCE} && chmod 0600 {CREDENTIALS_SOURCE}/*"),
                );
            }
        }
    }
    match std::fs::read_dir(src) {
        Ok(entries) => {
            let present: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| CREDENTIALS.contains(&n.as_str()))
                .collect();
            // Used below as systemd would provide them.
            std::env::set_var("CREDENTIALS_DIRECTORY", src);
            ok(
                name,
                format!(
                    "{CREDENTIALS_SOURCE} holds: {}",
                    if present.is_empty() { "(none)".into() } else { present.join(", ") }
                ),
            )
        }
        Err(e) => warn(
            name,
            format!("{CREDENTIALS_SOURCE} is not readable ({e}); secrets from it are not checked"),
            "run `sudo ticketsync doctor`",
        ),
    }
}

fn secrets(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let mut one = |name: &str,
                   key: &str,
                   cred: &str,
                   r: Result<Option<secrecy::SecretString>, crate::config::ConfigError>| {
        out.push(match r {
            Ok(Some(_)) => ok(name, format!("{key} resolved")),
            Ok(None) => fail(
                name,
                format!("{key} is missing"),
                format!("put it in {CREDENTIALS_SOURCE}/{cred} (mode 0600) for the unit's LoadCredential=, or set {key}_file"),
            ),
            Err(e) => fail(name, e.to_string(), "make the file readable, or fix the path"),
        })
    };
    if let Some(tv) = cfg.sources.teamviewer.as_ref().filter(|t| t.enabled) {
        match tv.auth {
            TeamViewerAuth::Script => {
                one("secret teamviewer_token", "sources.teamviewer.token", "teamviewer_token", tv.token_secret())
            }
            TeamViewerAuth::Oauth => one(
                "secret teamviewer_client_secret",
                "sources.teamviewer.client_secret",
                "teamviewer_client_secret",
                tv.client_secret(),
            ),
        }
    }
    if let Some(r) = cfg.sinks.redmine.as_ref().filter(|r| r.enabled) {
        one("secret redmine_api_key", "sinks.redmine.api_key", "redmine_api_key", r.api_key_secret());
    }
    if let Some(w) = cfg.sinks.webhook.as_ref().filter(|w| w.enabled) {
        one("secret webhook_secret", "sinks.webhook.secret", "webhook_secret", w.secret_value());
    }
    out
}

async fn database(cfg: &Config) -> (Check, Option<Store>) {
    let name = "database";
    let path = &cfg.store.path;
    if !path.exists() {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        return (
            warn(
                name,
                format!("{} does not exist yet (created at the first start)", path.display()),
                format!("check that {} is writable by the service, or run `ticketsync migrate`", parent.display()),
            ),
            None,
        );
    }
    let store = match Store::open_read_only(path).await {
        Ok(s) => s,
        Err(e) => return (fail(name, e.to_string(), "check the file's owner and mode"), None),
    };
    let check = async {
        let quick: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(&store.pool).await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&store.pool)
            .await
            .unwrap_or(None);
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&store.pool).await.unwrap_or(0);
        Ok::<_, sqlx::Error>((quick, applied, rows))
    };
    let latest = crate::store::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let c = match check.await {
        Ok((quick, _, _)) if quick != "ok" => fail(
            name,
            format!("{}: integrity problem: {quick}", path.display()),
            "restore the last backup (see README, Upgrade)",
        ),
        Ok((_, applied, rows)) if applied.unwrap_or(0) < latest => warn(
            name,
            format!("{}: schema version {} of {latest}; {rows} audit rows", path.display(), applied.unwrap_or(0)),
            "the daemon upgrades it at start; or run `ticketsync migrate` now",
        ),
        Ok((_, applied, rows)) => ok(
            name,
            format!("{}: integrity ok, schema version {}, {rows} audit rows", path.display(), applied.unwrap_or(0)),
        ),
        Err(e) => fail(name, format!("{}: {e}", path.display()), "is it a ticketsync database? check store.path"),
    };
    (c, Some(store))
}

async fn teamviewer(cfg: &Config, store: Option<&Store>) -> Vec<Check> {
    let Some(tv) = cfg.sources.teamviewer.as_ref().filter(|t| t.enabled) else { return vec![] };
    let mut out = Vec::new();
    let name = "source teamviewer";
    let Some(store) = store else {
        if tv.auth == TeamViewerAuth::Oauth {
            out.push(fail(name, "no database, so no OAuth tokens", "run `ticketsync auth teamviewer`"));
            return out;
        }
        // A script token needs no database: ping with a throwaway one.
        let dir = match tempfile_dir() {
            Ok(d) => d,
            Err(e) => return vec![fail(name, e, "check the temporary directory")],
        };
        match Store::open(&dir.join("doctor.db"), Duration::from_secs(1)).await {
            Ok(s) => {
                out.push(ping(tv, &s).await);
                s.pool.close().await;
            }
            Err(e) => out.push(fail(name, e.to_string(), "check the temporary directory")),
        }
        let _ = std::fs::remove_dir_all(&dir);
        return out;
    };
    out.push(ping(tv, store).await);
    if tv.auth == TeamViewerAuth::Oauth {
        let expiry: Option<String> =
            sqlx::query_scalar("SELECT access_expires_at FROM oauth_tokens WHERE provider = 'teamviewer'")
                .fetch_optional(&store.pool)
                .await
                .ok()
                .flatten()
                .flatten();
        out.push(match expiry {
            Some(e) => ok("token teamviewer", format!("OAuth access token expires {e} (refreshed automatically)")),
            None => fail("token teamviewer", "no OAuth tokens stored", "run `ticketsync auth teamviewer`"),
        });
    }
    out
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let d = std::env::temp_dir().join(format!("ticketsync-doctor-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

async fn ping(tv: &crate::config::TeamViewerConfig, store: &Store) -> Check {
    let name = "source teamviewer";
    let api = match crate::sources::teamviewer::TeamViewerApi::new(tv, store) {
        Ok(a) => a.with_max_retries(1),
        Err(e) => return fail(name, e.to_string(), "fix the named key"),
    };
    match api.ping().await {
        Ok(true) => ok(name, format!("GET {}/api/v1/ping: token valid", tv.base_url.trim_end_matches('/'))),
        Ok(false) => fail(
            name,
            "GET /api/v1/ping: token_valid = false",
            "create a new script token (Connections.Read, Sessions.Create) or run `ticketsync auth teamviewer`",
        ),
        Err(e) => fail(name, e.to_string(), "check sources.teamviewer.base_url, the network and the token"),
    }
}

async fn sinks(cfg: &Config) -> Vec<Check> {
    let built = match crate::app::build_sinks(cfg) {
        Ok(s) => s,
        Err(e) => return vec![fail("sinks", format!("{e:#}"), "see the secret checks above")],
    };
    let mut names: Vec<&String> = built.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let name = format!("sink {n}");
        let sink = &built[n];
        // A sink without a read API (webhook) has no harmless authenticated call: prove at
        // least that its address accepts connections.
        if !sink.capabilities().marker_scan {
            let url = match n.as_str() {
                "webhook" => cfg.sinks.webhook.as_ref().map(|w| w.url.clone()),
                "redmine" => cfg.sinks.redmine.as_ref().map(|r| r.url.clone()),
                _ => None,
            };
            out.push(match url.as_deref().map(tcp_connect) {
                Some(fut) => match fut.await {
                    Ok(addr) => {
                        ok(&name, format!("{addr} accepts connections; the secret is only checked by a real delivery"))
                    }
                    Err(e) => fail(&name, e, "check the URL, DNS, firewall and that the receiver is up"),
                },
                None => warn(&name, "not checked (no harmless call)", "watch its first deliveries"),
            });
            continue;
        }
        let r = sink.check().await;
        out.push(match r {
            Ok(()) => ok(&name, "reachable, credentials accepted"),
            Err(e) => {
                let fix = match e.kind {
                    crate::sinks::SinkErrorKind::Auth => "replace the API key / secret of this sink",
                    crate::sinks::SinkErrorKind::Retry { .. } | crate::sinks::SinkErrorKind::Ambiguous => {
                        "check the URL, DNS, firewall and that the system is up"
                    }
                    crate::sinks::SinkErrorKind::Permanent => "check the URL and the API user's permissions",
                };
                fail(&name, e.to_string(), fix)
            }
        });
    }
    out
}

async fn tcp_connect(url: &str) -> Result<String, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = u.host_str().ok_or_else(|| format!("{url}: no host"))?.to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    let target = format!("{host}:{port}");
    match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => Ok(target),
        Ok(Err(e)) => Err(format!("{target}: {e}")),
        Err(_) => Err(format!("{target}: no answer within 10 s")),
    }
}

pub fn print_table(checks: &[Check], out: &mut dyn Write) {
    let w = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "{:<w$}  {:<6}DETAIL", "CHECK", "STATUS");
    for c in checks {
        let st = match c.status {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "{:<w$}  {:<6}{}", c.name, st, c.detail);
        if let Some(f) = &c.fix {
            let _ = writeln!(out, "{:<w$}  {:<6}fix: {f}", "", "");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let _ = writeln!(out, "\n{} checks, {failed} failed", checks.len());
}
