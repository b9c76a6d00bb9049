//! One redactor for every secret this process holds: the configured credentials (file,
//! `TICKETSYNC__…` environment, `*_file` keys, `$CREDENTIALS_DIRECTORY`) and every live
//! OAuth access/refresh token and sink session token, registered when it is loaded from the
//! store or obtained from a vendor.
//!
//! Vendors and ticket systems answer errors with text we do not control; a hostile or
//! misconfigured one echoes our request headers and body back. Every such string passes
//! through [`scrub`] before it is logged (the log writer, [`ScrubbingMakeWriter`]), stored
//! (`last_error` columns, attempts, quarantine reasons, audit details), printed (CLI output,
//! the error line of `main`) or exported.
//!
//! Each secret is matched in every form it travels in: plain, JSON- and Rust-debug-escaped,
//! percent-encoded (upper and lower case hex) and form-encoded, base64 (standard and
//! URL-safe, padded or not), base64 of the `user:secret` pairs the sinks send as HTTP Basic
//! auth, and base64 of the secret at any position inside a longer encoded value (the
//! characters of the 3-byte groups that lie wholly inside the secret, for each of the three
//! alignments). One Aho-Corasick automaton holds every form, so a log line is scanned once
//! whatever the number of secrets.
//!
//! Secrets shorter than [`MIN_SECRET_LEN`] are not registered: masking every occurrence of
//! a 3-character string would garble logs and CLI output (key names, words, numbers) while
//! a secret that short is guessable anyway. `ticketsync` warns about them at load.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// Shorter secrets are not redacted (see the module documentation).
pub const MIN_SECRET_LEN: usize = 8;

/// The shortest base64 fragment matched for a secret inside a longer encoded value: two
/// whole groups (6 bytes of the secret). Shorter fragments would mask unrelated text.
const MIN_CORE_LEN: usize = 8;

/// The set of secrets and the automaton that finds all their forms.
#[derive(Default, Clone)]
pub struct Redactor {
    secrets: BTreeSet<String>,
    /// (user, password) of HTTP Basic auth, where base64 covers both halves.
    pairs: BTreeSet<(String, String)>,
    matcher: Option<AhoCorasick>,
    patterns: usize,
}

impl std::fmt::Debug for Redactor {
    // Never the secrets themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("pairs", &self.pairs.len())
            .field("patterns", &self.patterns)
            .finish()
    }
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Add a secret; false when it was already known or is too short. Call [`Self::rebuild`]
    /// (or use [`Self::with`]) before scrubbing.
    pub fn add_secret(&mut self, secret: &str) -> bool {
        if secret.chars().count() < MIN_SECRET_LEN {
            return false;
        }
        self.secrets.insert(secret.to_string())
    }

    /// Add the `user:password` pair of an HTTP Basic header (its base64 is matched whole).
    /// The password alone is not registered by this call.
    pub fn add_basic_pair(&mut self, user: &str, password: &str) -> bool {
        if user.len() + password.len() < MIN_SECRET_LEN {
            return false;
        }
        self.pairs.insert((user.to_string(), password.to_string()))
    }

    /// Builder style: add the secrets and build the matcher.
    pub fn with<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        for s in secrets {
            self.add_secret(s);
        }
        self.rebuild();
        self
    }

    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// Build the automaton over every form of every secret.
    pub fn rebuild(&mut self) {
        let mut patterns = BTreeSet::new();
        for s in &self.secrets {
            patterns.extend(forms(s));
        }
        for (u, p) in &self.pairs {
            patterns.extend(base64_forms(format!("{u}:{p}").as_bytes()));
        }
        patterns.retain(|p| !p.is_empty());
        self.patterns = patterns.len();
        self.matcher = if patterns.is_empty() {
            None
        } else {
            // Leftmost-longest: the whole Basic value wins over the fragment inside it.
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .expect("literal patterns always build"),
            )
        };
    }

    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(m) = &self.matcher else { return Cow::Borrowed(text) };
        if m.find(text).is_none() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        m.replace_all_with(text, &mut out, |_, _, dst| {
            dst.push_str(MASK);
            true
        });
        Cow::Owned(out)
    }

    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(m) = &self.matcher else { return Cow::Borrowed(bytes) };
        if m.find(bytes).is_none() {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        m.replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
            dst.extend_from_slice(MASK.as_bytes());
            true
        });
        Cow::Owned(out)
    }
}

