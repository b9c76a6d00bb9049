//! What a delivery is about and where it stands, as closed sets: the stored text of each
//! (`deliveries.state`, `deliveries.kind`, what the `v_` views show) is [`DeliveryState::as_str`]
//! and [`NoteKind::as_str`], unchanged; the store decodes them from that text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A text that is not one of a closed set's stored values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct Unknown {
    pub what: &'static str,
    pub value: String,
}

/// Generates the closed set's text conversions, all from one table of (variant, text).
macro_rules! stored_text {
    ($t:ident, $what:literal, $($v:ident => $s:literal),+ $(,)?) => {
        impl $t {
            /// Every value, in the order of the table.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s,)+
                }
            }
        }

        impl FromStr for $t {
            type Err = Unknown;
            fn from_str(s: &str) -> Result<$t, Unknown> {
                match s {
                    $($s => Ok($t::$v),)+
                    _ => Err(Unknown { what: $what, value: s.to_string() }),
                }
            }
        }

        impl TryFrom<String> for $t {
            type Error = Unknown;
            fn try_from(s: String) -> Result<$t, Unknown> {
                s.parse()
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so that widths and alignment (`{:<10}`) apply as to the text.
                f.pad(self.as_str())
            }
        }

        /// Compared with its stored text (`d.state == "delivered"`).
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

/// Where a delivery stands: `pending → sending → delivered | failed | dead`, each move
/// committed before the network call that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Due at its `next_attempt_at`.
    Pending,
    /// Claimed; the sink is being called (found at start-up: the marker is scanned for).
    Sending,
    Delivered,
    /// Needs an operator (credentials rejected, or given up after the retry window).
    Failed,
    /// Will never succeed (ticket not found, payload refused).
    Dead,
}

stored_text!(DeliveryState, "delivery state",
    Pending => "pending",
    Sending => "sending",
    Delivered => "delivered",
    Failed => "failed",
    Dead => "dead",
);

impl DeliveryState {
    /// Delivered, failed or dead: nothing more happens without an operator.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryState::Delivered | DeliveryState::Failed | DeliveryState::Dead)
    }
}

/// What a note says: a matched session's report, the links of a session created for the
/// ticket (for the agent, and for the customer), or the correction a relink leaves on the
/// ticket a session left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    SessionReport,
    SessionLinks,
    CustomerLink,
    RelinkCorrection,
    /// Not a note: a billable time entry (`crate::time_entry::TimeEntry` in `note_json`),
    /// delivered through the sink's time-entry methods, in the same queue as the notes.
    TimeEntry,
}

stored_text!(NoteKind, "note kind",
    SessionReport => "session_report",
    SessionLinks => "session_links",
    CustomerLink => "customer_link",
    RelinkCorrection => "relink_correction",
    TimeEntry => "time_entry",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_texts_round_trip_and_match_serde() {
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in NoteKind::ALL {
            assert_eq!(k.as_str().parse::<NoteKind>(), Ok(*k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(DeliveryState::Dead, "dead");
        assert_eq!(format!("[{:<9}]", NoteKind::SessionLinks), "[session_links]");
        assert_eq!(format!("[{:<9}]", DeliveryState::Dead), "[dead     ]");
        let e = "sent".parse::<DeliveryState>().unwrap_err();
        assert_eq!(e.to_string(), "unknown delivery state \"sent\"");
    }
}
