//! Configuration: one TOML file, every key overridable by `TICKETSYNC__SECTION__KEY`,
//! secrets from `*_file` keys or systemd's `$CREDENTIALS_DIRECTORY`. The file is parsed once
//! (`parse.rs`), keeping where every key was written, so that each error names its key and
//! line (or variable), and all of them are reported together.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod parse;
mod tenants;
pub use tenants::{TenantConfig, TenantSinkConfig, TenantSourceConfig};
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod sink_tests;
#[cfg(test)]
mod source_tests;
pub use crate::sinks::config::{RedmineConfig, RouteConfig, SinksConfig, WebhookConfig};
// Each vendor's section lives in its own folder of the sources crate; named here too, where
// callers have always found them.
pub use crate::sources::splashtop::config::{Region, SplashtopAuth, SplashtopConfig};
pub use crate::sources::teamviewer::config::{TeamViewerAuth, TeamViewerConfig};
// `[sources]` and `[rooms]`: the vendors' registry (crates/sources/src/section.rs).
pub use crate::sources::{RoomsConfig, SourceSection, SourcesConfig};
// The pipeline's sections: `[outbox]` and `[match]` (its rules).
pub use crate::matcher::{MatchConfig, RuleConfig, RuleKind};
pub use crate::pipeline::OutboxConfig;
pub use parse::{Diagnostic, Origin, OUTBOUND_SECTIONS, SINK_SECTIONS};
pub use ticketsync_config::{
    check_span, check_url, credential, declared_secret, element_credential, key_err, missing_secret, parse_tz, require,
    resolve_secret, Component, ConfigError, Errors, SecretUse, Values, ENV_PREFIX,
};
pub use ticketsync_http::{outbound_section, OutboundConfig};

pub const DEFAULT_PATH: &str = "/etc/ticketsync/ticketsync.toml";

/// The top-level sections' secret keys; a top-level key's credential is its own name
/// (`audit_key`, `marker_key`, `metrics_token`, `password`).
const OWN_SECRET_KEYS: [&str; 5] =
    ["http.metrics_token", "notes.marker_key", "store.audit_key", "store.password", CONSOLE_PASSWORD_HASH];

/// A console user's password hash: the credential `console_<name>_password_hash`.
pub const CONSOLE_PASSWORD_HASH: &str = "console.users[].password_hash";

/// Every secret key of every component, as each declares them (the sources' in their
/// vendor's `config.rs`, the sinks' beside their sections), and the top-level sections'.
/// Their credentials follow from the keys ([`credential`]), so adding a component adds its
/// credentials here without a table of names.
pub fn secret_keys() -> Vec<&'static str> {
    let sources = crate::sources::SECRET_KEYS.iter().flat_map(|k| k.iter().copied());
    sources.chain(crate::sinks::config::secret_keys()).chain(OWN_SECRET_KEYS).collect()
}

/// Whether a file name in the credentials directory is a credential of ours (Zoom's for any
/// account name).
pub fn is_credential(name: &str) -> bool {
    ticketsync_config::is_credential_of(name, secret_keys())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub notes: NotesConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default, rename = "match")]
    pub matching: MatchConfig,
    #[serde(default)]
    pub sinks: SinksConfig,
    #[serde(default)]
    pub rooms: RoomsConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    /// `[[tenants]]` (issue 17): other companies' accounts and ticket systems; the sections
    /// above are the tenant `default`.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// Where each key was set (file line or environment variable), for error messages.
    #[serde(skip)]
    pub(crate) origins: std::sync::Arc<parse::Origins>,
}

/// The HTTP listener of `ticketsync run`: /healthz, /readyz, /metrics. On by default, on
/// loopback: an exporter that has to be switched on is one nobody scrapes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `false` turns the listener off (as does an empty `listen`).
    pub enabled: bool,
    /// Address and port; loopback by default (port 0 picks a free port, logged at start);
    /// `""`: no listener.
    pub listen: String,
    /// /readyz fails when a source's last successful poll is older than its previous
    /// scheduled run by more than this many seconds.
    pub readiness_grace_secs: u64,
    /// A connection that has not sent a complete request head within this many seconds
    /// (a fresh one, a slow one, or an idle keep-alive one) is closed.
    pub header_read_timeout_secs: u64,
    /// Open connections at most; at the limit a new connection replaces the oldest one
    /// that is not being answered, so idle or slow clients cannot starve `/readyz`.
    /// Keep it well below the process's open-file limit (systemd's default soft limit is 1024).
    pub max_connections: usize,
    /// Largest request body accepted (no endpoint takes one); larger requests get 413.
    pub max_request_bytes: u64,
    /// Bearer token required for `/metrics` and every path but `/healthz` and `/readyz`.
    /// Prefer `metrics_token_file` or the credential `metrics_token`.
    pub metrics_token: Option<SecretString>,
    pub metrics_token_file: Option<PathBuf>,
}
impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9187".into(),
            readiness_grace_secs: 120,
            header_read_timeout_secs: 10,
            max_connections: 256,
            max_request_bytes: 16 * 1024,
            metrics_token: None,
            metrics_token_file: None,
        }
    }
}

