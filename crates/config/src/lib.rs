//! The vocabulary every component's configuration shares, below every other crate: the
//! error type with the key and line it is about, validation that goes on after the first
//! error, secrets from the value, a `*_file` key or systemd's `$CREDENTIALS_DIRECTORY`, and
//! the checks of spans, URLs and time zones. The top-level `Config` (which sections exist)
//! is the binary's; each component's section type uses these.

use std::path::Path;

pub mod component;
pub use component::{Component, Described, HasComponent, InitKey, Plain, Setup, Shaped, Values};

use secrecy::{ExposeSecret, SecretString};

/// The prefix of environment overrides: `TICKETSYNC__SECTION__KEY`.
pub const ENV_PREFIX: &str = "TICKETSYNC";

/// Where a key's value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Line and column (1-based) of the key in the file (of its section header when the key
    /// itself is not written there).
    File { line: usize, column: usize },
    /// The environment variable that set it.
    Env(String),
    /// Neither: a default value.
    Unset,
}

/// One configuration error: the dotted key (`sources.zoom.accounts[0].name`), what is
/// wrong, and where the value came from. Never holds a value that could be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub key: String,
    pub message: String,
    pub origin: Origin,
}

impl Diagnostic {
    pub fn line(&self) -> Option<usize> {
        match self.origin {
            Origin::File { line, .. } => Some(line),
            _ => None,
        }
    }

    /// The long form `check` prints: with the column.
    pub fn detailed(&self) -> String {
        match &self.origin {
            Origin::File { line, column } => format!("{}: {} (line {line}, column {column})", self.key, self.message),
            _ => self.to_string(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            Origin::File { line, .. } => write!(f, "{}: {} (line {line})", self.key, self.message),
            Origin::Env(var) => write!(f, "{}: {} (environment variable {var})", self.key, self.message),
            Origin::Unset => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{key}: {message}")]
    Key { key: String, message: String },
    #[error("{key}: cannot read secret file {path}: {source}")]
    SecretFile { key: String, path: String, source: std::io::Error },
    /// Every error of one file, one line each (`check` prints them all).
    #[error("{}", .errors.iter().map(|d| format!("{file}: {d}")).collect::<Vec<_>>().join("\n"))]
    Many { file: String, errors: Vec<Diagnostic> },
}

impl ConfigError {
    /// One line per error, with the column where the file has one (`ticketsync check`).
    pub fn report_lines(&self) -> Vec<String> {
        match self {
            ConfigError::Many { file, errors } => errors.iter().map(|d| format!("{file}: {}", d.detailed())).collect(),
            other => vec![other.to_string()],
        }
    }

    /// The key this error is about, when it names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } | ConfigError::SecretFile { key, .. } => Some(key),
            _ => None,
        }
    }
}

pub fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.to_string(), message: message.into() }
}

/// The errors of a validation that goes on after the first one.
#[derive(Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn add<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
    pub fn key(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(key_err(key, message));
    }
}

/// One secret a component uses, resolved: the list behind `check`, start-up and `doctor`.
#[derive(Debug)]
pub struct SecretUse {
    /// The key (`sinks.redmine.api_key`); `<key>_file` and `TICKETSYNC__…` set it too.
    pub key: String,
    /// The systemd credential (`LoadCredential=`) that provides it.
    pub credential: String,
    pub required: bool,
    pub value: Result<Option<SecretString>, ConfigError>,
}

impl SecretUse {
    /// A secret under its key's credential ([`credential`]).
    pub fn declared(key: &str, required: bool, value: Result<Option<SecretString>, ConfigError>) -> SecretUse {
        SecretUse { key: key.to_string(), credential: credential(key), required, value }
    }
}

/// The systemd credential (`LoadCredential=`) of a secret key, by one rule: a component's key
/// is named `<section's last segment>_<key>` (`sinks.glpi.app_token` → `glpi_app_token`,
/// `rooms.visioconference.token` → `visioconference_token`), a top-level section's by the key
/// alone (`store.audit_key` → `audit_key`). A key in an array of named elements
/// (`sources.zoom.accounts[].client_secret`) takes the element's name: see
/// [`element_credential`]. Components declare their secret keys in their own sections; the
/// binary lists them all, so no table of names is kept by hand.
pub fn credential(key: &str) -> String {
    let (section, field) = key.rsplit_once('.').unwrap_or(("", key));
    match section.rsplit_once('.') {
        Some((_, last)) => format!("{last}_{field}"),
        None => field.to_string(),
    }
}

/// The credential of `key` (`sources.zoom.accounts[].client_secret`) for the array element
/// named `element`: `zoom_<element>_client_secret`.
pub fn element_credential(key: &str, element: &str) -> String {
    let (prefix, suffix) = element_credential_parts(key);
    format!("{prefix}{element}{suffix}")
}

/// `(prefix, suffix)` around the element's name in the credentials of an array key.
fn element_credential_parts(key: &str) -> (String, String) {
    let (array, field) = key.split_once("[].").unwrap_or((key, ""));
    let section = array.rsplit_once('.').map_or(array, |(s, _)| s);
    let last = section.rsplit_once('.').map_or(section, |(_, l)| l);
    (format!("{last}_"), format!("_{field}"))
}

