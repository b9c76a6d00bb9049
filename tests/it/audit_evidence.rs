//! Audit evidence (issue 14, point 5), over the real binary: the chain covers the sessions
//! and notes it records, is keyed, finds truncation against an external head, and the
//! database can be backed up while it is written. Each tampering is done as an attacker
//! with file access would: plain SQL on the file, triggers dropped where they are in the way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sha2::Digest;
use ticketsync::export::ExportedEvent;
use ticketsync::session::NewSession;
use ticketsync::store::audit::{self, AuditKey, ChainVersion, RowFields};
use ticketsync::store::{outbox, sessions, Store};

const KEY: &str = "evidence-test-key-0123456789abcdef0123456789";

struct Out {
    code: i32,
    text: String,
}

/// The binary with a clean environment (no configuration leaks in from the host).
fn bin(args: &[&str]) -> Out {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        text: format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    }
}

fn verify(db: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["audit", "verify", "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    bin(&args)
}

fn key_file(dir: &Path, key: &str) -> PathBuf {
    let p = dir.join("audit_key");
    std::fs::write(&p, format!("{key}\n")).unwrap();
    p
}

fn session(ext: &str, tech: &str, minute: u32) -> NewSession {
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 9, minute, 0).unwrap();
    let end = start + chrono::TimeDelta::minutes(12);
    NewSession {
        vendor: "teamviewer".into(),
        external_id: ext.into(),
        session_code: Some(format!("s1-{minute}")),
        technician: Some(tech.into()),
        technician_id: Some("u1".into()),
        device: Some("ACME-LT-042".into()),
        device_id: Some("1234567890".into()),
        group_name: Some("Helpdesk".into()),
        started_at: start,
        ended_at: Some(end),
        notes: Some("printer".into()),
        description: None,
        custom_api: Some(r#"{"ticket_id":"101"}"#.into()),
        customer_name: None,
        customer_email: None,
        raw_json: serde_json::json!({"id": ext, "username": tech, "start_date": minute}).to_string(),
    }
}

/// Three sessions (the second updated by the vendor later), two queued notes, written as
/// the daemon writes them; keyed when `key` is given. Returns the database path.
async fn populate(dir: &Path, key: Option<&str>) -> PathBuf {
    let db = dir.join("t.db");
    let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
    if let Some(k) = key {
        audit::use_key(&store, Some(AuditKey::new(k.as_bytes()).unwrap())).await.unwrap();
    }
    let (a, b, c) = (session("a-1", "Jon Snow", 1), session("b-2", "Jon Snow", 2), session("c-3", "Sansa", 3));
    let mut tx = store.begin().await.unwrap();
    let ids = sessions::upsert_many(&mut tx, &[&a, &b, &c], Some("w1"), false).await.unwrap();
    tx.commit().await.unwrap();
    let mut b2 = b.clone();
    b2.technician = Some("Arya Stark".into());
    b2.raw_json = serde_json::json!({"id": "b-2", "username": "Arya Stark", "start_date": 2, "rev": 2}).to_string();
    let mut tx = store.begin().await.unwrap();
    let (_, up) = sessions::upsert(&mut tx, &b2, Some("w2")).await.unwrap();
    assert_eq!(up, sessions::Upsert::Updated);
    for (i, (id, _)) in ids.iter().take(2).enumerate() {
        let note =
            serde_json::json!({"title": format!("Remote session {i}"), "body": "12 minutes, Jon Snow"}).to_string();
        outbox::enqueue(
            &mut tx,
            "redmine",
            "101",
            Some(*id),
            None,
            outbox::NoteKind::SessionReport,
            &format!("m{i}"),
            &note,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    store.close().await;
    db
}

async fn pool(db: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db)).await.unwrap()
}

/// Plain SQL on the file, the append-only triggers dropped first.
async fn tamper(db: &Path, sql: &str) {
    let p = pool(db).await;
    sqlx::raw_sql("DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_events_no_delete;")
        .execute(&p)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&p).await.unwrap();
    p.close().await;
}

