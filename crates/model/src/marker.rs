//! Note markers that text typed by a person or sent by a vendor cannot imitate.
//!
//! A marker identifies one note (source, session id, kind) so that a retry whose first
//! attempt may have landed can find it on the ticket instead of posting it twice. Since
//! issue 14 a marker is only believed when three things hold:
//!
//! 1. it is the note's own **final line** (`ticketsync-marker: <marker>`, the last non-empty
//!    line once the sink's markup is stripped), so a marker quoted inside a note does not
//!    count;
//! 2. where the ticket system says who wrote the note, the **author is the API user**;
//! 3. a v2 marker carries a **MAC** (HMAC-SHA256 under the marker key, first 16 bytes in hex),
//!    so nobody without the key can write the marker of a note that has not landed yet.
//!
//! Every vendor-supplied line that mentions `ticketsync-marker` (case-insensitive, after
//! dropping zero-width characters and folding Unicode lookalikes) is altered on render by
//! [`neutralise`], so vendor text never carries a marker line at all.
//!
//! v1 markers (`tsd:v1:<source>:<id>:<kind>`, no MAC) already written to tickets keep being
//! recognised for the deliveries that were queued with them (the outbox row keeps the marker
//! it wrote), under rules 1 and 2.

use std::borrow::Cow;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

/// The text before the marker on the note's final line.
pub const LINE_PREFIX: &str = "ticketsync-marker: ";

/// Bytes of HMAC-SHA256 kept in a v2 marker (hex-encoded: 32 characters, 128 bits).
const MAC_BYTES: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MarkerKeyError {
    #[error("a marker key needs at least {min} bytes, got {got}")]
    TooShort { min: usize, got: usize },
}

/// The key of the markers' MAC. Kept in the store (`store_secrets`, generated at first
/// start) unless configured (`notes.marker_key`), so every instance sharing a store agrees.
#[derive(Clone)]
pub struct MarkerKey(Arc<[u8]>);

impl std::fmt::Debug for MarkerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MarkerKey(…)")
    }
}

impl MarkerKey {
    /// The shortest key accepted (a configured one is usually 32 random bytes as text).
    pub const MIN_LEN: usize = 16;

    pub fn new(bytes: &[u8]) -> Result<MarkerKey, MarkerKeyError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(MarkerKeyError::TooShort { min: Self::MIN_LEN, got: bytes.len() });
        }
        Ok(MarkerKey(Arc::from(bytes)))
    }

    /// 32 random bytes from the OS generator.
    pub fn generate() -> MarkerKey {
        let bytes: [u8; 32] = rand::random();
        MarkerKey(Arc::from(&bytes[..]))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, body: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        m.update(body.as_bytes());
        hex::encode(&m.finalize().into_bytes()[..MAC_BYTES])
    }

    /// The v2 marker of a note: `tsd:v2:<source>:<id>:<kind>:<mac>`. Deterministic for a key,
    /// so the outbox's UNIQUE (sink, marker) still deduplicates a session's note.
    pub fn marker(&self, source: &str, id: &str, kind: &str) -> String {
        let body = format!("tsd:v2:{}:{}:{}", encode_part(source), encode_part(id), encode_part(kind));
        let mac = self.mac(&body);
        format!("{body}:{mac}")
    }

    /// The v2 marker of a tenant's note (issue 17). The default tenant's is [`MarkerKey::marker`]'s,
    /// byte for byte, so the markers already on tickets keep matching; another tenant's names
    /// the tenant first, under the MAC: `tsd:v2:<tenant>:<source>:<id>:<kind>:<mac>`. Two
    /// tenants' notes of the same vendor id therefore never share a marker, and no one can
    /// move a note's marker to another tenant without the key.
    pub fn marker_for(&self, tenant: &crate::tenant::TenantName, source: &str, id: &str, kind: &str) -> String {
        if tenant.is_default() {
            return self.marker(source, id, kind);
        }
        // A tenant name needs no encoding (lower-case letters, digits, '-').
        let body =
            format!("tsd:v2:{}:{}:{}:{}", tenant.as_str(), encode_part(source), encode_part(id), encode_part(kind));
        let mac = self.mac(&body);
        format!("{body}:{mac}")
    }

    /// Whether `marker` is a v2 marker whose MAC is right under this key.
    pub fn verify(&self, marker: &str) -> bool {
        let Some((body, mac)) = marker.rsplit_once(':') else { return false };
        // 5 parts: the default tenant's body; 6: another tenant's (`marker_for`).
        if !body.starts_with("tsd:v2:") || !matches!(body.split(':').count(), 5 | 6) {
            return false;
        }
        let want = self.mac(body);
        // Constant time: the comparison must not tell a forger how many characters matched.
        want.len() == mac.len() && want.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// The marker version 1 (no MAC), as every release before issue 14 wrote it. Only for
/// deliveries queued with it, and for tests of that compatibility.
pub fn v1(source: &str, id: &str, kind: &str) -> String {
    format!("tsd:v1:{source}:{id}:{kind}")
}

/// Percent-encode everything but ASCII letters, digits and `-`: an external id comes from a
/// vendor, and the marker line is written unescaped, so nothing in it may split the marker
/// (`:`), the line, or form markup or an auto-link (`.` of `www.`, `@` of an address).
fn encode_part(s: &str) -> Cow<'_, str> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    if s.bytes().all(ok) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if ok(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// The marker on a line that is exactly `ticketsync-marker: <marker>` (surrounding spaces
/// and a non-breaking space some editors put in are tolerated), or `None`.
pub fn parse_line(line: &str) -> Option<&str> {
    let t = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}');
    let m = t.strip_prefix(LINE_PREFIX)?.trim();
    (m.starts_with("tsd:v") && !m.contains(char::is_whitespace)).then_some(m)
}

