//! `ticketsync doctor`: every check an operator would otherwise do by hand, each with a
//! harmless call, printed as a table of OK/FAIL with the fix for each failure.
//!
//! Run as root outside the service, the secrets that systemd would hand over with
//! `LoadCredential=` are read from the same files (`/etc/ticketsync/credentials/<name>`),
//! so the vendor and sink calls use the credentials the service will get.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::sources::probe::{client_fail, fail, ok, warn, ProbeCtx, Scratch};
pub use crate::sources::probe::{Check, Status};
use crate::store::Store;

/// Where the shipped unit's `LoadCredential=` lines read the secrets from.
pub const CREDENTIALS_SOURCE: &str = "/etc/ticketsync/credentials";
/// Run every check and print the table; true when nothing failed.
pub async fn run(config_path: &Path, out: &mut dyn Write) -> bool {
    run_as(config_path, false, out).await
}

/// [`run`], with `json`: one JSON object per check and line ([`print_json`]) instead of the table.
pub async fn run_as(config_path: &Path, json: bool, out: &mut dyn Write) -> bool {
    let checks = checks(config_path).await;
    if json {
        print_json(&checks, out);
    } else {
        print_table(&checks, out);
    }
    !checks.iter().any(|c| c.status == Status::Fail)
}

pub async fn checks(config_path: &Path) -> Vec<Check> {
    // Kept until every check has read the secrets: a decrypted copy is removed on drop.
    let (creds, _decrypted) = credentials_dir();
    let mut checks = vec![creds];
    let cfg = match Config::load(config_path) {
        Ok(c) => {
            checks.push(ok("configuration", format!("{} loaded and valid", config_path.display())));
            c
        }
        Err(e) => {
            checks.push(fail(
                "configuration",
                // Every error, on the table's one line.
                e.report_lines().join("; "),
                format!("fix the named key; `ticketsync check --config {}` repeats this check", config_path.display()),
            ));
            return checks;
        }
    };
    checks.extend(secrets(&cfg));
    // Plain http to a remote host, allowed by `allow_insecure_http = true`.
    for w in cfg.insecure_http_warnings() {
        checks.push(warn(
            "outbound http",
            w,
            "use https:// (with ca_file for an internal CA), then remove allow_insecure_http",
        ));
    }
    checks.push(audit_key(&cfg));
    let (db_check, store) = database(&cfg).await;
    checks.push(db_check);
    if let Some(s) = &store {
        checks.extend(audit_chain_key(&cfg, s).await);
    }
    // Token-authenticated vendors can be pinged before the first start: through a
    // throwaway database (OAuth vendors need the real one, which holds their tokens).
    let scratch = match &store {
        Some(_) => None,
        None => match Scratch::open().await {
            Ok(s) => Some(s),
            Err(e) => {
                checks.push(fail("scratch database", e, "check the temporary directory"));
                None
            }
        },
    };
    let ctx = ProbeCtx { real: store.as_ref(), scratch: scratch.as_ref().map(|s| &s.store) };
    for v in cfg.vendors().into_iter().filter(|v| v.enabled()) {
        checks.extend(v.probe(&ctx).await);
    }
    checks.extend(sinks(&cfg).await);
    if let Some(s) = scratch {
        s.close().await;
    }
    if let Some(s) = store {
        s.close().await;
    }
    checks
}

fn credentials_dir() -> (Check, Option<crate::credentials::Decrypted>) {
    let name = "systemd credentials";
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let dir = Path::new(&dir);
        let check = match std::fs::read_dir(dir) {
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
        return (check, None);
    }
    let src = Path::new(CREDENTIALS_SOURCE);
    if !src.is_dir() {
        return (
            warn(
                name,
                format!("{CREDENTIALS_SOURCE} does not exist (the unit's LoadCredential= lines read from it)"),
                format!(
                    "install -d -m 0700 {CREDENTIALS_SOURCE}; put each secret in a file named after its credential"
                ),
            ),
            None,
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(src) {
            if m.permissions().mode() & 0o077 != 0 {
                let check = fail(
                    name,
                    format!(
                        "{CREDENTIALS_SOURCE} is readable by group or others (mode {:o})",
                        m.permissions().mode() & 0o777
                    ),
                    format!("chmod 0700 {CREDENTIALS_SOURCE} && chmod 0600 {CREDENTIALS_SOURCE}/*"),
                );
                return (check, None);
            }
        }
    }
    let entries = match std::fs::read_dir(src) {
        Ok(entries) => entries,
        Err(e) => {
            let check = warn(
                name,
                format!("{CREDENTIALS_SOURCE} is not readable ({e}); secrets from it are not checked"),
                "run doctor as root",
            );
            return (check, None);
        }
    };
    let mut present: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| crate::config::is_credential(n.strip_suffix(".cred").unwrap_or(n)))
        .collect();
    present.sort();
    // Used below as systemd would provide them: encrypted ones decrypted, as for the unit.
    match crate::credentials::use_dir(src) {
        Ok(decrypted) => {
            let detail = format!(
                "{CREDENTIALS_SOURCE} holds: {}{}",
                if present.is_empty() { "(none)".into() } else { present.join(", ") },
                if decrypted.is_some() { " (.cred: systemd-creds encrypted, decrypted for this check)" } else { "" }
            );
            (ok(name, detail), decrypted)
        }
        Err(e) => (
            fail(
                name,
                e.to_string(),
                "run doctor as root on the host that encrypted them, or write them again with `ticketsync init`",
            ),
            None,
        ),
    }
}