/// An attacker's rewrite: rows from `from` on re-hashed under `version` (with `key`, which
/// for an attacker is any key but the real one), each linked to the one before.
async fn rehash_from(db: &Path, from: i64, version: ChainVersion, key: Option<&AuditKey>) {
    let p = pool(db).await;
    sqlx::raw_sql("DROP TRIGGER IF EXISTS audit_events_no_update").execute(&p).await.unwrap();
    let rows: Vec<ExportedEvent> = sqlx::query_as(
        "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash, chain_version,
         subject_sha256 FROM audit_events ORDER BY id",
    )
    .fetch_all(&p)
    .await
    .unwrap();
    let mut prev = rows.iter().find(|r| r.id == from - 1).map(|r| r.hash.clone()).unwrap_or(audit::GENESIS.into());
    for r in rows.iter().filter(|r| r.id >= from) {
        let f = RowFields {
            prev: &prev,
            id: r.id,
            at: &r.at,
            kind: &r.kind,
            vendor: r.vendor.as_deref(),
            session_id: r.session_id,
            ticket_id: r.ticket_id.as_deref(),
            delivery_id: r.delivery_id,
            detail: &r.detail_json,
            subject: r.subject_sha256.as_deref(),
        };
        let h = audit::hash_row(version, key, &f).unwrap();
        sqlx::query("UPDATE audit_events SET prev_hash = ?, hash = ?, chain_version = ? WHERE id = ?")
            .bind(&prev)
            .bind(&h)
            .bind(version as i64)
            .bind(r.id)
            .execute(&p)
            .await
            .unwrap();
        prev = h;
    }
    p.close().await;
}

/// Edit session 1's technician and make the audit event that recorded it (the page row of
/// its first sighting, migration 0007) record the edited row, as an attacker who knows the
/// subject format would; returns that event's id.
async fn forge_session_1(db: &Path) -> i64 {
    let subject_of = |s: &NewSession| {
        let raw_hex = hex::encode(sha2::Sha256::digest(s.raw_json.as_bytes()));
        audit::session_subject_of(s, &raw_hex).hex()
    };
    let original = subject_of(&session("a-1", "Jon Snow", 1));
    let mut forged = session("a-1", "Jon Snow", 1);
    forged.technician = Some("Mallory".into());
    let subject = subject_of(&forged);
    let p = pool(db).await;
    let (event, listed): (i64, bool) = sqlx::query_as(
        "SELECT a.id, instr(a.detail_json, ?) > 0 FROM sessions s JOIN audit_events a ON a.id = s.seen_event_id
         WHERE s.id = 1 AND a.kind = 'sessions_seen'",
    )
    .bind(&original)
    .fetch_one(&p)
    .await
    .unwrap();
    assert!(listed, "session 1's page row lists its subject");
    p.close().await;
    tamper(
        db,
        &format!(
            "UPDATE sessions SET technician = 'Mallory' WHERE id = 1;
             UPDATE audit_events SET detail_json = replace(detail_json, '{original}', '{subject}') WHERE id = {event};"
        ),
    )
    .await;
    event
}

fn fresh(rt: &tokio::runtime::Runtime, key: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = rt.block_on(populate(dir.path(), key));
    (dir, db)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn audit_evidence_edits_of_sessions_and_notes_are_reported() {
    let rt = rt();
    let mut reported = 0;
    let (_d, db) = fresh(&rt, None);
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "{}", v.text);
    assert!(v.text.contains("3 sessions and 2 deliveries match their latest audit event"), "{}", v.text);

    let cases: [(&str, &str, &str); 5] = [
        ("technician", "UPDATE sessions SET technician = 'Mallory' WHERE id = 1", "sessions row 1"),
        ("raw record", "UPDATE sessions SET raw_json = '{\"id\":\"b-2\"}' WHERE id = 2", "sessions row 2"),
        ("normalized column", "UPDATE sessions SET duration_s = 5 WHERE id = 3", "sessions row 3"),
        (
            "note text",
            "UPDATE deliveries SET note_json = '{\"title\":\"nothing happened\"}' WHERE id = 1",
            "deliveries row 1",
        ),
        ("note's ticket", "UPDATE deliveries SET ticket_id = '999' WHERE id = 2", "deliveries row 2"),
    ];
    for (what, sql, names) in cases {
        let (_d, db) = fresh(&rt, None);
        rt.block_on(tamper(&db, sql));
        let v = verify(&db, &[]);
        assert_eq!(v.code, 3, "{what}: {}", v.text);
        assert!(v.text.contains(names) && v.text.contains("recorded by audit row"), "{what}: {}", v.text);
        reported += 1;
    }
    // Session 2 was updated by the vendor: its latest event (session_updated) is the reference.
    let (_d, db) = fresh(&rt, None);
    rt.block_on(tamper(&db, "UPDATE sessions SET technician = 'Jon Snow' WHERE id = 2"));
    let v = verify(&db, &[]);
    let p = rt.block_on(pool(&db));
    let updated: i64 = rt
        .block_on(sqlx::query_scalar("SELECT id FROM audit_events WHERE kind = 'session_updated'").fetch_one(&p))
        .unwrap();
    rt.block_on(p.close());
    assert_eq!(v.code, 3, "{}", v.text);
    assert!(v.text.contains(&format!("sessions row 2 (recorded by audit row {updated})")), "{}", v.text);
    reported += 1;
    // A session slipped in without going through ticketsync.
    let (_d, db) = fresh(&rt, None);
    rt.block_on(tamper(
        &db,
        "INSERT INTO sessions (vendor, external_id, started_at, raw_json, content_hash, first_seen_at, last_seen_at)
         VALUES ('teamviewer', 'x-9', '2026-11-02T10:00:00.000Z', '{}', 'h', 'x', 'x')",
    ));
    let v = verify(&db, &[]);
    assert_eq!(v.code, 3, "{}", v.text);
    assert!(v.text.contains("sessions row 4") && v.text.contains("no audit event records"), "{}", v.text);
    reported += 1;
    println!("auditor evidence: {reported} of {reported} edits of sessions and notes reported by audit verify; clean database verifies");
}