/// Whether `name` (a file in the credentials directory) is the credential of one of the
/// secret keys `keys`, an array key's for any element name.
pub fn is_credential_of<'a>(name: &str, keys: impl IntoIterator<Item = &'a str>) -> bool {
    keys.into_iter().any(|k| match k.contains("[].") {
        true => {
            let (prefix, suffix) = element_credential_parts(k);
            name.len() > prefix.len() + suffix.len() && name.starts_with(&prefix) && name.ends_with(&suffix)
        }
        false => credential(k) == name,
    })
}

/// The secret of `key` from the value, its `_file`, or its declared credential.
pub fn declared_secret(
    key: &str,
    inline: Option<&SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigError> {
    resolve_secret(key, inline, file, &credential(key))
}

pub fn missing_secret(key: &str, cred: &str) -> ConfigError {
    // Keys inside arrays (`sources.zoom.accounts[0]…`) have no environment variable.
    let env = match key.contains('[') {
        true => String::new(),
        false => format!(", or {ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase()),
    };
    key_err(key, format!("missing: set {key}_file, or provide the systemd credential {cred:?} (LoadCredential){env}"))
}

/// A required secret: present, or an error naming the key and where it can come from.
pub fn require(v: Option<SecretString>, key: &str) -> Result<SecretString, ConfigError> {
    v.ok_or_else(|| missing_secret(key, &credential(key)))
}

/// Order: the inline value (file or `TICKETSYNC__…` env), then `<key>_file`, then
/// `$CREDENTIALS_DIRECTORY/<credential>` as systemd's `LoadCredential=` provides it.
pub fn resolve_secret(
    key: &str,
    inline: Option<&SecretString>,
    file: Option<&Path>,
    credential: &str,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(v) = inline.filter(|v| !v.expose_secret().is_empty()) {
        return Ok(Some(v.clone()));
    }
    let read = |p: &Path, k: &str| -> Result<SecretString, ConfigError> {
        let s = std::fs::read_to_string(p).map_err(|e| ConfigError::SecretFile {
            key: k.to_string(),
            path: p.display().to_string(),
            source: e,
        })?;
        // Files written by `echo` end with a newline that is not part of the secret.
        Ok(SecretString::from(s.trim_end_matches(['\n', '\r']).to_string()))
    };
    if let Some(p) = file {
        return read(p, &format!("{key}_file")).map(Some);
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = Path::new(&dir).join(credential);
        if p.exists() {
            return read(&p, &format!("$CREDENTIALS_DIRECTORY/{credential}")).map(Some);
        }
    }
    Ok(None)
}

/// Ten years: the longest window, lifetime, grace or backoff a key may give. The
/// components turn these numbers into chrono durations and dates at start-up, which
/// panic far beyond this (`initial_lookback_days = 1e12`), so larger values are errors here.
const MAX_SPAN_SECS: u64 = 10 * 365 * 86_400;

/// `value` in units of `unit_secs` seconds must not exceed [`MAX_SPAN_SECS`].
pub fn check_span(key: &str, value: u64, unit_secs: u64) -> Result<(), ConfigError> {
    let max = MAX_SPAN_SECS / unit_secs;
    if value > max {
        return Err(key_err(key, format!("at most {max} (ten years)")));
    }
    Ok(())
}

pub fn parse_tz(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("unknown time zone {name:?} (use an IANA name such as \"Europe/Paris\")"))
}

pub fn check_url(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule names every credential as the table kept by hand before it did.
    #[test]
    fn credentials_follow_from_their_keys() {
        for (key, cred) in [
            ("sources.teamviewer.token", "teamviewer_token"),
            ("sources.teamviewer.client_secret", "teamviewer_client_secret"),
            ("sources.splashtop.token", "splashtop_token"),
            ("sources.splashtop.client_secret", "splashtop_client_secret"),
            ("rooms.visioconference.token", "visioconference_token"),
            ("sinks.redmine.api_key", "redmine_api_key"),
            ("sinks.webhook.secret", "webhook_secret"),
            ("sinks.zendesk.token", "zendesk_token"),
            ("sinks.freshservice.api_key", "freshservice_api_key"),
            ("sinks.jsm.token", "jsm_token"),
            ("sinks.glpi.user_token", "glpi_user_token"),
            ("sinks.glpi.app_token", "glpi_app_token"),
            ("http.metrics_token", "metrics_token"),
            ("notes.marker_key", "marker_key"),
            ("store.audit_key", "audit_key"),
        ] {
            assert_eq!(credential(key), cred, "{key}");
        }
        let zoom = "sources.zoom.accounts[].client_secret";
        assert_eq!(element_credential(zoom, "helpdesk"), "zoom_helpdesk_client_secret");
        let keys = ["sinks.glpi.app_token", zoom];
        assert!(is_credential_of("glpi_app_token", keys));
        assert!(is_credential_of("zoom_a-b_client_secret", keys));
        for not in ["glpi_app_tokn", "zoom__client_secret", "zoom_client_secret", "app_token"] {
            assert!(!is_credential_of(not, keys), "{not}");
        }
    }
}
