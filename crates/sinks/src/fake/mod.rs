//! `[sinks.fake]`: a ticket system that keeps its tickets in this process's memory. It exists
//! to show what adding a ticket system takes: this folder and one line in the registry
//! (`crate::config`), nothing else anywhere; `tests/it/registry.rs` configures it, lets
//! `init` write it, checks it, builds it and delivers a note through it. Built only with the
//! `fake-sink` feature, never into the product.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;

use crate::note::Note;
use crate::section::{
    check_url, declared_secret, require, section_basics, BuildCtx, Component, ConfigError, Described, Errors, InitKey,
    Outbound, OutboundConfig, Plain, RouteConfig, SecretUse, SinkSection,
};
use crate::{Capabilities, RemoteRef, SinkError, TicketSink};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeConfig {
    #[serde(default = "crate::section::yes")]
    pub enabled: bool,
    /// Names the in-memory system (nothing is connected to).
    pub url: String,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub route: RouteConfig,
    #[serde(default)]
    pub outbound: OutboundConfig,
}

crate::section::outbound_section!(FakeConfig, "sinks.fake");

impl Described for FakeConfig {
    const COMPONENT: Component = Component {
        kind: "fake",
        section: "sinks.fake",
        secrets: &["sinks.fake.token"],
        setup: &Plain { keys: &[InitKey::new("url", "Fake URL (https://…)", None)], secrets: &["token"] },
    };
}

impl FakeConfig {
    fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.fake.token", self.token.as_ref(), self.token_file.as_deref())
    }
}

impl SinkSection for FakeConfig {
    section_basics!("fake");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.fake.url", &self.url);
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.fake.token", true, self.token_value())]
    }
    fn build(&self, _ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        require(self.token_value()?, "sinks.fake.token")?;
        Ok(Arc::new(FakeSink { url: self.url.clone() }))
    }
}

/// (url, ticket) → the notes posted on it, in order.
type Tickets = HashMap<(String, String), Vec<Note>>;

/// Every fake system's tickets.
static TICKETS: Mutex<Option<Tickets>> = Mutex::new(None);

/// The notes on a ticket of the fake system at `url`.
pub fn notes(url: &str, ticket: &str) -> Vec<Note> {
    let t = TICKETS.lock().unwrap_or_else(|e| e.into_inner());
    t.as_ref().and_then(|m| m.get(&(url.to_string(), ticket.to_string())).cloned()).unwrap_or_default()
}

pub struct FakeSink {
    url: String,
}

#[async_trait]
impl TicketSink for FakeSink {
    fn name(&self) -> &str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { marker_scan: true, private_notes: true, attachments: true }
    }
    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let found = notes(&self.url, ticket).iter().position(|n| n.marker == marker);
        Ok(found.map(|i| format!("fake:{i}")))
    }
    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let mut t = TICKETS.lock().unwrap_or_else(|e| e.into_inner());
        let on = t.get_or_insert_with(HashMap::new).entry((self.url.clone(), ticket.to_string())).or_default();
        on.push(note.clone());
        Ok(format!("fake:{}", on.len() - 1))
    }
    async fn check(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
