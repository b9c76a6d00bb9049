//! `ticketsync store copy`: the whole history of one store into another, empty one
//! (typically SQLite → PostgreSQL, issue 17 point 4), ids preserved, so that a daemon started
//! on the copy carries on from where the source stopped: same sessions, same deliveries and
//! their states (nothing delivered is queued again), same cursors, same marker key (the
//! markers already on tickets stay recognisable), same audit chain (its hashes cover the ids).
//!
//! The source is read in one snapshot; the target is written in one transaction, which
//! either holds the whole copy or nothing. Columns are taken from the source's schema and
//! must exist in the target's: both stores are at the same schema version (both are
//! migrated by this build when opened).

use super::{on_tx, Result, Store, StoreError, Tx};

/// The tables copied, in an order that satisfies the foreign keys (sessions and links
/// before deliveries, deliveries before their attempts and the audit rows naming them).
/// Not copied: `leases` (held by the instances running on the source, meaningless on the
/// target), `write_lock` (the target's own), the migrations' bookkeeping.
pub const TABLES: &[&str] = &[
    "sessions",
    "source_cursors",
    "quarantine",
    "ticket_links",
    "matches",
    "deliveries",
    "delivery_attempts",
    "time_entries",
    "time_sessions",
    "oauth_tokens",
    "oauth_states",
    "store_secrets",
    "audit_events",
];

/// Tables whose ids PostgreSQL draws from an identity sequence: after rows are inserted
/// with their own ids, the sequence is moved past them, or the next insert would collide.
const IDENTITY_TABLES: &[&str] = &["quarantine", "ticket_links", "deliveries", "delivery_attempts", "time_entries"];

/// Rows read and inserted per statement: 200 rows of `sessions` (26 columns) stay well
/// under both backends' limit of bound parameters.
const BATCH: i64 = 200;

/// The rows of one table on each side after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Blob,
}

/// One value, typed by its column so that a NULL is bound with the column's type
/// (PostgreSQL refuses a NULL typed `bigint` for a `text` column).
#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

fn kind_of(declared: &str) -> Kind {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") {
        Kind::Int
    } else if t.contains("blob") || t.contains("bytea") {
        Kind::Blob
    } else {
        Kind::Text
    }
}

/// The columns of `table` in `tx`'s database, in their declared order, with their kinds.
async fn columns(tx: &mut Tx<'_>, table: &str) -> Result<Vec<(String, Kind)>> {
    let rows: Vec<(String, String)> = on_tx!(tx, |ex, d| sqlx::query_as(d.pick(
        "SELECT name, type FROM pragma_table_info(?) ORDER BY cid",
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
    ))
    .bind(table)
    .fetch_all(ex)
    .await?);
    Ok(rows.into_iter().map(|(n, t)| (n, kind_of(&t))).collect())
}

async fn count(tx: &mut Tx<'_>, table: &str) -> Result<i64> {
    // `table` is one of TABLES, never input.
    let sql = format!("SELECT COUNT(*) FROM {table}");
    Ok(on_tx!(tx, |ex, _d| sqlx::query_scalar(&sql).fetch_one(ex).await?))
}

async fn schema_version(tx: &mut Tx<'_>) -> Result<Option<i64>> {
    Ok(on_tx!(tx, |ex, _d| sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(ex).await?))
}

