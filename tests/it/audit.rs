//! The audit chain: append-only in SQL, and `ticketsync audit verify` finds the first
//! edited, deleted or swapped row.

use serde_json::json;
use ticketsync::store::audit::{self, Event};

async fn chain(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let store = crate::support::temp_store(dir).await;
    for i in 0..n {
        let mut tx = store.begin().await.unwrap();
        audit::append(
            &mut tx,
            Event { kind: "test_event", ticket_id: Some("42"), detail: Some(json!({"i": i})), ..Default::default() },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    store.close().await;
    dir.join("t.db")
}

fn verify(db: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
        .args(["audit", "verify", "--db"])
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// Tampering as an attacker with file access would: drop the triggers, change rows.
fn tamper(db: &std::path::Path, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::query("DROP TRIGGER audit_events_no_update").execute(&pool).await.unwrap();
        sqlx::query("DROP TRIGGER audit_events_no_delete").execute(&pool).await.unwrap();
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

#[tokio::test]
async fn updates_and_deletes_are_refused_by_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = chain(dir.path(), 3).await;
    let pool = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db)).await.unwrap();
    let e = sqlx::query("UPDATE audit_events SET kind = 'x' WHERE id = 2").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = sqlx::query("DELETE FROM audit_events WHERE id = 2").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

#[test]
fn verify_passes_an_intact_chain_and_finds_edit_delete_swap() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fresh = |n| {
        let dir = tempfile::tempdir().unwrap();
        let db = rt.block_on(chain(dir.path(), n));
        (dir, db)
    };
    let (_d0, db) = fresh(5);
    let (code, out) = verify(&db);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit chain OK: 5 rows"), "{out}");

    let (_d1, db) = fresh(5);
    tamper(&db, "UPDATE audit_events SET detail_json = '{\"i\":99}' WHERE id = 3");
    let (code, out) = verify(&db);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("row 3") && out.contains("edited"), "{out}");

    let (_d2, db) = fresh(5);
    tamper(&db, "DELETE FROM audit_events WHERE id = 4");
    let (code, out) = verify(&db);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("row 5"), "{out}");

    let (_d3, db) = fresh(5);
    // Swap the content of rows 2 and 3, keeping ids: the chain no longer links.
    tamper(
        &db,
        "UPDATE audit_events SET id = -2 WHERE id = 2; UPDATE audit_events SET id = 2 WHERE id = 3; UPDATE audit_events SET id = 3 WHERE id = -2;",
    );
    let (code, out) = verify(&db);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("row 2"), "{out}");
}

#[test]
fn verify_reports_a_column_whose_type_was_changed() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = rt.block_on(chain(dir.path(), 4));
    // SQLite's flexible typing lets a tamperer store a blob in a text column.
    tamper(&db, "UPDATE audit_events SET ticket_id = X'3432' WHERE id = 2");
    let (code, out) = verify(&db);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("row 2") && out.contains("unreadable column"), "{out}");
}
