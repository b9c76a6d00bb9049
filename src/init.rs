//! `ticketsync init`: from an installed package to a configuration that passes `check`, for
//! the vendors and ticket systems the operator picks (issue 18, point 2).
//!
//! It writes the config file, each secret into the credentials directory (mode 0600, the
//! directory 0700; encrypted with `systemd-creds` when systemd runs and the tool exists) and
//! a drop-in for the unit with one `LoadCredential=` line per secret written, so the service
//! starts with exactly the credentials its config needs. Then the caller runs `check` and
//! `doctor` on the result.
//!
//! Secrets never come from the command line (they would sit in the shell history and in
//! `ps`): a terminal is asked with echo off; otherwise `--secret NAME=@FILE`,
//! `NAME=env:VARIABLE` or `NAME=-` (one line of stdin).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// What the package installs as /etc/ticketsync/ticketsync.toml: `init` replaces it without
/// `--force`, any other content only with it.
pub const SHIPPED_CONFIG: &str = include_str!("../config/ticketsync.toml");

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("unknown component {0:?}: the sources are {sources}, the ticket systems {sinks}", sources = names(Role::Source), sinks = names(Role::Sink))]
    UnknownComponent(String),
    #[error("{0:?} is not a source (the sources: {list})", list = names(Role::Source))]
    NotASource(String),
    #[error("{0:?} is not a ticket system (the ticket systems: {list})", list = names(Role::Sink))]
    NotASink(String),
    #[error("--set {0:?}: expected KEY=VALUE with KEY one of: {1}")]
    BadSet(String, String),
    #[error("--secret {0:?}: expected NAME=@FILE, NAME=env:VARIABLE or NAME=- (the secret itself never goes on the command line)")]
    BadSecretSpec(String),
    #[error("--secret {name}: {reason}")]
    SecretSource { name: String, reason: String },
    #[error("--secret {0}: no component chosen uses this credential (they use: {1})")]
    UnusedSecret(String, String),
    #[error("nothing chosen: give at least one --source or --sink (or run init on a terminal)")]
    NothingChosen,
    #[error("missing, for the components chosen:\n{}", .0.iter().map(|m| format!("  - {m}")).collect::<Vec<_>>().join("\n"))]
    Missing(Vec<String>),
    #[error("{value:?} is not a valid {key} (valid: {valid})")]
    BadChoice { key: String, value: String, valid: String },
    #[error("{0} exists and is not the configuration the package installed; pass --force to replace it (a copy is kept as {0}.bak)")]
    ConfigExists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("systemd-creds encrypt {name}: {reason}")]
    Encrypt { name: String, reason: String },
    #[error("prompt: {0}")]
    Prompt(String),
}

type Result<T> = std::result::Result<T, InitError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Sink,
}

/// A component `init` can configure: a vendor or a ticket system, as its registry declares
/// it (its section, the keys `init` asks for, the credentials it writes; see
/// `ticketsync_config::Setup`, each in the component's own folder).
#[derive(Debug, Clone, Copy)]
struct Component {
    role: Role,
    declared: &'static crate::config::Component,
}

impl std::ops::Deref for Component {
    type Target = crate::config::Component;
    fn deref(&self) -> &crate::config::Component {
        self.declared
    }
}

/// Every component, from the sources' and the sinks' registries: `init` keeps no list.
fn components() -> impl Iterator<Item = Component> {
    let sources = crate::sources::VENDORS.iter().map(|&declared| Component { role: Role::Source, declared });
    let sinks = crate::sinks::config::components().into_iter();
    sources.chain(sinks.map(|declared| Component { role: Role::Sink, declared }))
}

/// The credential of a component's secret `key`; an element's is named after the element
/// the values name.
fn credential_of(c: &Component, key: &str, values: &crate::config::Values) -> String {
    let key = format!("{}.{key}", c.section);
    match (key.contains("[]."), c.setup.element(values)) {
        (true, Some(element)) => crate::config::element_credential(&key, element),
        _ => crate::config::credential(&key),
    }
}