impl HttpConfig {
    /// Whether `ticketsync run` listens: `enabled` and a `listen` address.
    pub fn active(&self) -> bool {
        self.enabled && !self.listen.trim().is_empty()
    }

    /// The listener's bearer token, if one is configured (inline, file or credential).
    pub fn metrics_token_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("http.metrics_token", self.metrics_token.as_ref(), self.metrics_token_file.as_deref())
    }
}

/// The web console (`/ui/` on the `[http]` listener, issue 21). Off by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// The session cookie's `Secure` attribute. Off only for a loopback `http.listen`
    /// (a browser on the same machine, or a TLS-terminating proxy in front of it).
    pub secure_cookie: bool,
    /// A login lasts this long (seconds), then the person logs in again.
    pub session_ttl_secs: u64,
    /// Addresses of reverse proxies whose `X-Forwarded-User` header names the person; from
    /// any other peer the header is ignored. The user must still be in `users`.
    pub trusted_proxies: Vec<String>,
    /// Failed logins allowed per user name and per client address in `login_window_secs`.
    pub login_attempts: u32,
    pub login_window_secs: u64,
    pub users: Vec<ConsoleUser>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            secure_cookie: true,
            session_ttl_secs: 8 * 3600,
            trusted_proxies: Vec::new(),
            login_attempts: 5,
            login_window_secs: 300,
            users: Vec::new(),
        }
    }
}

/// What a console user may do: read every page, or also link, retry, verify and export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleRole {
    Viewer,
    Operator,
}

impl ConsoleRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleRole::Viewer => "viewer",
            ConsoleRole::Operator => "operator",
        }
    }
}

/// `[[console.users]]`: a person, their role and their argon2 password hash (a PHC string
/// from `ticketsync console hash-password`). No hash: the person logs in only through a
/// trusted proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    pub name: String,
    pub role: ConsoleRole,
    #[serde(default)]
    pub password_hash: Option<SecretString>,
    #[serde(default)]
    pub password_hash_file: Option<PathBuf>,
}