/// One row per secret the enabled components use ([`Config::secret_uses`]); an optional
/// one only when it is set or cannot be read.
fn secrets(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for u in cfg.secret_uses() {
        let (name, key, cred) = (format!("secret {}", u.credential), &u.key, &u.credential);
        out.push(match u.value {
            Ok(Some(_)) if u.required => ok(&name, format!("{key} resolved")),
            Ok(None) if u.required => fail(
                &name,
                format!("{key} is missing"),
                format!("put it in {CREDENTIALS_SOURCE}/{cred} (mode 0600) for the unit's LoadCredential=, or set {key}_file"),
            ),
            Err(e) => fail(&name, e.to_string(), "make the file readable, or fix the path"),
            // Optional secrets are not the doctor's to list (the listener's token and the
            // marker key have their own checks), except glpi's App-Token as before.
            Ok(Some(_)) if key == "sinks.glpi.app_token" => ok(&name, format!("{key} resolved")),
            Ok(_) => continue,
        });
    }
    out
}

/// The audit chain's key: optional, but without it the chain only detects edits by someone
/// who does not know to recompute it (docs/security/audit.md).
fn audit_key(cfg: &Config) -> Check {
    let name = "audit key";
    match crate::app::audit_key(cfg) {
        Ok(Some(_)) => ok(name, "store.audit_key resolved: the audit chain is keyed (HMAC-SHA256)"),
        Ok(None) => warn(
            name,
            "no store.audit_key: the audit chain is unkeyed SHA-256; whoever can write the database file can edit it and recompute the chain",
            // The LoadCredential= line is named: with the file alone, root's commands read the
            // key from the directory while the service, which never got it, stays unkeyed.
            format!("create one (`(umask 077; head -c 32 /dev/urandom | base64 > {CREDENTIALS_SOURCE}/audit_key)`), add `LoadCredential=audit_key:{CREDENTIALS_SOURCE}/audit_key` to the unit's drop-in (`systemctl edit ticketsync`) and restart; or set store.audit_key_file; keep a copy with the other credentials"),
        ),
        Err(e) => fail(name, format!("{e:#}"), "fix store.audit_key_file, or the key's length"),
    }
}

/// Whether the configured key (or its absence) can continue the database's chain: the
/// daemon refuses to start otherwise, so say it before.
async fn audit_chain_key(cfg: &Config, store: &Store) -> Option<Check> {
    let name = "audit chain key";
    let key = crate::app::audit_key(cfg).ok()?;
    Some(match crate::store::audit::key_fits(store, key.as_ref()).await {
        Ok(Ok(Some(row))) => ok(name, format!("the configured key produces the HMAC of the last audit row ({row})")),
        Ok(Ok(None)) if key.is_some() => ok(name, "the chain is not keyed yet: it is keyed from the next start on"),
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            fail(name, e.to_string(), "configure the audit key that keyed this database (see docs/security/audit.md)")
        }
        Err(e) => fail(name, e.to_string(), "is it a ticketsync database? check store.url / store.path"),
    })
}

async fn database(cfg: &Config) -> (Check, Option<Store>) {
    let name = "database";
    let shown = cfg.store.display();
    if let Ok(crate::store::Location::Sqlite(path)) = cfg.store.location() {
        if !path.exists() {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            return (
                warn(
                    name,
                    format!("{} does not exist yet (created at the first start)", path.display()),
                    // Expected before the first start. `ticketsync migrate` run as root here would
                    // make root the owner of what the service's dynamic user must write.
                    format!(
                        "none before the first start (the service creates it); after it, check that {} is writable by the service (`journalctl -u ticketsync`)",
                        parent.display()
                    ),
                ),
                None,
            );
        }
    }
    let store = match crate::app::open_store_read_only(cfg).await {
        Ok(s) => s,
        Err(e) if crate::app::not_created(&e) => {
            let e = e.downcast_ref::<crate::store::StoreError>().map_or_else(|| e.to_string(), |s| s.to_string());
            return (warn(name, e, "it is created at the first start, or run `ticketsync migrate`"), None);
        }
        Err(e) => {
            let hint = match cfg.store.location() {
                Ok(crate::store::Location::Postgres(_)) => {
                    "check store.url, store.password_file (or the credential password) and that the server runs"
                }
                _ => "check the file's owner and mode",
            };
            return (fail(name, format!("{e:#}"), hint), None);
        }
    };
    let check =
        crate::store::reads::database_health(&store).await.map(|h| (h.quick_check, h.schema_version, h.audit_rows));
    let latest = crate::store::latest_schema_version();
    let c = match check {
        Ok((Some(quick), _, _)) if quick != "ok" => fail(
            name,
            format!("{shown}: integrity problem: {quick}"),
            "restore the last backup (see docs/operations.md, Upgrade)",
        ),
        Ok((_, applied, rows)) if applied.unwrap_or(0) < latest => warn(
            name,
            format!("{shown}: schema version {} of {latest}; {rows} audit rows", applied.unwrap_or(0)),
            "the daemon upgrades it at start; or run `ticketsync migrate` now",
        ),
        Ok((quick, applied, rows)) => {
            let how = if quick.is_some() { "integrity ok" } else { "reachable" };
            ok(name, format!("{shown}: {how}, schema version {}, {rows} audit rows", applied.unwrap_or(0)))
        }
        Err(e) => {
            fail(name, format!("{shown}: {}", e.cause()), "is it a ticketsync database? check store.url / store.path")
        }
    };
    (c, Some(store))
}