/// The components of `role`, as `init` lists them (and `--source`/`--sink`'s help).
pub fn names(role: Role) -> String {
    components().filter(|c| c.role == role).map(|c| c.kind).collect::<Vec<_>>().join(", ")
}

fn component(name: &str) -> Result<Component> {
    components().find(|c| c.kind == name).ok_or_else(|| InitError::UnknownComponent(name.to_string()))
}

/// Where a secret comes from when no terminal is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    File(PathBuf),
    Env(String),
    Stdin,
}

impl SecretFrom {
    /// `NAME=@FILE`, `NAME=env:VARIABLE` or `NAME=-`.
    pub fn parse(spec: &str) -> Result<(String, SecretFrom)> {
        let bad = || InitError::BadSecretSpec(spec.split('=').next().unwrap_or_default().to_string());
        let (name, from) = spec.split_once('=').ok_or_else(bad)?;
        let from = if let Some(p) = from.strip_prefix('@') {
            SecretFrom::File(PathBuf::from(p))
        } else if let Some(v) = from.strip_prefix("env:") {
            SecretFrom::Env(v.to_string())
        } else if from == "-" {
            SecretFrom::Stdin
        } else {
            return Err(bad());
        };
        Ok((name.to_string(), from))
    }

    fn read(&self, name: &str) -> Result<SecretString> {
        let err = |reason: String| InitError::SecretSource { name: name.to_string(), reason };
        let raw = match self {
            SecretFrom::File(p) => {
                std::fs::read_to_string(p).map_err(|e| err(format!("cannot read {}: {e}", p.display())))?
            }
            SecretFrom::Env(v) => std::env::var(v).map_err(|_| err(format!("environment variable {v} is not set")))?,
            SecretFrom::Stdin => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(|e| err(format!("stdin: {e}")))?;
                line
            }
        };
        let value = raw.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(err("empty".into()));
        }
        Ok(SecretString::from(value.to_string()))
    }
}

/// What `init` was asked to do.
#[derive(Debug, Default)]
pub struct InitOptions {
    pub config: PathBuf,
    pub sources: Vec<String>,
    pub sinks: Vec<String>,
    /// `section-less` keys of the chosen components (`redmine.url`) or full paths
    /// (`sinks.redmine.url`, `sources.teamviewer.base_url`, `store.path`).
    pub sets: Vec<String>,
    pub secrets: Vec<String>,
    pub credentials_dir: PathBuf,
    /// The unit drop-in to write; None: none.
    pub unit_dropin: Option<PathBuf>,
    pub force: bool,
    /// Ask on the terminal for what the flags did not give.
    pub interactive: bool,
    /// `systemd-creds encrypt` the secrets (None: when systemd runs and the tool exists).
    pub encrypt: Option<bool>,
}

/// What `init` wrote, for the summary and for `check`/`doctor`.
#[derive(Debug)]
pub struct InitReport {
    pub config: PathBuf,
    pub credentials: Vec<PathBuf>,
    pub unit_dropin: Option<PathBuf>,
    pub encrypted: bool,
    pub next: Vec<String>,
}

/// Something that asks the operator (a terminal) for a value or a secret.
pub trait Ask {
    fn value(&mut self, prompt: &str, default: Option<&str>, choices: &[&str]) -> Result<String>;
    fn secret(&mut self, prompt: &str) -> Result<SecretString>;
    fn pick(&mut self, prompt: &str, items: &[&str], at_least_one: bool) -> Result<Vec<usize>>;
}

/// The terminal, through dialoguer (echo off for secrets).
pub struct Terminal;