#[test]
fn audit_evidence_truncation_is_found_with_the_expected_head() {
    let rt = rt();
    let (_d, db) = fresh(&rt, None);
    // Two events about no record at the end (what deleting the last deliveries' outcomes
    // looks like): the rest of the chain still links without them.
    rt.block_on(async {
        let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
        for kind in ["delivery_attempted", "delivery_delivered"] {
            let mut tx = store.begin().await.unwrap();
            audit::append(&mut tx, audit::Event { kind, ticket_id: Some("101"), ..Default::default() }).await.unwrap();
            tx.commit().await.unwrap();
        }
        store.close().await;
    });
    let h = bin(&["audit", "head", "--db", db.to_str().unwrap()]);
    assert_eq!(h.code, 0, "{}", h.text);
    let head = h.text.trim().to_string();
    let (id, hash) = audit::parse_head(&head).unwrap();
    let v = verify(&db, &["--expect-head", &head]);
    assert_eq!(v.code, 0, "{}", v.text);
    assert!(v.text.ends_with(&format!("head {hash}\n")), "{}", v.text);

    // A later head does not invalidate an earlier one: the chain only grows.
    let p = rt.block_on(pool(&db));
    let earlier: String =
        rt.block_on(sqlx::query_scalar("SELECT hash FROM audit_events WHERE id = 3").fetch_one(&p)).unwrap();
    rt.block_on(p.close());
    assert_eq!(verify(&db, &["--expect-head", &format!("3:{earlier}")]).code, 0);

    // The last two rows deleted: the rest still links, so only the anchor shows it.
    rt.block_on(tamper(&db, &format!("DELETE FROM audit_events WHERE id > {}", id - 2)));
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "a truncated chain is consistent in itself: {}", v.text);
    let v = verify(&db, &["--expect-head", &head]);
    assert_eq!(v.code, 3, "{}", v.text);
    assert!(
        v.text.contains(&format!("row {id}")) && v.text.contains(&format!("chain ends at row {}", id - 2)),
        "{}",
        v.text
    );
    // A wrong hash for an existing row is a mismatch, named.
    let wrong = format!("3:{}", "0".repeat(64));
    let v = verify(&db, &["--expect-head", &wrong]);
    assert_eq!(v.code, 3, "{}", v.text);
    assert!(v.text.contains("row 3") && v.text.contains("expected head"), "{}", v.text);
    assert_eq!(verify(&db, &["--expect-head", "nonsense"]).code, 1);
    println!("auditor evidence: tail deletion of 2 rows passes plain verify, reported with --expect-head");
}

