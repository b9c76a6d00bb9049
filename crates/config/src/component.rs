//! What is known of a component (a vendor or a ticket system) before its section is read:
//! its name, its section, the secret keys it reads and what `init` asks to write it. Each
//! component declares this once, beside its section type ([`Described`]); the sources' and
//! the sinks' registries list the types, and every list the binary needs (the credentials
//! `doctor` recognizes, the sections holding outbound keys, `init`'s components) is read
//! from those two registries.

use std::collections::BTreeMap;

/// A component, as declared by its section type.
pub struct Component {
    /// Its name: the section's last segment, the `--source`/`--sink`/`--provider` value, the
    /// vendor name of stored sessions or the sink's name in routes and the outbox.
    pub kind: &'static str,
    /// Its section: `sources.teamviewer`, `rooms.visioconference`, `sinks.redmine`.
    pub section: &'static str,
    /// Every secret key its section reads, in full (`sinks.glpi.app_token`; an element's as
    /// `sources.zoom.accounts[].client_secret`); their credentials follow from the keys.
    pub secrets: &'static [&'static str],
    /// What `init` asks for it and writes.
    pub setup: &'static dyn Setup,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component").field("kind", &self.kind).field("section", &self.section).finish()
    }
}

/// A section type's [`Component`]: the registries read it without a configuration.
pub trait Described {
    const COMPONENT: Component;
}

/// One key `init` asks for, written as `key = "value"` (unless [`Setup::shape`] says otherwise).
#[derive(Debug)]
pub struct InitKey {
    pub name: &'static str,
    pub prompt: &'static str,
    pub default: Option<&'static str>,
    /// Allowed values, when the key is an enum.
    pub choices: &'static [&'static str],
}

impl InitKey {
    pub const fn new(name: &'static str, prompt: &'static str, default: Option<&'static str>) -> InitKey {
        InitKey { name, prompt, default, choices: &[] }
    }
}

/// The values `init` collected for a component's keys.
pub type Values = BTreeMap<&'static str, String>;

/// What `init` writes for a component: keys of its section (beside `enabled = true`), and
/// elements of arrays of tables after it (`[[sources.zoom.accounts]]`: the array's full key
/// and the element's keys, in order). Every value is written as a TOML string.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shaped {
    pub keys: Vec<(String, String)>,
    pub elements: Vec<(String, Vec<(String, String)>)>,
}

/// How `init` configures a component. The defaults fit a section whose keys are written as
/// asked; a component with more shape (Zoom's accounts) says so in its own folder.
pub trait Setup: Sync {
    /// The keys to ask for, in order.
    fn keys(&self) -> &'static [InitKey];
    /// The secret keys `init` writes as credentials, relative to the section (for the
    /// authentication `init` configures: a script token, not an OAuth client secret).
    fn secrets(&self) -> &'static [&'static str];
    /// The array element an element's secret belongs to (`accounts[].client_secret` of the
    /// account named by the values); its credential carries the element's name.
    fn element<'a>(&self, _values: &'a Values) -> Option<&'a str> {
        None
    }
    /// What is missing beyond unanswered keys (a key required by another's value).
    fn missing(&self, _values: &Values) -> Vec<String> {
        Vec::new()
    }
    /// The section's keys and tables from the values.
    fn shape(&self, values: &Values) -> Shaped {
        Shaped { keys: values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), elements: Vec::new() }
    }
    /// What the operator still has to do after `init`, if anything.
    fn next(&self, _values: &Values) -> Option<String> {
        None
    }
}

/// A section whose keys are written as asked.
pub struct Plain {
    pub keys: &'static [InitKey],
    pub secrets: &'static [&'static str],
}

impl Setup for Plain {
    fn keys(&self) -> &'static [InitKey] {
        self.keys
    }
    fn secrets(&self) -> &'static [&'static str] {
        self.secrets
    }
}

/// A section's [`Component`], through a trait object (`dyn SinkSection`, `dyn SourceSection`).
pub trait HasComponent {
    fn component(&self) -> &'static Component;
}

impl<T: Described> HasComponent for T {
    fn component(&self) -> &'static Component {
        const { &T::COMPONENT }
    }
}
