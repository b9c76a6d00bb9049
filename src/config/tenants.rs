//! `[[tenants]]` (issue 17, point 3): the customer companies of a managed service provider,
//! each with its own vendor accounts and its own ticket systems, several of one kind by name:
//!
//! ```toml
//! [[tenants]]
//! name = "acme"
//! [[tenants.sources]]
//! kind = "teamviewer"
//! name = "acme-tv"
//! api_token_file = "/etc/ticketsync/acme-tv.token"
//! [[tenants.sinks]]
//! kind = "redmine"
//! name = "acme-redmine"
//! url = "https://redmine.acme.example"
//! api_key_file = "/etc/ticketsync/acme-redmine.key"
//! ```
//!
//! An entry holds the keys of the vendor's or ticket system's own section (`[sources.<kind>]`,
//! `[sinks.<kind>]`), routing keys included, beside `kind` and `name`. The parse moves those
//! keys into the section's type (`section`), so every section keeps its one deserializer and
//! its own checks; errors name the entry's keys as written (`tenants[0].sinks[1].url`).
//! The top-level `[sources]` and `[sinks]` are the tenant `default`, unchanged.

use serde::Deserialize;
use toml::{Table, Value};

use super::parse::Origins;
use super::{key_err, ConfigError, Diagnostic, Errors, SecretUse, SinksConfig, SourceSection, SourcesConfig};
use crate::sinks::config::SinkSection;
use crate::store::TenantName;

/// One `[[tenants]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Checked by validation ([`TenantName::new`]), not by the deserializer: a bad name is
    /// then one error, and the other tenants are still read and checked.
    pub name: String,
    /// Its vendor accounts.
    #[serde(default)]
    pub sources: Vec<TenantSourceConfig>,
    /// Its ticket systems.
    #[serde(default)]
    pub sinks: Vec<TenantSinkConfig>,
}

/// A `[[tenants.sources]]` entry: one vendor account of the tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSourceConfig {
    pub kind: String,
    /// The account's name in the tenant: its cursors and lease are `<tenant>/<name>/…`.
    pub name: String,
    /// The entry's other keys, as the vendor's section (only `kind`'s field is set).
    pub section: SourcesConfig,
    /// The keys the entry wrote (set by the parse, not by the file): a secret of the entry
    /// must be one of them (or its `_file`), never the default tenant's credential.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// A `[[tenants.sinks]]` entry: one ticket system of the tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSinkConfig {
    pub kind: String,
    /// The sink's name: `deliveries.sink`, metrics and logs. Unique over every tenant.
    pub name: String,
    /// The entry's other keys, as the ticket system's section (only `kind`'s field is set).
    pub section: SinksConfig,
    /// The keys the entry wrote (set by the parse), as [`TenantSourceConfig::keys`].
    #[serde(default)]
    pub keys: Vec<String>,
}

impl TenantConfig {
    /// The tenant's name; `None` when it is not one (validation reports it).
    pub fn tenant(&self) -> Option<TenantName> {
        TenantName::new(&self.name).ok()
    }
}

impl TenantSourceConfig {
    /// The vendor's section.
    pub fn vendor(&self) -> Option<&dyn SourceSection> {
        self.section.all().into_iter().next()
    }
}

impl TenantSinkConfig {
    /// The ticket system's section.
    pub fn sink(&self) -> Option<&dyn SinkSection> {
        self.section.all().into_iter().next()
    }
}

/// The field of an entry that holds its section's keys after [`nest_tenants`].
const SECTION: &str = "section";

/// The kinds `[[tenants.<list>]]` accepts: the vendors that poll sessions, every ticket system.
fn kinds(list: &str) -> Vec<&'static str> {
    let (prefix, sections): (&str, &[&str]) = match list {
        "sources" => ("sources.", &crate::sources::section::SECTIONS),
        _ => ("sinks.", &crate::sinks::config::SECTIONS),
    };
    sections.iter().filter_map(|s| s.strip_prefix(prefix)).collect()
}

