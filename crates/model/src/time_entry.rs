//! A billable time entry (issue 20): the time a technician spent in one session, or in a
//! group of reconnects of the same session code, written onto the session's ticket where
//! the ticket system tracks time. It is a delivery like a note (same outbox, same states,
//! same marker scan before any re-send); this module holds what it says and the policy that
//! decides it. No I/O here.
//!
//! The entry is built once, when its group is closed, and stored as JSON in the outbox row
//! (`deliveries.note_json`, kind `time_entry`), as a note is: a retry days later sends
//! exactly what was decided then.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// How a vendor classified a session for billing, where it says (TeamViewer's
/// `billing_state`); other vendors say nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingState {
    /// TeamViewer `Bill` or `Billed`.
    Bill,
    /// TeamViewer `DoNotBill`.
    DoNotBill,
    /// The vendor does not classify sessions (Splashtop, Zoom), or the value is missing.
    Unknown,
}

impl BillingState {
    /// TeamViewer's `billing_state` text (case and spaces ignored: the API documents
    /// `Bill`, `Billed`, `DoNotBill`).
    pub fn from_teamviewer(s: Option<&str>) -> BillingState {
        let folded: String =
            s.unwrap_or("").chars().filter(|c| c.is_ascii_alphanumeric()).flat_map(|c| c.to_lowercase()).collect();
        match folded.as_str() {
            "bill" | "billed" => BillingState::Bill,
            "donotbill" => BillingState::DoNotBill,
            _ => BillingState::Unknown,
        }
    }
}

/// What a `DoNotBill` session becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoNotBill {
    /// An entry marked non-billable (the time was spent; the clerk sees it and does not bill it).
    #[default]
    NonBillable,
    /// No entry at all.
    Skip,
}

/// A sink's time-entry policy, as configured (`time_*` keys of the sink's section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePolicy {
    /// Billed minutes are rounded up to a multiple of this (default 15; 1 = exact minutes).
    pub round_minutes: i64,
    /// No entry is shorter than this many minutes (default 15).
    pub minimum_minutes: i64,
    /// Sessions of one session code whose start follows the previous one's end by at most
    /// this much are one entry (default 10 minutes); also how long after a group's last end
    /// it is closed and queued.
    pub merge_gap: chrono::Duration,
    pub do_not_bill: DoNotBill,
    /// Sources whose sessions are non-billable unless TeamViewer says `Bill`
    /// (`time_non_billable_sources`); by default every source's sessions are billable.
    pub non_billable_sources: Vec<String>,
}

impl Default for TimePolicy {
    fn default() -> Self {
        TimePolicy {
            round_minutes: 15,
            minimum_minutes: 15,
            merge_gap: chrono::Duration::minutes(10),
            do_not_bill: DoNotBill::NonBillable,
            non_billable_sources: Vec::new(),
        }
    }
}

/// Whether a session counts, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    Billable,
    NonBillable,
    /// No entry (a `DoNotBill` session under `time_do_not_bill = "skip"`).
    Skip,
}

impl TimePolicy {
    /// Billed minutes for `raw_seconds` of work: rounded up to `round_minutes`, at least
    /// `minimum_minutes` (itself rounded up), never below the raw time.
    pub fn billed_minutes(&self, raw_seconds: i64) -> i64 {
        let round = self.round_minutes.max(1);
        let raw_minutes = (raw_seconds.max(0) + 59) / 60;
        // Up to the next multiple of `round` (i64's `div_ceil` is not stable).
        let up = |m: i64| (m + round - 1) / round * round;
        up(raw_minutes).max(up(self.minimum_minutes.max(0)))
    }