impl Ask for Terminal {
    fn value(&mut self, prompt: &str, default: Option<&str>, choices: &[&str]) -> Result<String> {
        let p = |e: dialoguer::Error| InitError::Prompt(e.to_string());
        if !choices.is_empty() {
            let at = default.and_then(|d| choices.iter().position(|c| *c == d)).unwrap_or(0);
            let i = dialoguer::Select::new().with_prompt(prompt).items(choices).default(at).interact().map_err(p)?;
            return Ok(choices[i].to_string());
        }
        let mut input = dialoguer::Input::<String>::new().with_prompt(prompt);
        if let Some(d) = default {
            input = input.default(d.to_string()).allow_empty(d.is_empty());
        }
        input.interact_text().map_err(p)
    }

    fn secret(&mut self, prompt: &str) -> Result<SecretString> {
        dialoguer::Password::new()
            .with_prompt(prompt)
            .interact()
            .map(SecretString::from)
            .map_err(|e| InitError::Prompt(e.to_string()))
    }

    fn pick(&mut self, prompt: &str, items: &[&str], at_least_one: bool) -> Result<Vec<usize>> {
        loop {
            let picked = dialoguer::MultiSelect::new()
                .with_prompt(format!("{prompt} (space to select, enter to confirm)"))
                .items(items)
                .interact()
                .map_err(|e| InitError::Prompt(e.to_string()))?;
            if !picked.is_empty() || !at_least_one {
                return Ok(picked);
            }
        }
    }
}

/// A chosen component with its values and secrets.
struct Chosen {
    component: Component,
    values: crate::config::Values,
    /// (credential name, secret), names with `{account}` resolved.
    secrets: Vec<(String, SecretString)>,
}

