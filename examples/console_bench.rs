//! The web console's page times on a large database (issue 21: every page under 100 ms on a
//! 1M-session database; measured, not asserted).
//!
//!     cargo run --release --example console_bench -- 1000000 target/console-bench.db
//!
//! Builds (or, when the file already has that many sessions, reuses) a SQLite database of N
//! TeamViewer sessions: 90 % matched and delivered, 1 % unmatched, 1000 dead and 1000 failed
//! deliveries, written with SQL straight into the tables (not through the pipeline: only the
//! reads are measured). Then it serves the console's router in-process and times each page
//! as the server answers it (request in, whole body out; no network, no browser): the
//! median and the maximum of 7 requests after one warm-up.
//!
//! With `TICKETSYNC_TEST_STORE=postgres://…/db` (an empty database) the same on PostgreSQL.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use secrecy::SecretString;
use tower::ServiceExt;

use ticketsync::config::{ConsoleConfig, ConsoleRole, ConsoleUser};
use ticketsync::store::Store;

const PASSWORD: &str = "bench password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: i64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let path = args.next().unwrap_or_else(|| "target/console-bench.db".into());
    let url = std::env::var("TICKETSYNC_TEST_STORE").unwrap_or_else(|_| format!("sqlite://{path}"));
    let store = Store::connect(&url, Duration::from_secs(30), None).await?;
    let have = ticketsync::store::sessions::count(&store).await?;
    if have != n {
        anyhow::ensure!(have == 0, "{url} has {have} sessions, not {n}: start from an empty database");
        let t = Instant::now();
        fill(&store, n).await?;
        println!("built {n} sessions in {:.1}s", t.elapsed().as_secs_f64());
    }
    let cfg = ConsoleConfig {
        enabled: true,
        secure_cookie: false,
        users: vec![ConsoleUser {
            name: "ann".into(),
            role: ConsoleRole::Operator,
            password_hash: Some(SecretString::from(
                ticketsync::console::hash_password(PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?,
            )),
            password_hash_file: None,
        }],
        ..Default::default()
    };
    let console =
        std::sync::Arc::new(ticketsync::console::Console::new(&cfg, store.clone(), vec!["redmine".into()], None)?);
    let router = console.router();
    let cookie = login(&router).await?;
    // A matched session (every 100th is not).
    let mid = n / 2 + 1;
    let pages = [
        ("overview", "/ui/".to_string()),
        ("sessions, newest 50", "/ui/sessions".to_string()),
        ("sessions, page at the middle (keyset)", format!("/ui/sessions?before={mid}")),
        ("sessions by code", format!("/ui/sessions?code=s{:09}", mid)),
        ("sessions by ticket", format!("/ui/sessions?ticket={}", 1000 + mid % 50_000)),
        ("sessions by technician", "/ui/sessions?technician=Technician+7".to_string()),
        ("sessions by vendor and day", "/ui/sessions?vendor=teamviewer&from=2026-03-01&to=2026-03-02".to_string()),
        ("a session's page", format!("/ui/sessions/{mid}")),
        ("unmatched queue", "/ui/unmatched".to_string()),
        ("dead deliveries", "/ui/deliveries?state=dead".to_string()),
        ("failed and dead, one sink", "/ui/deliveries?sink=redmine".to_string()),
        ("audit page", "/ui/audit".to_string()),
    ];
    println!("| page ({n} sessions, {}) | median ms | max ms | bytes |", store.dialect().name());
    println!("|---|---|---|---|");
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for i in 0..8 {
            let t = Instant::now();
            let req = Request::get(&path).header(header::COOKIE, &cookie).body(Body::empty())?;
            let resp = router.clone().oneshot(req).await?;
            anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
            bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await?.len();
            if i > 0 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("| {name} | {:.1} | {:.1} | {bytes} |", times[times.len() / 2], times[times.len() - 1]);
    }
    store.close().await;
    Ok(())
}

async fn login(router: &axum::Router) -> anyhow::Result<String> {
    let resp = router.clone().oneshot(Request::get("/ui/login").body(Body::empty())?).await?;
    let pre = resp.headers()[header::SET_COOKIE].to_str()?.split(';').next().unwrap_or("").to_string();
    let token = pre.split_once('=').map(|(_, v)| v.to_string()).unwrap_or_default();
    let body = format!("user=ann&password={}&csrf={token}", PASSWORD.replace(' ', "+"));
    let req = Request::post("/ui/login")
        .header(header::COOKIE, &pre)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))?;
    let resp = router.clone().oneshot(req).await?;
    anyhow::ensure!(resp.status().is_redirection(), "login: {}", resp.status());
    let c = resp.headers().get_all(header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.starts_with("ticketsync_console=").then(|| v.split(';').next().unwrap_or("").to_string())
    });
    c.ok_or_else(|| anyhow::anyhow!("no login cookie"))
}

