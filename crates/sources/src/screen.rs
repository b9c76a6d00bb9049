//! Vendor bodies to JSON, tolerating bad text, and the per-record screen that quarantines
//! what the repair touched or what is too big for a ticket. Every source decodes its pages
//! here, so one record with broken bytes cannot fail its page (and with it every later poll,
//! which would re-read the same page forever).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::Value;

use super::Rejected;
use crate::session::NewSession;

/// The longest text field a record may carry, in bytes. Ticket systems reject or mangle
/// comments that large (Zendesk caps a comment at 64 KB, Jira at 32 767 characters, Redmine
/// installs commonly sit behind a 1 MB request limit, and the note carries the text plus its
/// HTML rendering), and no technician writes 64 KiB of session notes: such a field is a
/// vendor fault or a paste accident, for a person to look at, not for a ticket.
pub const TEXT_FIELD_MAX: usize = 64 * 1024;

/// How much of an oversized field the quarantined raw record keeps.
const CUT_KEEP: usize = 1024;

/// What had to be repaired in a body so that it would parse. Repaired text shows U+FFFD
/// where the bad text was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Bytes that are not UTF-8 (e.g. a Latin-1 name) were replaced.
    pub invalid_utf8: bool,
    /// `\uDC80`-style escapes of half a UTF-16 surrogate pair (e.g. a name cut in the middle
    /// of an emoji), which serde_json refuses, were replaced.
    pub lone_surrogates: bool,
}

impl Repairs {
    pub fn any(self) -> bool {
        self.invalid_utf8 || self.lone_surrogates
    }

    pub fn merge(&mut self, other: Repairs) {
        self.invalid_utf8 |= other.invalid_utf8;
        self.lone_surrogates |= other.lone_surrogates;
    }

    fn what(self) -> &'static str {
        match (self.invalid_utf8, self.lone_surrogates) {
            (true, true) => "invalid UTF-8 or a lone surrogate escape",
            (false, true) => "a lone surrogate escape",
            _ => "invalid UTF-8",
        }
    }
}

/// A decoded body and what its decoding repaired.
#[derive(Debug, Clone)]
pub struct Decoded<T> {
    pub value: T,
    pub repairs: Repairs,
}

/// Parse a vendor body as JSON. Bytes that are not UTF-8 and lone surrogate escapes are
/// replaced by U+FFFD (and reported in [`Repairs`]) instead of failing the whole body; only
/// a body that is not JSON at all is an error.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<Decoded<T>, serde_json::Error> {
    let mut repairs = Repairs::default();
    let text = match std::str::from_utf8(body) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            repairs.invalid_utf8 = true;
            String::from_utf8_lossy(body)
        }
    };
    let text = match replace_lone_surrogates(&text) {
        Some(fixed) => {
            repairs.lone_surrogates = true;
            Cow::Owned(fixed)
        }
        None => text,
    };
    Ok(Decoded { value: serde_json::from_str(&text)?, repairs })
}

/// The text with every `\uXXXX` escape of an unpaired surrogate replaced by `\ufffd`, or
/// `None` when there is none. Escaped backslashes (`\\u…` is text, not an escape) are skipped.
fn replace_lone_surrogates(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let hex4 = |at: usize| -> Option<u16> {
        let s = text.get(at..at + 4)?;
        s.bytes().all(|c| c.is_ascii_hexdigit()).then(|| u16::from_str_radix(s, 16).ok())?
    };
    let escape_at = |at: usize| -> Option<u16> {
        (b.get(at) == Some(&b'\\') && b.get(at + 1) == Some(&b'u')).then(|| hex4(at + 2))?
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(i) else {
            // Any other escape, `\\` included, is two bytes.
            i += 2;
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => match escape_at(i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    i += 12;
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..i]);
            o.push_str("\\ufffd");
            copied = i + 6;
        }
        i += 6;
    }
    out.map(|mut o| {
        o.push_str(&text[copied..]);
        o
    })
}

