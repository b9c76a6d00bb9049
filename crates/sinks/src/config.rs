//! The registry of ticket systems: `[sinks]`, declared by one line per system (its key and
//! its section type, defined in the system's own module), and every list read from it. The
//! shared vocabulary of the sections is `crate::section`, re-exported here for callers
//! outside the crate (`ticketsync_sinks::config::RouteConfig`, …).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

pub use crate::freshservice::FreshserviceConfig;
pub use crate::glpi::GlpiConfig;
pub use crate::jsm::{JsmConfig, JsmDeployment};
pub use crate::redmine::RedmineConfig;
pub use crate::section::*;
pub use crate::webhook::WebhookConfig;
pub use crate::zendesk::{ZendeskAuthKind, ZendeskConfig};
use crate::TicketSink;

/// Declares `[sinks]` and the lists read before any section is: each line names a ticket
/// system's key and its section type, which says the rest ([`Described`], [`SinkSection`]).
macro_rules! registry {
    ($($(#[$attr:meta])* $name:ident: $t:ty),* $(,)?) => {
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct SinksConfig {
            $($(#[$attr])* pub $name: Option<$t>,)*
        }

        /// How many ticket systems there are. (Counted by statements, which a `cfg` may
        /// take out, as it takes out the field.)
        pub const COUNT: usize = {
            let mut n = 0;
            $($(#[$attr])* {
                n += 1;
            })*
            n
        };

        /// The sink sections under `[sinks]`, as the config parse needs them before any
        /// section is read (their routing keys live in [`RouteConfig`]).
        pub const SECTIONS: [&str; COUNT] = {
            let mut out = [""; COUNT];
            let mut i = 0;
            $($(#[$attr])* {
                out[i] = <$t as Described>::COMPONENT.section;
                i += 1;
            })*
            let _ = i;
            out
        };

        /// Every ticket system, configured or not, in registry order.
        pub fn components() -> Vec<&'static Component> {
            let mut out: Vec<&'static Component> = Vec::with_capacity(COUNT);
            $($(#[$attr])* out.push(const { &<$t as Described>::COMPONENT });)*
            out
        }

        impl SinksConfig {
            /// Every configured sink section, in registry order: the one list of ticket
            /// systems the binary builds, validates, routes and asks for secrets.
            pub fn all(&self) -> Vec<&dyn SinkSection> {
                let mut out: Vec<&dyn SinkSection> = Vec::with_capacity(COUNT);
                $($(#[$attr])* if let Some(c) = &self.$name {
                    out.push(c);
                })*
                out
            }
        }
    };
}

/// The sink sections' secret keys (credentials named by `ticketsync_config::credential`:
/// `redmine_api_key`, …), as `doctor` needs them before any section is read.
pub fn secret_keys() -> Vec<&'static str> {
    components().into_iter().flat_map(|c| c.secrets.iter().copied()).collect()
}

// The one list of ticket systems: adding one is its module and a line here.
registry! {
    redmine: RedmineConfig,
    zendesk: ZendeskConfig,
    freshservice: FreshserviceConfig,
    jsm: JsmConfig,
    glpi: GlpiConfig,
    rt: crate::rt::config::RtConfig,
    zammad: crate::zammad::config::ZammadConfig,
    servicenow: crate::servicenow::config::ServiceNowConfig,
    connectwise: crate::connectwise::config::ConnectWiseConfig,
    autotask: crate::autotask::config::AutotaskConfig,
    halopsa: crate::halopsa::config::HaloPsaConfig,
    webhook: WebhookConfig,
    #[cfg(feature = "fake-sink")]
    fake: crate::fake::FakeConfig,
}

impl SinksConfig {
    /// The enabled sections.
    pub fn enabled(&self) -> impl Iterator<Item = &dyn SinkSection> {
        self.all().into_iter().filter(|c| c.enabled())
    }

    /// Every configured sink: its name, whether it is enabled, its routing keys.
    pub fn sections(&self) -> Vec<(&'static str, bool, &RouteConfig)> {
        self.all().into_iter().map(|c| (c.kind(), c.enabled(), c.route())).collect()
    }

    /// Every section's own checks (URLs, keys required together), all of them.
    pub fn validate_into(&self, e: &mut Errors) {
        for c in self.all() {
            c.validate_into(e);
            c.route().validate_time_into(c.component().section, e);
        }
    }

    /// The secrets of the enabled sinks, resolved.
    pub fn secret_uses(&self) -> Vec<SecretUse> {
        self.enabled().flat_map(|c| c.secrets()).collect()
    }

    /// The HTTP Basic pairs the enabled sinks send, for the redactor.
    pub fn basic_pairs(&self) -> Vec<(String, String)> {
        self.enabled().flat_map(|c| c.basic_pairs()).collect()
    }

    /// Every enabled sink, built, by name.
    pub fn build(&self, ctx: &BuildCtx) -> Result<HashMap<String, Arc<dyn TicketSink>>, ConfigError> {
        self.enabled()
            .map(|c| {
                let sink = c.build(ctx)?;
                if c.route().time_entries && !sink.supports_time_entries() {
                    return Err(ConfigError::Key {
                        key: format!("{}.time_entries", c.component().section),
                        message: format!(
                            "{} has no time entries ticketsync can write (docs/time-entries.md)",
                            c.kind()
                        ),
                    });
                }
                Ok((c.kind().to_string(), sink))
            })
            .collect()
    }

    /// The time-entry policy and technician map of each enabled sink with `time_entries = true`.
    pub fn time_policies(
        &self,
    ) -> HashMap<String, (crate::time_entry::TimePolicy, std::collections::BTreeMap<String, String>)> {
        self.enabled()
            .filter_map(|c| Some((c.kind().to_string(), (c.route().time_policy()?, c.route().technicians()))))
            .collect()
    }

    /// Every enabled sink with its routing keys (ticket-id pattern, sources), by name.
    pub fn routes(&self) -> Vec<crate::routing::RouteKeys<'_>> {
        let enabled = self.sections().into_iter().filter(|s| s.1);
        enabled.map(|(name, _, r)| (name, r.tickets.as_deref(), r.sources.as_deref())).collect()
    }

    /// The `concurrency` key of each enabled sink that sets it, by sink name.
    pub fn concurrency(&self) -> std::collections::HashMap<String, usize> {
        let enabled = self.sections().into_iter().filter(|s| s.1);
        enabled.filter_map(|(name, _, r)| Some((name.to_string(), r.concurrency?))).collect()
    }
}
