//! Read-only views of the history for auditors: `ticketsync audit export` (CSV or JSON
//! lines, streamed) and `ticketsync audit show --ticket ID`.
//!
//! An export carries the chain head (id and hash of the last `audit_events` row) read in the
//! same snapshot as the rows, so a copy can later be compared with `ticketsync audit verify`
//! on the database, and every exported row keeps `prev_hash` and `hash`, so each row's
//! content can be re-hashed on its own.

use std::io::Write;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::store::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone)]
pub struct Filter {
    /// Inclusive lower bound, stored timestamp format.
    pub from: String,
    /// Exclusive upper bound, stored timestamp format.
    pub to: String,
    pub vendor: Option<String>,
}

/// One exported `audit_events` row, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ExportedEvent {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub vendor: Option<String>,
    pub session_id: Option<i64>,
    pub ticket_id: Option<String>,
    pub delivery_id: Option<i64>,
    pub detail_json: String,
    pub prev_hash: String,
    pub hash: String,
    /// The row's hashing scheme (1 before audit evidence, 2 unkeyed, 3 keyed).
    #[serde(default = "legacy_version")]
    pub chain_version: i64,
    /// The hash of the session or note the event recorded (schemes 2 and 3).
    #[serde(default)]
    pub subject_sha256: Option<String>,
}

fn legacy_version() -> i64 {
    1
}

impl ExportedEvent {
    /// True when the row's content still produces its hash (a keyed row: never, without
    /// the key; see [`ExportedEvent::hash_ok_with`]).
    pub fn hash_ok(&self) -> bool {
        self.hash_ok_with(None)
    }

    /// True when the row's content still produces its hash, under `key` for a keyed row.
    pub fn hash_ok_with(&self, key: Option<&crate::store::audit::AuditKey>) -> bool {
        use crate::store::audit::{hash_row, ChainVersion, RowFields};
        let Some(version) = ChainVersion::from_i64(self.chain_version) else { return false };
        let f = RowFields {
            prev: &self.prev_hash,
            id: self.id,
            at: &self.at,
            kind: &self.kind,
            vendor: self.vendor.as_deref(),
            session_id: self.session_id,
            ticket_id: self.ticket_id.as_deref(),
            delivery_id: self.delivery_id,
            detail: &self.detail_json,
            subject: self.subject_sha256.as_deref(),
        };
        hash_row(version, key, &f).as_deref() == Some(self.hash.as_str())
    }
}

/// First line of a JSON-lines export (`"type": "export_header"`); in CSV the same keys
/// appear as `key=value` pairs on a leading `#` comment line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    #[serde(rename = "type")]
    pub kind: String,
    pub format_version: u32,
    pub exported_at: String,
    pub from: String,
    pub to: String,
    pub vendor: Option<String>,
    /// Rows in the whole chain when the export was taken, and the hash of the last one:
    /// `ticketsync audit verify` prints the same hash for an untouched database.
    pub chain_rows: i64,
    pub chain_head_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub header: Header,
}

/// `2026-11-01` (a whole day: as `--from` its start, as `--to` the start of the next day)
/// or an RFC 3339 time; returned in the stored format, so text comparison is time order.
pub fn parse_bound(s: &str, is_end: bool) -> std::result::Result<String, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if is_end { d.succ_opt().ok_or("date out of range")? } else { d };
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(crate::session::ts(t));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| crate::session::ts(t.with_timezone(&chrono::Utc)))
        .map_err(|_| format!("{s:?}: expected a date (2026-11-01) or an RFC 3339 time (2026-11-01T08:00:00Z)"))
}

const SELECT: &str = "SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash,
    chain_version, subject_sha256 FROM audit_events WHERE at >= ? AND at < ?";