/// Decide, collect, write. `ask` is used only when `opts.interactive`.
pub fn run(opts: &InitOptions, ask: &mut dyn Ask) -> Result<InitReport> {
    // 1. Which components.
    let mut chosen_names: Vec<Component> = Vec::new();
    for s in &opts.sources {
        let c = component(s)?;
        if c.role != Role::Source {
            return Err(InitError::NotASource(s.clone()));
        }
        chosen_names.push(c);
    }
    for s in &opts.sinks {
        let c = component(s)?;
        if c.role != Role::Sink {
            return Err(InitError::NotASink(s.clone()));
        }
        chosen_names.push(c);
    }
    if chosen_names.is_empty() && opts.interactive {
        for (role, prompt) in [(Role::Source, "Sources to poll"), (Role::Sink, "Ticket systems to write to")] {
            let items: Vec<Component> = components().filter(|c| c.role == role).collect();
            let labels: Vec<&str> = items.iter().map(|c| c.kind).collect();
            for i in ask.pick(prompt, &labels, role == Role::Source)? {
                chosen_names.push(items[i]);
            }
        }
    }
    if chosen_names.is_empty() {
        return Err(InitError::NothingChosen);
    }
    chosen_names.dedup_by_key(|c| c.kind);

    // 2. The --set values: `component.key` or the full path of a chosen component's key;
    //    other full paths (`store.path`, `sources.teamviewer.base_url`) go in as given.
    let mut extra: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut given: BTreeMap<(String, String), String> = BTreeMap::new();
    for set in &opts.sets {
        let valid = || {
            let mut v: Vec<String> = chosen_names
                .iter()
                .flat_map(|c| c.setup.keys().iter().map(|k| format!("{}.{}", c.kind, k.name)))
                .collect();
            v.push("<section>.<key> of the config (e.g. store.path)".into());
            v.join(", ")
        };
        let (path, value) = set.split_once('=').ok_or_else(|| InitError::BadSet(set.clone(), valid()))?;
        let (head, key) = path.rsplit_once('.').ok_or_else(|| InitError::BadSet(set.clone(), valid()))?;
        match chosen_names.iter().find(|c| c.kind == head || c.section == head) {
            Some(c) if c.setup.keys().iter().any(|k| k.name == key) => {
                given.insert((c.kind.to_string(), key.to_string()), value.to_string());
            }
            _ => {
                extra.entry(head.to_string()).or_default().insert(key.to_string(), value.to_string());
            }
        }
    }

    // 3. Secrets from the flags.
    let mut from: BTreeMap<String, SecretFrom> = BTreeMap::new();
    for spec in &opts.secrets {
        let (name, f) = SecretFrom::parse(spec)?;
        from.insert(name, f);
    }

    // 4. Each component's values and secrets; every gap is collected, then reported at once.
    let mut missing = Vec::new();
    let mut chosen = Vec::new();
    for c in chosen_names {
        let mut values = BTreeMap::new();
        for k in c.setup.keys() {
            let value = match given.get(&(c.kind.to_string(), k.name.to_string())) {
                Some(v) => Some(v.clone()),
                None if opts.interactive => Some(ask.value(k.prompt, k.default, k.choices)?),
                None => k.default.map(str::to_string),
            };
            match value {
                Some(v) if !k.choices.is_empty() && !k.choices.contains(&v.as_str()) => {
                    return Err(InitError::BadChoice {
                        key: format!("{}.{}", c.kind, k.name),
                        value: v,
                        valid: k.choices.join(", "),
                    })
                }
                Some(v) => {
                    values.insert(k.name, v);
                }
                None => missing.push(format!("{}.{} ({}): --set {}.{}=…", c.kind, k.name, k.prompt, c.kind, k.name)),
            }
        }
        missing.extend(c.setup.missing(&values));
        let mut secrets = Vec::new();
        for key in c.setup.secrets() {
            let name = credential_of(&c, key, &values);
            match from.remove(&name) {
                Some(f) => secrets.push((name.clone(), f.read(&name)?)),
                None if opts.interactive => {
                    let s = ask.secret(&format!("{} secret ({name}, not echoed)", c.kind))?;
                    secrets.push((name.clone(), s));
                }
                None => missing.push(format!("{name} (secret of {}): --secret {name}=@FILE|env:VAR|-", c.kind)),
            }
        }
        chosen.push(Chosen { component: c, values, secrets });
    }
    if let Some(name) = from.keys().next() {
        let used: Vec<String> = chosen.iter().flat_map(|c| c.secrets.iter().map(|s| s.0.clone())).collect();
        return Err(InitError::UnusedSecret(name.clone(), used.join(", ")));
    }
    if !missing.is_empty() {
        return Err(InitError::Missing(missing));
    }

    // 5. Nothing is written before everything is known.
    guard_existing(&opts.config, opts.force)?;
    let encrypt = opts.encrypt.unwrap_or_else(systemd_creds_available);
    let text = render(&chosen, &extra);
    let mut credentials = Vec::new();
    let mut loads = Vec::new();
    create_private_dir(&opts.credentials_dir)?;
    for c in &chosen {
        for (name, secret) in &c.secrets {
            let path = if encrypt {
                let p = opts.credentials_dir.join(format!("{name}.cred"));
                encrypt_credential(name, secret, &p)?;
                loads.push(format!("LoadCredentialEncrypted={name}:{}", p.display()));
                p
            } else {
                let p = opts.credentials_dir.join(name);
                write_private(&p, secret.expose_secret().as_bytes())?;
                loads.push(format!("LoadCredential={name}:{}", p.display()));
                p
            };
            credentials.push(path);
        }
    }
    if let Some(parent) = opts.config.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    // The config holds no secret (those are credentials), and the service's dynamic user
    // must read it: 0644, as the package installs it.
    write_atomic(&opts.config, text.as_bytes(), 0o644)?;
    let unit_dropin = match &opts.unit_dropin {
        Some(p) => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut d = String::from(
                "# Written by `ticketsync init`: the credentials the configuration uses.\n# Apply with: systemctl daemon-reload\n[Service]\n",
            );
            for l in &loads {
                d.push_str(l);
                d.push('\n');
            }
            write_atomic(p, d.as_bytes(), 0o644)?;
            Some(p.clone())
        }
        None => None,
    };
    let next = chosen.iter().filter_map(|c| c.component.setup.next(&c.values)).collect();
    Ok(InitReport { config: opts.config.clone(), credentials, unit_dropin, encrypted: encrypt, next })
}

