//! `ticketsync backup --to FILE` and the WAL checkpoint at stop.
//!
//! A plain `cp` of the database file of a running daemon misses every transaction still in
//! the `-wal` file (and may copy a page mid-write). SQLite's online backup API copies the
//! pages of one read snapshot, WAL included, while the daemon keeps writing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Result, StoreError};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub pages: i32,
    /// `PRAGMA integrity_check` of the copy ("ok").
    pub integrity: String,
    /// The copy's audit chain head `(id, hash)`.
    pub head: Option<(i64, String)>,
}

/// How long a backup waits for a lock the daemon holds before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Copy the database at `src` to `dest` (which must not exist) through the online backup
/// API, in one step (one read snapshot, so a concurrent writer cannot make it restart),
/// into a file created 0600 next to `dest` and renamed into place once it is complete and
/// passes `PRAGMA integrity_check`. The copy is a single file (rollback journal mode).
pub async fn backup(src: &Path, dest: &Path) -> Result<BackupReport> {
    let (src, dest) = (src.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || backup_blocking(&src, &dest))
        .await
        .map_err(|e| StoreError::Invalid(format!("backup task: {e}")))?
}

fn backup_blocking(src: &Path, dest: &Path) -> Result<BackupReport> {
    use rusqlite::backup::{Backup, StepResult};
    use rusqlite::{Connection, OpenFlags};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let invalid = |m: String| StoreError::Invalid(m);
    if !src.exists() {
        return Err(invalid(format!("database {} does not exist", src.display())));
    }
    if dest.exists() {
        return Err(invalid(format!("--to {}: the file exists; choose a new name", dest.display())));
    }
    let name = dest.file_name().ok_or_else(|| invalid(format!("--to {}: not a file name", dest.display())))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".partial-{}", std::process::id()));
    let tmp = dest.with_file_name(tmp_name);
    // Created 0600 before SQLite opens it: SQLite keeps the mode of an existing file and
    // gives its journal the same one, whatever the umask.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| invalid(format!("--to {}: {e}", tmp.display())))?;
    let result = (|| -> std::result::Result<BackupReport, String> {
        let db = |e: rusqlite::Error| e.to_string();
        let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| format!("{}: {e}", src.display()))?;
        from.busy_timeout(LOCK_WAIT).map_err(db)?;
        let mut to = Connection::open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let pages = {
            let b = Backup::new(&from, &mut to).map_err(db)?;
            let started = Instant::now();
            loop {
                match b.step(-1).map_err(db)? {
                    StepResult::Done => break,
                    StepResult::More => {}
                    StepResult::Busy | StepResult::Locked if started.elapsed() < LOCK_WAIT => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    other => return Err(format!("the database stayed locked for {LOCK_WAIT:?} ({other:?})")),
                }
            }
            b.progress().pagecount
        };
        drop(from);
        // The copied header says WAL; a backup is one self-contained file.
        to.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(())).map_err(db)?;
        let integrity: String = to.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(db)?;
        if integrity != "ok" {
            return Err(format!("the copy fails PRAGMA integrity_check: {integrity}"));
        }
        let head = to
            .query_row("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .map_err(db)?;
        to.close().map_err(|(_, e)| e.to_string())?;
        Ok(BackupReport { path: dest.to_path_buf(), pages, integrity, head })
    })();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(invalid(format!("backup of {} failed: {e}", src.display())));
        }
    };
    let io = |e: std::io::Error| invalid(format!("--to {}: {e}", dest.display()));
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    std::fs::rename(&tmp, dest).map_err(io)?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(report)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: at stop, so the database file alone holds every
/// committed transaction and the `-wal` file is empty. Returns (busy, wal frames,
/// checkpointed frames) as SQLite reports them; busy = 1 means a reader kept it from
/// finishing (harmless: the next open replays the WAL). `None` on PostgreSQL, which
/// checkpoints by itself.
pub async fn checkpoint(store: &super::Store) -> Result<Option<(i64, i64, i64)>> {
    let super::Backend::Sqlite { writer, .. } = store.backend() else { return Ok(None) };
    let mut conn = writer.acquire().await?;
    Ok(Some(sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await?))
}
