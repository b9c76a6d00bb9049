//! What every target shares: a fixed clock, the body as the clients decode it, and the
//! steps after a parser (matcher, note content) so a parsed record is also exercised.
#![allow(dead_code)]

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use ticketsync::matcher::{self, LinkFact, Rule, SessionFacts};
use ticketsync::session::NewSession;
use ticketsync::store::sessions::StoredSession;

/// A fixed "now" keeps runs reproducible: the plausibility window does not move.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("static date").with_timezone(&Utc)
}

/// reqwest's `Response::text()` decodes UTF-8 with replacement characters.
pub fn body(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The default rules plus a notes regex, compiled by the real config loader.
fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let toml = r##"
[[match.rules]]
kind = "manual"
[[match.rules]]
kind = "custom_api"
[[match.rules]]
kind = "session_code"
[[match.rules]]
kind = "notes_regex"
pattern = "(?i)(?:ticket|#)\\s*(\\d+)"
fields = ["notes", "description", "custom_api"]
"##;
        let cfg = ticketsync::config::Config::from_toml_with_env(toml, "fuzz.toml", Vec::new()).expect("static config");
        matcher::compile_all(&cfg.matching.rules).expect("static rules")
    })
}

/// What the pipeline does with a parsed record: store it (as a row), match it, build the
/// vendor part of its note.
pub fn after_parse(s: &NewSession) {
    let _ = s.duration_s();
    let code_norm = s.session_code.as_deref().map(ticketsync::session::normalize_code);
    let facts = SessionFacts {
        vendor: &s.vendor,
        external_id: &s.external_id,
        session_code_norm: code_norm.as_deref(),
        notes: s.notes.as_deref(),
        description: s.description.as_deref(),
        custom_api: s.custom_api.as_deref(),
    };
    let links = [LinkFact {
        vendor: &s.vendor,
        code_norm: code_norm.as_deref().unwrap_or("x"),
        ticket_id: "101",
        kind: "created",
    }];
    if let Some(m) = matcher::match_session(&facts, &links, rules()) {
        assert!(matcher::valid_ticket_id(&m.ticket_id), "matcher returned an unusable ticket id {:?}", m.ticket_id);
    }
    render(&stored(s));
}

/// The note every sink would write for this row, in each sink's format.
pub fn render(row: &StoredSession) {
    let note = ticketsync::report::session_note(row, chrono_tz_paris(), &marker_key());
    let _ = note.to_plain_text();
    let cut = note.with_inline_cut(200);
    let _ = ticketsync::sinks::common::to_html(&cut);
    let _ = ticketsync::sinks::common::to_jira_wiki(&cut);
    let _ = ticketsync::sinks::webhook::WebhookSink::payload("101", &note);
}

/// A fixed marker key: runs stay reproducible.
pub fn marker_key() -> ticketsync::marker::MarkerKey {
    ticketsync::marker::MarkerKey::new(b"fuzz marker key, 32 bytes long!!").expect("static key")
}

fn chrono_tz_paris() -> chrono_tz::Tz {
    ticketsync::config::parse_tz("Europe/Paris").expect("static zone")
}

pub fn stored(s: &NewSession) -> StoredSession {
    StoredSession::from_new(1, s)
}