/// The config text: the shipped header, the chosen sections, then any other `--set` paths.
fn render(chosen: &[Chosen], extra: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut extra = extra.clone();
    let mut t = String::from(
        "# /etc/ticketsync/ticketsync.toml — written by `ticketsync init`.\n\
         # Secrets are not here: each is a credential (see the unit's drop-in). Every key with its\n\
         # default: docs/configuration.md. Validate with `ticketsync check`.\n\n",
    );
    let section = |t: &mut String,
                   extra: &mut BTreeMap<String, BTreeMap<String, String>>,
                   name: &str,
                   fixed: &[(&str, String)]| {
        let _ = writeln!(t, "[{name}]");
        let mut keys: BTreeMap<String, String> = fixed.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        for (k, v) in extra.remove(name).unwrap_or_default() {
            keys.insert(k, set_value(&v));
        }
        for (k, v) in keys {
            let _ = writeln!(t, "{k} = {v}");
        }
        t.push('\n');
    };
    section(&mut t, &mut extra, "store", &[("path", q("/var/lib/ticketsync/ticketsync.db"))]);
    section(&mut t, &mut extra, "http", &[("enabled", "true".into()), ("listen", q("127.0.0.1:9187"))]);
    section(&mut t, &mut extra, "notes", &[("timezone", q("UTC"))]);
    for c in chosen {
        let shaped = c.component.setup.shape(&c.values);
        let mut fixed: Vec<(&str, String)> = vec![("enabled", "true".into())];
        fixed.extend(shaped.keys.iter().map(|(k, v)| (k.as_str(), q(v))));
        section(&mut t, &mut extra, c.component.section, &fixed);
        for (array, keys) in &shaped.elements {
            let _ = writeln!(t, "[[{array}]]");
            for (k, v) in keys {
                let _ = writeln!(t, "{k} = {}", q(v));
            }
            t.push('\n');
        }
    }
    let rest: Vec<String> = extra.keys().cloned().collect();
    for name in rest {
        section(&mut t, &mut extra, &name, &[]);
    }
    t
}

/// A `--set` value as TOML: a number, `true`/`false`, a `[list]` or a `"quoted string"` as
/// written, anything else (URLs, paths, schedules, time zones, dates) as a string. Every value
/// was quoted before, so `--set daemon.delivery_interval_secs=30` wrote `"30"`, which `check`
/// refuses ("expected u64, found a string") after init had written its files.
fn set_value(v: &str) -> String {
    let as_string = || toml::Value::String(v.to_string()).to_string();
    // Parsed as the value of one key and only that value re-rendered: a value with a newline
    // cannot add keys of its own.
    match format!("v = {v}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v")) {
        Some(
            val @ (toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
            | toml::Value::Array(_)
            | toml::Value::String(_)),
        ) => val.to_string(),
        _ => as_string(),
    }
}

fn guard_existing(path: &Path, force: bool) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(InitError::Io { path: path.to_path_buf(), source: e }),
    };
    if existing.trim().is_empty() || existing == SHIPPED_CONFIG {
        return Ok(());
    }
    if !force {
        return Err(InitError::ConfigExists(path.to_path_buf()));
    }
    let bak = PathBuf::from(format!("{}.bak", path.display()));
    std::fs::copy(path, &bak).map_err(io(&bak))?;
    Ok(())
}

fn systemd_creds_available() -> bool {
    Path::new("/run/systemd/system").is_dir()
        && std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("systemd-creds").is_file()))
}

