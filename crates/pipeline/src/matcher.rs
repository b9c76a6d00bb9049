//! Pure matching: a session and the links known for it → the ticket and the rule that
//! decided. Rules run in configuration order; the first that yields a ticket wins.

use regex::Regex;
use serde::Deserialize;

/// Session text fields a `notes_regex` rule may search.
pub const TEXT_FIELDS: &[&str] = &["notes", "description", "custom_api"];

/// `[[match.rules]]`: the rules, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Manual,
    /// The ticket whose custom field (configured on a sink) holds the session code.
    TicketField,
    CustomApi,
    SessionCode,
    NotesRegex,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub kind: RuleKind,
    /// custom_api: the JSON key holding the ticket id (a plain string value is also accepted).
    #[serde(default)]
    pub json_key: Option<String>,
    /// notes_regex: the first capture group is the ticket id.
    #[serde(default)]
    pub pattern: Option<String>,
    /// notes_regex: which session fields are searched.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default = "default_rules")]
    pub rules: Vec<RuleConfig>,
}
impl Default for MatchConfig {
    fn default() -> Self {
        Self { rules: default_rules() }
    }
}
fn default_rules() -> Vec<RuleConfig> {
    let r = |kind| RuleConfig { kind, json_key: None, pattern: None, fields: None };
    vec![r(RuleKind::Manual), r(RuleKind::CustomApi), r(RuleKind::SessionCode)]
}

/// What the matcher needs to know about a session.
#[derive(Debug, Clone, Default)]
pub struct SessionFacts<'a> {
    pub vendor: &'a str,
    pub external_id: &'a str,
    pub session_code_norm: Option<&'a str>,
    pub notes: Option<&'a str>,
    pub description: Option<&'a str>,
    pub custom_api: Option<&'a str>,
}

/// A link from a session code to a ticket, as stored in `ticket_links`.
#[derive(Debug, Clone)]
pub struct LinkFact<'a> {
    pub vendor: &'a str,
    pub code_norm: &'a str,
    pub ticket_id: &'a str,
    /// `created` (a session made for the ticket) or `manual`.
    pub kind: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub ticket_id: String,
    pub rule: &'static str,
    /// Which value decided, for the audit trail ("custom_api.ticket_id", "code s119457589").
    pub detail: String,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub enum Rule {
    Manual,
    TicketField,
    CustomApi { json_key: String },
    SessionCode,
    NotesRegex { re: Regex, fields: Vec<String> },
}

impl Rule {
    pub fn compile(cfg: &RuleConfig) -> Result<Rule, regex::Error> {
        Ok(match cfg.kind {
            RuleKind::Manual => Rule::Manual,
            RuleKind::TicketField => Rule::TicketField,
            RuleKind::CustomApi => {
                Rule::CustomApi { json_key: cfg.json_key.clone().unwrap_or_else(|| "ticket_id".into()) }
            }
            RuleKind::SessionCode => Rule::SessionCode,
            RuleKind::NotesRegex => Rule::NotesRegex {
                re: Regex::new(cfg.pattern.as_deref().unwrap_or(r"#(\d+)"))?,
                fields: cfg.fields.clone().unwrap_or_else(|| vec!["notes".into(), "description".into()]),
            },
        })
    }
}

pub fn compile_all(cfgs: &[RuleConfig]) -> Result<Vec<Rule>, regex::Error> {
    cfgs.iter().map(Rule::compile).collect()
}

/// Ticket ids end up in sink URLs: only plain identifiers are accepted, so a crafted
/// note or custom_api value can never address another path or system.
pub fn valid_ticket_id(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !t.starts_with('.')
}

pub fn match_session(s: &SessionFacts<'_>, links: &[LinkFact<'_>], rules: &[Rule]) -> Option<Match> {
    rules.iter().find_map(|r| apply(r, s, links))
}

fn link_applies(l: &LinkFact<'_>, s: &SessionFacts<'_>) -> bool {
    if l.vendor != s.vendor && l.vendor != "*" {
        return false;
    }
    let ext = crate::session::normalize_code(s.external_id);
    s.session_code_norm == Some(l.code_norm) || l.code_norm == ext
}