/// Rewrite every `[[tenants.sources]]` and `[[tenants.sinks]]` entry of the parsed tree from
/// `{kind, name, <keys>}` to `{kind, name, section = {<kind> = {<keys>}}}`, the outbound and
/// routing keys grouped as the top-level sections have them (`parse::nest_groups`). An entry
/// whose `kind` is missing or unknown is reported and left as a placeholder with no section
/// (built into nothing); the others stay, at their index.
pub(super) fn nest_tenants(root: &mut Table, origins: &Origins, errors: &mut Vec<Diagnostic>) {
    let Some(Value::Array(tenants)) = root.get_mut("tenants") else { return };
    for (i, tenant) in tenants.iter_mut().enumerate() {
        let Value::Table(tenant) = tenant else { continue };
        for list in ["sources", "sinks"] {
            let Some(Value::Array(entries)) = tenant.get_mut(list) else { continue };
            let known = kinds(list);
            let mut keep = Vec::with_capacity(entries.len());
            for (j, entry) in std::mem::take(entries).into_iter().enumerate() {
                let at = format!("tenants[{i}].{list}[{j}]");
                let Value::Table(mut t) = entry else {
                    keep.push(entry);
                    continue;
                };
                // An entry whose kind is not known stays as a placeholder with an empty
                // section (its other keys dropped), so the entries after it keep their index:
                // their errors name `tenants[i].sinks[j]` and the line as the file has them.
                let placeholder = |t: &Table| {
                    let mut p = Table::new();
                    p.insert("kind".into(), Value::String(String::new()));
                    if let Some(n) = t.get("name") {
                        p.insert("name".into(), n.clone());
                    } else {
                        p.insert("name".into(), Value::String(String::new()));
                    }
                    p.insert(SECTION.to_string(), Value::Table(Table::new()));
                    Value::Table(p)
                };
                let kind = match t.get("kind") {
                    Some(Value::String(k)) if known.contains(&k.as_str()) => k.clone(),
                    Some(Value::String(k)) => {
                        let message = format!("unknown kind {k:?} (known: {})", known.join(", "));
                        errors.push(origins.diagnostic(&format!("{at}.kind"), message));
                        keep.push(placeholder(&t));
                        continue;
                    }
                    Some(_) => {
                        errors.push(origins.diagnostic(&format!("{at}.kind"), "expected a string"));
                        keep.push(placeholder(&t));
                        continue;
                    }
                    None => {
                        errors.push(origins.diagnostic(&format!("{at}.kind"), "required key is missing"));
                        keep.push(placeholder(&t));
                        continue;
                    }
                };
                if t.contains_key(SECTION) {
                    errors.push(origins.diagnostic(&format!("{at}.{SECTION}"), format!("unknown key `{SECTION}`")));
                    t.remove(SECTION);
                }
                let mut keys = Table::new();
                let written: Vec<String> = t.keys().filter(|k| *k != "kind" && *k != "name").cloned().collect();
                for k in &written {
                    keys.insert(k.clone(), t.remove(k).expect("listed above"));
                }
                t.insert("keys".into(), Value::Array(written.into_iter().map(Value::String).collect()));
                let mut groups = vec![("outbound", &super::OutboundConfig::KEYS[..])];
                if list == "sinks" {
                    groups.push(("route", &super::RouteConfig::KEYS[..]));
                }
                for (field, group_keys) in groups {
                    if keys.remove(field).is_some() {
                        errors.push(origins.diagnostic(&format!("{at}.{field}"), format!("unknown key `{field}`")));
                    }
                    let nested: Table =
                        group_keys.iter().filter_map(|k| Some((k.to_string(), keys.remove(*k)?))).collect();
                    if !nested.is_empty() {
                        keys.insert(field.to_string(), Value::Table(nested));
                    }
                }
                let mut section = Table::new();
                section.insert(kind, Value::Table(keys));
                t.insert(SECTION.to_string(), Value::Table(section));
                keep.push(Value::Table(t));
            }
            *entries = keep;
        }
    }
}

/// The key as the file writes it: `tenants[0].sinks[1].section.redmine.outbound.ca_file` →
/// `tenants[0].sinks[1].ca_file`.
pub(super) fn user_key(path: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^(tenants\[\d+\]\.(?:sources|sinks)\[\d+\])\.section\.[a-z_]+(?:\.(?:outbound|route))?(\..*)?$",
        )
        .expect("valid regex")
    });
    match re.captures(path) {
        Some(c) => format!("{}{}", &c[1], c.get(2).map_or("", |m| m.as_str())),
        None => path.to_string(),
    }
}

/// `e` with its key moved from a section's own name (`sinks.redmine.url`) to the entry's
/// (`tenants[0].sinks[1].url`).
fn rekey(e: ConfigError, from: &str, to: &str) -> ConfigError {
    let moved = |k: &str| match k.strip_prefix(from) {
        Some(rest) if rest.is_empty() || rest.starts_with(['.', '[']) => format!("{to}{rest}"),
        _ => k.to_string(),
    };
    match e {
        ConfigError::Key { key, message } => ConfigError::Key { key: moved(&key), message },
        ConfigError::SecretFile { key, path, source } => ConfigError::SecretFile { key: moved(&key), path, source },
        other => other,
    }
}