/// Map each record of a page, given as the vendor's text, to a session (which keeps that
/// text as `raw_json`) or a quarantined record; only one record at a time is held as a JSON
/// tree. Each mapped record is then [`screen`]ed.
pub fn take_records(
    records: Vec<Box<RawValue>>,
    repairs: Repairs,
    now: DateTime<Utc>,
    parse: impl Fn(&Value, String, DateTime<Utc>) -> Result<NewSession, Rejected>,
) -> Vec<Result<NewSession, Rejected>> {
    records
        .into_iter()
        .map(|raw| {
            let raw = String::from(Box::<str>::from(raw));
            // The page parsed, so the text is JSON; a tree can still refuse what the syntax
            // allows (a number out of range).
            match serde_json::from_str::<Value>(&raw) {
                Ok(rec) => screen(&rec, repairs, parse(&rec, raw, now)),
                Err(e) => Err(Rejected { external_id: None, reason: format!("record: unreadable JSON ({e})"), raw }),
            }
        })
        .collect()
}

/// Screen one vendor record before it is stored: quarantine it, naming the field, when its
/// text was repaired while decoding ([`Repairs`]) or a text field is longer than
/// [`TEXT_FIELD_MAX`]. Otherwise the parse result stands. A record the parser already
/// rejected keeps its own reason unless one of these explains it better.
pub fn screen(rec: &Value, repairs: Repairs, parsed: Result<NewSession, Rejected>) -> Result<NewSession, Rejected> {
    let Some(reason) = problem(rec, repairs) else { return parsed };
    let external_id = match &parsed {
        Ok(s) => Some(s.external_id.clone()),
        Err(r) => r.external_id.clone(),
    };
    Err(Rejected { external_id, reason, raw: cut_raw(rec).to_string() })
}

/// Why a record must not be stored as it is, naming the field (`end_customer.name`,
/// `participants[2].name`).
pub fn problem(rec: &Value, repairs: Repairs) -> Option<String> {
    let mut found = None;
    walk_strings(rec, &mut String::new(), &mut |path, s| {
        if repairs.any() && s.contains('\u{FFFD}') {
            found = Some(format!("{} in {path}", repairs.what()));
        } else if s.len() > TEXT_FIELD_MAX {
            found = Some(format!(
                "{path}: {} bytes, over the {TEXT_FIELD_MAX}-byte limit for a text field (too large for a ticket note)",
                s.len()
            ));
        }
        found.is_some()
    });
    found
}

/// Visit every string (object keys included) with its path until `f` says stop.
fn walk_strings(v: &Value, path: &mut String, f: &mut dyn FnMut(&str, &str) -> bool) -> bool {
    let here = |path: &str| if path.is_empty() { "record".to_string() } else { path.to_string() };
    match v {
        Value::String(s) => f(&here(path), s),
        Value::Array(a) => a.iter().enumerate().any(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let stop = walk_strings(x, path, f);
            path.truncate(len);
            stop
        }),
        Value::Object(m) => m.iter().any(|(k, x)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let stop = f(&format!("{} (a key)", here(path)), k) || walk_strings(x, path, f);
            path.truncate(len);
            stop
        }),
        _ => false,
    }
}

