//! The one parse of the configuration: the TOML text is parsed once into a tree whose every
//! key keeps its position, `TICKETSYNC__…` overrides are merged into that tree by name
//! (remembering which variable set which key), and the tree is deserialized into
//! [`Config`] so that every error is collected rather than the first one: a bad key is
//! reported, taken out, and the rest deserialized again.

use std::collections::{HashMap, HashSet};

use serde_path_to_error::Segment;
use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use super::{Config, ENV_PREFIX};
pub use ticketsync_config::{Diagnostic, Origin};

/// The position of every key of the file and the variable behind every override.
#[derive(Debug, Default)]
pub struct Origins {
    line_starts: Vec<usize>,
    keys: HashMap<String, usize>,
    env: HashMap<String, String>,
    /// Keys taken out after an error: what later checks say about them follows from it.
    removed: Vec<String>,
}

impl Origins {
    fn new(text: &str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { line_starts, keys: HashMap::new(), env: HashMap::new(), removed: Vec::new() }
    }

    fn position(&self, offset: usize) -> Origin {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let column = offset - self.line_starts[line.saturating_sub(1)] + 1;
        Origin::File { line, column }
    }

    /// Where `key` was set; for a key that was not set, where its nearest enclosing section was.
    pub fn locate(&self, key: &str) -> Origin {
        let mut k = key;
        loop {
            if let Some(var) = self.env.get(k) {
                return Origin::Env(var.clone());
            }
            if let Some(&offset) = self.keys.get(k) {
                return self.position(offset);
            }
            // A section that only the environment wrote.
            let inside = format!("{k}.");
            if let Some(var) = self.env.iter().filter(|(p, _)| p.starts_with(&inside)).map(|(_, v)| v).min() {
                return Origin::Env(var.clone());
            }
            match parent(k) {
                Some(p) => k = p,
                None => return Origin::Unset,
            }
        }
    }

    /// Whether `key` is, or lies inside, a key already reported and taken out.
    pub fn was_removed(&self, key: &str) -> bool {
        self.removed
            .iter()
            .any(|r| key.strip_prefix(r.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '['])))
    }

    pub fn diagnostic(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { key: key.to_string(), message: message.into(), origin: self.locate(key) }
    }
}

/// File order (line, column), then the environment's errors, then the rest.
pub fn sort(errors: &mut [Diagnostic]) {
    errors.sort_by_key(|d| match &d.origin {
        Origin::File { line, column } => (0, *line, *column),
        Origin::Env(_) => (1, 0, 0),
        Origin::Unset => (2, 0, 0),
    });
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent(key: &str) -> Option<&str> {
    if key.ends_with(']') {
        return key.rfind('[').map(|i| &key[..i]);
    }
    key.rfind('.').map(|i| &key[..i])
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The sections holding the outbound HTTP keys of [`super::OutboundConfig`]: every vendor's
/// and every ticket system's, from their registries. The parse moves those keys into the
/// section's `outbound` table, which the structs hold as one field.
pub const OUTBOUND_SECTIONS: [&str; VENDORS + SINKS] = {
    let mut out = [""; VENDORS + SINKS];
    let mut i = 0;
    while i < VENDORS {
        out[i] = crate::sources::section::SECTIONS[i];
        i += 1;
    }
    while i < VENDORS + SINKS {
        out[i] = crate::sinks::config::SECTIONS[i - VENDORS];
        i += 1;
    }
    out
};
const VENDORS: usize = crate::sources::section::COUNT;
const SINKS: usize = crate::sinks::config::COUNT;
/// The sink sections, whose routing keys [`super::RouteConfig`] holds as `route`.
pub use crate::sinks::config::SECTIONS as SINK_SECTIONS;

/// Keys written in a section but held by a struct shared between sections: the field of
/// the section's struct, the keys it holds, the sections that have it.
const GROUPS: [(&str, &[&str], &[&str]); 2] = [
    ("outbound", &super::OutboundConfig::KEYS, &OUTBOUND_SECTIONS),
    ("route", &super::RouteConfig::KEYS, &SINK_SECTIONS),
];

pub struct Parsed {
    /// `None` only when no configuration could be built at all.
    pub config: Option<Config>,
    pub errors: Vec<Diagnostic>,
}

/// Parse `text`, merge the overrides, deserialize; TOML syntax errors (at most ten, in file
/// order) are returned as they are (their messages quote the file: the caller masks them).
pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Parsed, Vec<toml::de::Error>> {
    let (doc, mut syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        syntax.sort_by_key(|e| e.span().map(|s| s.start));
        syntax.truncate(10);
        for e in &mut syntax {
            e.set_input(Some(text));
        }
        return Err(syntax);
    }
    let mut origins = Origins::new(text);
    let mut errors = Vec::new();
    let mut root = table(doc.get_ref(), "", &mut origins, &mut errors);
    apply_env(&mut root, env, &mut origins, &mut errors);
    nest_groups(&mut root, &origins, &mut errors);
    super::tenants::nest_tenants(&mut root, &origins, &mut errors);
    let (config, removed) = deserialize_all(root, &origins, &mut errors);
    origins.removed = removed;
    let config = config.map(|mut c| {
        c.origins = std::sync::Arc::new(origins);
        c
    });
    Ok(Parsed { config, errors })
}

fn table(t: &DeTable<'_>, prefix: &str, origins: &mut Origins, errors: &mut Vec<Diagnostic>) -> Table {
    let mut out = Table::new();
    for (k, v) in t.iter() {
        let path = join(prefix, k.get_ref());
        origins.keys.insert(path.clone(), k.span().start);
        if let Some(v) = value(v.get_ref(), &path, origins, errors) {
            out.insert(k.get_ref().to_string(), v);
        }
    }
    out
}

fn value(v: &DeValue<'_>, path: &str, origins: &mut Origins, errors: &mut Vec<Diagnostic>) -> Option<Value> {
    Some(match v {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Integer(n),
            Err(_) => {
                errors.push(origins.diagnostic(path, "integer out of range"));
                return None;
            }
        },
        DeValue::Float(f) => match f.as_str().parse() {
            Ok(x) => Value::Float(x),
            Err(_) => {
                errors.push(origins.diagnostic(path, "not a number"));
                return None;
            }
        },
        DeValue::Boolean(b) => Value::Boolean(*b),
        DeValue::Datetime(d) => Value::Datetime(*d),
        DeValue::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let p = format!("{path}[{i}]");
                    origins.keys.insert(p.clone(), item.span().start);
                    value(item.get_ref(), &p, origins, errors)
                })
                .collect(),
        ),
        DeValue::Table(t) => Value::Table(table(t, path, origins, errors)),
    })
}

