//! Auditor and operator features over the real binary: audit export round trips, the
//! metrics endpoint scraped over HTTP, readiness, backfill and doctor.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use ticketsync::export::{ExportedEvent, Header};
use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;

const TOKEN: &str = "54213-2YotnFZFEjr1zCsicMWp";
const HOOK_SECRET: &str = "hook-secret-ops";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let o = tokio::time::timeout(Duration::from_secs(15), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ticketsync {args:?} did not finish in 15 s"))
        .expect("spawn ticketsync");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn date(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn connection(id: &str, ticket: &str, start: chrono::DateTime<Utc>) -> Value {
    json!({
        "id": id, "userid": "u11293276", "username": "Jon Snow", "deviceid": "1234567890",
        "start_date": date(start), "end_date": date(start + chrono::Duration::minutes(15)),
        "support_session_type": 1, "custom_api": format!("{{\"ticket_id\":\"{ticket}\"}}")
    })
}

fn config(dir: &Path, tv: &TeamViewerSim, hook: &WebhookSim, extra: &str) -> PathBuf {
    let store = format!("[store]\npath = \"{}\"\n", dir.join("t.db").display());
    config_on(dir, &store, tv, hook, extra)
}

/// [`config`] with the `[store]` section given (a [`crate::support::TestDb`]'s).
fn config_on(dir: &Path, store: &str, tv: &TeamViewerSim, hook: &WebhookSim, extra: &str) -> PathBuf {
    let p = dir.join("ticketsync.toml");
    std::fs::write(
        &p,
        format!(
            "{store}\n[daemon]\ndelivery_interval_secs = 1\n\n[sources.teamviewer]\nbase_url = \"{tv}\"\ntoken = \"{TOKEN}\"\n\n\
             [sinks.webhook]\nurl = \"{hook}\"\nsecret = \"{HOOK_SECRET}\"\n{extra}",
            tv = tv.base_url,
            hook = hook.url,
        ),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trips_in_csv_and_jsonl_with_the_verified_head() {
    let dir = tempfile::tempdir().unwrap();
    ticketsync::demo::run(dir.path()).await.unwrap();
    let db = dir.path().join("ticketsync.db");
    let dbs = db.to_str().unwrap();

    let v = run(&["audit", "verify", "--db", dbs], &[]).await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let head = v.stdout.split("head ").nth(1).unwrap().trim().to_string();
    let rows: i64 = v.stdout.split("OK: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(head.len(), 64);

    let today = Utc::now().format("%Y-%m-%d").to_string();
    // JSON lines: header, one line per event, trailer.
    let out = dir.path().join("a.jsonl");
    let r = run(
        &[
            "audit",
            "export",
            "--db",
            dbs,
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let header: Header = serde_json::from_value(lines[0].clone()).unwrap();
    assert_eq!(header.chain_head_hash, head, "export head = verify head");
    assert_eq!(header.chain_rows, rows);
    let events: Vec<ExportedEvent> =
        lines[1..lines.len() - 1].iter().map(|l| serde_json::from_value(l.clone()).unwrap()).collect();
    assert_eq!(lines.last().unwrap()["type"], "export_end");
    assert_eq!(lines.last().unwrap()["rows"], events.len());
    assert_eq!(events.len() as i64, rows, "the whole day = the whole chain");
    check_chain(&events, &head);

    // CSV: pure RFC 4180 (a column row, the rows; no comment lines), the chain head, row
    // count and SHA-256 in the sidecar; the same rows as JSON lines.
    let csv_out = dir.path().join("export.csv");
    let r = run(
        &[
            "audit",
            "export",
            "--db",
            dbs,
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "csv",
            "-o",
            csv_out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let csv_text = std::fs::read(&csv_out).unwrap();
    assert!(!csv_text.starts_with(b"#") && !String::from_utf8_lossy(&csv_text).lines().any(|l| l.starts_with('#')));
    let mut rd = csv::ReaderBuilder::new().from_reader(csv_text.as_slice());
    let csv_events: Vec<ExportedEvent> = rd.deserialize().map(|r| r.unwrap()).collect();
    assert_eq!(csv_events, events, "CSV and JSON lines carry the same rows");
    let meta: ticketsync::export::Meta =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("export.csv.meta.json")).unwrap()).unwrap();
    assert_eq!(meta.header.kind, "export_meta");
    assert_eq!(meta.header.chain_head_hash, head);
    assert_eq!(meta.header.chain_rows, rows);
    assert_eq!(meta.rows, rows as u64);
    use sha2::Digest;
    assert_eq!(meta.sha256, hex::encode(sha2::Sha256::digest(&csv_text)), "the sidecar's hash is the file's");
    // To standard output: the CSV there, the sidecar's JSON on standard error.
    let r = run(&["audit", "export", "--db", dbs, "--from", &today, "--to", &today, "--format", "csv"], &[]).await;
    assert_eq!(r.stdout.as_bytes(), csv_text.as_slice());
    let meta_line = r.stderr.lines().find(|l| l.starts_with('{')).expect("meta on stderr");
    let m: ticketsync::export::Meta = serde_json::from_str(meta_line).unwrap();
    assert_eq!(m.sha256, meta.sha256);
    // --from after --to is an error, not an empty export.
    let r =
        run(&["audit", "export", "--db", dbs, "--from", "2026-12-02", "--to", "2026-12-01", "--format", "csv"], &[])
            .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("--from") && r.stderr.contains("not before"), "{}", r.stderr);

    // A vendor filter keeps the vendor's events and its sessions' deliveries, each row still hashing right.
    let r = run(
        &[
            "audit",
            "export",
            "--db",
            dbs,
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "jsonl",
            "--vendor",
            "teamviewer",
        ],
        &[],
    )
    .await;
    let filtered: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let filtered: Vec<ExportedEvent> =
        filtered[1..filtered.len() - 1].iter().map(|l| serde_json::from_value(l.clone()).unwrap()).collect();
    assert!(!filtered.is_empty() && filtered.len() < events.len());
    assert!(filtered
        .iter()
        .all(|e| e.hash_ok() && (e.vendor.as_deref() == Some("teamviewer") || e.session_id.is_some())));

    // An empty range still names the chain head.
    let r =
        run(&["audit", "export", "--db", dbs, "--from", "2001-01-01", "--to", "2001-01-02", "--format", "csv"], &[])
            .await;
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains(&head) && r.stderr.contains("\"rows\":0"), "{}", r.stderr);

    // A copy whose row was edited after export no longer hashes.
    let mut bad = events[3].clone();
    bad.detail_json = "{}".into();
    assert!(!bad.hash_ok());

    // `audit show` reads the same database read-only.
    // The demo has two tenants: the default's #101, acme's own #201. --tenant keeps one
    // tenant's history; a ticket of another tenant is not found under it.
    let r = run(&["audit", "show", "--db", dbs, "--ticket", "201", "--tenant", "acme"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Sessions (1)") && r.stdout.contains("acme-redmine"), "{}", r.stdout);
    let r = run(&["audit", "show", "--db", dbs, "--ticket", "101", "--tenant", "acme"], &[]).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    let r = run(&["audit", "show", "--db", dbs, "--ticket", "101"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Sessions (1)") && r.stdout.contains("session_matched"), "{}", r.stdout);
    assert!(!r.stdout.contains("acme"), "{}", r.stdout);
    assert!(r.stdout.contains("attempt 1:") && r.stdout.contains("delivered"), "{}", r.stdout);
    // --json: one object per line, sessions, then deliveries with their attempts, then
    // events; --limit keeps the most recent of each part.
    let r = run(&["audit", "show", "--db", dbs, "--ticket", "101", "--json", "--tenant", "default"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |kind: &str| lines.iter().filter(|l| l["record"] == kind).cloned().collect::<Vec<_>>();
    let (sessions, deliveries, events) = (of("session"), of("delivery"), of("event"));
    assert_eq!(sessions.len() + deliveries.len() + events.len(), lines.len(), "{}", r.stdout);
    assert_eq!(sessions.len(), 1);
    assert_eq!((sessions[0]["ticket_id"].as_str(), sessions[0]["rule"].as_str()), (Some("101"), Some("custom_api")));
    assert!(
        !deliveries.is_empty() && deliveries.iter().all(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()))
    );
    assert_eq!(deliveries[0]["attempts"][0]["outcome"], "delivered");
    assert!(events.len() > 2 && events.iter().any(|e| e["kind"] == "session_matched"));
    assert!(events.iter().all(|e| e["detail"].is_object() && e.get("detail_json").is_none()), "{}", r.stdout);
    let ids: Vec<i64> = events.iter().map(|e| e["event_id"].as_i64().unwrap()).collect();
    let r =
        run(&["audit", "show", "--db", dbs, "--ticket", "101", "--json", "--limit", "2", "--tenant", "default"], &[])
            .await;
    let limited: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let limited_ids: Vec<i64> =
        limited.iter().filter(|l| l["record"] == "event").map(|e| e["event_id"].as_i64().unwrap()).collect();
    assert_eq!(limited_ids, ids[ids.len() - 2..], "the two most recent events, oldest first");
    assert!(limited.iter().filter(|l| l["record"] == "delivery").count() <= 2);
    let r = run(&["audit", "show", "--db", dbs, "--ticket", "101", "--limit", "1"], &[]).await;
    assert!(r.stdout.contains("History (1 events)"), "{}", r.stdout);
    // A ticket with no history exits 1 and says so.
    let r = run(&["audit", "show", "--db", dbs, "--ticket", "no-such-ticket"], &[]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing recorded for ticket no-such-ticket"), "{}", r.stderr);
    let r = run(&["audit", "show", "--db", dbs, "--ticket", "no-such-ticket", "--json"], &[]).await;
    assert_eq!((r.code, r.stdout.as_str()), (1, ""), "{}", r.stderr);
}

/// Every row re-hashes, links to the one before, and the last is the head.
fn check_chain(events: &[ExportedEvent], head: &str) {
    let mut prev = ticketsync::store::audit::GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, i as i64 + 1);
        assert_eq!(e.prev_hash, prev, "row {}", e.id);
        assert!(e.hash_ok(), "row {} re-hashes", e.id);
        prev = e.hash.clone();
    }
    assert_eq!(prev, head);
}

/// One sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// `name{labels} value` lines of the Prometheus text format.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let labels = body
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), vec![]),
        };
        out.push((name, labels, value));
    }
    out
}

fn metric(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|m| m.2)
}

/// `listen = ""` and `enabled = false` each turn the listener off; the daemon says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_turns_off_with_an_empty_listen_or_enabled_false() {
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..Default::default() }).await.unwrap();
    let hook = WebhookSim::start(HOOK_SECRET, "X-Ticketsync-Signature").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for http in ["\n[http]\nlisten = \"\"\n", "\n[http]\nenabled = false\n"] {
        let cfg = config(dir.path(), &tv, &hook, http);
        // Not the harness's listen override: the file decides here.
        let mut child = crate::support::ticketsync(&cfg, &["run"])
            .env("TICKETSYNC_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
        let mut seen = Vec::new();
        let msg = crate::support::read_until(&mut lines, 15, "the listener's line", &mut seen, |l| {
            let v: Value = serde_json::from_str(l).ok()?;
            v["message"].as_str().filter(|m| m.starts_with("http listener")).map(str::to_string)
        })
        .await;
        assert!(msg.starts_with("http listener: off"), "{http}: {msg}");
        crate::support::signal(&child, nix::sys::signal::Signal::SIGTERM);
        assert!(child.wait().await.unwrap().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_is_scraped_over_http_and_parsed() {
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..Default::default() }).await.unwrap();
    let hook = WebhookSim::start(HOOK_SECRET, "X-Ticketsync-Signature").await.unwrap();
    let now = Utc::now();
    tv.add_connection(connection("0755a8dd-df19-4ea7-af47-cabb6b2a97e4", "101", now - chrono::Duration::hours(2)));
    tv.add_connection(connection("5ae6d2a9-57e9-4c62-b236-280390954b6f", "102", now - chrono::Duration::hours(1)));
    tv.add_connection(json!({"userid": "u1", "start_date": date(now - chrono::Duration::minutes(30))}));
    let dir = tempfile::tempdir().unwrap();
    // SQLite, or PostgreSQL with TICKETSYNC_TEST_STORE: the daemon is read through /metrics only.
    let db = crate::support::TestDb::new(dir.path()).await;
    // No [http] section: the listener is on by default (on a free port, as the harness sets).
    let cfg = config_on(dir.path(), &db.store_section(), &tv, &hook, "");

    let (mut child, mut lines) = crate::support::spawn_daemon(&cfg);
    // JSON log lines: the listener logs its address.
    let addr = crate::support::read_until(&mut lines, 15, "the listener's address", &mut Vec::new(), |l| {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}"));
        v["address"].as_str().map(str::to_string)
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status().as_u16(), 200);
    // Wait (bounded) until the first poll and both deliveries are done, as the metrics say.
    let all = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
            let all = parse_prometheus(&resp.text().await.unwrap());
            if metric(&all, "ticketsync_deliveries", &[("sink", "webhook"), ("state", "delivered")]) == Some(2.0)
                && metric(&all, "ticketsync_delivery_attempts_total", &[("sink", "webhook"), ("outcome", "delivered")])
                    == Some(2.0)
            {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("metrics show two delivered notes");
    assert_eq!(metric(&all, "ticketsync_polls_total", &[("source", "teamviewer"), ("outcome", "ok")]), Some(1.0));
    assert_eq!(
        metric(&all, "ticketsync_records_total", &[("source", "teamviewer"), ("result", "inserted")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&all, "ticketsync_records_total", &[("source", "teamviewer"), ("result", "quarantined")]),
        Some(1.0)
    );
    assert_eq!(metric(&all, "ticketsync_deliveries", &[("sink", "webhook"), ("state", "pending")]), Some(0.0));
    assert_eq!(metric(&all, "ticketsync_outbox_oldest_age_seconds", &[("sink", "webhook")]), Some(0.0));
    let last = metric(&all, "ticketsync_last_successful_poll_timestamp_seconds", &[("source", "teamviewer")]).unwrap();
    assert!((last - now.timestamp() as f64).abs() < 600.0, "{last}");
    assert!(metric(&all, "ticketsync_audit_events", &[]).unwrap() > 5.0);
    assert_eq!(metric(&all, "ticketsync_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    // Durations as histograms (issue 18): every attempt and poll observed.
    assert!(metric(&all, "ticketsync_delivery_duration_seconds_count", &[("sink", "webhook")]).unwrap() >= 2.0);
    assert!(
        metric(&all, "ticketsync_delivery_duration_seconds_bucket", &[("sink", "webhook"), ("le", "+Inf")]).unwrap()
            >= 2.0
    );
    assert!(metric(&all, "ticketsync_poll_duration_seconds_count", &[("source", "teamviewer")]).unwrap() >= 1.0);
    assert!(metric(&all, "ticketsync_page_fetch_duration_seconds_count", &[("source", "teamviewer")]).unwrap() >= 1.0);
    // Series that had no event yet exist at zero, so rate() and absent() alerts work at once.
    assert_eq!(metric(&all, "ticketsync_polls_total", &[("source", "teamviewer"), ("outcome", "error")]), Some(0.0));
    assert_eq!(
        metric(&all, "ticketsync_delivery_attempts_total", &[("sink", "webhook"), ("outcome", "dead")]),
        Some(0.0)
    );
    assert_eq!(metric(&all, "ticketsync_errors_total", &[("component", "store"), ("kind", "disk_full")]), Some(0.0));
    assert_eq!(metric(&all, "ticketsync_store_writes_failing", &[]), Some(0.0));
    // Every metric the shipped alert rules and dashboard name is on /metrics.
    let names: std::collections::BTreeSet<&str> = all.iter().map(|m| m.0.as_str()).collect();
    let metric_name = regex::Regex::new(r"\b(?:ticketsync|process)_[a-z_]+").unwrap();
    for doc in ["docs/monitoring/alerts.yml", "docs/monitoring/grafana-dashboard.json"] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap();
        let mut found = 0;
        for m in metric_name.find_iter(&text) {
            found += 1;
            // One series per stored OAuth token; this daemon uses a script token. The Zoom
            // tests check it (zoom::rotating_refresh_token_is_committed_and_the_old_one_is_dead).
            if m.as_str() == "ticketsync_token_expiry_timestamp_seconds" {
                continue;
            }
            assert!(names.contains(m.as_str()), "{doc} names {}, which /metrics does not have", m.as_str());
        }
        assert!(found >= 8, "{doc}: {found} metric names");
    }
    // The process metrics of the Prometheus client libraries.
    assert!(metric(&all, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(metric(&all, "process_start_time_seconds", &[]).unwrap() > 1.7e9);
    assert!(metric(&all, "process_open_fds", &[]).unwrap() > 3.0);

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");

    crate::support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flips_when_a_source_misses_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::temp_store(dir.path()).await;
    let started = Utc::now() - chrono::Duration::hours(3);
    let health = Arc::new(ticketsync::health::Health {
        store: store.clone(),
        sources: vec![("teamviewer".into(), ticketsync::daemon::parse_cron("*/5 * * * *").unwrap())],
        tz: chrono_tz::UTC,
        started_at: started,
        grace: chrono::Duration::seconds(120),
        sinks: vec![],
        added_at: Default::default(),
        instance_id: "test".into(),
        shared_store: false,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ticketsync::health::serve(listener, health, cancel.clone()));
    let http = reqwest::Client::new();
    let set_last_success = |at: chrono::DateTime<Utc>| {
        let pool = store.sqlite_pool().clone();
        async move {
            sqlx::query(
                "INSERT INTO source_cursors (source, cursor_json, last_poll_at, last_success_at, updated_at) VALUES ('teamviewer', '{}', ?1, ?1, ?1)
                 ON CONFLICT(source) DO UPDATE SET last_success_at = ?1",
            )
            .bind(ticketsync::session::ts(at))
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let ready = || async {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };

    // Started three hours ago and never polled: late.
    let (code, body) = ready().await;
    assert_eq!(code, 503, "{body}");
    assert!(body["checks"][1]["detail"].as_str().unwrap().contains("missed its schedule"), "{body}");
    assert_eq!(body["checks"][0]["ok"], true, "the store answers");

    set_last_success(Utc::now()).await;
    let (code, body) = ready().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["ready"], true);

    // The last success is an hour old: a */5 schedule was missed.
    set_last_success(Utc::now() - chrono::Duration::hours(1)).await;
    let (code, body) = ready().await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["checks"][1]["name"], "source:teamviewer");

    // Liveness does not depend on the sources.
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status().as_u16(), 200);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_reads_old_history_once_and_dry_run_writes_nothing() {
    let tv = TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], page_size: 2, ..Default::default() })
        .await
        .unwrap();
    let hook = WebhookSim::start(HOOK_SECRET, "X-Ticketsync-Signature").await.unwrap();
    // 40 days ago: beyond the first poll's 7-day look-back.
    let old = Utc::now() - chrono::Duration::days(40);
    for i in 0..5 {
        tv.add_connection(connection(
            &format!("0755a8dd-df19-4ea7-af47-cabb6b2a97e{i}"),
            &format!("{}", 200 + i),
            old + chrono::Duration::hours(i),
        ));
    }
    // Outside the backfill range: must not be read.
    tv.add_connection(connection("9c1b7e52-3f0a-4a8e-9d61-2f4b8a7c5e10", "300", old - chrono::Duration::days(5)));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &tv, &hook, "");
    let cfgs = cfg.to_str().unwrap();
    let from = (old - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let to = (old + chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let count = |db: PathBuf| async move {
        let pool =
            sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db)).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    };

    let backfill = ["--config", cfgs, "backfill", "--source", "teamviewer", "--from", &from, "--to", &to];
    let progress = |stderr: &str| stderr.lines().filter(|l| l.contains("backfill progress")).count();
    let r = run(&[&backfill[..], &["--dry-run", "--progress-secs", "3600"]].concat(), &[]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("would store 5 new"), "{}", r.stdout);
    assert_eq!(progress(&r.stderr), 1, "the first page's line, then none for an hour: {}", r.stderr);
    assert_eq!(count(dir.path().join("t.db")).await, 0, "dry run stores nothing");
    assert_eq!(hook.requests(), 0);

    let r = run(&[&backfill[..], &["--progress-secs", "0"]].concat(), &[]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("5 records in 3 pages — 5 new"), "{}", r.stdout);
    assert_eq!(progress(&r.stderr), 3, "a progress line a page without a terminal: {}", r.stderr);
    // The notes' own lines stay out of the way (each matched session, each delivered note).
    assert!(!r.stderr.contains("note delivered") && !r.stderr.contains("session matched"), "{}", r.stderr);
    assert!(r.stderr.lines().all(|l| l.contains("backfill progress")), "only progress: {}", r.stderr);
    assert_eq!(hook.accepted().len(), 5);
    assert_eq!(count(dir.path().join("t.db")).await, 5);

    // Again: nothing new, nothing delivered twice.
    let r = run(&["--config", cfgs, "backfill", "--source", "teamviewer", "--from", &from, "--to", &to], &[]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("0 new, 0 updated, 5 unchanged"), "{}", r.stdout);
    assert_eq!(hook.requests(), 5, "no note sent again");
    let v = run(&["audit", "verify", "--db", dir.path().join("t.db").to_str().unwrap()], &[]).await;
    assert_eq!(v.code, 0, "{}", v.stderr);

    let r = run(&["--config", cfgs, "backfill", "--source", "zoom", "--from", &from], &[]).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--source \"zoom\""), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_prints_ok_and_fail_with_the_fix() {
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..Default::default() }).await.unwrap();
    let redmine = RedmineSim::start("right-key", &[101]).await.unwrap();
    let hook = WebhookSim::start(HOOK_SECRET, "X-Ticketsync-Signature").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |key: &str| {
        let p = dir.path().join("d.toml");
        std::fs::write(
            &p,
            format!(
                "[store]\npath = \"{}\"\n\n[sources.teamviewer]\nbase_url = \"{}\"\ntoken = \"{TOKEN}\"\n\n[sinks.redmine]\nurl = \"{}\"\napi_key = \"{key}\"\n\n\
                 [sinks.webhook]\nurl = \"{}\"\nsecret = \"{HOOK_SECRET}\"\n",
                dir.path().join("t.db").display(),
                tv.base_url,
                redmine.base_url,
                hook.url
            ),
        )
        .unwrap();
        p
    };
    let cfg = write("wrong-key");
    let r = run(&["--config", cfg.to_str().unwrap(), "doctor"], &[]).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let row = r.stdout.lines().find(|l| l.starts_with("sink redmine")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains("FAIL") && row.contains("401"), "{}", r.stdout);
    assert!(r.stdout.contains("fix: replace the API key"), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l.starts_with("source teamviewer") && l.contains("OK")), "{}", r.stdout);
    assert!(!r.stdout.contains("wrong-key") && !r.stdout.contains(TOKEN), "no secrets in the table");

    // Fixed, and with a database: every check passes.
    let cfg = write("right-key");
    let m = run(&["--config", cfg.to_str().unwrap(), "migrate"], &[]).await;
    assert_eq!(m.code, 0, "{}", m.stderr);
    let r = run(&["--config", cfg.to_str().unwrap(), "doctor"], &[]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("database") && l.contains("OK") && l.contains("schema version")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(", 0 failed"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("sink webhook") && l.contains("OK") && l.contains("accepts connections")),
        "{}",
        r.stdout
    );
    assert_eq!(hook.requests(), 0, "doctor sends no note");

    // --json: one object per check, the same checks and exit code.
    let j = run(&["--config", cfg.to_str().unwrap(), "doctor", "--json"], &[]).await;
    assert_eq!(j.code, 0, "{}{}", j.stdout, j.stderr);
    let checks: Vec<Value> = j.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(checks.len(), r.stdout.lines().filter(|l| l.contains("  OK  ") || l.contains("  WARN  ")).count());
    let webhook = checks.iter().find(|c| c["check"] == "sink webhook").expect("sink webhook");
    assert_eq!(webhook["status"], "OK");
    assert!(checks.iter().all(|c| ["OK", "WARN", "FAIL"].contains(&c["status"].as_str().unwrap())));
    let cfg = write("wrong-key");
    let j = run(&["--config", cfg.to_str().unwrap(), "doctor", "--json"], &[]).await;
    assert_eq!(j.code, 3, "{}{}", j.stdout, j.stderr);
    let checks: Vec<Value> = j.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let redmine = checks.iter().find(|c| c["check"] == "sink redmine").expect("sink redmine");
    assert_eq!(redmine["status"], "FAIL");
    assert!(redmine["fix"].as_str().is_some_and(|f| f.contains("replace the API key")), "{redmine}");
    assert!(!j.stdout.contains("wrong-key"), "no secrets in the lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_splashtop_and_reports_zoom_and_visio_unchecked() {
    use ticketsync::sim::splashtop::{SimOptions as StOptions, SplashtopSim};
    let st = SplashtopSim::start(StOptions { api_tokens: vec!["st-doctor-token".into()], ..Default::default() })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |token: &str| {
        let p = dir.path().join("d.toml");
        std::fs::write(
            &p,
            format!(
                "[store]\npath = \"{}\"\n\n[sources.splashtop]\nbase_url = \"{}\"\nconsole_url = \"{}\"\ntoken = \"{token}\"\n\n\
                 [sources.zoom]\napi_url = \"http://127.0.0.1:9/v2\"\noauth_url = \"http://127.0.0.1:9\"\n\n\
                 [[sources.zoom.accounts]]\nname = \"helpdesk\"\nauth = \"oauth\"\nclient_id = \"zc\"\nclient_secret = \"zoom-secret-doctor\"\n\n\
                 [rooms.visioconference]\napi_url = \"http://127.0.0.1:9/api/v1\"\ntoken = \"visio-token-doctor\"\n",
                dir.path().join("t.db").display(),
                st.base_url,
                st.base_url
            ),
        )
        .unwrap();
        p
    };
    let cfg = write("st-doctor-token");
    let m = run(&["--config", cfg.to_str().unwrap(), "migrate"], &[]).await;
    assert_eq!(m.code, 0, "{}", m.stderr);
    let r = run(&["--config", cfg.to_str().unwrap(), "doctor"], &[]).await;
    let row = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row: {}", r.stdout))
            .to_string()
    };
    assert!(row("source splashtop").contains("OK") && row("source splashtop").contains("basic_info"), "{}", r.stdout);
    assert!(row("secret splashtop_token").contains("OK"), "{}", r.stdout);
    assert!(row("secret zoom_helpdesk_client_secret").contains("OK"), "{}", r.stdout);
    assert!(row("source zoom:helpdesk").contains("WARN") && row("source zoom:helpdesk").contains("not checked"));
    assert!(row("rooms visioconference").contains("WARN") && row("rooms visioconference").contains("not checked"));
    // Not authorized yet: the one failure, with the command that fixes it.
    assert!(row("token zoom:helpdesk").contains("FAIL"), "{}", r.stdout);
    assert!(r.stdout.contains("fix: run `ticketsync auth zoom --account helpdesk`"), "{}", r.stdout);
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(r.stdout.contains(", 1 failed"), "{}", r.stdout);
    for secret in ["st-doctor-token", "zoom-secret-doctor", "visio-token-doctor"] {
        assert!(!r.stdout.contains(secret), "no secrets in the table");
    }

    let cfg = write("wrong-token");
    let r = run(&["--config", cfg.to_str().unwrap(), "doctor"], &[]).await;
    let row = r.stdout.lines().find(|l| l.starts_with("source splashtop")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains("FAIL"), "{}", r.stdout);
    assert!(r.stdout.contains(", 2 failed"), "{}", r.stdout);
}

#[tokio::test]
async fn readiness_judges_each_zoom_account_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("z.toml");
    std::fs::write(
        &p,
        format!(
            "[store]\npath = \"{}\"\n\n[sources.zoom]\nschedule = \"*/5 * * * *\"\napi_url = \"http://127.0.0.1:9/v2\"\noauth_url = \"http://127.0.0.1:9\"\n\n\
             [[sources.zoom.accounts]]\nname = \"helpdesk\"\nauth = \"oauth\"\nclient_id = \"a\"\nclient_secret = \"s1\"\n\n\
             [[sources.zoom.accounts]]\nname = \"support\"\nauth = \"oauth\"\nclient_id = \"b\"\nclient_secret = \"s2\"\n",
            dir.path().join("t.db").display()
        ),
    )
    .unwrap();
    let app = ticketsync::app::App::build(ticketsync::config::Config::load(&p).unwrap()).await.unwrap();
    let health = ticketsync::health::Health::from_app(&app, Utc::now() - chrono::Duration::hours(1)).unwrap();
    let names: Vec<&str> = health.sources.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["zoom:helpdesk", "zoom:support"]);
    // One account polled just now, the other never: only the other is late.
    sqlx::query(
        "INSERT INTO source_cursors (source, cursor_json, last_poll_at, last_success_at, updated_at) VALUES ('zoom:helpdesk', '{}', ?1, ?1, ?1)",
    )
    .bind(ticketsync::session::ts(Utc::now()))
    .execute(app.store.sqlite_pool())
    .await
    .unwrap();
    let checks = health.readiness(Utc::now()).await;
    let ok = |n: &str| checks.iter().find(|c| c.0 == n).unwrap_or_else(|| panic!("{checks:?}")).1;
    assert!(ok("source:zoom:helpdesk"), "{checks:?}");
    assert!(!ok("source:zoom:support"), "{checks:?}");
    app.store.close().await;
}
