//! The time pass (issue 20): turn the matched sessions waiting on a sink with a time policy
//! into time entries, one per session or per group of reconnects of one session code, and
//! queue each as a delivery (`store::time::enqueue_entry`).
//!
//! Grouping is deterministic and durable. The sessions still `open` on a sink are grouped
//! by (ticket, vendor, session code, billing class), in start order: a session joins the
//! group before it when it starts at most `time_merge_gap_minutes` after the group's latest
//! end. A group is **closed** when that gap has elapsed since its latest end (by this
//! instance's clock) and no session of its code that started within the gap is still
//! running; only then is it decided, in one transaction that moves its members from `open`
//! to `entered`, so a crash before leaves them open for the next pass, and a crash after
//! leaves the entry queued. A session reported after its group was closed is a group of its
//! own (its own entry): nothing is ever billed twice, and an entry never changes once queued.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::marker::MarkerKey;
use crate::store::time::{self as st, OpenSession};
use crate::store::{Store, StoreError};
use ticketsync_model::time_entry::{Billing, BillingState, TimeEntry, TimePolicy};

/// Each sink's time policy and technician map (technician in lower case → user id).
pub type TimePolicies = HashMap<String, (TimePolicy, BTreeMap<String, String>)>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimeStats {
    /// Entries queued.
    pub queued: u64,
    /// Sessions skipped by policy.
    pub skipped: u64,
    /// Groups left open (their gap has not elapsed, or a reconnect is running).
    pub waiting: u64,
}

/// How a vendor's session counts for billing: TeamViewer's `billing_state` from its record.
pub fn billing_state(vendor: &str, raw_json: &str) -> BillingState {
    if !vendor.eq_ignore_ascii_case("teamviewer") {
        return BillingState::Unknown;
    }
    let v: serde_json::Value = serde_json::from_str(raw_json).unwrap_or_default();
    BillingState::from_teamviewer(v.get("billing_state").and_then(serde_json::Value::as_str))
}