#[test]
fn audit_evidence_a_recomputed_chain_is_found_by_the_key_or_the_anchor() {
    let rt = rt();
    let dir_k = tempfile::tempdir().unwrap();
    let kf = key_file(dir_k.path(), KEY);
    let kfs = kf.to_str().unwrap();

    // Unkeyed: an attacker with file access edits and recomputes; only the anchor finds it.
    let (_d, db) = fresh(&rt, None);
    let head = bin(&["audit", "head", "--db", db.to_str().unwrap()]).text.trim().to_string();
    let event = rt.block_on(forge_session_1(&db));
    assert_eq!(verify(&db, &[]).code, 3, "the edit alone is seen");
    rt.block_on(rehash_from(&db, event, ChainVersion::Unkeyed, None));
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "an unkeyed chain can be recomputed by anyone: {}", v.text);
    let v = verify(&db, &["--expect-head", &head]);
    assert_eq!(v.code, 3, "{}", v.text);
    let (hid, _) = audit::parse_head(&head).unwrap();
    assert!(v.text.contains(&format!("row {hid}")) && v.text.contains("expected head"), "{}", v.text);

    // Keyed: the same recomputation without the key is reported however it is done.
    let (_d, db) = fresh(&rt, Some(KEY));
    let clean = verify(&db, &["--key-file", kfs]);
    assert_eq!(clean.code, 0, "{}", clean.text);
    assert!(clean.text.contains("keyed (HMAC-SHA256)"), "{}", clean.text);
    let without = verify(&db, &[]);
    assert_eq!(without.code, 1, "{}", without.text);
    assert!(without.text.contains("needs the audit key"), "{}", without.text);
    let other = tempfile::tempdir().unwrap();
    let other_kf = key_file(other.path(), "another-key-of-at-least-32-bytes-000000000");

    let attacker = AuditKey::new(b"the-attacker-guesses-a-key-0123456789").unwrap();
    let attempts: [(&str, ChainVersion, Option<&AuditKey>, bool, &str); 3] = [
        ("downgraded to unkeyed from the edit", ChainVersion::Unkeyed, None, false, "weaker scheme"),
        ("re-keyed with another key from the edit", ChainVersion::Keyed, Some(&attacker), false, "HMAC"),
        ("whole chain rewritten unkeyed", ChainVersion::Unkeyed, None, true, "no row is keyed"),
    ];
    let mut found = 0;
    for (what, version, key, whole, says) in attempts {
        let (_d, db) = fresh(&rt, Some(KEY));
        let event = rt.block_on(forge_session_1(&db));
        rt.block_on(rehash_from(&db, if whole { 1 } else { event }, version, key));
        if whole {
            rt.block_on(tamper(&db, "UPDATE audit_events SET chain_version = 2 WHERE chain_version = 3"));
        }
        let v = verify(&db, &["--key-file", kfs]);
        assert_eq!(v.code, 3, "{what}: {}", v.text);
        assert!(v.text.contains("BROKEN at row") && v.text.contains(says), "{what}: {}", v.text);
        found += 1;
    }
    // The right database with the wrong key is not mistaken for an intact one.
    let (_d, db) = fresh(&rt, Some(KEY));
    let v = verify(&db, &["--key-file", other_kf.to_str().unwrap()]);
    assert_eq!(v.code, 3, "{}", v.text);
    println!("auditor evidence: recomputed unkeyed chain found by the anchor; {found} of 3 rewrites of a keyed chain found by the key");
}