impl ConsoleUser {
    /// The hash from the value, the file, or the credential `console_<name>_password_hash`.
    /// `index`: the user's place in `[[console.users]]`, which errors name.
    pub fn password_hash_secret(&self, index: usize) -> Result<Option<SecretString>, ConfigError> {
        resolve_secret(
            &format!("console.users[{index}].password_hash"),
            self.password_hash.as_ref(),
            self.password_hash_file.as_deref(),
            &element_credential(CONSOLE_PASSWORD_HASH, &self.name),
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the store lives: `sqlite:///var/lib/ticketsync/ticketsync.db` or
    /// `postgres://user@host/db` (issue 17). Unset: the SQLite file at `path`, so a
    /// configuration from before `url` keeps its database.
    pub url: Option<String>,
    pub path: PathBuf,
    pub busy_timeout_ms: u64,
    /// PostgreSQL's password, kept with the credentials (`password_file`, the credential
    /// `password`) rather than in the URL.
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    /// HMAC key of the audit chain (at least 32 bytes), kept with the credentials and never
    /// in the database (docs/security/audit.md). Without one the chain is unkeyed SHA-256.
    pub audit_key: Option<SecretString>,
    pub audit_key_file: Option<PathBuf>,
}
impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            path: PathBuf::from("/var/lib/ticketsync/ticketsync.db"),
            busy_timeout_ms: 5000,
            password: None,
            password_file: None,
            audit_key: None,
            audit_key_file: None,
        }
    }
}
impl StoreConfig {
    /// `store.audit_key`, `store.audit_key_file`, or the systemd credential `audit_key`.
    pub fn audit_key_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("store.audit_key", self.audit_key.as_ref(), self.audit_key_file.as_deref())
    }

    /// `store.password`, `store.password_file`, or the systemd credential `password`.
    pub fn password_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("store.password", self.password.as_ref(), self.password_file.as_deref())
    }

    /// `store.url`, else the SQLite file at `store.path` as a URL.
    pub fn url(&self) -> String {
        match &self.url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.path.display()),
        }
    }

    /// Where the store lives, checked (`store.url`).
    pub fn location(&self) -> Result<crate::store::Location, ConfigError> {
        crate::store::Location::parse(&self.url()).map_err(|e| key_err("store.url", e.to_string()))
    }

    /// The store as messages name it: the file, or the URL without a password.
    pub fn display(&self) -> String {
        match self.location() {
            Ok(crate::store::Location::Sqlite(p)) => p.display().to_string(),
            Ok(l) => l.to_string(),
            Err(_) => crate::store::scrub_url(&self.url()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Time zone of every cron schedule (IANA name).
    pub timezone: String,
    /// How often the outbox is scanned for due deliveries.
    pub delivery_interval_secs: u64,
    /// Grace period on SIGTERM before in-flight requests are abandoned (they are retried).
    pub shutdown_grace_secs: u64,
    /// Several instances run on this store: each source is polled by one instance at a time,
    /// the holder of its lease (see `lease_ttl_secs`), and its page writes are fenced with it.
    pub shared_store: bool,
    /// This instance's name in leases, logs and metrics; default `<hostname>:<pid>`.
    pub instance_id: Option<String>,
    /// With `shared_store`: a source's lease lasts this long after its holder's last page
    /// write or poll start; an instance that dies loses it after this, and another takes the
    /// source at its next scheduled run.
    pub lease_ttl_secs: u64,
}
impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            delivery_interval_secs: 5,
            shutdown_grace_secs: 8,
            shared_store: false,
            instance_id: None,
            lease_ttl_secs: 30,
        }
    }
}
impl DaemonConfig {
    /// `instance_id`, or `<hostname>:<pid>`.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host = host.trim();
            format!("{}:{}", if host.is_empty() { "localhost" } else { host }, std::process::id())
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotesConfig {
    /// Time zone used to print start and end times in notes.
    pub timezone: String,
    /// Sinks that cannot attach files (Redmine private notes) put attachments such as chat
    /// transcripts inline, cut at this many characters; the full text stays in the database.
    pub inline_attachment_max_chars: usize,
    /// The key of the notes' marker MAC (at least 16 bytes of text). Unset: the key kept in
    /// the store (`store_secrets`), generated at first start. Set it (here, `marker_key_file`,
    /// the systemd credential `marker_key` or `TICKETSYNC__NOTES__MARKER_KEY`) only to share a
    /// key between stores; changing it does not affect notes already queued.
    pub marker_key: Option<SecretString>,
    pub marker_key_file: Option<PathBuf>,
}
impl Default for NotesConfig {
    fn default() -> Self {
        Self { timezone: "UTC".into(), inline_attachment_max_chars: 20_000, marker_key: None, marker_key_file: None }
    }
}
impl NotesConfig {
    /// `notes.marker_key` as configured, not yet checked as a key.
    pub fn secret(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("notes.marker_key", self.marker_key.as_ref(), self.marker_key_file.as_deref())
    }
    /// The configured marker key, if any (see [`NotesConfig::marker_key`]).
    pub fn marker_key_value(&self) -> Result<Option<crate::marker::MarkerKey>, ConfigError> {
        let Some(s) = self.secret()? else {
            return Ok(None);
        };
        crate::marker::MarkerKey::new(s.expose_secret().as_bytes())
            .map(Some)
            .map_err(|e| key_err("notes.marker_key", e.to_string()))
    }
}

impl Config {
    /// Load the file at `path`, apply `TICKETSYNC__…` environment overrides, validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            file: path.display().to_string(),
            message: format!("cannot read config file: {e}"),
        })?;
        // The secrets are registered with the redactor before validation, so that no error
        // below, nor any log line or vendor answer after, can show one.
        crate::redact::register_all(
            crate::redact::secrets_in_config(&text, ENV_PREFIX, std::env::vars()).iter().map(String::as_str),
        );
        let cfg = Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())?;
        register_config(&cfg, &text);
        Ok(cfg)
    }

    pub fn from_toml_with_env(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (cfg, errors) = Self::parse_all(text, file, env)?;
        match cfg {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(ConfigError::Many { file: file.into(), errors }),
        }
    }

    /// One parse of `text` with the overrides `env`: the configuration as far as it could be
    /// built and every error found, each with its key and line (or variable). A TOML syntax
    /// error stops it (what follows cannot be read reliably).
    pub fn parse_all(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Option<Config>, Vec<Diagnostic>), ConfigError> {
        let parsed = parse::parse(text, env).map_err(|errs| {
            let mut masked = errs.iter().map(|e| one_line(&mask_toml_error(&e.to_string())));
            match errs.len() {
                1 => ConfigError::Invalid { file: file.into(), message: masked.next().unwrap_or_default() },
                // Every syntax error of the file; what they leave cannot be read reliably.
                _ => ConfigError::Many {
                    file: file.into(),
                    errors: masked
                        .map(|message| Diagnostic { key: "TOML syntax".into(), message, origin: Origin::Unset })
                        .collect(),
                },
            }
        })?;
        let mut errors = parsed.errors;
        if let Some(cfg) = &parsed.config {
            errors.extend(cfg.follow_ups_dropped(cfg.validation_errors()));
        }
        if parsed.config.is_none() && errors.is_empty() {
            // Not expected (every way to fail records why), but never an empty error.
            errors.push(Diagnostic {
                key: "(file)".into(),
                message: "cannot be read as a configuration".into(),
                origin: Origin::Unset,
            });
        }
        parse::sort(&mut errors);
        Ok((parsed.config, errors))
    }

    /// `ticketsync check`: load the file at `path` like [`Config::load`], then every secret;
    /// all errors at once.
    pub fn check(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            file: file.clone(),
            message: format!("cannot read config file: {e}"),
        })?;
        crate::redact::register_all(
            crate::redact::secrets_in_config(&text, ENV_PREFIX, std::env::vars()).iter().map(String::as_str),
        );
        let (cfg, mut errors) = Self::parse_all(&text, &file, std::env::vars())?;
        if let Some(cfg) = &cfg {
            register_config(cfg, &text);
            errors.extend(cfg.follow_ups_dropped(cfg.secret_errors()));
            parse::sort(&mut errors);
        }
        match cfg {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(ConfigError::Many { file, errors }),
        }
    }

    /// `errs` located, without those about keys already reported and taken out (`token = 5`
    /// is not "missing" too, nor is a Zoom account taken out for a missing `client_id`).
    fn follow_ups_dropped(&self, errs: Vec<ConfigError>) -> Vec<Diagnostic> {
        let located = errs.into_iter().map(|e| self.diagnostic(e));
        located.filter(|d| !self.origins.was_removed(&d.key)).collect()
    }

    /// `e` with the line of its key in the file, or the variable that set it.
    pub fn diagnostic(&self, e: ConfigError) -> Diagnostic {
        match e.key().map(str::to_string) {
            Some(key) => {
                let message = match e {
                    ConfigError::Key { message, .. } => message,
                    ConfigError::SecretFile { path, source, .. } => format!("cannot read secret file {path}: {source}"),
                    _ => unreachable!("only these name a key"),
                };
                self.origins.diagnostic(&key, message)
            }
            None => Diagnostic { key: String::new(), message: e.to_string(), origin: Origin::Unset },
        }
    }

    /// Checks serde cannot do: cron expressions, time zones, regexes, URLs. The first error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validation_errors().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every error of [`Config::validate`].
    pub fn validation_errors(&self) -> Vec<ConfigError> {
        let mut e = Errors::default();
        e.add(self.store.location().map(|_| ()));
        e.add(check_span("daemon.delivery_interval_secs", self.daemon.delivery_interval_secs, 1));
        e.add(check_span("daemon.shutdown_grace_secs", self.daemon.shutdown_grace_secs, 1));
        e.add(check_span("daemon.lease_ttl_secs", self.daemon.lease_ttl_secs, 1));
        if self.daemon.lease_ttl_secs < 5 {
            e.key("daemon.lease_ttl_secs", "at least 5 (a lease must outlast one page write)");
        }
        e.add(check_span("http.readiness_grace_secs", self.http.readiness_grace_secs, 1));
        e.add(check_span("http.header_read_timeout_secs", self.http.header_read_timeout_secs, 1));
        if self.http.header_read_timeout_secs == 0 {
            e.key("http.header_read_timeout_secs", "at least 1");
        }
        if self.http.max_connections == 0 {
            e.key("http.max_connections", "at least 1");
        }
        e.add(check_span("outbox.base_backoff_secs", self.outbox.base_backoff_secs, 1));
        e.add(check_span("outbox.max_backoff_secs", self.outbox.max_backoff_secs, 1));
        e.add(check_span("outbox.give_up_after_hours", self.outbox.give_up_after_hours, 3600));
        if self.http.active() && self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            e.key("http.listen", "expected an address and port, e.g. \"127.0.0.1:9187\", or \"\" for no listener");
        }
        if self.console.enabled {
            self.validate_console(&mut e);
        }
        e.add(parse_tz(&self.daemon.timezone).map_err(|m| key_err("daemon.timezone", m)));
        e.add(parse_tz(&self.notes.timezone).map_err(|m| key_err("notes.timezone", m)));
        for v in self.vendors() {
            v.validate_into(&mut e);
        }
        for (i, r) in self.matching.rules.iter().enumerate() {
            let key = format!("match.rules[{i}]");
            if r.kind == RuleKind::NotesRegex {
                match r.pattern.as_deref() {
                    None => e.key(&format!("{key}.pattern"), "required for kind = \"notes_regex\""),
                    Some(p) => match regex::Regex::new(p) {
                        Err(err) => e.key(&format!("{key}.pattern"), one_line(&err.to_string())),
                        Ok(re) if re.captures_len() < 2 => e.key(
                            &format!("{key}.pattern"),
                            "needs a capture group for the ticket id, e.g. \"#(\\\\d+)\"",
                        ),
                        Ok(_) => {}
                    },
                }
                for f in r.fields.iter().flatten() {
                    if !crate::matcher::TEXT_FIELDS.contains(&f.as_str()) {
                        e.key(
                            &format!("{key}.fields"),
                            format!("unknown field {f:?}; expected one of {:?}", crate::matcher::TEXT_FIELDS),
                        );
                    }
                }
            } else if r.pattern.is_some() || r.fields.is_some() {
                e.key(&format!("{key}.pattern"), "only allowed for kind = \"notes_regex\"");
            }
            if r.json_key.is_some() && r.kind != RuleKind::CustomApi {
                e.key(&format!("{key}.json_key"), "only allowed for kind = \"custom_api\"");
            }
        }
        self.sinks.validate_into(&mut e);
        for (name, _, r) in self.sinks.sections() {
            let section = format!("sinks.{name}");
            check_route_into(&mut e, &section, r.tickets.as_deref(), r.sources.as_deref());
        }
        self.tenant_validation_into(&mut e);
        for (o, urls) in self.outbound_components() {
            e.add(o.validate());
            for (key, url) in &urls {
                e.add(o.check_url(key, url));
            }
        }
        e.0
    }

    fn validate_console(&self, e: &mut Errors) {
        let c = &self.console;
        if !self.http.active() {
            e.key("console.enabled", "the console is served on the [http] listener, which is off");
        }
        let loopback = self.http.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        if !c.secure_cookie && !loopback {
            e.key(
                "console.secure_cookie",
                "may be false only when http.listen is a loopback address (the cookie would travel in clear)",
            );
        }
        if c.session_ttl_secs == 0 {
            e.key("console.session_ttl_secs", "at least 1");
        }
        if c.login_attempts == 0 {
            e.key("console.login_attempts", "at least 1");
        }
        for (i, p) in c.trusted_proxies.iter().enumerate() {
            if p.parse::<std::net::IpAddr>().is_err() {
                e.key(&format!("console.trusted_proxies[{i}]"), format!("{p:?}: expected an IP address"));
            }
        }
        if c.users.is_empty() {
            e.key("console.users", "the console is enabled but names no user");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in c.users.iter().enumerate() {
            let key = format!("console.users[{i}].name");
            let valid = !u.name.is_empty()
                && u.name.len() <= 64
                && u.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-@".contains(ch));
            if !valid {
                e.key(&key, "1 to 64 letters, digits, '.', '_', '-' or '@'");
            } else if !seen.insert(u.name.as_str()) {
                e.key(&key, format!("{:?} is named twice", u.name));
            }
            match u.password_hash_secret(i) {
                Ok(Some(h)) => {
                    if argon2::PasswordHash::new(h.expose_secret()).is_err() {
                        e.key(
                            &format!("console.users[{i}].password_hash"),
                            "not an argon2 PHC string (make one with `ticketsync console hash-password`)",
                        );
                    }
                }
                Ok(None) if c.trusted_proxies.is_empty() => e.key(
                    &format!("console.users[{i}].password_hash"),
                    "missing: set password_hash_file (or the credential), or log in through a trusted proxy",
                ),
                Ok(None) => {}
                Err(err) => {
                    e.add::<()>(Err(err));
                }
            }
        }
    }

    /// Every configured component that calls out over HTTP, with its outbound keys and the
    /// URLs (key, value) it calls. The https rule and the `ca_file` check run over these.
    pub fn outbound_components(&self) -> Vec<(crate::http::Outbound<'_>, Vec<(String, String)>)> {
        let vendors = self.vendors().into_iter().map(|v| v.outbound_urls());
        let tenants = self.tenant_vendors().into_iter().map(|(_, _, v)| v.outbound_urls());
        let tenant_sinks = self.tenant_sinks().into_iter().map(|(_, _, c)| c.outbound_urls());
        let sinks = self.sinks.all().into_iter().map(|c| c.outbound_urls());
        vendors.chain(sinks).chain(tenants).chain(tenant_sinks).collect()
    }

    /// One line per URL sent over plain http to a host that is not loopback (allowed by
    /// `allow_insecure_http = true`): logged at start-up and printed by `check`.
    pub fn insecure_http_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (o, urls) in self.outbound_components() {
            for (key, url) in o.insecure(&urls) {
                out.push(format!(
                    "{key} = {url}: plain http to a host that is not loopback ({}.allow_insecure_http = true): \
                     credentials and notes travel in clear text",
                    o.section
                ));
            }
        }
        out
    }

    /// Every secret the enabled components use, resolved: the one list behind `check`,
    /// start-up and `doctor`.
    pub fn secret_uses(&self) -> Vec<SecretUse> {
        let mut out: Vec<SecretUse> =
            self.vendors().into_iter().filter(|v| v.enabled()).flat_map(|v| v.secrets()).collect();
        // Optional, but a configured file that cannot be read is an error now, not an
        // open /metrics later.
        out.push(SecretUse::declared("http.metrics_token", false, self.http.metrics_token_secret()));
        if matches!(self.store.location(), Ok(crate::store::Location::Postgres(_))) {
            out.push(SecretUse::declared("store.password", false, self.store.password_secret()));
        }
        if self.console.enabled {
            for (i, u) in self.console.users.iter().enumerate() {
                out.push(SecretUse {
                    key: format!("console.users[{i}].password_hash"),
                    credential: element_credential(CONSOLE_PASSWORD_HASH, &u.name),
                    required: false,
                    value: u.password_hash_secret(i),
                });
            }
        }
        out.push(SecretUse::declared("notes.marker_key", false, self.notes.secret()));
        out.extend(self.sinks.secret_uses());
        out.extend(self.tenant_secret_uses());
        out
    }

    /// Every missing or unreadable secret, and a marker key too short.
    pub fn secret_errors(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for u in self.secret_uses() {
            match u.value {
                Err(e) => out.push(e),
                Ok(None) if u.required => out.push(missing_secret(&u.key, &u.credential)),
                Ok(_) => {}
            }
        }
        if let Err(e @ ConfigError::Key { .. }) = self.notes.marker_key_value() {
            out.push(e);
        }
        out
    }

    /// Resolve every secret the configured components need, so that a missing one is a
    /// start-up error naming its key rather than a failure at the first poll. The first error.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        self.secret_errors().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every configured vendor's section, `[sources]` then `[rooms]`: the one list of vendors
    /// the binary builds, validates, probes and asks for secrets.
    pub fn vendors(&self) -> Vec<&dyn SourceSection> {
        crate::sources::section::all(&self.sources, &self.rooms)
    }

    pub fn notes_tz(&self) -> chrono_tz::Tz {
        parse_tz(&self.notes.timezone).unwrap_or(chrono_tz::UTC)
    }
    pub fn daemon_tz(&self) -> chrono_tz::Tz {
        parse_tz(&self.daemon.timezone).unwrap_or(chrono_tz::UTC)
    }
}