/// N sessions and their matches and deliveries, by SQL over a generated series (either
/// dialect: the recursive CTE and the string functions are common to both).
async fn fill(store: &Store, n: i64) -> anyhow::Result<()> {
    let series = format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})");
    // One session a minute from 2026-01-01; every 100th has no ticket (unmatched).
    let pg = store.dialect() == ticketsync::store::Dialect::Postgres;
    let pad = |e: &str, w: usize| match pg {
        true => format!("lpad(({e})::text, {w}, '0')"),
        false => format!("substr('{}' || ({e}), -{w})", "0".repeat(w)),
    };
    let ts = |col: &str| {
        format!(
            "'2026-' || {} || '-' || {} || 'T' || {} || ':' || {} || ':00.000Z'",
            pad(&format!("1 + ({col} / 40320) % 12"), 2),
            pad(&format!("1 + ({col} / 1440) % 28"), 2),
            pad(&format!("({col} / 60) % 24"), 2),
            pad(&format!("{col} % 60"), 2)
        )
    };
    let code = format!("'s' || {}", pad("x", 9));
    let statements = [
        format!(
            "{series} INSERT INTO sessions (id, vendor, external_id, session_code, session_code_norm, technician, device, \
             device_id, started_at, ended_at, duration_s, custom_api, raw_json, content_hash, revision, first_seen_at, \
             last_seen_at, match_checked_rev) \
             SELECT x, 'teamviewer', 'ext-' || x, {code}, {code}, \
             'Technician ' || (x % 200), 'PC-' || (x % 5000), 'd' || (x % 5000), {start}, {start}, 900, \
             CASE WHEN x % 100 = 0 THEN NULL ELSE '{{\"ticket_id\":\"' || (1000 + x % 50000) || '\"}}' END, \
             '{{\"id\":\"ext-' || x || '\",\"username\":\"Technician ' || (x % 200) || '\"}}', 'h' || x, 1, {start}, {start}, 1 FROM c",
            start = ts("x"),
        ),
        format!(
            "{series} INSERT INTO matches (session_id, ticket_id, rule, rule_detail, matched_at) \
             SELECT x, '' || (1000 + x % 50000), 'custom_api', NULL, {start} FROM c WHERE x % 100 <> 0",
            start = ts("x")
        ),
        format!(
            "{series} INSERT INTO deliveries (id, sink, ticket_id, session_id, kind, marker, note_json, state, attempts, \
             next_attempt_at, last_error, remote_ref, created_at, updated_at, delivered_at) \
             SELECT x, 'redmine', '' || (1000 + x % 50000), x, 'session_report', 'tsd:v1:' || x, '{{}}', \
             CASE WHEN x % 1000 = 1 THEN 'dead' WHEN x % 1000 = 2 THEN 'failed' ELSE 'delivered' END, \
             CASE WHEN x % 1000 IN (1, 2) THEN 3 ELSE 1 END, {start}, \
             CASE WHEN x % 1000 = 1 THEN 'redmine: ticket not found (HTTP 404)' WHEN x % 1000 = 2 THEN 'redmine: HTTP 502' END, \
             CASE WHEN x % 1000 > 2 THEN 'journal-' || x END, {start}, {start}, CASE WHEN x % 1000 > 2 THEN {start} END \
             FROM c WHERE x % 100 <> 0",
            start = ts("x")
        ),
        format!(
            "{series} INSERT INTO delivery_attempts (delivery_id, attempt, started_at, finished_at, outcome, detail) \
             SELECT x, 1, {start}, {start}, CASE WHEN x % 1000 = 1 THEN 'dead' WHEN x % 1000 = 2 THEN 'failed' ELSE 'delivered' END, NULL \
             FROM c WHERE x % 100 <> 0",
            start = ts("x")
        ),
    ];
    for sql in statements {
        store.execute_raw(&sql).await?;
    }
    // No ANALYZE: the daemon never runs it, so the planner works as on a production file.
    Ok(())
}