fn encrypt_credential(name: &str, secret: &SecretString, out: &Path) -> Result<()> {
    let err = |reason: String| InitError::Encrypt { name: name.to_string(), reason };
    let mut child = std::process::Command::new("systemd-creds")
        .arg("encrypt")
        .arg(format!("--name={name}"))
        .arg("-")
        .arg(out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(secret.expose_secret().as_bytes())
        .map_err(|e| err(e.to_string()))?;
    let o = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !o.status.success() {
        // systemd-creds' own message: it never contains the input.
        return Err(err(String::from_utf8_lossy(&o.stderr).trim().to_string()));
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Write beside, fsync, rename: a crash leaves the old file or the new one, never half; the
/// temporary file is created with its final mode, so a secret is never readable by others.
#[cfg(unix)]
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = PathBuf::from(format!("{}.init-tmp", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_specs_never_take_the_value_itself() {
        assert_eq!(SecretFrom::parse("a=@/x").unwrap(), ("a".into(), SecretFrom::File("/x".into())));
        assert_eq!(SecretFrom::parse("a=env:V").unwrap(), ("a".into(), SecretFrom::Env("V".into())));
        assert_eq!(SecretFrom::parse("a=-").unwrap(), ("a".into(), SecretFrom::Stdin));
        let e = SecretFrom::parse("redmine_api_key=hunter2hunter2").unwrap_err().to_string();
        assert!(e.contains("redmine_api_key") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn set_values_keep_their_toml_type_and_everything_else_is_a_string() {
        assert_eq!(set_value("30"), "30");
        assert_eq!(set_value("true"), "true");
        assert_eq!(set_value("1.5"), "1.5");
        assert_eq!(set_value(r#"["a", "b"]"#), r#"["a", "b"]"#);
        assert_eq!(set_value(r#""123""#), r#""123""#);
        assert_eq!(set_value("https://redmine.example.com"), r#""https://redmine.example.com""#);
        assert_eq!(set_value("*/5 * * * *"), r#""*/5 * * * *""#);
        assert_eq!(set_value("Europe/Paris"), r#""Europe/Paris""#);
        assert_eq!(set_value("2026-01-01"), r#""2026-01-01""#);
        assert_eq!(set_value("{a = 1}"), r#""{a = 1}""#);
        let injected = set_value("1\nenabled = false");
        let t: toml::Table = format!("k = {injected}").parse().unwrap();
        assert_eq!(t.len(), 1, "{injected}");
    }

    #[test]
    fn every_component_renders_a_section_the_config_accepts() {
        let chosen: Vec<Chosen> = components()
            .map(|c| Chosen {
                component: c,
                values: c
                    .setup
                    .keys()
                    .iter()
                    .map(|k| (k.name, k.default.unwrap_or("https://x.example.com").to_string()))
                    .collect(),
                secrets: vec![],
            })
            .collect();
        let text = render(&chosen, &BTreeMap::new());
        let parsed: toml::Table = text.parse().expect(&text);
        for c in components() {
            let mut v = toml::Value::Table(parsed.clone());
            for part in c.section.split('.') {
                v = v.get(part).unwrap_or_else(|| panic!("{} in\n{text}", c.section)).clone();
            }
            assert_eq!(v.get("enabled"), Some(&toml::Value::Boolean(true)), "{}", c.kind);
        }
    }

    /// What `init` writes are the credentials the configuration reads: each component's
    /// secret keys are declared by its section, and named as `check` and `doctor` name them.
    #[test]
    fn every_component_secret_is_a_declared_credential() {
        let declared = crate::config::secret_keys();
        let values = |account: &str| crate::config::Values::from([("account", account.to_string())]);
        for c in components() {
            for key in c.setup.secrets() {
                assert!(declared.contains(&format!("{}.{key}", c.section).as_str()), "{}: {key}", c.kind);
                let cred = credential_of(&c, key, &values("helpdesk"));
                assert!(crate::config::is_credential(&cred), "{}: {key}", c.kind);
            }
        }
        let zoom = component("zoom").unwrap();
        assert_eq!(credential_of(&zoom, zoom.setup.secrets()[0], &values("a")), "zoom_a_client_secret");
        assert_eq!(credential_of(&component("glpi").unwrap(), "app_token", &values("")), "glpi_app_token");
    }
}