/// `TICKETSYNC__SINKS__REDMINE__API_KEY=…` sets `sinks.redmine.api_key` to a string; the
/// deserializer turns it into a number or boolean where the key's type asks for one.
fn apply_env(
    root: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    origins: &mut Origins,
    errors: &mut Vec<Diagnostic>,
) {
    let prefix = format!("{ENV_PREFIX}__");
    let mut vars: Vec<_> = env.into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
    vars.sort();
    for (var, val) in vars {
        let segs: Vec<String> = var[prefix.len()..].split("__").map(str::to_lowercase).collect();
        let path = segs.join(".");
        let env_err = |message: String| Diagnostic { key: path.clone(), message, origin: Origin::Env(var.clone()) };
        if segs.iter().any(|s| s.is_empty()) {
            errors.push(env_err("not a key: expected TICKETSYNC__SECTION__KEY".into()));
            continue;
        }
        match section_for(root, &segs[..segs.len() - 1]) {
            Ok(t) => {
                t.insert(segs[segs.len() - 1].clone(), Value::String(val));
                // The file's value is replaced whole (an array of tables too): what the file
                // wrote under it no longer locates anything.
                origins.keys.retain(|k, _| {
                    k.strip_prefix(path.as_str()).is_none_or(|rest| !rest.is_empty() && !rest.starts_with(['.', '[']))
                });
                origins.env.insert(path, var);
            }
            Err(i) => {
                let at = segs[..=i].join(".");
                errors.push(env_err(format!("cannot be set: {at} is not a section")));
            }
        }
    }
}

/// The table at `segs`, created where missing; `Err(i)` when `segs[i]` holds a value that
/// is not a table.
fn section_for<'a>(t: &'a mut Table, segs: &[String]) -> Result<&'a mut Table, usize> {
    let Some((first, rest)) = segs.split_first() else { return Ok(t) };
    match t.entry(first.clone()).or_insert_with(|| Value::Table(Table::new())) {
        Value::Table(inner) => section_for(inner, rest).map_err(|i| i + 1),
        _ => Err(0),
    }
}

fn table_at_mut<'a>(root: &'a mut Table, path: &str) -> Option<&'a mut Table> {
    let mut t = root;
    for seg in path.split('.') {
        t = t.get_mut(seg)?.as_table_mut()?;
    }
    Some(t)
}

