//! Fault suite, area 6: the state directory's volume fills up while the daemon polls and
//! delivers. It must stop writing without corrupting anything, say so (error, `/readyz`,
//! metrics), keep running, and resume once space is back: every session stored once, every
//! note delivered once, `PRAGMA integrity_check` ok and the audit chain intact.
//!
//! A real full volume when the test may mount (root, CAP_SYS_ADMIN): a small tmpfs filled
//! with a ballast file. Otherwise (unprivileged CI) the same SQLITE_FULL is produced with
//! `PRAGMA max_page_count` on the daemon's own connections; the test prints which it used
//! (`TICKETSYNC_DISK_FULL_SIMULATE=1` forces the simulated path).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support::tv_connection;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use ticketsync::app::App;
use ticketsync::config::Config;
use ticketsync::health::Health;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};
use ticketsync::sim::webhook::WebhookSim;

const SECRET: &str = "disk-full-secret";
const HEADER: &str = "X-Ticketsync-Signature";
const BEFORE: u64 = 20;
const DURING: u64 = 400;
const VOLUME: &str = "size=32m";

/// A tmpfs mounted for the test; unmounted on drop, whatever happened.
struct Mount(PathBuf);

impl Mount {
    fn try_new(at: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        if std::env::var_os("TICKETSYNC_DISK_FULL_SIMULATE").is_some() {
            return Err("TICKETSYNC_DISK_FULL_SIMULATE is set".into());
        }
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", VOLUME, "tsfull"])
            .arg(at)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: a pool connection still open must not keep the mount behind.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// How the volume gets full and empty again.
enum Full {
    /// A ballast file that takes every free block of the tmpfs.
    Volume { ballast: PathBuf },
    /// SQLITE_FULL from `max_page_count` on each of the daemon's pool connections.
    Simulated,
}

impl Full {
    async fn fill(&self, app: &App) {
        match self {
            Full::Volume { ballast } => {
                let mut f = std::fs::File::create(ballast).unwrap();
                let chunk = vec![0xa5u8; 64 * 1024];
                loop {
                    match f.write_all(&chunk) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                        Err(e) => panic!("ballast: {e}"),
                    }
                }
                // The last partial chunk may sit in no block yet; fill to the last byte.
                while f.write(&[0xa5]).is_ok_and(|n| n == 1) {}
                let _ = f.sync_all();
            }
            Full::Simulated => set_max_pages(app, None).await,
        }
    }

    async fn empty(&self, app: &App) {
        match self {
            Full::Volume { ballast } => std::fs::remove_file(ballast).unwrap(),
            Full::Simulated => set_max_pages(app, Some(1 << 30)).await,
        }
    }
}

/// `PRAGMA max_page_count` on every pool connection: `None` caps at the current size.
async fn set_max_pages(app: &App, pages: Option<i64>) {
    let pool = app.store.sqlite_pool();
    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        held.push(pool.acquire().await.unwrap());
    }
    for c in &mut held {
        let n: i64 = match pages {
            Some(n) => n,
            None => sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut **c).await.unwrap(),
        };
        sqlx::query(&format!("PRAGMA max_page_count = {n}")).execute(&mut **c).await.unwrap();
    }
}

fn record(i: u64, t0: DateTime<Utc>) -> Value {
    let id = format!("eeeeeeee-0000-4000-8000-{i:012}");
    let mut r = tv_connection(
        &id,
        &format!("s{i:03}-000-001"),
        &(5000 + i).to_string(),
        t0 + TimeDelta::seconds(i as i64 * 20),
    );
    r["notes"] = json!(format!(
        "Replaced the docking station, updated firmware, checked the printer queue. {}",
        "Details. ".repeat(60)
    ));
    r
}