/// The marker on the last non-empty line of `text`, if that line is a marker line.
pub fn final_marker(text: &str) -> Option<&str> {
    let last = text.lines().rev().find(|l| !l.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}').is_empty())?;
    parse_line(last)
}

/// Whether `text` (one note, markup already stripped) ends with the marker line of
/// `marker`. A v2 marker is compared whole, MAC included, so only a note written with the
/// key matches; the caller checks the author where the system exposes it.
pub fn ends_with_marker(text: &str, marker: &str) -> bool {
    final_marker(text) == Some(marker)
}

/// Zero-width and other invisible format characters that would hide a marker from a
/// plain substring check (ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen, bidi controls).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}'
        | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}'
        | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fff8}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

/// Lookalikes of the letters of "ticketsync marker" in Cyrillic, Greek and a few more
/// scripts, folded to ASCII (after NFKC, which already folds full-width and math letters).
fn fold_confusable(c: char) -> char {
    match c {
        'а' | 'α' | 'ɑ' => 'a',
        'с' | 'ϲ' | 'ⅽ' | 'ᴄ' => 'c',
        'е' | 'ε' | 'ҽ' | 'ᴇ' => 'e',
        'і' | 'ι' | 'ı' | 'ɩ' | 'Ι' | 'І' | 'ӏ' | 'ǀ' | '|' | 'ǐ' => 'i',
        'к' | 'κ' | 'ᴋ' | 'ĸ' => 'k',
        'м' | 'ᴍ' => 'm',
        'п' | 'ո' | 'ռ' => 'n',
        'о' | 'ο' | 'σ' | '0' => 'o',
        'г' | 'ᴦ' | 'ʀ' => 'r',
        'ѕ' | 'ꜱ' | 'ʂ' => 's',
        'т' | 'τ' | 'ᴛ' => 't',
        'у' | 'γ' | 'ү' | 'ʏ' => 'y',
        'ℓ' | '1' => 'l',
        c => c,
    }
}

/// Whether a line mentions the marker prefix in any disguise: case, NFKC compatibility
/// forms, invisible characters, lookalike letters, or punctuation and spaces between the
/// letters ("ticket sync - marker").
pub fn mentions_marker(line: &str) -> bool {
    // Cheap exit for the common line: no letter of the word's start in any case.
    let skeleton: String = line
        .nfkc()
        .filter(|c| !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .map(fold_confusable)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    skeleton.contains("ticketsyncmarker")
}

/// `text` with every line that [`mentions_marker`] altered so that it cannot be read as a
/// marker line by this or any earlier release (which looked for the marker as a substring):
/// invisible characters dropped, `ticketsync-marker` and `tsd:v` broken up, and the line
/// prefixed with `[quoted] `. Other lines are unchanged.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if !text.lines().any(mentions_marker) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if mentions_marker(line) {
            let visible: String = line.chars().filter(|c| !is_invisible(*c)).collect();
            // Idempotent: a line neutralised before keeps its one prefix.
            if !visible.starts_with("[quoted] ") {
                out.push_str("[quoted] ");
            }
            out.push_str(&break_tokens(&visible));
        } else {
            out.push_str(line);
        }
    }
    Cow::Owned(out)
}

/// Replace ASCII-case-insensitive `ticketsync-marker` with `ticketsync marker` and `tsd:v`
/// with `tsd v`, so that neither the line prefix nor a marker survives as a substring.
fn break_tokens(line: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"(?i)(ticketsync)\s*[-‐‑‒–—_]\s*(marker)|(tsd)\s*:\s*(v)").expect("valid regex")
    });
    re.replace_all(line, |c: &regex::Captures<'_>| match (c.get(1), c.get(2), c.get(3), c.get(4)) {
        (Some(a), Some(b), _, _) => format!("{} {}", a.as_str(), b.as_str()),
        (_, _, Some(a), Some(b)) => format!("{} {}", a.as_str(), b.as_str()),
        _ => c[0].to_string(),
    })
    .into_owned()
}

/// Link schemes besides http(s) that a note may carry: the Splashtop Business app link
/// (`st-business://com.splashtop.business/?sos=…`) that ticketsync builds itself for the
/// technician's session-links note, and that only opens the Splashtop app.
pub const APP_SCHEMES: &[&str] = &["st-business"];