fn nest_groups(root: &mut Table, origins: &Origins, errors: &mut Vec<Diagnostic>) {
    for (field, keys, sections) in GROUPS {
        for section in sections {
            let Some(t) = table_at_mut(root, section) else { continue };
            // The field is not a key of the file: `outbound = { … }` is unknown.
            if t.remove(field).is_some() {
                errors.push(origins.diagnostic(&join(section, field), unknown_key_message(field, &[])));
            }
            let nested: Table = keys.iter().filter_map(|k| Some((k.to_string(), t.remove(*k)?))).collect();
            if !nested.is_empty() {
                t.insert(field.to_string(), Value::Table(nested));
            }
        }
    }
}

/// A section's valid keys as the file writes them: a group's field stands for its keys.
fn file_keys(mut valid: Vec<String>) -> Vec<String> {
    for (field, keys, _) in GROUPS {
        if let Some(i) = valid.iter().position(|v| v == field) {
            valid.remove(i);
            valid.extend(keys.iter().map(|k| k.to_string()));
        }
    }
    valid
}

/// The user's name of a deserializer path: `sinks.redmine.outbound.ca_file` → `sinks.redmine.ca_file`.
fn user_path(segs: &[Seg]) -> String {
    super::tenants::user_key(&section_path(segs))
}

fn section_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if GROUPS.iter().any(|(field, _, sections)| field == k && sections.contains(&out.as_str())) {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(p: &serde_path_to_error::Path) -> Vec<Seg> {
    p.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            _ => None,
        })
        .collect()
}

/// Remove the value at `segs`; an array element takes its whole array with it, so that the
/// elements after it keep their numbers in later messages. False when nothing was removed.
fn remove(root: &mut Table, segs: &[Seg]) -> Option<String> {
    let end = segs.iter().rposition(|s| matches!(s, Seg::Key(_)))?;
    let Seg::Key(last) = &segs[end] else { return None };
    let gone = match end {
        0 => root.remove(last).is_some(),
        _ => match get_mut(root, &segs[..end]) {
            Some(Value::Table(t)) => t.remove(last).is_some(),
            _ => false,
        },
    };
    gone.then(|| user_path(&segs[..=end]))
}