/// The record with oversized strings cut, for the quarantine row: it keeps the start of the
/// text and its size, and stays identical from poll to poll (the quarantine keeps one row
/// per distinct raw record).
pub fn cut_raw(v: &Value) -> Cow<'_, Value> {
    fn cut(v: &mut Value) {
        match v {
            Value::String(s) if s.len() > TEXT_FIELD_MAX => {
                let keep = (0..=CUT_KEEP).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                *s = format!("{}… [cut by ticketsync: {} bytes in all]", &s[..keep], s.len());
            }
            Value::Array(a) => a.iter_mut().for_each(cut),
            Value::Object(m) => m.values_mut().for_each(cut),
            _ => {}
        }
    }
    let mut big = false;
    walk_strings(v, &mut String::new(), &mut |_, s| {
        big = s.len() > TEXT_FIELD_MAX;
        big
    });
    if !big {
        return Cow::Borrowed(v);
    }
    let mut owned = v.clone();
    cut(&mut owned);
    Cow::Owned(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_bodies_need_no_repair() {
        let d: Decoded<Value> = json_body(r#"{"a":"Jos\u00e9 😀 \ud83d\ude00 \\udc80"}"#.as_bytes()).unwrap();
        assert_eq!(d.repairs, Repairs::default());
        assert_eq!(d.value["a"], "José 😀 😀 \\udc80");
    }

    #[test]
    fn invalid_utf8_is_replaced_and_reported() {
        let d: Decoded<Value> = json_body(b"{\"a\":\"Jos\xe9\",\"b\":\"ok\"}").unwrap();
        assert!(d.repairs.invalid_utf8 && !d.repairs.lone_surrogates);
        assert_eq!(d.value["a"], "Jos\u{FFFD}");
        assert_eq!(problem(&d.value, d.repairs).as_deref(), Some("invalid UTF-8 in a"));
        assert_eq!(problem(&d.value["b"], d.repairs), None);
    }

    #[test]
    fn lone_surrogates_are_replaced_and_reported() {
        assert!(serde_json::from_str::<Value>(r#"{"a":"\udc80"}"#).is_err(), "serde_json refuses them");
        for (body, want) in [
            (r#"{"a":"x\udc80y"}"#, "x\u{FFFD}y"),
            (r#"{"a":"\ud83d"}"#, "\u{FFFD}"),
            (r#"{"a":"\ud83dz"}"#, "\u{FFFD}z"),
            (r#"{"a":"\ud83d\ud83d\ude00"}"#, "\u{FFFD}😀"),
            (r#"{"a":"\\\ud83d"}"#, "\\\u{FFFD}"),
        ] {
            let d: Decoded<Value> = json_body(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert!(d.repairs.lone_surrogates, "{body}");
            assert_eq!(d.value["a"], want, "{body}");
            assert_eq!(problem(&d.value, d.repairs).as_deref(), Some("a lone surrogate escape in a"));
        }
    }

    #[test]
    fn fields_are_named_by_path() {
        let rec = json!({"id": "1", "end_customer": {"name": "Ren\u{FFFD}"}, "p": [{"n": "x"}, {"n": "\u{FFFD}"}]});
        let r = Repairs { invalid_utf8: true, lone_surrogates: false };
        assert_eq!(problem(&rec, r).as_deref(), Some("invalid UTF-8 in end_customer.name"));
        let rec = json!({"p": [{"n": "x"}, {"n": "\u{FFFD}"}]});
        assert_eq!(problem(&rec, r).as_deref(), Some("invalid UTF-8 in p[1].n"));
        // Without a repair, U+FFFD is the vendor's own text.
        assert_eq!(problem(&rec, Repairs::default()), None);
    }

    #[test]
    fn oversized_fields_are_named_and_cut_in_the_raw_record() {
        let rec = json!({"id": "1", "notes": "é".repeat(TEXT_FIELD_MAX)});
        let why = problem(&rec, Repairs::default()).unwrap();
        assert!(why.starts_with("notes: 131072 bytes, over the 65536-byte limit"), "{why}");
        assert_eq!(problem(&json!({"notes": "x".repeat(TEXT_FIELD_MAX)}), Repairs::default()), None);
        let cut = cut_raw(&rec).into_owned();
        let n = cut["notes"].as_str().unwrap();
        assert!(n.len() < 2 * CUT_KEEP && n.ends_with("[cut by ticketsync: 131072 bytes in all]"), "{n}");
        assert_eq!(cut["id"], "1");
    }
}