/// Copy every table of [`TABLES`] from `from` into `to`, which must be migrated and hold no
/// history (its `store_secrets` are replaced by the source's: opening a store creates a
/// marker key, which no note has used yet). Returns the rows per table on both sides,
/// counted after the target's commit; the caller compares them and verifies both chains.
pub async fn copy(from: &Store, to: &Store) -> Result<Vec<TableCount>> {
    let mut src = from.snapshot().await?;
    let mut dst = to.begin().await?;
    let (sv, dv) = (schema_version(&mut src).await?, schema_version(&mut dst).await?);
    if sv != dv {
        return Err(StoreError::Invalid(format!(
            "the source is at schema version {} and the target at {}: migrate the source with this build \
             first (`ticketsync migrate`)",
            sv.unwrap_or(0),
            dv.unwrap_or(0)
        )));
    }
    for table in TABLES.iter().copied().filter(|t| *t != "store_secrets") {
        let n = count(&mut dst, table).await?;
        if n > 0 {
            return Err(StoreError::Invalid(format!(
                "the target {} is not empty: table {table} has {n} rows (copy into a new, empty database)",
                to.path()
            )));
        }
    }
    on_tx!(dst, |ex, _d| sqlx::query("DELETE FROM store_secrets").execute(ex).await?.rows_affected());

    let mut sources = Vec::with_capacity(TABLES.len());
    for table in TABLES.iter().copied() {
        let cols = columns(&mut src, table).await?;
        let target_cols = columns(&mut dst, table).await?;
        if let Some((missing, _)) = cols.iter().find(|(c, _)| !target_cols.iter().any(|(t, _)| t == c)) {
            return Err(StoreError::Invalid(format!("the target's table {table} has no column {missing}")));
        }
        copy_table(&mut src, &mut dst, table, &cols).await?;
        sources.push((table, count(&mut src, table).await?));
    }
    if to.dialect() == super::Dialect::Postgres {
        for table in IDENTITY_TABLES {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table} HAVING MAX(id) IS NOT NULL"
            );
            on_tx!(dst, |ex, _d| sqlx::query(&sql).execute(ex).await?.rows_affected());
        }
    }
    src.rollback().await?;
    dst.commit().await?;

    let mut after = to.snapshot().await?;
    let mut counts = Vec::with_capacity(sources.len());
    for (table, source) in sources {
        counts.push(TableCount { table, source, target: count(&mut after, table).await? });
    }
    after.rollback().await?;
    Ok(counts)
}

/// The rows of `table`, read in key order a batch at a time and inserted with the same
/// column list. The key: `id` where the table has one, else its first column (the primary
/// key of every other copied table), compared as each backend orders it (bytes: the
/// PostgreSQL text columns are `COLLATE "C"`).
async fn copy_table(src: &mut Tx<'_>, dst: &mut Tx<'_>, table: &str, cols: &[(String, Kind)]) -> Result<()> {
    let key = cols.iter().position(|(c, _)| c == "id").unwrap_or(0);
    let names = cols.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
    let key_name = &cols[key].0;
    let mut last: Option<Value> = None;
    loop {
        let filter = if last.is_some() { format!("WHERE {key_name} > ? ") } else { String::new() };
        let select = format!("SELECT {names} FROM {table} {filter}ORDER BY {key_name} LIMIT {BATCH}");
        let rows: Vec<Vec<Value>> = on_tx!(src, |ex, d| {
            let sql = d.sql(&select);
            let mut q = sqlx::query(&sql);
            if let Some(v) = &last {
                q = match v.clone() {
                    Value::Int(x) => q.bind(x),
                    Value::Text(x) => q.bind(x),
                    Value::Blob(x) => q.bind(x),
                };
            }
            let mut out = Vec::new();
            for row in q.fetch_all(ex).await? {
                use sqlx::Row;
                let mut vals = Vec::with_capacity(cols.len());
                for (i, (_, kind)) in cols.iter().enumerate() {
                    vals.push(match kind {
                        Kind::Int => Value::Int(row.try_get(i)?),
                        Kind::Text => Value::Text(row.try_get(i)?),
                        Kind::Blob => Value::Blob(row.try_get(i)?),
                    });
                }
                out.push(vals);
            }
            out
        });
        let Some(tail) = rows.last() else { break };
        last = Some(tail[key].clone());
        let one = format!("({})", vec!["?"; cols.len()].join(", "));
        let insert = format!("INSERT INTO {table} ({names}) VALUES {}", vec![one.as_str(); rows.len()].join(", "));
        let full = rows.len() as i64 == BATCH;
        on_tx!(dst, |ex, d| {
            let sql = d.sql(&insert);
            let mut q = sqlx::query(&sql);
            for v in rows.into_iter().flatten() {
                q = match v {
                    Value::Int(x) => q.bind(x),
                    Value::Text(x) => q.bind(x),
                    Value::Blob(x) => q.bind(x),
                };
            }
            q.execute(ex).await?;
        });
        if !full {
            break;
        }
    }
    Ok(())
}