/// Every form in which `secret` may appear in text we receive.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    // Inside a JSON string (an echoed body) and in `{:?}` output (a debug-formatted field).
    if let Ok(j) = serde_json::to_string(secret) {
        out.push(j[1..j.len() - 1].to_string());
    }
    let d = format!("{secret:?}");
    out.push(d[1..d.len() - 1].to_string());
    // Query strings and form bodies: every reserved byte as %XX (both hex cases), and the
    // form encoding (`+` for a space).
    let (mut upper, mut lower) = (String::new(), String::new());
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            upper.push(b as char);
            lower.push(b as char);
        } else {
            upper.push_str(&format!("%{b:02X}"));
            lower.push_str(&format!("%{b:02x}"));
        }
    }
    out.push(upper);
    out.push(lower);
    out.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    out.extend(base64_forms(secret.as_bytes()));
    out.extend(base64_cores(secret.as_bytes()));
    out
}

/// Base64 of `bytes` alone: standard and URL-safe alphabets, with and without padding.
fn base64_forms(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    vec![STANDARD.encode(bytes), STANDARD_NO_PAD.encode(bytes), URL_SAFE.encode(bytes), URL_SAFE_NO_PAD.encode(bytes)]
}

/// The base64 characters that encode `bytes` wherever they sit in a longer value: for each
/// of the three alignments, the characters of the 3-byte groups wholly inside the secret
/// (they do not depend on the bytes around it). Catches `Basic base64(anyone:secret)` and a
/// secret inside any base64-encoded body.
fn base64_cores(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut buf = vec![0u8; offset];
        buf.extend_from_slice(bytes);
        let first_group = offset.div_ceil(3);
        let end_group = buf.len() / 3;
        if end_group <= first_group {
            continue;
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(&buf);
            let core = &enc[first_group * 4..end_group * 4];
            if core.len() >= MIN_CORE_LEN {
                out.push(core.to_string());
            }
        }
    }
    out
}

fn registry() -> &'static RwLock<Arc<Redactor>> {
    static REGISTRY: OnceLock<RwLock<Arc<Redactor>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Arc::new(Redactor::new())))
}

/// The process-wide redactor (cheap: one `Arc` clone under a read lock).
pub fn current() -> Arc<Redactor> {
    registry().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Mask every registered secret in `text`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let r = current();
    r.scrub(text)
}

/// [`scrub`] into an owned string.
pub fn scrubbed(text: &str) -> String {
    scrub(text).into_owned()
}

/// Register secrets with the process-wide redactor (a no-op for ones already known).
pub fn register_all<'a>(secrets: impl IntoIterator<Item = &'a str>) {
    let lock = registry();
    // Fast path, taken on every token load: nothing new, only the read lock, no copy.
    let new: Vec<&str> = {
        let r = lock.read().unwrap_or_else(|e| e.into_inner());
        secrets.into_iter().filter(|s| s.chars().count() >= MIN_SECRET_LEN && !r.secrets.contains(*s)).collect()
    };
    if new.is_empty() {
        return;
    }
    let mut w = lock.write().unwrap_or_else(|e| e.into_inner());
    let mut next = (**w).clone();
    if new.iter().fold(false, |changed, s| next.add_secret(s) | changed) {
        next.rebuild();
        *w = Arc::new(next);
    }
}

/// Register one secret, e.g. a token just obtained from or loaded for a vendor.
pub fn register(secret: &str) {
    register_all([secret]);
}

/// Register the `user:password` of an HTTP Basic header.
pub fn register_basic(user: &str, password: &str) {
    register_pairs(&[(user.to_string(), password.to_string())]);
}