    /// How a session of `vendor` with `state` counts under this policy.
    pub fn billing(&self, vendor: &str, state: BillingState) -> Billing {
        match state {
            BillingState::Bill => Billing::Billable,
            BillingState::DoNotBill => match self.do_not_bill {
                DoNotBill::NonBillable => Billing::NonBillable,
                DoNotBill::Skip => Billing::Skip,
            },
            BillingState::Unknown if self.non_billable_sources.iter().any(|s| s.eq_ignore_ascii_case(vendor)) => {
                Billing::NonBillable
            }
            BillingState::Unknown => Billing::Billable,
        }
    }
}

/// The entry a sink receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeEntry {
    /// Start of the first session of the group.
    pub started_at: DateTime<Utc>,
    /// End of the last session of the group.
    pub ended_at: DateTime<Utc>,
    /// The day the work was done, in the notes' time zone (Redmine's `spent_on`).
    pub spent_on: NaiveDate,
    /// Seconds spent in the group's sessions (gaps between reconnects not counted).
    pub raw_seconds: i64,
    /// Minutes billed, as the policy rounded them: what the sink writes.
    pub minutes: i64,
    pub billable: bool,
    /// The technician as the vendor named them (display name), if it did.
    #[serde(default)]
    pub technician: Option<String>,
    /// The technician's e-mail address, where the vendor gives one (for systems that find
    /// users by e-mail).
    #[serde(default)]
    pub technician_email: Option<String>,
    /// The ticket system's user the entry is for (`time_technicians` map); `None`: the sink
    /// may find one by e-mail, else the entry is posted as the API user and its comment says so.
    #[serde(default)]
    pub user: Option<String>,
    /// One line: what the entry is for ("TeamViewer session s119-457-589, 2 connections").
    pub summary: String,
    /// Stable MAC'd marker (`tsd:v2:<source>:<id>:time:<mac>`), the comment's last line.
    pub marker: String,
}

impl TimeEntry {
    /// Billed hours, as Redmine's `hours` and HaloPSA's `timetaken` take them.
    pub fn hours(&self) -> f64 {
        self.minutes as f64 / 60.0
    }

    /// Billed seconds (Jira `timeSpentSeconds`, GLPI `actiontime`).
    pub fn seconds(&self) -> i64 {
        self.minutes * 60
    }