#[test]
fn audit_evidence_the_daemon_keeps_a_keyed_chain_keyed() {
    let rt = rt();
    let (dir, db) = fresh(&rt, Some(KEY));
    let cfg = |name: &str, extra: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("[store]\npath = \"{}\"\n{extra}", db.display())).unwrap();
        p
    };
    let no_key = cfg("none.toml", "");
    let r = bin(&["--config", no_key.to_str().unwrap(), "migrate"]);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(r.text.contains("keyed") && r.text.contains("store.audit_key"), "{}", r.text);
    let other = tempfile::tempdir().unwrap();
    let wrong = key_file(other.path(), "another-key-of-at-least-32-bytes-000000000");
    let wrong_cfg = cfg("wrong.toml", &format!("audit_key_file = \"{}\"\n", wrong.display()));
    let r = bin(&["--config", wrong_cfg.to_str().unwrap(), "migrate"]);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(r.text.contains("not the key that wrote the chain"), "{}", r.text);
    let short_cfg = cfg("short.toml", "audit_key = \"short\"\n");
    let r = bin(&["--config", short_cfg.to_str().unwrap(), "check"]);
    assert_eq!(r.code, 1, "{}", r.text);
    assert!(r.text.contains("at least 32"), "{}", r.text);
    let right = key_file(dir.path(), KEY);
    let ok_cfg = cfg("ok.toml", &format!("audit_key_file = \"{}\"\n", right.display()));
    let r = bin(&["--config", ok_cfg.to_str().unwrap(), "migrate"]);
    assert_eq!(r.code, 0, "{}", r.text);
    // With the configuration's key, verify needs no --key-file.
    let r = bin(&["--config", ok_cfg.to_str().unwrap(), "audit", "verify"]);
    assert_eq!(r.code, 0, "{}", r.text);
    let r = bin(&["--config", ok_cfg.to_str().unwrap(), "check"]);
    assert!(r.text.contains("audit chain: keyed"), "{}", r.text);
    let r = bin(&["--config", no_key.to_str().unwrap(), "check"]);
    assert!(r.text.contains("warning: no store.audit_key"), "{}", r.text);
    // doctor says before a restart what the daemon would refuse.
    let r = bin(&["--config", no_key.to_str().unwrap(), "doctor"]);
    assert_eq!(r.code, 3, "{}", r.text);
    assert!(r.text.contains("audit chain key") && r.text.contains("no store.audit_key is configured"), "{}", r.text);
    let r = bin(&["--config", wrong_cfg.to_str().unwrap(), "doctor"]);
    assert_eq!(r.code, 3, "{}", r.text);
    assert!(r.text.contains("not the key that wrote the chain"), "{}", r.text);
    let r = bin(&["--config", ok_cfg.to_str().unwrap(), "doctor"]);
    assert!(r.text.contains("produces the HMAC of the last audit row"), "{}", r.text);
}