impl super::Config {
    /// Every tenant's name: `default` (the top-level sections) first, then `[[tenants]]`.
    pub fn tenant_names(&self) -> Vec<TenantName> {
        std::iter::once(TenantName::default()).chain(self.tenants.iter().filter_map(|t| t.tenant())).collect()
    }

    /// `[[tenants]]`'s checks, every error: names unique (tenants, a tenant's accounts, every
    /// sink over all tenants), each entry's section's own checks under the entry's keys.
    pub(super) fn tenant_validation_into(&self, e: &mut Errors) {
        let mut tenants = std::collections::HashMap::new();
        let mut zoom_accounts: std::collections::HashMap<String, String> = self
            .sources
            .zoom
            .iter()
            .flat_map(|z| z.accounts.iter().enumerate())
            .map(|(k, a)| (a.name.clone(), format!("sources.zoom.accounts[{k}]")))
            .collect();
        // Sink names are unique over all tenants (the default tenant's are its kinds): a
        // delivery row's sink then names one tenant's system, whatever reads it.
        let mut sinks: std::collections::HashMap<String, String> = self
            .sinks
            .sections()
            .into_iter()
            .map(|(kind, _, _)| (kind.to_string(), TenantName::DEFAULT.into()))
            .collect();
        for (i, t) in self.tenants.iter().enumerate() {
            let key = format!("tenants[{i}]");
            if let Err(bad) = TenantName::new(&t.name) {
                e.key(&format!("{key}.name"), bad.to_string());
            }
            if t.name == TenantName::DEFAULT {
                e.key(
                    &format!("{key}.name"),
                    "\"default\" is the tenant of the top-level [sources] and [sinks]; choose another name",
                );
            }
            if let Some(first) = tenants.insert(t.name.clone(), i) {
                e.key(&format!("{key}.name"), format!("duplicate tenant name {:?} (also tenants[{first}])", t.name));
            }
            let mut accounts = std::collections::HashMap::new();
            // A placeholder (kind empty: its unknown kind is reported already) is skipped.
            for (j, s) in t.sources.iter().enumerate().filter(|(_, s)| !s.kind.is_empty()) {
                let at = format!("{key}.sources[{j}]");
                check_entry_name(e, &at, &s.name);
                if let Some(first) = accounts.insert(s.name.clone(), j) {
                    e.key(
                        &format!("{at}.name"),
                        format!("duplicate source name {:?} in tenant {} (also sources[{first}])", s.name, t.name),
                    );
                }
                // OAuth tokens are kept per provider (`oauth_tokens.provider`), not per tenant
                // yet: a tenant's OAuth app would share the default tenant's tokens, and poll
                // its account. Refused; API tokens (Zoom: accounts of their own names) only.
                if s.section.teamviewer.as_ref().is_some_and(|c| c.auth == super::TeamViewerAuth::Oauth) {
                    e.key(&format!("{at}.auth"), "a tenant's TeamViewer account uses a script token (auth = \"script\"): OAuth tokens are not kept per tenant yet");
                }
                if s.section.splashtop.as_ref().is_some_and(|c| c.auth == super::SplashtopAuth::Oauth) {
                    e.key(&format!("{at}.auth"), "a tenant's Splashtop account uses an API token (auth = \"token\"): OAuth tokens are not kept per tenant yet");
                }
                for (k, acc) in s.section.zoom.iter().flat_map(|z| z.accounts.iter()).enumerate() {
                    // Zoom keeps tokens per account name (`zoom:<name>`): unique over the file.
                    if let Some(first) = zoom_accounts.insert(acc.name.clone(), format!("{at}.accounts[{k}]")) {
                        e.key(
                            &format!("{at}.accounts[{k}].name"),
                            format!("Zoom account name {:?} is also {first}'s: its tokens would be shared", acc.name),
                        );
                    }
                }
                if let Some(v) = s.vendor() {
                    let mut own = Errors::default();
                    v.validate_into(&mut own);
                    let from = format!("sources.{}", v.kind());
                    e.0.extend(own.0.into_iter().map(|x| rekey(x, &from, &at)));
                }
            }
            for (j, s) in t.sinks.iter().enumerate().filter(|(_, s)| !s.kind.is_empty()) {
                let at = format!("{key}.sinks[{j}]");
                check_entry_name(e, &at, &s.name);
                match sinks.get(&s.name) {
                    Some(owner) if *owner == t.name => {
                        e.key(&format!("{at}.name"), format!("duplicate sink name {:?} in tenant {}", s.name, t.name))
                    }
                    Some(owner) => e.key(
                        &format!("{at}.name"),
                        format!(
                            "sink name {:?} is already tenant {owner}'s: a sink name names one tenant's system",
                            s.name
                        ),
                    ),
                    None => {
                        sinks.insert(s.name.clone(), t.name.clone());
                    }
                }
                if let Some(c) = s.sink() {
                    let from = format!("sinks.{}", c.kind());
                    let mut own = Errors::default();
                    c.validate_into(&mut own);
                    let r = c.route();
                    super::check_route_into(&mut own, &from, r.tickets.as_deref(), r.sources.as_deref());
                    // Time entries (issue 20) are grouped and queued per sink of the tenant
                    // `default` only so far: refused here rather than silently never sent.
                    if r.time_entries {
                        own.key(
                            &format!("{from}.time_entries"),
                            "time entries are not kept for [[tenants.sinks]] yet: only the top-level [sinks] sections can post them",
                        );
                    }
                    e.0.extend(own.0.into_iter().map(|x| rekey(x, &from, &at)));
                }
            }
        }
    }