/// Stream the matching rows to `out`. One read transaction: the header's chain head and the
/// rows come from the same snapshot even while the daemon appends. Memory stays constant.
pub async fn export(pool: &sqlx::SqlitePool, filter: &Filter, format: Format, out: &mut dyn Write) -> Result<Summary> {
    let mut tx = pool.begin().await?;
    let head = crate::store::audit::head_in(&mut tx).await?;
    let header = Header {
        kind: "export_header".into(),
        format_version: 2, // 2: rows carry chain_version and subject_sha256
        exported_at: crate::store::now(),
        from: filter.from.clone(),
        to: filter.to.clone(),
        vendor: filter.vendor.clone(),
        chain_rows: head.as_ref().map(|h| h.0).unwrap_or(0),
        chain_head_hash: head.map(|h| h.1).unwrap_or_else(|| crate::store::audit::GENESIS.to_string()),
    };
    let io = |e: std::io::Error| StoreError::Invalid(format!("writing the export: {e}"));
    // Vendor: the event's own vendor, or the vendor of the session it concerns (delivery
    // events carry the session, not the vendor).
    let sql = match filter.vendor {
        Some(_) => {
            format!("{SELECT} AND (vendor = ? OR session_id IN (SELECT id FROM sessions WHERE vendor = ?)) ORDER BY id")
        }
        None => format!("{SELECT} ORDER BY id"),
    };
    let mut q = sqlx::query_as::<_, ExportedEvent>(&sql).bind(&filter.from).bind(&filter.to);
    if let Some(v) = &filter.vendor {
        q = q.bind(v).bind(v);
    }
    let mut rows = q.fetch(&mut *tx);
    let mut n = 0u64;
    match format {
        Format::Jsonl => {
            serde_json::to_writer(&mut *out, &header).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
            #[derive(Serialize)]
            struct Line<'a> {
                #[serde(rename = "type")]
                kind: &'static str,
                #[serde(flatten)]
                ev: &'a ExportedEvent,
            }
            while let Some(ev) = rows.try_next().await? {
                serde_json::to_writer(&mut *out, &Line { kind: "event", ev: &ev }).map_err(|e| io(e.into()))?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
            }
            writeln!(out, "{}", serde_json::json!({"type": "export_end", "rows": n})).map_err(io)?;
        }
        Format::Csv => {
            writeln!(out, "# {}", csv_comment(&header)).map_err(io)?;
            let mut w = csv::Writer::from_writer(&mut *out);
            while let Some(ev) = rows.try_next().await? {
                w.serialize(&ev).map_err(|e| io(e.into()))?;
                n += 1;
            }
            if n == 0 {
                // serde writes the header row with the first record; an empty export still has it.
                w.write_record(CSV_COLUMNS).map_err(|e| io(e.into()))?;
            }
            w.flush().map_err(io)?;
            drop(w);
            writeln!(out, "# export_end rows={n}").map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    drop(rows);
    tx.rollback().await?;
    Ok(Summary { rows: n, header })
}

pub const CSV_COLUMNS: [&str; 12] = [
    "id",
    "at",
    "kind",
    "vendor",
    "session_id",
    "ticket_id",
    "delivery_id",
    "detail_json",
    "prev_hash",
    "hash",
    "chain_version",
    "subject_sha256",
];

fn csv_comment(h: &Header) -> String {
    format!(
        "ticketsync audit export format_version={} exported_at={} from={} to={} vendor={} chain_rows={} chain_head_hash={}",
        h.format_version,
        h.exported_at,
        h.from,
        h.to,
        h.vendor.as_deref().unwrap_or("*"),
        h.chain_rows,
        h.chain_head_hash
    )
}

/// The `key=value` pairs of a CSV export's leading comment line.
pub fn parse_csv_comment(line: &str) -> std::collections::HashMap<String, String> {
    line.trim_start_matches('#')
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// `ticketsync audit show --ticket ID`: sessions, deliveries with attempts, history.
pub async fn show_ticket(pool: &sqlx::SqlitePool, ticket: &str, out: &mut dyn Write) -> Result<bool> {
    let io = |e: std::io::Error| StoreError::Invalid(format!("writing: {e}"));
    type S =
        (String, String, Option<String>, Option<String>, Option<String>, String, Option<String>, Option<i64>, String);
    let sessions: Vec<S> = sqlx::query_as(
        "SELECT vendor, external_id, session_code, technician, device, started_at, ended_at, duration_s, rule
         FROM v_sessions_by_ticket WHERE ticket_id = ? ORDER BY started_at",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await?;
    type D = (i64, String, String, String, i64, Option<String>, Option<String>);
    let deliveries: Vec<D> = sqlx::query_as(
        "SELECT delivery_id, sink, kind, state, attempts, remote_ref, last_error FROM v_deliveries WHERE ticket_id = ? ORDER BY delivery_id",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await?;
    type A = (i64, i64, String, Option<String>, Option<String>, Option<String>);
    let attempts: Vec<A> = sqlx::query_as(
        "SELECT delivery_id, attempt, started_at, finished_at, outcome, detail FROM v_delivery_attempts WHERE ticket_id = ?
         ORDER BY delivery_id, attempt",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await?;
    type H = (i64, String, String, Option<i64>, Option<i64>, String);
    let history: Vec<H> = sqlx::query_as(
        "SELECT event_id, at, kind, session_id, delivery_id, detail_json FROM v_ticket_history WHERE ticket_id = ? ORDER BY event_id",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await?;
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    writeln!(out, "Ticket {ticket}").map_err(io)?;
    writeln!(out, "\nSessions ({}):", sessions.len()).map_err(io)?;
    for (vendor, ext, code, tech, device, start, end, dur, rule) in &sessions {
        writeln!(
            out,
            "  {vendor} {} technician={} device={} start={start} end={} duration={} rule={rule}",
            code.clone().unwrap_or_else(|| ext.clone()),
            dash(tech),
            dash(device),
            dash(end),
            dur.map(|d| format!("{d}s")).unwrap_or_else(|| "-".into()),
        )
        .map_err(io)?;
    }
    writeln!(out, "\nDeliveries ({}):", deliveries.len()).map_err(io)?;
    for (id, sink, kind, state, n, remote, err) in &deliveries {
        writeln!(out, "  #{id} {sink} {kind}: {state} after {n} attempt(s) remote={} {}", dash(remote), dash(err))
            .map_err(io)?;
        for (_, attempt, started, finished, outcome, detail) in attempts.iter().filter(|a| a.0 == *id) {
            writeln!(
                out,
                "      attempt {attempt}: {started} → {} {} {}",
                dash(finished),
                dash(outcome),
                detail.clone().unwrap_or_default()
            )
            .map_err(io)?;
        }
    }
    writeln!(out, "\nHistory ({} events):", history.len()).map_err(io)?;
    for (id, at, kind, sid, did, detail) in &history {
        let s = sid.map(|v| format!(" session={v}")).unwrap_or_default();
        let d = did.map(|v| format!(" delivery={v}")).unwrap_or_default();
        writeln!(out, "  {id:>6} {at} {kind}{s}{d} {detail}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(!(sessions.is_empty() && deliveries.is_empty() && history.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_take_whole_days_and_rfc3339() {
        assert_eq!(parse_bound("2026-11-01", false).unwrap(), "2026-11-01T00:00:00.000Z");
        assert_eq!(parse_bound("2026-11-30", true).unwrap(), "2026-12-01T00:00:00.000Z");
        assert_eq!(parse_bound("2026-11-01T09:30:00+01:00", false).unwrap(), "2026-11-01T08:30:00.000Z");
        assert!(parse_bound("yesterday", false).unwrap_err().contains("yesterday"));
    }
}
