//! Read-only views of the history for auditors: `ticketsync audit export` (CSV or JSON
//! lines, streamed) and `ticketsync audit show --ticket ID`.
//!
//! An export carries the chain head (id and hash of the last `audit_events` row) read in the
//! same snapshot as the rows, so a copy can later be compared with `ticketsync audit verify`
//! on the database, and every exported row keeps `prev_hash` and `hash`, so each row's
//! content can be re-hashed on its own.
//!
//! JSON lines carry the head in a first `export_header` line and the row count in a last
//! `export_end` line. CSV is pure RFC 4180 (a column row, then the rows: any CSV reader
//! takes it as it is); its head, row count and SHA-256 go into a sidecar [`Meta`]
//! (`<file>.meta.json`, or standard error when the CSV goes to standard output).

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::store::history::{EventRange, ExportItem};
use crate::store::{Result, Store, StoreError};

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

/// One exported `audit_events` row, exactly as stored (read by the store).
pub use crate::store::history::ExportedEvent;

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

/// What a CSV export's sidecar holds (`"type": "export_meta"`): the header's fields, the row
/// count and the SHA-256 of the CSV file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(flatten)]
    pub header: Header,
    pub rows: u64,
    pub sha256: String,
}

impl Summary {
    /// The sidecar of a CSV export whose bytes hash to `sha256` (hex).
    pub fn meta(&self, sha256: String) -> Meta {
        Meta { header: Header { kind: "export_meta".into(), ..self.header.clone() }, rows: self.rows, sha256 }
    }
}

/// A writer that hashes (SHA-256) what it passes on, for the sidecar of a CSV export: put it
/// under any rewriting writer (the redactor), so the hash is that of the bytes stored.
pub struct HashingWriter<W> {
    inner: W,
    digest: std::sync::Arc<std::sync::Mutex<sha2::Sha256>>,
}