    /// The secrets every tenant's enabled accounts and sinks use, keyed as the entries are.
    pub(super) fn tenant_secret_uses(&self) -> Vec<SecretUse> {
        let mut out = Vec::new();
        for (i, t) in self.tenants.iter().enumerate() {
            for (j, s) in t.sources.iter().enumerate() {
                let Some(v) = s.vendor().filter(|v| v.enabled()) else { continue };
                let (from, to) = (format!("sources.{}", v.kind()), format!("tenants[{i}].sources[{j}]"));
                out.extend(v.secrets().into_iter().map(|u| own_secret(rekey_use(u, &from, &to), &to, &s.keys)));
            }
            for (j, s) in t.sinks.iter().enumerate() {
                let Some(c) = s.sink().filter(|c| c.enabled()) else { continue };
                let (from, to) = (format!("sinks.{}", c.kind()), format!("tenants[{i}].sinks[{j}]"));
                out.extend(c.secrets().into_iter().map(|u| own_secret(rekey_use(u, &from, &to), &to, &s.keys)));
            }
        }
        out
    }

    /// Every tenant's vendor sections, enabled or not, with the tenant and account name.
    pub fn tenant_vendors(&self) -> Vec<(TenantName, &str, &dyn SourceSection)> {
        let mut out = Vec::new();
        for t in &self.tenants {
            let Some(name) = t.tenant() else { continue };
            out.extend(t.sources.iter().filter_map(|s| Some((name.clone(), s.name.as_str(), s.vendor()?))));
        }
        out
    }

    /// Every tenant's ticket-system sections, enabled or not, with the tenant and sink name.
    pub fn tenant_sinks(&self) -> Vec<(TenantName, &str, &dyn SinkSection)> {
        let mut out = Vec::new();
        for t in &self.tenants {
            let Some(name) = t.tenant() else { continue };
            out.extend(t.sinks.iter().filter_map(|s| Some((name.clone(), s.name.as_str(), s.sink()?))));
        }
        out
    }
}

fn rekey_use(mut u: SecretUse, from: &str, to: &str) -> SecretUse {
    if let Some(rest) = u.key.strip_prefix(from) {
        u.key = format!("{to}{rest}");
    }
    u.value = u.value.map_err(|e| rekey(e, from, to));
    u
}

/// A secret of a tenant's entry found although the entry does not write it (nor its `_file`):
/// it came from the systemd credential named after the key (`redmine_api_key`), which is the
/// default tenant's. An error, so a tenant never sends with another tenant's credentials.
fn own_secret(mut u: SecretUse, entry: &str, written: &[String]) -> SecretUse {
    let Some(field) = u.key.strip_prefix(entry).and_then(|r| r.strip_prefix('.')) else { return u };
    // Keys of nested lists (Zoom's accounts) are the element's; their credentials are named
    // by the account, unique over the file.
    if field.contains(['.', '[']) {
        return u;
    }
    let own = written.iter().any(|k| k == field || *k == format!("{field}_file"));
    if !own && matches!(u.value, Ok(Some(_))) {
        u.value = Err(key_err(
            &u.key,
            format!(
                "set it in the entry ({field} or {field}_file): the credential {} is the default tenant's",
                u.credential
            ),
        ));
    }
    u
}

/// A source's or sink's name in a tenant: a key of cursors, leases, metrics and
/// `deliveries.sink`, so plain: `[a-z0-9_-]`, at most 63 characters.
fn check_entry_name(e: &mut Errors, at: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        e.0.push(key_err(&format!("{at}.name"), "expected 1 to 63 lower-case ASCII letters, digits, '-' or '_'"));
    }
}