/// One pass over every sink with a policy, at `now`. Sinks without one have their waiting
/// sessions turned `off` (turning the policy on later bills new matches only).
pub async fn close_groups(
    store: &Store,
    policies: &TimePolicies,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<TimeStats, StoreError> {
    let mut names: Vec<String> = policies.keys().cloned().collect();
    names.sort();
    st::turn_off_others(store, &names).await?;
    let mut stats = TimeStats::default();
    let key = store.marker_key().clone();
    for sink in &names {
        let (policy, technicians) = &policies[sink];
        let open = st::open_sessions(store, sink).await?;
        let mut skip = Vec::new();
        let mut groups: Vec<(bool, Vec<&OpenSession>)> = Vec::new();
        for s in &open {
            let billable = match policy.billing(&s.vendor, billing_state(&s.vendor, &s.raw_json)) {
                Billing::Skip => {
                    skip.push(s.report_id);
                    continue;
                }
                Billing::Billable => true,
                Billing::NonBillable => false,
            };
            // The rows come ordered by ticket, vendor, code and start: a group is extended
            // only by the next session of the same key within the gap of its latest end.
            let joins = |(b, g): &(bool, Vec<&OpenSession>)| {
                let last = g.last().expect("groups are never empty");
                let end = g.iter().map(|x| x.ended_at).max().expect("not empty");
                *b == billable
                    && last.ticket_id == s.ticket_id
                    && last.vendor == s.vendor
                    && s.session_code_norm.is_some()
                    && last.session_code_norm == s.session_code_norm
                    && s.started_at <= end + policy.merge_gap
            };
            match groups.iter_mut().rev().find(|g| joins(g)) {
                Some((_, g)) => g.push(s),
                None => groups.push((billable, vec![s])),
            }
        }
        if !skip.is_empty() {
            stats.skipped +=
                st::skip(store, &skip, "TeamViewer billing_state DoNotBill (time_do_not_bill = \"skip\")").await?;
        }
        for (billable, g) in groups {
            let end = g.iter().map(|x| x.ended_at).max().expect("not empty");
            let closes_at = end + policy.merge_gap;
            let running = match g[0].session_code_norm.as_deref() {
                Some(code) => st::running_with_code(store, &g[0].vendor, code, &crate::session::ts(closes_at)).await?,
                None => false,
            };
            if now <= closes_at || running {
                stats.waiting += 1;
                continue;
            }
            if queue_group(store, sink, policy, technicians, tz, &key, billable, &g).await?.is_some() {
                stats.queued += 1;
            }
        }
    }
    Ok(stats)
}

/// The seconds covered by the sessions' intervals (overlapping reconnects counted once).
fn covered_seconds(g: &[&OpenSession]) -> i64 {
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = g.iter().map(|s| (s.started_at, s.ended_at)).collect();
    spans.sort();
    let mut total = 0;
    let mut cur: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for (a, b) in spans {
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += (cb - ca).num_seconds().max(0);
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = cur {
        total += (b - a).num_seconds().max(0);
    }
    total
}

fn vendor_title(vendor: &str) -> &str {
    match vendor {
        "teamviewer" => "TeamViewer",
        "splashtop" => "Splashtop",
        "zoom" => "Zoom",
        "visioconference" => "visioconference.me",
        v => v,
    }
}

#[allow(clippy::too_many_arguments)]
async fn queue_group(
    store: &Store,
    sink: &str,
    policy: &TimePolicy,
    technicians: &BTreeMap<String, String>,
    tz: chrono_tz::Tz,
    key: &MarkerKey,
    billable: bool,
    g: &[&OpenSession],
) -> Result<Option<i64>, StoreError> {
    let first = g[0];
    let end = g.iter().map(|x| x.ended_at).max().expect("not empty");
    let raw_seconds = covered_seconds(g);
    let minutes = policy.billed_minutes(raw_seconds);
    let lookup = |k: Option<&str>| k.and_then(|k| technicians.get(&k.trim().to_lowercase())).cloned();
    let user = lookup(first.technician.as_deref()).or_else(|| lookup(first.technician_id.as_deref()));
    let email = [first.technician.as_deref(), first.technician_id.as_deref()]
        .into_iter()
        .flatten()
        .find(|t| t.contains('@') && !t.contains(char::is_whitespace))
        .map(str::to_string);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz);
    let code = first.session_code.as_deref().unwrap_or(&first.external_id);
    let connections = if g.len() == 1 { "1 connection".to_string() } else { format!("{} connections", g.len()) };
    let summary = format!(
        "{} session {code}: {connections}, {}–{} {}, {} in session, {} min billed{}",
        vendor_title(&first.vendor),
        local(first.started_at).format("%Y-%m-%d %H:%M"),
        local(end).format("%H:%M"),
        local(end).format("%Z"),
        crate::note::human_duration(raw_seconds),
        minutes,
        if billable { "" } else { " (non-billable)" },
    );
    let marker = key.marker(&first.vendor, &first.external_id, "time");
    let entry = TimeEntry {
        started_at: first.started_at,
        ended_at: end,
        spent_on: local(first.started_at).date_naive(),
        raw_seconds,
        minutes,
        billable,
        technician: first.technician.clone(),
        technician_email: email,
        user: user.clone(),
        summary,
        marker: marker.clone(),
    };
    let json = serde_json::to_string(&entry).expect("entries serialize");
    let report_ids: Vec<i64> = g.iter().map(|s| s.report_id).collect();
    let (started, ended) = (crate::session::ts(first.started_at), crate::session::ts(end));
    let id = st::enqueue_entry(
        store,
        &st::NewTimeEntry {
            sink,
            ticket_id: &first.ticket_id,
            vendor: &first.vendor,
            session_code: first.session_code.as_deref(),
            report_ids: &report_ids,
            first_session_id: first.session_id,
            started_at: &started,
            ended_at: &ended,
            raw_seconds,
            minutes,
            billable,
            technician: first.technician.as_deref(),
            ticket_user: user.as_deref(),
            marker: &marker,
            entry_json: &json,
        },
    )
    .await?;
    if let Some(id) = id {
        tracing::info!(delivery = id, sink, ticket = %first.ticket_id, sessions = g.len(), minutes, billable, "time entry queued");
    }
    Ok(id)
}