fn get_mut<'a>(root: &'a mut Table, segs: &[Seg]) -> Option<&'a mut Value> {
    let (Seg::Key(first), rest) = segs.split_first()? else { return None };
    let mut cur = root.get_mut(first)?;
    for s in rest {
        cur = match (cur, s) {
            (Value::Table(t), Seg::Key(k)) => t.get_mut(k)?,
            (Value::Array(a), Seg::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Deserialize, and on each error record it, take the offending key out and try again, so
/// that one run names every bad key (a section missing a required key is taken out whole).
fn deserialize_all(mut root: Table, origins: &Origins, errors: &mut Vec<Diagnostic>) -> (Option<Config>, Vec<String>) {
    let mut removed: Vec<String> = Vec::new();
    let mut coerced: HashSet<String> = HashSet::new();
    // Each round removes or converts one value, so the number of values bounds the rounds.
    for _ in 0..10_000 {
        let err = match serde_path_to_error::deserialize::<_, Config>(Value::Table(root.clone())) {
            Ok(c) => return (Some(c), removed),
            Err(e) => e,
        };
        let mut segs = segments(err.path());
        let msg = err.inner().message().to_string();
        if let Some(field) = backticked(&msg).filter(|_| msg.starts_with("missing field")) {
            let key = join(&user_path(&segs), &field);
            if !removed.contains(&key) {
                errors.push(Diagnostic {
                    key: key.clone(),
                    message: "required key is missing".into(),
                    origin: origins.locate(&user_path(&segs)),
                });
            }
            match remove(&mut root, &segs) {
                Some(gone) => removed.push(gone),
                None => return (None, removed),
            }
            continue;
        }
        if msg.starts_with("unknown field") && segs.is_empty() {
            // Keys of the top level: the path has no segment for them.
            if let Some(f) = backticked(&msg) {
                segs.push(Seg::Key(f));
            }
        }
        let key = user_path(&segs);
        let origin = origins.locate(&key);
        let from_env = matches!(origin, Origin::Env(_));
        if from_env && msg.starts_with("invalid type: string") && coerced.insert(key.clone()) {
            if let Some(v) = get_mut(&mut root, &segs) {
                if let Some(typed) = v.as_str().and_then(|s| coerce(s, &msg)) {
                    *v = typed;
                    continue;
                }
            }
        }
        let message = if from_env && msg.starts_with("invalid type: string") && msg.ends_with("expected a sequence") {
            ARRAY_FROM_ENV.to_string()
        } else {
            explain(&msg)
        };
        errors.push(Diagnostic { key, message, origin });
        match remove(&mut root, &segs) {
            Some(gone) => removed.push(gone),
            None => return (None, removed),
        }
    }
    (None, removed)
}

/// What an override of an array key (`[[match.rules]]`, a sink's `sources`, …) must hold.
const ARRAY_FROM_ENV: &str = "expected an array, written as TOML (`[{ kind = \"custom_api\" }]`) or JSON \
                              (`[{\"kind\": \"custom_api\"}]`); the value does not parse as either";

/// An override's text as an array: JSON (`[{"kind": "custom_api"}]`) or a TOML inline array
/// (`[{ kind = "custom_api" }]`), so that arrays, arrays of tables included, can be set from
/// the environment like every other key. `None` when it is neither, or not an array.
fn parse_array(s: &str) -> Option<Value> {
    let s = s.trim();
    if !s.starts_with('[') {
        return None;
    }
    if let Ok(j) = serde_json::from_str::<serde_json::Value>(s) {
        // JSON's null has no TOML counterpart: such an array is not accepted.
        return Value::try_from(j).ok().filter(Value::is_array);
    }
    let mut doc: Table = toml::from_str(&format!("v = {s}")).ok()?;
    doc.remove("v").filter(Value::is_array)
}

/// An override's string as the type the key expects (serde names it after "expected").
fn coerce(s: &str, msg: &str) -> Option<Value> {
    let expected = msg.rsplit_once(", expected ")?.1;
    if expected == "a sequence" {
        return parse_array(s);
    }
    if expected.contains("bool") {
        // Strict as in the file (no `yes`, `on`, `1`), but any case: `TRUE` is unambiguous.
        return match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Boolean(true)),
            "false" => Some(Value::Boolean(false)),
            _ => None,
        };
    }
    if ["u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "integer"]
        .iter()
        .any(|t| expected.contains(t))
    {
        return s.trim().parse::<i64>().ok().map(Value::Integer);
    }
    if expected.contains("f64") || expected.contains("f32") || expected.contains("float") {
        return s.trim().parse::<f64>().ok().map(Value::Float);
    }
    None
}

/// The first `quoted` word of a serde message.
fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// Every `quoted` word after the first (serde's list of expected names).
fn expected_names(msg: &str) -> Vec<String> {
    msg.split('`').skip(1).step_by(2).skip(1).map(str::to_string).collect()
}

pub(crate) fn unknown_key_message(key: &str, valid: &[String]) -> String {
    match closest(key, valid) {
        Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
        None if valid.is_empty() => format!("unknown key `{key}`"),
        None => format!("unknown key `{key}` (valid keys: {})", valid.join(", ")),
    }
}

/// A serde message made for an operator, without the value it was given (it may be a
/// secret): `invalid type: string "yes", expected a boolean` → `expected a boolean
/// (true or false), found a string`.
fn explain(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        let key = backticked(msg).unwrap_or_default();
        return unknown_key_message(&key, &file_keys(expected_names(msg)));
    }
    if msg.starts_with("unknown variant") {
        let got = backticked(msg).unwrap_or_default();
        let valid = expected_names(msg);
        let hint = closest(&got, &valid).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
        let list = valid.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ");
        return format!("unknown value \"{got}\"; {hint}valid values: {list}");
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = msg.strip_prefix(prefix).and_then(|r| r.rsplit_once(", expected ")) {
            let found = found.split(['"', '`']).next().unwrap_or("").trim();
            let expected = match expected {
                "a boolean" => "a boolean (true or false, unquoted)",
                e => e,
            };
            let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            return format!("expected {expected}, found {article} {found}");
        }
    }
    // Other messages come from our own deserializers or serde's numbers; drop any quoted
    // value all the same.
    msg.split('"').step_by(2).collect::<Vec<_>>().join("\"…\"")
}

/// The valid name nearest to `got`, when it is near enough to be a typo.
fn closest(got: &str, valid: &[String]) -> Option<String> {
    valid
        .iter()
        .map(|v| (levenshtein(&got.to_lowercase(), v), v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v.clone())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        let valid: Vec<String> = ["store", "daemon", "sources"].iter().map(|s| s.to_string()).collect();
        assert_eq!(closest("stroe", &valid).as_deref(), Some("store"));
        assert_eq!(closest("zzzzzz", &valid), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn messages_drop_values() {
        let m = explain("invalid type: string \"CANARY\", expected a boolean");
        assert!(!m.contains("CANARY") && m.contains("boolean"), "{m}");
        let m = explain("invalid type: integer `77`, expected a string");
        assert_eq!(m, "expected a string, found an integer");
    }

    #[test]
    fn parents() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a"), None);
    }
}