/// Register every secret of a loaded configuration with the redactor (crates/redact), and the
/// HTTP Basic pairs its sinks and vendors send (Zendesk `email/token:TOKEN`, Freshservice
/// `KEY:X`, JSM Cloud `email:TOKEN`, Zoom's token endpoint `client_id:client_secret`): only
/// the binary's configuration knows which values those are.
fn register_config(cfg: &Config, text: &str) {
    use crate::redact::{register_all, register_pairs, secrets_in_config, MIN_SECRET_LEN};
    let secrets = secrets_in_config(text, ENV_PREFIX, std::env::vars());
    let short = secrets.iter().filter(|s| !s.is_empty() && s.chars().count() < MIN_SECRET_LEN).count();
    if short > 0 {
        tracing::warn!(
            secrets = short,
            min_len = MIN_SECRET_LEN,
            "configured secret(s) too short to be redacted from logs and error text"
        );
    }
    register_all(secrets.iter().map(String::as_str));
    let mut pairs: Vec<(String, String)> = Vec::new();
    pairs.extend(cfg.sinks.basic_pairs());
    pairs.extend(cfg.vendors().into_iter().flat_map(|v| v.basic_pairs()));
    pairs.extend(cfg.tenant_vendors().into_iter().flat_map(|(_, _, v)| v.basic_pairs()));
    pairs.extend(cfg.tenant_sinks().into_iter().flat_map(|(_, _, c)| c.basic_pairs()));
    register_pairs(&pairs);
}