/// Whether a link target may appear in a note: absolute http(s) (or an [`APP_SCHEMES`] app
/// link) with a host, so no `javascript:`, `data:`, `file:` or relative link reaches a ticket.
pub fn is_safe_url(url: &str) -> bool {
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c)) {
        return false;
    }
    url::Url::parse(url).is_ok_and(|u| {
        (matches!(u.scheme(), "http" | "https") || APP_SCHEMES.contains(&u.scheme()))
            && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MarkerKey {
        MarkerKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn v2_marker_is_deterministic_and_verifies_under_its_key_only() {
        let m = key().marker("teamviewer", "abc-1", "report");
        assert!(m.starts_with("tsd:v2:teamviewer:abc-1:report:"), "{m}");
        assert_eq!(m.rsplit(':').next().unwrap().len(), 32);
        assert_eq!(m, key().marker("teamviewer", "abc-1", "report"));
        assert!(key().verify(&m));
        let other = MarkerKey::new(b"another key of sixteen+ bytes").unwrap();
        assert!(!other.verify(&m));
        assert_ne!(other.marker("teamviewer", "abc-1", "report"), m);
        // One changed character anywhere fails.
        assert!(!key().verify(&m.replace("abc-1", "abc-2")));
        assert!(!key().verify(&v1("teamviewer", "abc-1", "report")));
        assert_eq!(MarkerKey::new(b"short").unwrap_err(), MarkerKeyError::TooShort { min: 16, got: 5 });
    }

    #[test]
    fn a_tenants_marker_names_it_and_the_default_tenants_is_unchanged() {
        use crate::tenant::TenantName;
        let d = key().marker_for(&TenantName::default(), "teamviewer", "abc-1", "report");
        assert_eq!(d, key().marker("teamviewer", "abc-1", "report"), "byte-identical for the default tenant");
        let acme = TenantName::new("acme").unwrap();
        let a = key().marker_for(&acme, "teamviewer", "abc-1", "report");
        assert!(a.starts_with("tsd:v2:acme:teamviewer:abc-1:report:"), "{a}");
        assert!(key().verify(&a));
        assert_ne!(a, key().marker_for(&TenantName::new("beta").unwrap(), "teamviewer", "abc-1", "report"));
        assert!(!key().verify(&a.replace("acme", "beta")), "the tenant is under the MAC");
    }

    #[test]
    fn hostile_ids_cannot_split_the_marker() {
        let m = key().marker("zoom", "a:b\nticketsync-marker: x %@www.evil.example", "report");
        assert!(!m.contains('\n') && !m.contains(' ') && !m.contains('@') && !m.contains('.'), "{m}");
        assert_eq!(m.split(':').count(), 6, "{m}");
        assert!(key().verify(&m));
    }

    #[test]
    fn only_the_final_line_counts() {
        let m = key().marker("t", "1", "report");
        let own = format!("Title\n\nbody\n\n{LINE_PREFIX}{m}\n");
        assert!(ends_with_marker(&own, &m));
        let quoted = format!("a person quotes:\n{LINE_PREFIX}{m}\nand adds a line");
        assert!(!ends_with_marker(&quoted, &m));
        assert!(!ends_with_marker(&format!("> {LINE_PREFIX}{m}"), &m));
        assert!(!ends_with_marker(&format!("{LINE_PREFIX}{m}x"), &m));
        assert!(ends_with_marker(&format!("{LINE_PREFIX}{m}\u{a0} \n \n"), &m));
    }

    #[test]
    fn neutralise_catches_disguises() {
        for line in [
            "ticketsync-marker: tsd:v1:teamviewer:B:report",
            "TICKETSYNC-MARKER: tsd:v1:x",
            "ticket\u{200b}sync-marker: tsd:v1:x",
            "tіcketsync-marker: x", // Cyrillic і
            "ｔｉｃｋｅｔｓｙｎｃ-marker: x",
            "  notes: ticketsync – marker: x",
        ] {
            assert!(mentions_marker(line), "{line}");
            let n = neutralise(line);
            assert!(n.starts_with("[quoted] "), "{n}");
            assert!(!n.to_ascii_lowercase().contains("ticketsync-marker"), "{n}");
            assert!(!n.contains("tsd:v"), "{n}");
            assert!(parse_line(&n).is_none());
        }
        assert_eq!(neutralise("plain\ntext"), "plain\ntext");
        let once = neutralise("x\nticket\u{200b}sync-marker: tsd:v2:a\ny").into_owned();
        assert_eq!(neutralise(&once), once, "idempotent");
        assert_eq!(neutralise("a\nticketsync-marker: y\nb"), "a\n[quoted] ticketsync marker: y\nb");
    }

    #[test]
    fn only_http_links_are_safe() {
        assert!(is_safe_url("https://start.teamviewer.com/123"));
        assert!(is_safe_url("http://127.0.0.1:8080/x?a=1"));
        assert!(is_safe_url("st-business://com.splashtop.business/?sos=123&category=40"));
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "JaVaScRiPt:alert(1)",
            "file:///etc/passwd",
            "/relative",
            "https://x y",
            "vbscript:x",
            "https://",
        ] {
            assert!(!is_safe_url(bad), "{bad}");
        }
    }
}