#[tokio::test]
async fn audit_evidence_an_old_unkeyed_chain_upgraded_then_keyed_verifies_across_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    for f in ["0001_core.sql", "0002_auditor_views.sql", "0003_match_checked.sql"] {
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/store/migrations").join(f), old.join(f))
            .unwrap();
    }
    let db = dir.path().join("old.db");
    // The database as the release before audit evidence left it: scheme-1 rows, one of
    // them recording a session.
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).create_if_missing(true);
        let p = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&p).await.unwrap();
        sqlx::query(
            "INSERT INTO sessions (vendor, external_id, technician, started_at, ended_at, raw_json, content_hash, first_seen_at, last_seen_at)
             VALUES ('teamviewer', 'old-1', 'Jon Snow', '2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', '{}', 'h', 'x', 'x')",
        )
        .execute(&p)
        .await
        .unwrap();
        let mut prev = audit::GENESIS.to_string();
        for (id, kind, sid) in [(1i64, "session_seen", Some(1i64)), (2, "test_event", None), (3, "test_event", None)] {
            let at = "2026-01-01T02:00:00.000Z";
            let h = audit::row_hash(&prev, id, at, kind, Some("teamviewer"), sid, None, None, "{}");
            sqlx::query(
                "INSERT INTO audit_events (id, at, kind, vendor, session_id, detail_json, prev_hash, hash) VALUES (?, ?, ?, 'teamviewer', ?, '{}', ?, ?)",
            )
            .bind(id)
            .bind(at)
            .bind(kind)
            .bind(sid)
            .bind(&prev)
            .bind(&h)
            .execute(&p)
            .await
            .unwrap();
            prev = h;
        }
        p.close().await;
    }
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "the old binary's chain: {}", v.text);

    // Upgraded, run a while without a key (scheme 2)...
    let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
    audit::use_key(&store, None).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    sessions::upsert(&mut tx, &session("new-1", "Sansa", 5), Some("w")).await.unwrap();
    tx.commit().await.unwrap();
    // ...then keyed (scheme 3): the first keyed row links to the last unkeyed hash.
    let status = audit::use_key(&store, Some(AuditKey::new(KEY.as_bytes()).unwrap())).await.unwrap();
    let keyed_from = status.started_keyed_at.expect("a row marks the switch");
    let mut tx = store.begin().await.unwrap();
    let (sid, _) = sessions::upsert(&mut tx, &session("new-2", "Arya", 6), Some("w")).await.unwrap();
    outbox::enqueue(
        &mut tx,
        "redmine",
        "7",
        Some(sid),
        None,
        outbox::NoteKind::SessionReport,
        "m",
        "{\"title\":\"t\"}",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let kinds: Vec<(i64, i64)> = sqlx::query_as("SELECT id, chain_version FROM audit_events ORDER BY id")
        .fetch_all(store.sqlite_pool())
        .await
        .unwrap();
    store.close().await;
    assert_eq!(&kinds[..3], &[(1, 1), (2, 1), (3, 1)]);
    assert!(kinds.iter().any(|k| k.1 == 2) && kinds.last().unwrap().1 == 3, "{kinds:?}");

    let kf = key_file(dir.path(), KEY);
    let v = verify(&db, &["--key-file", kf.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{}", v.text);
    assert!(
        v.text
            .contains(&format!("rows 1-{} unkeyed SHA-256, keyed (HMAC-SHA256) from row {keyed_from}", keyed_from - 1)),
        "{}",
        v.text
    );
    assert!(v.text.contains("2 sessions and 1 deliveries match") && v.text.contains("1 recorded before"), "{}", v.text);
    println!(
        "auditor evidence: upgraded chain of {} rows verifies across schemes 1, 2 and 3 (keyed from row {keyed_from})",
        kinds.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_evidence_backup_of_a_running_database_keeps_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
    let append = |store: Store, n: usize, tag: &'static str| async move {
        for i in 0..n {
            let mut tx = store.begin().await.unwrap();
            let s = session(&format!("{tag}-{i}-{}", uuid::Uuid::new_v4()), "Jon Snow", (i % 60) as u32);
            sessions::upsert(&mut tx, &s, Some(tag)).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    append(store.clone(), 60, "before").await;
    let wal = std::fs::metadata(dir.path().join("live.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal > 0, "the rows are in the WAL");
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(store.sqlite_pool()).await.unwrap();

    // A plain copy of the database file misses what only the WAL holds.
    let plain = dir.path().join("plain.db");
    std::fs::copy(&db, &plain).unwrap();
    let plain_rows: i64 = rusqlite::Connection::open(&plain)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap_or(0);

    // The backup runs while another connection keeps writing (until the backup is done).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                append(store.clone(), 1, "during").await;
                n += 1;
            }
            n
        }
    });
    let copy = dir.path().join("backup").join("copy.db");
    std::fs::create_dir(copy.parent().unwrap()).unwrap();
    let out = tokio::task::spawn_blocking({
        let (db, copy) = (db.clone(), copy.clone());
        move || bin(&["backup", "--db", db.to_str().unwrap(), "--to", copy.to_str().unwrap()])
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = writer.await.unwrap();
    assert_eq!(out.code, 0, "{}", out.text);
    assert!(out.text.contains("integrity ok"), "{}", out.text);

    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
    let c = rusqlite::Connection::open(&copy).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let copied: i64 = c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0)).unwrap();
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    drop(c);
    assert!(copied >= before, "the copy has the WAL's rows: {copied} < {before}");
    assert!(copied <= before + during, "one snapshot: {copied} > {before} + {during}");
    assert_eq!(mode, "delete", "a backup is one self-contained file");
    let v = verify(&copy, &[]);
    assert_eq!(v.code, 0, "{}", v.text);
    // Refuses to overwrite.
    let again = bin(&["backup", "--db", db.to_str().unwrap(), "--to", copy.to_str().unwrap()]);
    assert_eq!(again.code, 1, "{}", again.text);
    store.close().await;
    println!(
        "auditor evidence: backup during {during} concurrent commits holds {copied} sessions ({before} committed before it began; a plain cp of the file held {plain_rows}); integrity ok, audit verify ok, mode 0600"
    );
}

#[tokio::test]
async fn audit_evidence_the_daemon_logs_the_head_and_checkpoints_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let db = populate(dir.path(), None).await;
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("[store]\npath = \"{}\"\n", db.display())).unwrap();
    let head = bin(&["audit", "head", "--db", db.to_str().unwrap()]).text.trim().to_string();
    let (mut child, mut lines) = crate::support::spawn_daemon(&cfg);
    let mut logged = Vec::new();
    crate::support::read_until(&mut lines, 15, "the daemon running", &mut logged, |l| {
        l.contains("ticketsync running").then_some(())
    })
    .await;
    crate::support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    while let Some(l) = lines.next_line().await.unwrap() {
        logged.push(l);
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?} {logged:?}");
    let heads: Vec<(String, String)> = logged
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["audit_head"].as_str()?.to_string(), v["at"].as_str()?.to_string())))
        .collect();
    // The daemon matched the sessions before it stopped: the stop head is the new one.
    let after = bin(&["audit", "head", "--db", db.to_str().unwrap()]).text.trim().to_string();
    assert_ne!(head, after);
    assert_eq!(heads, vec![(head, "start".to_string()), (after, "stop".to_string())], "{logged:?}");
    let checkpoint = logged.iter().find(|l| l.contains("WAL checkpointed")).expect("checkpoint logged");
    let v: serde_json::Value = serde_json::from_str(checkpoint).unwrap();
    assert_eq!(v["busy"], 0, "{checkpoint}");
    assert_eq!(verify(&db, &[]).code, 0);
}