/// A TOML syntax error quotes the offending line(s) (`12 | api_key = "…`), which may hold a
/// secret: keep the line number, the key and the table headers, mask every value.
fn mask_toml_error(msg: &str) -> String {
    msg.lines()
        .map(|l| {
            let Some((gutter, content)) = l.split_once(" | ") else { return l.to_string() };
            if !gutter.trim().chars().all(|c| c.is_ascii_digit()) || gutter.trim().is_empty() {
                return l.to_string();
            }
            let c = content.trim_start();
            if c.starts_with('[') && !c.contains('=') {
                return l.to_string();
            }
            let masked = match content.split_once('=') {
                Some((key, _)) => format!("{key}= ***"),
                None if c.is_empty() => String::new(),
                None => "***".to_string(),
            };
            format!("{gutter} | {masked}")
        })
        // The caret line points into the text that is no longer shown.
        .filter(|l| !l.trim_start().starts_with('|') || !l.contains('^'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A sink's routing keys: a valid ticket pattern and known source names (the sources are
/// the binary's to know, so this check is here, not in the sinks crate).
fn check_route_into(e: &mut Errors, section: &str, tickets: Option<&str>, sources: Option<&[String]>) {
    if let Some(p) = tickets {
        e.add(
            regex::Regex::new(p)
                .map_err(|err| key_err(&format!("{section}.tickets"), err.to_string().replace('\n', " "))),
        );
    }
    if sources.is_some_and(|s| s.is_empty()) {
        e.key(&format!("{section}.sources"), "must name at least one source, or be left out");
    }
    // A misspelt source would silently route nothing to this sink.
    let known = crate::sources::ROUTING_NAMES;
    for bad in sources.into_iter().flatten().filter(|s| !known.iter().any(|k| k.eq_ignore_ascii_case(s))) {
        e.key(&format!("{section}.sources"), format!("unknown source {bad:?} (known: {})", known.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_listener_is_on_by_default_and_off_by_either_key() {
        let c = |t: &str| Config::from_toml_with_env(t, "t.toml", Vec::<(String, String)>::new());
        assert!(c("").unwrap().http.active());
        assert_eq!(c("").unwrap().http.listen, "127.0.0.1:9187");
        assert!(!c("[http]\nlisten = \"\"\n").unwrap().http.active(), "an empty listen is no listener");
        assert!(!c("[http]\nenabled = false\nlisten = \"nonsense\"\n").unwrap().http.active());
        assert!(c("[http]\nlisten = \"nonsense\"\n").unwrap_err().to_string().contains("http.listen"));
    }

    /// The config crate sits below the store, so it names the audit key's credential as a
    /// string; this keeps the two spellings one.
    #[test]
    fn the_audit_key_credential_is_the_stores() {
        assert_eq!(credential("store.audit_key"), crate::store::audit::CREDENTIAL);
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, "t.toml", Vec::<(String, String)>::new())
    }

    /// The secret keys the components declare are exactly those their sections use, in every
    /// authentication variant, and each one's credential is one `doctor` recognizes.
    #[test]
    fn declared_secret_keys_are_the_ones_the_sections_use() {
        let every_component = "[sources.zoom]\n[[sources.zoom.accounts]]\nname = \"a\"\nauth = \"oauth\"\n\
            client_id = \"c\"\n[rooms.visioconference]\n[sinks.redmine]\nurl = \"https://r\"\n\
            [sinks.webhook]\nurl = \"https://h\"\n[sinks.zendesk]\nurl = \"https://z\"\nemail = \"a@x\"\n\
            [sinks.freshservice]\nurl = \"https://f\"\n[sinks.jsm]\nurl = \"https://j\"\nemail = \"a@x\"\n\
            [sinks.glpi]\nurl = \"https://g/apirest.php\"\n[sinks.rt]\nurl = \"https://rt\"\n[sinks.zammad]\nurl = \"https://zm\"\n\
            [sinks.servicenow]\nurl = \"https://sn\"\nauth = \"oauth_password\"\nuser = \"u\"\nclient_id = \"c\"\n\
            [sinks.connectwise]\nurl = \"https://cw\"\ncompany = \"c\"\npublic_key = \"p\"\nclient_id = \"i\"\nmember = \"m\"\n\
            [sinks.autotask]\nusername = \"u@x\"\nintegration_code = \"C\"\n\
            [sinks.halopsa]\nurl = \"https://h\"\nclient_id = \"c\"\n";
        let mut used = std::collections::BTreeSet::new();
        for auth in ["[sources.teamviewer]\n[sources.splashtop]\n", TWO_OAUTH] {
            let c = load(&format!("{auth}{every_component}")).unwrap();
            for u in c.secret_uses() {
                assert!(is_credential(&u.credential), "{}: credential {} not recognized", u.key, u.credential);
                // An account's key by its index: declared once for every account.
                used.insert(u.key.replace("accounts[0]", "accounts[]"));
            }
        }
        // PostgreSQL's password, used with a postgres:// store only.
        let pg = load("[store]\nurl = \"postgres://ticketsync@db.example/ticketsync\"\n").unwrap();
        for u in pg.secret_uses() {
            assert!(is_credential(&u.credential), "{}: credential {} not recognized", u.key, u.credential);
            used.insert(u.key);
        }
        // Read where the store is opened (`StoreConfig::audit_key_secret`), not among the uses.
        used.insert("store.audit_key".to_string());
        // A console user's password hash, used only with the console on.
        let console = load(
            "[console]\nenabled = true\nsecure_cookie = false\n[[console.users]]\nname = \"ann\"\nrole = \"viewer\"\n\
             password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA\"\n",
        )
        .unwrap();
        for u in console.secret_uses().into_iter().filter(|u| u.key.starts_with("console.")) {
            assert!(is_credential(&u.credential), "{}: credential {} not recognized", u.key, u.credential);
            used.insert(u.key.replace("users[0]", "users[]"));
        }
        let declared: std::collections::BTreeSet<String> = secret_keys().into_iter().map(String::from).collect();
        assert_eq!(used, declared);
    }

    const TWO_OAUTH: &str = "[sources.teamviewer]\nauth = \"oauth\"\nclient_id = \"t\"\n\
        [sources.splashtop]\nauth = \"oauth\"\nclient_id = \"s\"\n";

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("").unwrap();
        assert_eq!(c.store.busy_timeout_ms, 5000);
        assert_eq!(c.matching.rules.len(), 3);
        assert!(c.sources.teamviewer.is_none());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = load("[store]\npath = \"/tmp/x.db\"\nbusy_timeot_ms = 3\n").unwrap_err().to_string();
        assert!(err.contains("busy_timeot_ms"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_cron_names_the_key() {
        let err = load("[sources.teamviewer]\nschedule = \"every minute\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml: sources.teamviewer.schedule"), "{err}");
        assert!(err.ends_with("(line 2)"), "{err}");
    }

    #[test]
    fn env_overrides_a_key() {
        let c = Config::from_toml_with_env(
            "[store]\npath = \"/a.db\"\n",
            "t.toml",
            vec![
                ("TICKETSYNC__STORE__PATH".to_string(), "/b.db".to_string()),
                ("TICKETSYNC__STORE__BUSY_TIMEOUT_MS".into(), "77".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.store.path, PathBuf::from("/b.db"));
        assert_eq!(c.store.busy_timeout_ms, 77);
    }

    #[test]
    fn regex_rule_needs_a_capture_group() {
        let err = load("[[match.rules]]\nkind = \"notes_regex\"\npattern = \"#\\\\d+\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml: match.rules[0].pattern"), "{err}");
    }

    #[test]
    fn splashtop_region_picks_hosts() {
        let c = load("[sources.splashtop]\nregion = \"eu\"\n").unwrap();
        let st = c.sources.splashtop.unwrap();
        assert_eq!(st.base_url(), "https://webapi.splashtop.eu");
        assert_eq!(st.authorize_url(), "https://my.splashtop.eu/oauth2/authorize");
        let c = load("[sources.splashtop]\n").unwrap();
        assert_eq!(c.sources.splashtop.unwrap().base_url(), "https://webapi.splashtop.com");
        let err = load("[sources.splashtop]\nauth = \"oauth\"\n").unwrap_err().to_string();
        assert!(err.contains("sources.splashtop.client_id"), "{err}");
    }

    /// Regression (seen while writing the fuzz target `config`, whose start-up check now
    /// guards it; input in fuzz/seeds/config/regress_spans.toml): these passed validation and
    /// then panicked at start-up (`TimeDelta::days out of bounds`, date overflow,
    /// `shutdown_grace_secs + 1`).
    #[test]
    fn absurd_spans_are_errors_not_start_up_panics() {
        for (section, key) in [
            ("daemon", "shutdown_grace_secs"),
            ("daemon", "delivery_interval_secs"),
            ("http", "readiness_grace_secs"),
            ("outbox", "max_backoff_secs"),
            ("outbox", "give_up_after_hours"),
            ("sources.teamviewer", "initial_lookback_days"),
            ("sources.teamviewer", "valid_hours"),
            ("sources.splashtop", "overlap_minutes"),
            ("sources.splashtop", "refresh_token_days"),
        ] {
            let err = load(&format!("[{section}]\n{key} = 9223372036854775807\n")).unwrap_err().to_string();
            assert!(err.contains(&format!("{section}.{key}: at most")) && err.ends_with("(line 2)"), "{err}");
        }
        let err = load(
            "[sources.zoom]\nlookback_days = 1000000000000\n[[sources.zoom.accounts]]\nname = \"a\"\n\
             auth = \"server_to_server\"\nclient_id = \"c\"\naccount_id = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sources.zoom.lookback_days: at most 3650"), "{err}");
        let c = load("[sources.teamviewer]\ninitial_lookback_days = 3650\n").unwrap();
        assert_eq!(c.sources.teamviewer.unwrap().initial_lookback_days, 3650);
    }

    #[test]
    fn secret_env_overrides_stay_strings() {
        let c = Config::from_toml_with_env(
            "[sinks.redmine]\nurl = \"http://127.0.0.1:1\"\n[sources.splashtop]\n",
            "t.toml",
            vec![
                ("TICKETSYNC__SINKS__REDMINE__API_KEY".to_string(), "007700".to_string()),
                ("TICKETSYNC__SINKS__REDMINE__ENABLED".into(), "false".into()),
                ("TICKETSYNC__SOURCES__SPLASHTOP__TEAM_ID".into(), "0042".into()),
                ("TICKETSYNC__SOURCES__SPLASHTOP__CLIENT_ID".into(), "00123".into()),
                ("TICKETSYNC__SOURCES__SPLASHTOP__CLIENT_SECRET".into(), "1e5".into()),
            ],
        )
        .unwrap();
        let rm = c.sinks.redmine.as_ref().unwrap();
        assert_eq!(rm.api_key_secret().unwrap().unwrap().expose_secret(), "007700");
        assert!(!rm.enabled);
        let st = c.sources.splashtop.as_ref().unwrap();
        assert_eq!(st.team_id, Some(42));
        assert_eq!(st.client_id.as_deref(), Some("00123"));
        assert_eq!(st.client_secret().unwrap().unwrap().expose_secret(), "1e5");
    }

    #[test]
    fn toml_syntax_error_masks_values_keeps_key_and_line() {
        let text = "[sinks.redmine]\nurl = \"http://x\"\napi_key = \"CANARY-in-syntax-error\nenabled = true\n";
        let err = load(text).unwrap_err().to_string();
        assert!(!err.contains("CANARY"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("api_key = ***"), "{err}");
        let err = load("[sources.teamviewer]\ntoken = 'CANARY-x' 'y'\n").unwrap_err().to_string();
        assert!(!err.contains("CANARY") && err.contains("token = ***") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let err = load("[store\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn secret_from_file_is_trimmed_and_missing_secret_names_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "s3cret\n").unwrap();
        let c = load(&format!("[sinks.redmine]\nurl = \"http://127.0.0.1:1\"\napi_key_file = \"{}\"\n", f.display()))
            .unwrap();
        assert_eq!(c.sinks.redmine.as_ref().unwrap().api_key_secret().unwrap().unwrap().expose_secret(), "s3cret");
        let c = load("[sinks.webhook]\nurl = \"http://127.0.0.1:1\"\n").unwrap();
        let err = c.check_secrets().unwrap_err().to_string();
        assert!(err.starts_with("sinks.webhook.secret"), "{err}");
    }

    #[test]
    fn marker_key_is_optional_and_at_least_16_bytes() {
        assert!(load("").unwrap().notes.marker_key_value().unwrap().is_none());
        let c = load("[notes]\nmarker_key = \"0123456789abcdef-shared\"\n").unwrap();
        let k = c.notes.marker_key_value().unwrap().expect("configured");
        assert_eq!(k.bytes(), b"0123456789abcdef-shared");
        let c = load("[notes]\nmarker_key = \"short\"\n").unwrap();
        let err = c.check_secrets().unwrap_err().to_string();
        assert!(err.starts_with("notes.marker_key") && err.contains("16 bytes"), "{err}");
        let c = load("[sinks.redmine]\nurl = \"http://127.0.0.1:1\"\ntext_formatting = \"common_mark\"\n").unwrap();
        assert_eq!(c.sinks.redmine.unwrap().text_formatting, crate::sinks::redmine::TextFormatting::CommonMark);
    }
}