impl<W: Write> HashingWriter<W> {
    /// The writer, and the handle to read the digest from once the writer is flushed and dropped.
    pub fn new(inner: W) -> (Self, std::sync::Arc<std::sync::Mutex<sha2::Sha256>>) {
        let digest = std::sync::Arc::new(std::sync::Mutex::new(<sha2::Sha256 as sha2::Digest>::new()));
        (HashingWriter { inner, digest: digest.clone() }, digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut *self.digest.lock().unwrap_or_else(|e| e.into_inner()), &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The hex SHA-256 of everything a [`HashingWriter`] passed on.
pub fn hex_digest(d: &std::sync::Mutex<sha2::Sha256>) -> String {
    hex::encode(sha2::Digest::finalize(d.lock().unwrap_or_else(|e| e.into_inner()).clone()))
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

/// Stream the matching rows to `out`. One read transaction: the header's chain head and the
/// rows come from the same snapshot even while the daemon appends. Memory stays constant.
pub async fn export(store: &Store, filter: &Filter, format: Format, out: &mut dyn Write) -> Result<Summary> {
    let io = |e: std::io::Error| StoreError::Invalid(format!("writing the export: {e}"));
    if filter.from >= filter.to {
        return Err(StoreError::Invalid(format!(
            "the range is empty: --from {} is not before --to {} (--to is exclusive; a date as --to means the end of that day)",
            filter.from, filter.to
        )));
    }
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        ev: &'a ExportedEvent,
    }
    enum Out<'w> {
        Jsonl(&'w mut dyn Write),
        /// Until the header comment line is written: then [`Out::Csv`].
        CsvHeader(Option<&'w mut dyn Write>),
        Csv(Box<csv::Writer<&'w mut dyn Write>>),
    }
    let mut sink = match format {
        Format::Jsonl => Out::Jsonl(out),
        Format::Csv => Out::CsvHeader(Some(out)),
    };
    let mut header = None;
    let mut n = 0u64;
    let range = EventRange { from: &filter.from, to: &filter.to, vendor: filter.vendor.as_deref() };
    crate::store::history::export_events(store, range, |item| {
        match (item, &mut sink) {
            (ExportItem::Head(head), sink) => {
                let h = Header {
                    kind: "export_header".into(),
                    // 2: rows carry chain_version and subject_sha256; 3: CSV without comment
                    // lines, its head in the sidecar.
                    format_version: 3,
                    exported_at: crate::store::now(),
                    from: filter.from.clone(),
                    to: filter.to.clone(),
                    vendor: filter.vendor.clone(),
                    chain_rows: head.as_ref().map(|h| h.0).unwrap_or(0),
                    chain_head_hash: head.map(|h| h.1).unwrap_or_else(|| crate::store::audit::GENESIS.to_string()),
                };
                match sink {
                    Out::Jsonl(out) => {
                        serde_json::to_writer(&mut **out, &h).map_err(|e| io(e.into()))?;
                        out.write_all(b"\n").map_err(io)?;
                    }
                    Out::CsvHeader(out) => {
                        let out = out.take().expect("one chain head per export");
                        *sink = Out::Csv(Box::new(csv::Writer::from_writer(out)));
                    }
                    Out::Csv(_) => unreachable!("one chain head per export"),
                }
                header = Some(h);
            }
            (ExportItem::Event(ev), Out::Jsonl(out)) => {
                serde_json::to_writer(&mut **out, &Line { kind: "event", ev }).map_err(|e| io(e.into()))?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
            }
            (ExportItem::Event(ev), Out::Csv(w)) => {
                w.serialize(ev).map_err(|e| io(e.into()))?;
                n += 1;
            }
            (ExportItem::Event(_), Out::CsvHeader(_)) => unreachable!("the chain head comes first"),
        }
        Ok(())
    })
    .await?;
    let header = header.ok_or_else(|| StoreError::Invalid("the export read no chain head".into()))?;
    let out = match sink {
        Out::Jsonl(out) => {
            writeln!(out, "{}", serde_json::json!({"type": "export_end", "rows": n})).map_err(io)?;
            out
        }
        Out::CsvHeader(_) => unreachable!("export_events always reports the chain head"),
        Out::Csv(mut w) => {
            if n == 0 {
                // serde writes the header row with the first record; an empty export still has it.
                w.write_record(CSV_COLUMNS).map_err(|e| io(e.into()))?;
            }
            w.flush().map_err(io)?;
            (*w).into_inner().map_err(|e| io(e.into_error()))?
        }
    };
    out.flush().map_err(io)?;
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

/// `ticketsync audit show --ticket ID`: sessions, deliveries with attempts, history.
/// How `audit show` prints: every record or the most recent, as text or JSON lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Show {
    /// The N most recent of each part (sessions, deliveries, events).
    pub limit: Option<u32>,
    /// One JSON object per line instead of the text.
    pub json: bool,
}

/// `audit show`: what is recorded about `ticket`, written to `out`; false when nothing is.
pub async fn show_ticket(store: &Store, ticket: &str, how: Show, out: &mut dyn Write) -> Result<bool> {
    let r = crate::store::history::ticket_record_recent(store, ticket, how.limit).await?;
    if how.json {
        show_json(&r, ticket, out)?;
    } else {
        show_text(&r, ticket, out)?;
    }
    Ok(!r.is_empty())
}

/// One line per session, delivery (its attempts inside) and event, each tagged `record`.
fn show_json(r: &crate::store::history::TicketRecord, ticket: &str, out: &mut dyn Write) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Invalid(format!("writing: {e}"));
    let line = |v: serde_json::Value, out: &mut dyn Write| writeln!(out, "{v}").map_err(io);
    let tagged = |record: &str, v: serde_json::Value| {
        let mut o = serde_json::Map::new();
        o.insert("record".into(), record.into());
        o.insert("ticket_id".into(), ticket.into());
        if let serde_json::Value::Object(m) = v {
            o.extend(m);
        }
        serde_json::Value::Object(o)
    };
    fn value<T: Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).expect("records serialize")
    }
    for s in &r.sessions {
        line(tagged("session", value(s)), out)?;
    }
    for d in &r.deliveries {
        let mut v = tagged("delivery", value(d));
        let attempts: Vec<serde_json::Value> =
            r.attempts.iter().filter(|a| a.delivery_id == d.delivery_id).map(value).collect();
        v["attempts"] = attempts.into();
        line(v, out)?;
    }
    for h in &r.history {
        let mut v = tagged("event", value(h));
        // The detail as JSON, not as a string holding JSON.
        if let Ok(d) = serde_json::from_str::<serde_json::Value>(&h.detail_json) {
            v["detail"] = d;
            v.as_object_mut().expect("an object").remove("detail_json");
        }
        line(v, out)?;
    }
    out.flush().map_err(io)
}

fn show_text(r: &crate::store::history::TicketRecord, ticket: &str, out: &mut dyn Write) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Invalid(format!("writing: {e}"));
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    writeln!(out, "Ticket {ticket}").map_err(io)?;
    writeln!(out, "\nSessions ({}):", r.sessions.len()).map_err(io)?;
    for s in &r.sessions {
        writeln!(
            out,
            "  {} {} technician={} device={} start={} end={} duration={} rule={}",
            s.vendor,
            s.session_code.clone().unwrap_or_else(|| s.external_id.clone()),
            dash(&s.technician),
            dash(&s.device),
            s.started_at,
            dash(&s.ended_at),
            s.duration_s.map(|d| format!("{d}s")).unwrap_or_else(|| "-".into()),
            s.rule,
        )
        .map_err(io)?;
    }
    writeln!(out, "\nDeliveries ({}):", r.deliveries.len()).map_err(io)?;
    for d in &r.deliveries {
        writeln!(
            out,
            "  #{} {} {}: {} after {} attempt(s) remote={} {}",
            d.delivery_id,
            d.sink,
            d.kind,
            d.state,
            d.attempts,
            dash(&d.remote_ref),
            dash(&d.last_error)
        )
        .map_err(io)?;
        for a in r.attempts.iter().filter(|a| a.delivery_id == d.delivery_id) {
            writeln!(
                out,
                "      attempt {}: {} → {} {} {}",
                a.attempt,
                a.started_at,
                dash(&a.finished_at),
                dash(&a.outcome),
                a.detail.clone().unwrap_or_default()
            )
            .map_err(io)?;
        }
    }
    writeln!(out, "\nHistory ({} events):", r.history.len()).map_err(io)?;
    for h in &r.history {
        let s = h.session_id.map(|v| format!(" session={v}")).unwrap_or_default();
        let d = h.delivery_id.map(|v| format!(" delivery={v}")).unwrap_or_default();
        writeln!(out, "  {:>6} {} {}{s}{d} {}", h.event_id, h.at, h.kind, h.detail_json).map_err(io)?;
    }
    out.flush().map_err(io)
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

/// What `--kind` exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportKind {
    /// The audit chain's events (the default).
    #[default]
    Events,
    /// The time entries (`v_time_entries`) whose work started in the range, for a billing
    /// clerk to reconcile with the ticket system's invoice (issue 20).
    TimeEntries,
}

/// One exported time entry: the `v_time_entries` row, `minutes_raw` to the hundredth.
#[derive(Debug, Clone, Serialize)]
struct TimeEntryLine {
    time_entry_id: i64,
    delivery_id: i64,
    sink: String,
    ticket_id: String,
    vendor: String,
    session_code: Option<String>,
    external_id: String,
    sessions: i64,
    started_at: String,
    ended_at: String,
    raw_seconds: i64,
    minutes_raw: String,
    minutes_billed: i64,
    billable: bool,
    technician: Option<String>,
    ticket_user: Option<String>,
    state: String,
    last_error: Option<String>,
    remote_ref: Option<String>,
    delivered_at: Option<String>,
}

/// The CSV columns of `--kind time-entries`, in order.
pub const TIME_ENTRY_COLUMNS: [&str; 20] = [
    "time_entry_id",
    "delivery_id",
    "sink",
    "ticket_id",
    "vendor",
    "session_code",
    "external_id",
    "sessions",
    "started_at",
    "ended_at",
    "raw_seconds",
    "minutes_raw",
    "minutes_billed",
    "billable",
    "technician",
    "ticket_user",
    "state",
    "last_error",
    "remote_ref",
    "delivered_at",
];

/// `audit export --kind time-entries`: the entries whose work started in `[from, to)`, as
/// RFC 4180 CSV (a column row, then a row per entry) or JSON lines; the rows written.
pub async fn export_time_entries(store: &Store, filter: &Filter, format: Format, out: &mut dyn Write) -> Result<u64> {
    let io = |e: std::io::Error| StoreError::Invalid(format!("writing the export: {e}"));
    let rows = crate::store::time::list(store, Some(&filter.from), Some(&filter.to)).await?;
    let lines = rows.into_iter().filter(|r| filter.vendor.as_deref().is_none_or(|v| v.eq_ignore_ascii_case(&r.vendor)));
    let lines: Vec<TimeEntryLine> = lines
        .map(|r| TimeEntryLine {
            minutes_raw: format!("{:.2}", r.raw_seconds as f64 / 60.0),
            billable: r.billable != 0,
            time_entry_id: r.time_entry_id,
            delivery_id: r.delivery_id,
            sink: r.sink,
            ticket_id: r.ticket_id,
            vendor: r.vendor,
            session_code: r.session_code,
            external_id: r.external_id,
            sessions: r.sessions,
            started_at: r.started_at,
            ended_at: r.ended_at,
            raw_seconds: r.raw_seconds,
            minutes_billed: r.minutes_billed,
            technician: r.technician,
            ticket_user: r.ticket_user,
            state: r.state,
            last_error: r.last_error,
            remote_ref: r.remote_ref,
            delivered_at: r.delivered_at,
        })
        .collect();
    match format {
        Format::Jsonl => {
            for l in &lines {
                serde_json::to_writer(&mut *out, l).map_err(|e| io(e.into()))?;
                writeln!(out).map_err(io)?;
            }
        }
        Format::Csv => {
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(&mut *out);
            w.write_record(TIME_ENTRY_COLUMNS).map_err(|e| io(e.into()))?;
            for l in &lines {
                w.serialize(l).map_err(|e| io(e.into()))?;
            }
            w.flush().map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    Ok(lines.len() as u64)
}