fn config(dir: &Path, db: &Path, tv: &str, hook: &str) -> Config {
    std::fs::write(dir.join("tv"), "df-token").unwrap();
    std::fs::write(dir.join("wh"), SECRET).unwrap();
    let text = format!(
        "[store]\npath = \"{}\"\n[outbox]\nbase_backoff_secs = 1\nmax_backoff_secs = 2\n\
         [sources.teamviewer]\nbase_url = \"{tv}\"\nschedule = \"* * * * *\"\ntoken_file = \"{}\"\ninitial_lookback_days = 1\n\
         [sinks.webhook]\nurl = \"{hook}\"\nsecret_file = \"{}\"\nsignature_header = \"{HEADER}\"\n",
        db.display(),
        dir.join("tv").display(),
        dir.join("wh").display()
    );
    let p = dir.join("ticketsync.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p).unwrap()
}

async fn count(app: &App, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(app.store.sqlite_pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_on_the_state_directory_stops_writes_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("state");
    let (mount, full, how) = match Mount::try_new(&vol) {
        Ok(m) => (
            Some(m),
            Full::Volume { ballast: vol.join("ballast") },
            format!("tmpfs volume ({VOLUME}) filled by a ballast file"),
        ),
        Err(e) => {
            std::fs::create_dir_all(&vol).unwrap();
            (None, Full::Simulated, format!("SIMULATED with PRAGMA max_page_count (no mount possible: {e})"))
        }
    };
    println!("disk full: mechanism: {how}");
    let tv = TeamViewerSim::start(SimOptions {
        script_tokens: vec!["df-token".into()],
        page_size: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    let hook = WebhookSim::start(SECRET, HEADER).await.unwrap();
    let db = vol.join("ts.db");
    let app = App::build(config(dir.path(), &db, &tv.base_url, &hook.url)).await.unwrap();
    let health = Health::from_app(&app, Utc::now()).unwrap();
    let t0 = Utc::now() - TimeDelta::hours(5);

    for i in 0..BEFORE {
        tv.add_connection(record(i, t0));
    }
    let r = app.cycle().await.unwrap();
    assert_eq!((r.polled[0].1.inserted, r.delivered.delivered), (BEFORE, BEFORE));

    // The volume fills up; meanwhile the vendor reports many more sessions.
    full.fill(&app).await;
    for i in BEFORE..BEFORE + DURING {
        tv.add_connection(record(i, t0));
    }
    let mut refused = 0;
    let mut last_error = String::new();
    for _ in 0..5 {
        match app.cycle().await {
            Ok(r) => panic!("a cycle wrote {r:?} on a full disk"),
            Err(e) => {
                refused += 1;
                last_error = format!("{e:#}");
            }
        }
    }
    assert!(last_error.contains("database or disk is full"), "{last_error}");
    let (_, reported) = app.store.write_failure().expect("the refused writes are reported");
    assert!(reported.contains("disk is full"), "{reported}");
    let ready = health.readiness(Utc::now()).await;
    let store_check = ready.iter().find(|c| c.0 == "store").unwrap();
    assert!(
        !store_check.1 && store_check.2.contains("ts.db") && store_check.2.contains("disk is full"),
        "{store_check:?}"
    );
    // Nothing half-written: the pages that failed left no session behind.
    let stored_while_full = count(&app, "SELECT COUNT(*) FROM sessions").await;
    assert!(stored_while_full < (BEFORE + DURING) as i64, "the disk was not full: {stored_while_full} stored");
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(app.store.sqlite_pool()).await.unwrap();
    assert_eq!(ok, "ok", "integrity while full");

    // Space is back: the same process resumes.
    full.empty(&app).await;
    for _ in 0..20 {
        let r = app.cycle().await.expect("writes succeed again");
        if r.polled[0].1.inserted == 0 && r.delivered.attempted == 0 {
            break;
        }
        sqlx::query("UPDATE deliveries SET next_attempt_at = ? WHERE state = 'pending'")
            .bind(ticketsync::store::now())
            .execute(app.store.sqlite_pool())
            .await
            .unwrap();
    }
    assert_eq!(app.store.write_failure(), None);
    assert!(health.readiness(Utc::now()).await.iter().find(|c| c.0 == "store").unwrap().1);

    let total = (BEFORE + DURING) as i64;
    let (n, distinct): (i64, i64) = sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT external_id) FROM sessions")
        .fetch_one(app.store.sqlite_pool())
        .await
        .unwrap();
    assert_eq!((n, distinct), (total, total), "every session stored exactly once");
    let accepted = hook.accepted();
    let mut markers: Vec<String> = accepted.iter().map(|p| p["marker"].as_str().unwrap().to_string()).collect();
    markers.sort();
    markers.dedup();
    let expected: Vec<String> = sqlx::query_scalar("SELECT marker FROM deliveries ORDER BY marker")
        .fetch_all(app.store.sqlite_pool())
        .await
        .unwrap();
    let lost = expected.iter().filter(|m| markers.binary_search(m).is_err()).count();
    let duplicates = accepted.len() + hook.duplicates() - markers.len();
    assert_eq!(expected.len() as i64, total, "one note per session");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM deliveries WHERE state != 'delivered'").await, 0);
    crate::support::assert_db_sound(app.store.sqlite_pool(), &db).await;
    println!(
        "disk full: {refused} cycles refused while full ({stored_while_full} of {total} sessions stored then), reported as {reported:?}; \
         after the space came back: {n} sessions stored once, {} notes, lost {lost}, duplicates {duplicates}; integrity ok, audit chain ok",
        markers.len()
    );
    assert_eq!((lost, duplicates), (0, 0));
    app.store.close().await;
    tv.shutdown().await;
    drop(mount);
}