#[tokio::test]
async fn audit_evidence_a_writer_without_the_key_cannot_append_after_a_keyed_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = populate(dir.path(), None).await;
    // Another process keys the chain while this one has the store open without the key.
    let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
    let kf = key_file(dir.path(), KEY);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("[store]\npath = \"{}\"\naudit_key_file = \"{}\"\n", db.display(), kf.display()))
        .unwrap();
    let r = tokio::task::spawn_blocking(move || bin(&["--config", cfg.to_str().unwrap(), "migrate"])).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.text);
    let mut tx = store.begin().await.unwrap();
    let e = audit::append(&mut tx, audit::Event { kind: "test_event", ..Default::default() }).await.unwrap_err();
    drop(tx);
    assert!(e.to_string().contains("keyed"), "{e}");
    store.close().await;
    let v = verify(&db, &["--key-file", kf.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{}", v.text);
}

/// Migration 0007 (one `sessions_seen` row per page): a database whose sessions each have a
/// `session_seen` row of their own keeps verifying after the upgrade, beside sessions
/// recorded by page rows; each kind of record is still checked against what was recorded,
/// and the views show both as the same `session_seen` events.
#[tokio::test]
async fn audit_evidence_per_session_rows_and_page_rows_verify_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/store/migrations")).unwrap() {
        let name = e.unwrap().file_name();
        if name.to_str().unwrap() < "0007" {
            std::fs::copy(migration(&name), old.join(&name)).unwrap();
        }
    }
    fn migration(name: &std::ffi::OsStr) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/store/migrations").join(name)
    }
    let db = dir.path().join("v6.db");
    // As the release before 0007 wrote it: the session's own scheme-2 `session_seen` row,
    // carrying the subject of the row as inserted.
    let first = session("old-1", "Jon Snow", 1);
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).create_if_missing(true);
        let p = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&p).await.unwrap();
        let raw_hex = hex::encode(sha2::Sha256::digest(first.raw_json.as_bytes()));
        sqlx::query(
            "INSERT INTO sessions (vendor, external_id, session_code, session_code_norm, technician, technician_id, device,
             device_id, group_name, started_at, ended_at, duration_s, notes, description, custom_api, customer_name,
             customer_email, raw_json, content_hash, first_seen_at, last_seen_at)
             VALUES ('teamviewer', 'old-1', 's1-1', ?, 'Jon Snow', 'u1', 'ACME-LT-042', '1234567890', 'Helpdesk',
                     ?, ?, ?, 'printer', NULL, ?, NULL, NULL, ?, ?, 'x', 'x')",
        )
        .bind(ticketsync::session::normalize_code("s1-1"))
        .bind(ticketsync::session::ts(first.started_at))
        .bind(first.ended_at.map(ticketsync::session::ts))
        .bind(first.duration_s())
        .bind(&first.custom_api)
        .bind(&first.raw_json)
        .bind(&raw_hex)
        .execute(&p)
        .await
        .unwrap();
        let subject = audit::session_subject_of(&first, &raw_hex).hex();
        let detail = r#"{"ended":true,"external_id":"old-1","session_code":"s1-1"}"#;
        let at = "2026-11-02T10:00:00.000Z";
        let f = RowFields {
            prev: audit::GENESIS,
            id: 1,
            at,
            kind: "session_seen",
            vendor: Some("teamviewer"),
            session_id: Some(1),
            ticket_id: None,
            delivery_id: None,
            detail,
            subject: Some(&subject),
        };
        let h = audit::hash_row(ChainVersion::Unkeyed, None, &f).unwrap();
        sqlx::query(
            "INSERT INTO audit_events (id, at, kind, vendor, session_id, detail_json, prev_hash, hash, chain_version, subject_sha256)
             VALUES (1, ?, 'session_seen', 'teamviewer', 1, ?, ?, ?, 2, ?)",
        )
        .bind(at)
        .bind(detail)
        .bind(audit::GENESIS)
        .bind(&h)
        .bind(&subject)
        .execute(&p)
        .await
        .unwrap();
        p.close().await;
    }
    assert_eq!(verify(&db, &[]).code, 0, "the chain as the old release left it");

    // Upgraded: two new sessions recorded by one page row.
    let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
    audit::use_key(&store, None).await.unwrap();
    let (b, c) = (session("new-2", "Arya", 2), session("new-3", "Sansa", 3));
    let mut tx = store.begin().await.unwrap();
    sessions::upsert_many(&mut tx, &[&b, &c], Some("w"), false).await.unwrap();
    tx.commit().await.unwrap();
    sqlx::query(
        "INSERT INTO matches (session_id, ticket_id, rule, matched_at) VALUES (1, '101', 'manual', 'x'), (3, '101', 'manual', 'x')",
    )
    .execute(store.sqlite_pool())
    .await
    .unwrap();
    let chain: Vec<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT id, kind, session_id FROM audit_events ORDER BY id")
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!(chain, [(1, "session_seen".to_string(), Some(1)), (2, "sessions_seen".to_string(), None)]);
    // Both kinds read the same in the views: one `session_seen` per session, same detail.
    let events: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT session_id, event_id, kind, detail_json FROM v_session_events WHERE session_id IN (1, 2, 3)
         ORDER BY session_id",
    )
    .fetch_all(store.sqlite_pool())
    .await
    .unwrap();
    let detail = |ext: &str, code: &str| format!(r#"{{"ended":true,"external_id":"{ext}","session_code":"{code}"}}"#);
    assert_eq!(
        events,
        [
            (1, 1, "session_seen".into(), detail("old-1", "s1-1")),
            (2, 2, "session_seen".into(), detail("new-2", "s1-2")),
            (3, 2, "session_seen".into(), detail("new-3", "s1-3")),
        ]
    );
    let history: Vec<(i64, Option<i64>, String)> = sqlx::query_as(
        "SELECT event_id, session_id, kind FROM v_ticket_history WHERE ticket_id = '101' ORDER BY event_id",
    )
    .fetch_all(store.sqlite_pool())
    .await
    .unwrap();
    assert_eq!(history, [(1, Some(1), "session_seen".into()), (2, Some(3), "session_seen".into())]);
    let listed: Vec<(i64, Option<i64>, String)> =
        sqlx::query_as("SELECT id, session_id, kind FROM v_audit ORDER BY id, session_id")
            .fetch_all(store.sqlite_pool())
            .await
            .unwrap();
    assert_eq!(
        listed,
        [(1, Some(1), "session_seen".into()), (2, Some(2), "session_seen".into()), (2, Some(3), "session_seen".into())]
    );
    store.close().await;
    let v = verify(&db, &[]);
    assert_eq!(v.code, 0, "{}", v.text);
    assert!(v.text.contains("3 sessions and 0 deliveries match"), "{}", v.text);

    // Each record is still checked against the row that recorded it.
    let cases = [
        (
            "old session edited",
            "UPDATE sessions SET technician = 'Mallory' WHERE id = 1",
            "sessions row 1 (recorded by audit row 1)",
        ),
        (
            "paged session edited",
            "UPDATE sessions SET notes = 'none' WHERE id = 3",
            "sessions row 3 (recorded by audit row 2)",
        ),
        (
            "paged session re-pointed to another row",
            "UPDATE sessions SET seen_event_id = 1 WHERE id = 2",
            "sessions row 2 (recorded by audit row 1): its seen_event_id names an audit row",
        ),
        (
            "paged session unlinked",
            "UPDATE sessions SET seen_event_id = NULL WHERE id = 3",
            "no audit event records this session",
        ),
    ];
    for (what, sql, says) in cases {
        // The database with its WAL (the store's writer connection still holds it open).
        let copy = dir.path().join(format!("copy-{}.db", what.len()));
        std::fs::copy(&db, &copy).unwrap();
        let wal = |p: &Path| PathBuf::from(format!("{}-wal", p.display()));
        if wal(&db).exists() {
            std::fs::copy(wal(&db), wal(&copy)).unwrap();
        }
        tamper(&copy, sql).await;
        let v = verify(&copy, &[]);
        assert_eq!(v.code, 3, "{what}: {}", v.text);
        assert!(v.text.contains(says), "{what}: {}", v.text);
    }
}