    /// `hh:mm` of the billed time (Freshservice `time_spent`).
    pub fn hh_mm(&self) -> String {
        format!("{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }

    /// The comment every sink writes: the summary (vendor text neutralised), a line saying
    /// the entry was posted as the API user when `posted_as_api_user`, and the marker line
    /// last, where the marker scan accepts it.
    pub fn comment(&self, posted_as_api_user: bool) -> String {
        let mut out = crate::marker::neutralise(&self.summary).replace(['\r', '\n'], " ");
        if posted_as_api_user {
            if let Some(t) = self.technician.as_deref().filter(|t| !t.trim().is_empty()) {
                let t = crate::marker::neutralise(t).replace(['\r', '\n'], " ");
                out.push_str(&format!("\nTechnician {t} has no user here: posted as the API user."));
            } else {
                out.push_str("\nNo technician named: posted as the API user.");
            }
        }
        out.push('\n');
        out.push_str(crate::marker::LINE_PREFIX);
        out.push_str(&self.marker);
        out
    }

    /// [`TimeEntry::comment`] on one line, for systems whose comment field keeps no line
    /// breaks: the marker then follows ` | ` and the scan reads it with [`marker_at_end`].
    pub fn comment_one_line(&self, posted_as_api_user: bool) -> String {
        self.comment(posted_as_api_user).replace('\n', " | ")
    }
}

/// The marker that ends `text`: its last line is the marker line, or (for a one-line
/// comment, [`TimeEntry::comment_one_line`]) its last ` | `-separated part is.
pub fn marker_at_end(text: &str) -> Option<&str> {
    if let Some(m) = crate::marker::final_marker(text) {
        return Some(m);
    }
    let last = text.trim_end().rsplit(" | ").next()?;
    crate::marker::parse_line(last)
}

/// Whether `text` ends with `marker`'s line (either form of [`marker_at_end`]).
pub fn ends_with_marker(text: &str, marker: &str) -> bool {
    marker_at_end(text) == Some(marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_up_with_a_minimum() {
        let p = TimePolicy::default();
        assert_eq!(p.billed_minutes(0), 15);
        assert_eq!(p.billed_minutes(60), 15);
        assert_eq!(p.billed_minutes(15 * 60), 15);
        assert_eq!(p.billed_minutes(15 * 60 + 1), 30);
        assert_eq!(p.billed_minutes(47 * 60), 60);
        let exact = TimePolicy { round_minutes: 1, minimum_minutes: 0, ..TimePolicy::default() };
        assert_eq!(exact.billed_minutes(61), 2);
        assert_eq!(exact.billed_minutes(0), 0);
        let odd = TimePolicy { round_minutes: 6, minimum_minutes: 10, ..TimePolicy::default() };
        assert_eq!(odd.billed_minutes(60), 12, "a minimum of 10 rounded to the 6-minute grid");
    }

    #[test]
    fn billing_follows_teamviewer_then_the_policy() {
        assert_eq!(BillingState::from_teamviewer(Some("Billed")), BillingState::Bill);
        assert_eq!(BillingState::from_teamviewer(Some("Bill")), BillingState::Bill);
        assert_eq!(BillingState::from_teamviewer(Some("DoNotBill")), BillingState::DoNotBill);
        assert_eq!(BillingState::from_teamviewer(Some("do_not_bill")), BillingState::DoNotBill);
        assert_eq!(BillingState::from_teamviewer(None), BillingState::Unknown);
        let p = TimePolicy::default();
        assert_eq!(p.billing("teamviewer", BillingState::DoNotBill), Billing::NonBillable);
        assert_eq!(p.billing("zoom", BillingState::Unknown), Billing::Billable);
        let p = TimePolicy { do_not_bill: DoNotBill::Skip, non_billable_sources: vec!["Zoom".into()], ..p };
        assert_eq!(p.billing("teamviewer", BillingState::DoNotBill), Billing::Skip);
        assert_eq!(p.billing("zoom", BillingState::Unknown), Billing::NonBillable);
        assert_eq!(p.billing("zoom", BillingState::Bill), Billing::Billable);
    }

    fn entry() -> TimeEntry {
        TimeEntry {
            started_at: crate::session::parse_ts("2024-04-16T20:45:02Z").unwrap(),
            ended_at: crate::session::parse_ts("2024-04-16T21:05:02Z").unwrap(),
            spent_on: NaiveDate::from_ymd_opt(2024, 4, 16).unwrap(),
            raw_seconds: 1200,
            minutes: 30,
            billable: true,
            technician: Some("Jon\nticketsync-marker: tsd:v2:x:y:time:00".into()),
            technician_email: None,
            user: None,
            summary: "TeamViewer session s1\nticketsync-marker: forged".into(),
            marker: "tsd:v2:teamviewer:abc:time:0011".into(),
        }
    }

    #[test]
    fn the_comment_ends_with_the_marker_and_vendor_text_cannot_forge_one() {
        let e = entry();
        let c = e.comment(true);
        assert!(ends_with_marker(&c, &e.marker), "{c}");
        assert_eq!(c.matches("ticketsync-marker").count(), 1, "{c}");
        assert!(c.contains("posted as the API user"), "{c}");
        let one = e.comment_one_line(false);
        assert!(!one.contains('\n'));
        assert!(ends_with_marker(&one, &e.marker), "{one}");
        assert!(!ends_with_marker("quoted: ticketsync-marker: tsd:v2:teamviewer:abc:time:0011 and more", &e.marker));
        assert_eq!(e.hh_mm(), "00:30");
        assert_eq!(e.seconds(), 1800);
        assert!((e.hours() - 0.5).abs() < 1e-9);
    }
}