fn apply(rule: &Rule, s: &SessionFacts<'_>, links: &[LinkFact<'_>]) -> Option<Match> {
    match rule {
        Rule::Manual | Rule::SessionCode | Rule::TicketField => {
            let (kind, name) = match rule {
                Rule::Manual => ("manual", "manual"),
                Rule::TicketField => ("ticket_field", "ticket_field"),
                _ => ("created", "session_code"),
            };
            // The newest link wins: a re-link by an operator corrects an older one.
            links
                .iter()
                .rev()
                .filter(|l| l.kind == kind && link_applies(l, s) && valid_ticket_id(l.ticket_id))
                .map(|l| Match {
                    ticket_id: l.ticket_id.to_string(),
                    rule: name,
                    detail: format!("code {}", l.code_norm),
                })
                .next()
        }
        Rule::CustomApi { json_key } => {
            let raw = s.custom_api?.trim();
            if raw.is_empty() {
                return None;
            }
            let ticket = match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(serde_json::Value::Object(map)) => match map.get(json_key)? {
                    serde_json::Value::String(v) => v.trim().trim_start_matches('#').to_string(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return None,
                },
                Ok(serde_json::Value::Number(n)) => n.to_string(),
                Ok(serde_json::Value::String(v)) => v.trim().trim_start_matches('#').to_string(),
                Ok(_) => return None,
                // Some integrations store the bare ticket id rather than JSON.
                Err(_) => raw.trim_start_matches('#').to_string(),
            };
            valid_ticket_id(&ticket).then(|| Match {
                ticket_id: ticket,
                rule: "custom_api",
                detail: format!("custom_api.{json_key}"),
            })
        }
        Rule::NotesRegex { re, fields } => fields.iter().find_map(|f| {
            let text = match f.as_str() {
                "notes" => s.notes,
                "description" => s.description,
                "custom_api" => s.custom_api,
                _ => None,
            }?;
            let caps = re.captures(text)?;
            let ticket = caps.get(1)?.as_str().trim().to_string();
            valid_ticket_id(&ticket).then(|| Match {
                ticket_id: ticket,
                rule: "notes_regex",
                detail: format!("{f} =~ {}", re.as_str()),
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(kinds: &[RuleKind]) -> Vec<Rule> {
        kinds
            .iter()
            .map(|k| Rule::compile(&RuleConfig { kind: *k, json_key: None, pattern: None, fields: None }).unwrap())
            .collect()
    }

    fn facts<'a>() -> SessionFacts<'a> {
        SessionFacts { vendor: "teamviewer", external_id: "0755a8dd-df19-4ea7-af47-cabb6b2a97e4", ..Default::default() }
    }

    #[test]
    fn custom_api_json_key_string_or_number() {
        let r = rules(&[RuleKind::CustomApi]);
        let mut s = facts();
        s.custom_api = Some(r#"{"ticket_id":"10423"}"#);
        assert_eq!(
            match_session(&s, &[], &r).unwrap(),
            Match { ticket_id: "10423".into(), rule: "custom_api", detail: "custom_api.ticket_id".into() }
        );
        s.custom_api = Some(r#"{"ticket_id":535824}"#);
        assert_eq!(match_session(&s, &[], &r).unwrap().ticket_id, "535824");
        s.custom_api = Some("INC-77");
        assert_eq!(match_session(&s, &[], &r).unwrap().ticket_id, "INC-77");
        s.custom_api = Some(r#"{"other":"1"}"#);
        assert_eq!(match_session(&s, &[], &r), None);
    }

    #[test]
    fn hostile_ticket_ids_are_refused() {
        let r = rules(&[RuleKind::CustomApi]);
        let mut s = facts();
        for bad in [
            r#"{"ticket_id":"../../admin"}"#,
            r#"{"ticket_id":"1 2"}"#,
            r#"{"ticket_id":"1?x=y"}"#,
            r#"{"ticket_id":""}"#,
        ] {
            s.custom_api = Some(bad);
            assert_eq!(match_session(&s, &[], &r), None, "{bad}");
        }
    }

    #[test]
    fn session_code_uses_created_links_and_ignores_other_vendors() {
        let r = rules(&[RuleKind::SessionCode]);
        let mut s = facts();
        s.session_code_norm = Some("s119457589");
        let links = [
            LinkFact { vendor: "splashtop", code_norm: "s119457589", ticket_id: "1", kind: "created" },
            LinkFact { vendor: "teamviewer", code_norm: "s119457589", ticket_id: "42", kind: "created" },
            LinkFact { vendor: "teamviewer", code_norm: "s119457589", ticket_id: "43", kind: "manual" },
        ];
        let m = match_session(&s, &links, &r).unwrap();
        assert_eq!((m.ticket_id.as_str(), m.rule), ("42", "session_code"));
    }

    #[test]
    fn rule_order_decides() {
        let mut s = facts();
        s.session_code_norm = Some("s1");
        s.custom_api = Some(r#"{"ticket_id":"7"}"#);
        let links = [LinkFact { vendor: "*", code_norm: "s1", ticket_id: "9", kind: "manual" }];
        let m = match_session(&s, &links, &rules(&[RuleKind::Manual, RuleKind::CustomApi])).unwrap();
        assert_eq!((m.ticket_id.as_str(), m.rule), ("9", "manual"));
        let m = match_session(&s, &links, &rules(&[RuleKind::CustomApi, RuleKind::Manual])).unwrap();
        assert_eq!((m.ticket_id.as_str(), m.rule), ("7", "custom_api"));
    }

    #[test]
    fn manual_link_by_external_id_and_newest_wins() {
        let s = facts();
        let ext = crate::session::normalize_code(s.external_id);
        let links = [
            LinkFact { vendor: "*", code_norm: &ext, ticket_id: "1", kind: "manual" },
            LinkFact { vendor: "*", code_norm: &ext, ticket_id: "2", kind: "manual" },
        ];
        assert_eq!(match_session(&s, &links, &rules(&[RuleKind::Manual])).unwrap().ticket_id, "2");
    }

    #[test]
    fn notes_regex_searches_configured_fields() {
        let cfg = RuleConfig {
            kind: RuleKind::NotesRegex,
            json_key: None,
            pattern: Some(r"INC-(\d+)".into()),
            fields: Some(vec!["description".into()]),
        };
        let r = vec![Rule::compile(&cfg).unwrap()];
        let mut s = facts();
        s.notes = Some("INC-1 in notes is not searched");
        assert_eq!(match_session(&s, &[], &r), None);
        s.description = Some("INC-10423: printer offline");
        assert_eq!(match_session(&s, &[], &r).unwrap().ticket_id, "10423");
    }

    #[test]
    fn nothing_matches_without_data() {
        assert_eq!(
            match_session(&facts(), &[], &rules(&[RuleKind::Manual, RuleKind::CustomApi, RuleKind::SessionCode])),
            None
        );
    }
}