pub fn register_pairs(pairs: &[(String, String)]) {
    let mut w = registry().write().unwrap_or_else(|e| e.into_inner());
    let mut next = (**w).clone();
    if pairs.iter().fold(false, |changed, (u, p)| next.add_basic_pair(u, p) | changed) {
        next.rebuild();
        *w = Arc::new(next);
    }
}

/// Config keys whose value is a secret: `token`, `secret`, `password`, `api_key`, and any
/// key ending in `_token`, `_secret`, `_password` or `_key` (`client_secret`, `user_token`,
/// `app_token`, and keys other components add later, such as an `audit_key`), except the
/// few that name something else.
pub fn is_secret_key(key: &str) -> bool {
    const NOT_SECRETS: &[&str] = &["json_key"];
    let k = key.to_ascii_lowercase();
    if NOT_SECRETS.contains(&k.as_str()) {
        return false;
    }
    ["token", "secret", "password", "api_key", "key"].contains(&k.as_str())
        || ["_token", "_secret", "_password", "_key"].iter().any(|s| k.ends_with(s))
}

/// Every secret a configuration names, found without knowing its types: values of secret
/// keys in the TOML text and in `TICKETSYNC__…` variables, the contents of the files their
/// `<key>_file` siblings name, and every file in `$CREDENTIALS_DIRECTORY`. Called on the
/// raw text, before validation, so even a configuration that fails to load is covered.
pub fn secrets_in_config(text: &str, env_prefix: &str, env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(table) = toml::from_str::<toml::Table>(text) {
        walk_toml(&toml::Value::Table(table), None, &mut out);
    }
    let prefix = format!("{env_prefix}__");
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(&prefix) else { continue };
        let last = rest.rsplit("__").next().unwrap_or(rest);
        push_secret_value(last, &v, &mut out);
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let small = entry.metadata().is_ok_and(|m| m.is_file() && m.len() <= 64 * 1024);
            if let (true, Ok(s)) = (small, std::fs::read_to_string(entry.path())) {
                out.push(s.trim_end_matches(['\n', '\r']).to_string());
            }
        }
    }
    out
}

fn walk_toml(v: &toml::Value, key: Option<&str>, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                walk_toml(v, Some(k), out);
            }
        }
        toml::Value::Array(a) => {
            for v in a {
                walk_toml(v, key, out);
            }
        }
        toml::Value::String(s) => {
            if let Some(k) = key {
                push_secret_value(k, s, out);
            }
        }
        toml::Value::Integer(i) if key.is_some_and(is_secret_key) => out.push(i.to_string()),
        _ => {}
    }
}

fn push_secret_value(key: &str, value: &str, out: &mut Vec<String>) {
    if is_secret_key(key) {
        out.push(value.to_string());
    } else if key.to_ascii_lowercase().strip_suffix("_file").is_some_and(is_secret_key) {
        if let Ok(s) = std::fs::read_to_string(value) {
            out.push(s.trim_end_matches(['\n', '\r']).to_string());
        }
    }
}

/// `tracing_subscriber`'s writer, scrubbed: every formatted log line (text or JSON, any
/// level) passes through the process-wide redactor before it reaches stderr or stdout.
pub struct ScrubbingMakeWriter<M>(pub M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for ScrubbingMakeWriter<M>
{
    type Writer = ScrubWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubWriter::new(self.0.make_writer())
    }
}

/// A writer that scrubs whole lines: text is held until its newline (or a flush, or the
/// writer's end), so a secret split across two writes is still found. Everything is passed
/// on by `flush` and when the writer is dropped (the log writer: after each event).
pub struct ScrubWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> ScrubWriter<W> {
    pub fn new(inner: W) -> ScrubWriter<W> {
        ScrubWriter { inner, buf: Vec::new() }
    }

    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let chunk: Vec<u8> = self.buf.drain(..upto).collect();
        self.inner.write_all(&current().scrub_bytes(&chunk))
    }
}

/// Whole lines are passed on in batches of about this size (an export is millions of lines:
/// one scan per batch, not per line).
const BATCH: usize = 16 * 1024;