async fn sinks(cfg: &Config) -> Vec<Check> {
    let built = match crate::app::build_sinks(cfg) {
        Ok(s) => s,
        Err(e) => return vec![client_fail("sinks", format!("{e:#}"), "see the secret checks above")],
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
            let section = cfg.sinks.all().into_iter().find(|c| c.kind() == n.as_str());
            let url = section.and_then(|c| c.outbound_urls().1.into_iter().next()).map(|(_, url)| url);
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
        out.extend(technicians(cfg, n, sink.as_ref()).await);
    }
    out
}

/// The `time_technicians` of a sink with time entries: each mapped user asked of the system
/// where it can tell (issue 20); a user that no longer exists is a FAIL naming the line.
async fn technicians(cfg: &Config, name: &str, sink: &dyn crate::sinks::TicketSink) -> Vec<Check> {
    let Some(section) = cfg.sinks.all().into_iter().find(|c| c.kind() == name) else { return Vec::new() };
    if !section.route().time_entries {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (tech, user) in section.route().technicians() {
        let label = format!("sink {name} technician {tech}");
        out.push(match sink.user_exists(&user).await {
            Ok(Some(true)) => ok(&label, format!("mapped to user {user}, who exists")),
            Ok(Some(false)) => fail(
                &label,
                format!("mapped to user {user}, who no longer exists: time entries go in as the API user"),
                format!("fix sinks.{name}.time_technicians"),
            ),
            Ok(None) => warn(&label, format!("mapped to user {user}; {name} cannot tell whether it exists"), "none"),
            Err(e) => warn(&label, format!("mapped to user {user}; not checked: {e}"), "check the sink first"),
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

/// One line per check: `{"check","status" (OK, WARN, FAIL),"detail","fix"}` (`fix`: null
/// when there is none), for scripts and monitoring; the exit code is the table's.
pub fn print_json(checks: &[Check], out: &mut dyn Write) {
    for c in checks {
        let v = serde_json::json!({"check": c.name, "status": c.status.as_str(), "detail": c.detail, "fix": c.fix});
        let _ = writeln!(out, "{v}");
    }
    let _ = out.flush();
}

pub fn print_table(checks: &[Check], out: &mut dyn Write) {
    let w = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(5).max(5);
    // "STATUS" is as wide as the column was, which printed the header as "STATUSDETAIL".
    let _ = writeln!(out, "{:<w$}  {:<8}DETAIL", "CHECK", "STATUS");
    for c in checks {
        let _ = writeln!(out, "{:<w$}  {:<8}{}", c.name, c.status.as_str(), c.detail);
        if let Some(f) = &c.fix {
            let _ = writeln!(out, "{:<w$}  {:<8}fix: {f}", "", "");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let _ = writeln!(out, "\n{} checks, {failed} failed", checks.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_header_names_each_column_apart() {
        let mut out = Vec::new();
        print_table(&[warn("audit key", "none", "create one"), ok("configuration", "valid")], &mut out);
        let text = String::from_utf8(out).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["CHECK", "STATUS", "DETAIL"], "{text}");
        let detail_at = text.lines().next().unwrap().find("DETAIL").unwrap();
        let row = text.lines().find(|l| l.starts_with("configuration")).unwrap();
        assert_eq!(row.find("valid"), Some(detail_at), "details line up under DETAIL:\n{text}");
    }

    #[test]
    fn a_host_without_ca_roots_is_told_to_install_them() {
        let c = client_fail("sinks", "No CA certificates were loaded from the system".into(), "see above");
        assert!(c.fix.as_deref().is_some_and(|f| f.contains("ca-certificates")), "{:?}", c.fix);
        let c = client_fail("sinks", "bad url".into(), "see above");
        assert_eq!(c.fix.as_deref(), Some("see above"));
    }
}
