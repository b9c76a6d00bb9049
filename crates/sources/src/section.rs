//! Each vendor's section describes itself, as each ticket system's does
//! (`ticketsync_sinks::config::SinkSection`): its name, schedule, checks, secrets, outbound
//! URLs, how its source is built, its doctor probe, its `check` notes and its launcher. The
//! binary iterates [`SourcesConfig::all`] and [`RoomsConfig::all`] and names no vendor.
//!
//! The one list of vendors is the [`registry!`] call at the end of this file: it declares the
//! `[sources]` and `[rooms]` sections and every list read before a section is (the vendors'
//! names, sections, secret keys and note content). Adding a vendor is its folder and one line
//! there.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::{Component, Described, Errors, Outbound, SecretUse};
use crate::launch::Launcher;
use crate::note_extras::VendorNotes;
use crate::probe::{Check, ProbeCtx};
use crate::store::Store;
use crate::{Source, SourceError};

/// What the registry reads of a vendor's section type before any section is read: the
/// [`Component`] ([`Described`]) and the vendor's note content, which a session stored before
/// its source was turned off still gets.
pub trait Vendor: Described {
    const NOTES: &'static dyn VendorNotes;
}

/// A line of `ticketsync check` about a source's state beyond its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remark {
    Info(String),
    Warning(String),
}

/// One vendor's section, everything the binary asks of it in one place.
#[async_trait]
pub trait SourceSection: crate::config::HasComponent + Send + Sync {
    /// The vendor's name: its section's last segment, `sessions.vendor`, `--source`,
    /// `--provider`.
    fn kind(&self) -> &'static str {
        self.component().kind
    }
    fn enabled(&self) -> bool;
    /// The cron expression of its polls; `None`: nothing to poll (a room vendor).
    fn schedule(&self) -> Option<&str>;
    /// The section's own checks, every error reported.
    fn validate_into(&self, e: &mut Errors);
    /// The secrets it uses, resolved.
    fn secrets(&self) -> Vec<SecretUse>;
    /// The HTTP Basic `(user, password)` pairs it sends, which the redactor scrubs in their
    /// encoded form too.
    fn basic_pairs(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Its outbound keys and the URLs (key, value) it calls.
    fn outbound_urls(&self) -> (Outbound<'_>, Vec<(String, String)>);
    /// Its source, built; `None` for a vendor with nothing to poll.
    fn build(&self, store: &Store) -> Result<Option<Arc<dyn Source>>, SourceError>;
    /// How `ticketsync check` lists it.
    fn summary(&self) -> String {
        self.kind().to_string()
    }
    /// What `ticketsync check` says of its state in an existing database (`None`: none yet),
    /// read only; an error fails the check.
    async fn remarks(&self, _store: Option<&Store>) -> Result<Vec<Remark>, SourceError> {
        Ok(Vec::new())
    }
    /// `doctor`'s rows for it: one harmless call with the configured credentials.
    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Vec<Check>;
    /// What creates a session for a ticket at this vendor, if it can.
    fn launcher(&self) -> Option<&dyn Launcher> {
        None
    }
}

/// The `enabled` field, the component and the section's outbound keys, the same way for
/// every vendor's impl.
macro_rules! section_basics {
    () => {
        fn enabled(&self) -> bool {
            self.enabled
        }
    };
}
pub(crate) use section_basics;

/// The outbound keys and the URL keys (their values) a section calls, keyed in full.
pub(crate) fn outbound_urls<'a>(
    o: Outbound<'a>,
    section: &str,
    urls: Vec<(&str, String)>,
) -> (Outbound<'a>, Vec<(String, String)>) {
    (o, urls.into_iter().map(|(k, v)| (format!("{section}.{k}"), v)).collect())
}

/// Declares the `[sources]` and `[rooms]` sections and the lists read from them. Each line
/// names a vendor's key and its section type; the type says the rest ([`Vendor`]).
macro_rules! registry {
    (sources { $($s:ident: $st:ty),* $(,)? } rooms { $($r:ident: $rt:ty),* $(,)? }) => {
        /// `[sources.*]`: the vendors polled for their sessions.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct SourcesConfig {
            $(pub $s: Option<$st>,)*
        }

        /// `[rooms.*]`: meeting rooms created for tickets, which have no report API to poll.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RoomsConfig {
            $(pub $r: Option<$rt>,)*
        }

        impl SourcesConfig {
            /// Every configured `[sources.*]` section, in registry order.
            pub fn all(&self) -> Vec<&dyn SourceSection> {
                let all = [$(self.$s.as_ref().map(|c| c as &dyn SourceSection)),*];
                all.into_iter().flatten().collect()
            }
        }

        impl RoomsConfig {
            /// Every configured `[rooms.*]` section, in registry order.
            pub fn all(&self) -> Vec<&dyn SourceSection> {
                let all = [$(self.$r.as_ref().map(|c| c as &dyn SourceSection)),*];
                all.into_iter().flatten().collect()
            }
        }

        /// How many vendors there are.
        pub const COUNT: usize = [$(stringify!($s),)* $(stringify!($r),)*].len();

        /// Every vendor's section, `[sources]` then `[rooms]`, as the config parse needs
        /// them before any section is read.
        pub const SECTIONS: [&str; COUNT] =
            [$(<$st as Described>::COMPONENT.section,)* $(<$rt as Described>::COMPONENT.section,)*];

        /// Every vendor, configured or not, `[sources]` then `[rooms]`.
        pub static VENDORS: &[&Component] =
            &[$(&<$st as Described>::COMPONENT,)* $(&<$rt as Described>::COMPONENT,)*];

        /// Every vendor's note content, each defined in the vendor's own module. Listed by
        /// every vendor whose sessions can be stored, configured or not: a session stored
        /// before its source was turned off still gets its vendor's note.
        pub static VENDOR_NOTES: &[&dyn VendorNotes] = &[$(<$st as Vendor>::NOTES,)* $(<$rt as Vendor>::NOTES,)*];

        /// The source names that `sinks.<name>.sources` routing keys accept: the vendor names
        /// of stored sessions and of `session create` links. Zoom is one source over all its
        /// accounts.
        pub static ROUTING_NAMES: &[&str] =
            &[$(<$st as Described>::COMPONENT.kind,)* $(<$rt as Described>::COMPONENT.kind,)*];

        /// Every vendor's secret keys, each list declared by its section: the binary's list of
        /// credentials (`doctor`, the unit's `LoadCredential=` lines) is made from these.
        pub static SECRET_KEYS: &[&[&str]] =
            &[$(<$st as Described>::COMPONENT.secrets,)* $(<$rt as Described>::COMPONENT.secrets,)*];
    };
}

registry! {
    sources {
        teamviewer: crate::teamviewer::TeamViewerConfig,
        splashtop: crate::splashtop::SplashtopConfig,
        zoom: crate::zoom::ZoomConfig,
    }
    rooms {
        visioconference: crate::visio::VisioConfig,
    }
}

/// Every configured vendor's section, `[sources]` then `[rooms]`.
pub fn all<'a>(sources: &'a SourcesConfig, rooms: &'a RoomsConfig) -> Vec<&'a dyn SourceSection> {
    let mut all = sources.all();
    all.extend(rooms.all());
    all
}