impl<W: Write> Write for ScrubWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BATCH {
            if let Some(nl) = self.buf.iter().rposition(|&b| b == b'\n') {
                self.emit(nl + 1)?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let n = self.buf.len();
        self.emit(n)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for ScrubWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const S: &str = "s3cr3t/t0ken+with=odd chars";

    fn r() -> Redactor {
        let mut r = Redactor::new().with([S, "CANARY-plain-0123456789"]);
        r.add_basic_pair("agent@example.com/token", "CANARY-plain-0123456789");
        r.rebuild();
        r
    }

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let r = r();
        let enc: String = url::form_urlencoded::byte_serialize(S.as_bytes()).collect();
        let cases = [
            S.to_string(),
            serde_json::to_string(S).unwrap(),
            format!("{S:?}"),
            enc,
            "s3cr3t%2Ft0ken%2Bwith%3Dodd%20chars".into(),
            "s3cr3t%2ft0ken%2bwith%3dodd%20chars".into(),
            STANDARD.encode(S),
            URL_SAFE_NO_PAD.encode(S),
            format!("Basic {}", STANDARD.encode("agent@example.com/token:CANARY-plain-0123456789")),
            // A user we never configured: the fragment inside still goes.
            format!("Basic {}", STANDARD.encode("someone:CANARY-plain-0123456789")),
            format!("Basic {}", STANDARD.encode("ab:CANARY-plain-0123456789 and more")),
        ];
        for c in cases {
            let text = format!("HTTP 401: echo {c} end");
            let out = r.scrub(&text);
            assert!(out.contains(MASK), "not masked: {text} → {out}");
            assert!(!out.contains("CANARY") && !out.contains("s3cr3t"), "{out}");
        }
    }

    #[test]
    fn the_whole_basic_value_is_one_mask() {
        let r = r();
        let b = STANDARD.encode("agent@example.com/token:CANARY-plain-0123456789");
        assert_eq!(r.scrub(&format!("Authorization: Basic {b}")), format!("Authorization: Basic {MASK}"));
    }

    #[test]
    fn short_secrets_and_clean_text_are_left_alone() {
        let mut r = Redactor::new();
        assert!(!r.add_secret("1234567"));
        assert!(r.add_secret("12345678"));
        r.rebuild();
        assert!(matches!(r.scrub("nothing here"), Cow::Borrowed(_)));
        assert_eq!(r.scrub("a 12345678 b"), format!("a {MASK} b"));
        assert!(matches!(Redactor::new().scrub("x"), Cow::Borrowed(_)));
        assert!(!format!("{r:?}").contains("12345678"));
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in ["token", "api_key", "client_secret", "user_token", "app_token", "secret", "audit_key", "password"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["json_key", "client_id", "email", "token_file", "url", "signature_header", "tickets"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn config_text_env_and_files_give_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "from-a-file-0001\n").unwrap();
        let text = format!(
            "[sinks.redmine]\nurl = \"http://x\"\napi_key = \"inline-secret-01\"\n[[sources.zoom.accounts]]\nname = \"a\"\nclient_secret_file = \"{}\"\nclient_id = \"not-a-secret\"\n",
            f.display()
        );
        let env = vec![("TICKETSYNC__SINKS__JSM__TOKEN".to_string(), "007700".to_string())];
        let got = secrets_in_config(&text, "TICKETSYNC", env);
        assert!(got.contains(&"inline-secret-01".to_string()), "{got:?}");
        assert!(got.contains(&"from-a-file-0001".to_string()), "{got:?}");
        assert!(got.contains(&"007700".to_string()), "{got:?}");
        assert!(!got.iter().any(|s| s == "not-a-secret"));
    }

    #[test]
    fn the_writer_scrubs_lines_split_across_writes() {
        // Through the process-wide registry, as the log writer uses it.
        register("CANARY-split-99999");
        let mut out = Vec::new();
        {
            let mut w = ScrubWriter::new(&mut out);
            w.write_all(b"before CANARY-sp").unwrap();
            w.write_all(b"lit-99999 after\nnext").unwrap();
        }
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, format!("before {MASK} after\nnext"));
    }
}
