//! `ticketsync check` and the config parse behind it (issue 16 point 4, issue 18's `check`):
//! every error at once, each naming its key and its line (or the environment variable that
//! set it), valid values listed, strict booleans, secrets never in the text.

use ticketsync::config::{Config, ConfigError, Diagnostic, Origin, OUTBOUND_SECTIONS, SINK_SECTIONS};

use super::cli::{ticketsync, write};

const CANARY: &str = "CANARY-5ecret-never-printed";

fn errors_with_env(text: &str, env: &[(&str, &str)]) -> Vec<Diagnostic> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    match Config::from_toml_with_env(text, "t.toml", env) {
        Err(ConfigError::Many { errors, .. }) => errors,
        Err(e) => panic!("not a list of errors: {e}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    errors_with_env(text, &[])
}

/// The one error about `key`.
fn at<'a>(errors: &'a [Diagnostic], key: &str) -> &'a Diagnostic {
    let found: Vec<_> = errors.iter().filter(|d| d.key == key).collect();
    assert_eq!(found.len(), 1, "one error for {key}: {errors:#?}");
    found[0]
}

fn line(d: &Diagnostic) -> usize {
    d.line().unwrap_or_else(|| panic!("no line: {d:?}"))
}

#[test]
fn type_errors_name_key_and_line_and_booleans_are_strict() {
    let e = errors(
        "[store]\nbusy_timeout_ms = \"5000\"\n\n[sources.teamviewer]\nenabled = \"yes\"\n\
         token = 12345\noverlap_minutes = -3\n",
    );
    assert_eq!(e.len(), 4, "{e:#?}");
    let d = at(&e, "sources.teamviewer.enabled");
    assert_eq!(d.origin, Origin::File { line: 5, column: 1 });
    assert!(d.message.contains("boolean"), "{d}");
    assert_eq!(line(at(&e, "store.busy_timeout_ms")), 2);
    assert_eq!(line(at(&e, "sources.teamviewer.token")), 6);
    assert_eq!(line(at(&e, "sources.teamviewer.overlap_minutes")), 7);
    // The value given is not repeated: it may be a secret in the wrong place.
    assert!(e.iter().all(|d| !d.to_string().contains("12345")), "{e:#?}");
}

#[test]
fn unknown_keys_anywhere_get_a_did_you_mean() {
    let e = errors(
        "[stroe]\npath = \"/x.db\"\n\n[sinks.redmine]\nurl = \"https://r.example\"\nca_fle = \"/ca.pem\"\n\
         privte_notes = true\n\n[[sources.zoom.accounts]]\nname = \"a\"\nauth = \"oauth\"\nclient_id = \"c\"\nredirect_url = \"x\"\n",
    );
    let d = at(&e, "stroe");
    assert_eq!(line(d), 1);
    assert!(d.message.contains("did you mean `store`"), "{d}");
    // An outbound key (held by the shared OutboundConfig) is still suggested in its section.
    let d = at(&e, "sinks.redmine.ca_fle");
    assert_eq!(line(d), 6);
    assert!(d.message.contains("did you mean `ca_file`"), "{d}");
    assert!(at(&e, "sinks.redmine.privte_notes").message.contains("`private_notes`"));
    let d = at(&e, "sources.zoom.accounts[0].redirect_url");
    assert_eq!(line(d), 13);
    assert!(d.message.contains("`redirect_uri`"), "{d}");
    assert_eq!(e.len(), 4, "{e:#?}");
}

/// The section (or array element) is taken out to go on: what follows from that is not
/// reported again.
#[test]
fn a_missing_required_key_is_one_error_at_its_section() {
    let e = errors(
        "[sinks.zendesk]\nemail = \"a@x.example\"\n\n[sources.zoom]\n[[sources.zoom.accounts]]\nname = \"a\"\n\
         auth = \"oauth\"\n",
    );
    assert_eq!(line(at(&e, "sinks.zendesk.url")), 1);
    assert_eq!(line(at(&e, "sources.zoom.accounts[0].client_id")), 5);
    assert_eq!(e.len(), 2, "{e:#?}");
}

#[test]
fn enum_values_list_the_valid_ones() {
    let e = errors(
        "[[match.rules]]\nkind = \"manual\"\n\n[[match.rules]]\nkind = \"custm_api\"\n\n\
         [sources.splashtop]\nregion = \"asia\"\n",
    );
    let d = at(&e, "match.rules[1].kind");
    assert_eq!(line(d), 5);
    for kind in ["manual", "ticket_field", "custom_api", "session_code", "notes_regex"] {
        assert!(d.message.contains(&format!("\"{kind}\"")), "{d}");
    }
    assert!(d.message.contains("did you mean \"custom_api\""), "{d}");
    let d = at(&e, "sources.splashtop.region");
    assert_eq!(line(d), 8);
    assert!(d.message.contains("\"us\"") && d.message.contains("\"eu\""), "{d}");
}

/// The old line finder took the first `schedule =` of the file, in another section.
#[test]
fn validation_errors_point_at_their_own_section_all_at_once() {
    let text = "[sources.splashtop]\nschedule = \"*/5 * * * *\"\n\n[sources.teamviewer]\nschedule = \"often\"\n\
                base_url = \"not a url\"\n\n[daemon]\ntimezone = \"Mars/Olympus\"\n\n[sinks.webhook]\n\
                url = \"https://h.example\"\nsources = [\"teamveiwer\"]\n";
    let e = errors(text);
    assert_eq!(line(at(&e, "sources.teamviewer.schedule")), 5);
    assert_eq!(line(at(&e, "sources.teamviewer.base_url")), 6);
    assert_eq!(line(at(&e, "daemon.timezone")), 9);
    assert_eq!(line(at(&e, "sinks.webhook.sources")), 13);
    assert_eq!(e.len(), 4, "{e:#?}");
    // A key left at its default is placed at its section.
    let e = errors("[daemon]\ntimezone = \"UTC\"\n[sources.splashtop]\nauth = \"oauth\"\n");
    assert_eq!(line(at(&e, "sources.splashtop.client_id")), 3);
}

#[test]
fn env_override_errors_name_the_variable() {
    let e = errors_with_env(
        "[store]\npath = \"/a.db\"\n",
        &[
            ("TICKETSYNC__STORE__PAHT", "/b.db"),
            ("TICKETSYNC__STORE__BUSY_TIMEOUT_MS", "soon"),
            ("TICKETSYNC__SOURCES__TEAMVIEWER__ENABLED", "yes"),
            ("TICKETSYNC__STROE__PATH", "/c.db"),
        ],
    );
    let d = at(&e, "store.paht");
    assert_eq!(d.origin, Origin::Env("TICKETSYNC__STORE__PAHT".into()));
    assert!(d.message.contains("did you mean `path`"), "{d}");
    assert!(d.to_string().contains("environment variable TICKETSYNC__STORE__PAHT"), "{d}");
    assert_eq!(at(&e, "store.busy_timeout_ms").origin, Origin::Env("TICKETSYNC__STORE__BUSY_TIMEOUT_MS".into()));
    assert_eq!(
        at(&e, "sources.teamviewer.enabled").origin,
        Origin::Env("TICKETSYNC__SOURCES__TEAMVIEWER__ENABLED".into())
    );
    assert_eq!(at(&e, "stroe").origin, Origin::Env("TICKETSYNC__STROE__PATH".into()));
    assert_eq!(e.len(), 4, "{e:#?}");
    // Well-formed overrides still take the key's type; the variable wins over the file.
    let c = Config::from_toml_with_env(
        "[store]\nbusy_timeout_ms = 1\n[sources.teamviewer]\nenabled = true\n",
        "t.toml",
        vec![
            ("TICKETSYNC__STORE__BUSY_TIMEOUT_MS".to_string(), "250".to_string()),
            ("TICKETSYNC__SOURCES__TEAMVIEWER__ENABLED".into(), "False".into()),
            ("TICKETSYNC__SINKS__REDMINE__MAX_RESPONSE_BYTES".into(), "4096".into()),
            ("TICKETSYNC__SINKS__REDMINE__URL".into(), "https://r.example".into()),
        ],
    )
    .unwrap();
    assert_eq!(c.store.busy_timeout_ms, 250);
    assert!(!c.sources.teamviewer.unwrap().enabled);
    assert_eq!(c.sinks.redmine.unwrap().outbound().limit(), 4096);
}

/// `[[match.rules]]` (and any array) from the environment, as JSON or a TOML inline array;
/// the variable replaces the file's rules whole, and its errors name it.
#[test]
fn match_rules_from_the_environment() {
    let load = |text: &str, rules: &str| {
        Config::from_toml_with_env(text, "t.toml", vec![("TICKETSYNC__MATCH__RULES".to_string(), rules.to_string())])
    };
    let kinds = |c: &Config| c.matching.rules.iter().map(|r| format!("{:?}", r.kind)).collect::<Vec<_>>();
    let c =
        load("", r##"[{"kind": "notes_regex", "pattern": "#(\\d+)", "fields": ["notes"]}, {"kind": "custom_api"}]"##)
            .unwrap();
    assert_eq!(kinds(&c), ["NotesRegex", "CustomApi"]);
    assert_eq!(c.matching.rules[0].pattern.as_deref(), Some("#(\\d+)"));
    let file = "[[match.rules]]\nkind = \"custom_api\"\n\n[[match.rules]]\nkind = \"notes_regex\"\npattern = \"(\"\n";
    let c = load(file, "[{ kind = \"session_code\" }, { kind = \"notes_regex\", pattern = '#(\\d+)' }]").unwrap();
    assert_eq!(kinds(&c), ["SessionCode", "NotesRegex"], "the variable's rules, not the file's");
    // The same for a plain array key (a sink's `sources`).
    let c = Config::from_toml_with_env(
        "[sinks.webhook]\nurl = \"https://h.example\"\n",
        "t.toml",
        vec![("TICKETSYNC__SINKS__WEBHOOK__SOURCES".to_string(), "[\"splashtop\"]".to_string())],
    )
    .unwrap();
    assert_eq!(c.sinks.webhook.unwrap().route.sources, Some(vec!["splashtop".to_string()]));

    let var = Origin::Env("TICKETSYNC__MATCH__RULES".into());
    let e = errors_with_env(file, &[("TICKETSYNC__MATCH__RULES", r#"[{"kind": "custm_api"}]"#)]);
    let d = at(&e, "match.rules[0].kind");
    assert_eq!(d.origin, var, "{d}");
    assert!(d.message.contains("did you mean \"custom_api\"") && d.message.contains("\"notes_regex\""), "{d}");
    assert!(d.to_string().contains("environment variable TICKETSYNC__MATCH__RULES"), "{d}");
    // Checks after parsing name the variable too, not the file's line of the rule it replaced.
    let e =
        errors_with_env(file, &[("TICKETSYNC__MATCH__RULES", r#"[{"kind": "custom_api"}, {"kind": "notes_regex"}]"#)]);
    assert_eq!(at(&e, "match.rules[1].pattern").origin, var);
    for bad in ["custom_api", "[{\"kind\": ", "{kind = \"custom_api\"}", "[{\"kind\": null}]"] {
        let e = errors_with_env("", &[("TICKETSYNC__MATCH__RULES", bad)]);
        let d = e.iter().find(|d| d.key.starts_with("match.rules")).unwrap_or_else(|| panic!("{bad}: {e:#?}"));
        assert_eq!(d.origin, var, "{bad}: {d}");
        assert!(d.message.contains("TOML") && d.message.contains("JSON") || d.key != "match.rules", "{bad}: {d}");
    }
}

#[test]
fn missing_secret_file_names_key_line_and_path_never_content() {
    let dir = tempfile::tempdir().unwrap();
    let present = write(dir.path(), "webhook_secret", &format!("{CANARY}\n"));
    let absent = dir.path().join("redmine_api_key");
    let p = write(
        dir.path(),
        "c.toml",
        &format!(
            "[store]\npath = \"{}\"\n\n[sinks.redmine]\nurl = \"https://r.example\"\napi_key_file = \"{}\"\n\n\
             [sinks.webhook]\nurl = \"https://h.example\"\nsecret_file = \"{}\"\n\n[sinks.jsm]\nurl = \"https://j.example\"\n\
             email = \"a@x.example\"\n",
            dir.path().join("t.db").display(),
            absent.display(),
            present.display()
        ),
    );
    let e = match Config::check(&p) {
        Err(ConfigError::Many { errors, .. }) => errors,
        other => panic!("{other:?}"),
    };
    let d = at(&e, "sinks.redmine.api_key_file");
    assert_eq!(line(d), 6);
    assert!(d.message.contains(&absent.display().to_string()), "{d}");
    // A required secret nowhere to be found: its key, at its section, with where to put it.
    let d = at(&e, "sinks.jsm.token");
    assert_eq!(line(d), 12);
    assert!(d.message.contains("jsm_token"), "{d}");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e.iter().all(|d| !d.to_string().contains(CANARY)));
}

/// `allow_insecure_http`, `ca_file`, `max_response_bytes` (held by the shared
/// `OutboundConfig`) and the sinks' `tickets`, `sources`, `concurrency` (`RouteConfig`) are
/// written where they always were.
#[test]
fn shared_keys_keep_their_names_in_every_section() {
    let sections = [
        ("sources.teamviewer", ""),
        ("sources.splashtop", ""),
        ("sources.zoom", "[[sources.zoom.accounts]]\nname = \"a\"\nauth = \"oauth\"\nclient_id = \"c\"\n"),
        ("rooms.visioconference", ""),
        // The sinks in their registry's order (crates/sinks/src/config.rs).
        ("sinks.redmine", "url = \"https://r.example\"\n"),
        ("sinks.zendesk", "url = \"https://z.example\"\nemail = \"a@x.example\"\n"),
        ("sinks.freshservice", "url = \"https://f.example\"\n"),
        ("sinks.jsm", "url = \"https://j.example\"\nemail = \"a@x.example\"\n"),
        ("sinks.glpi", "url = \"https://g.example/apirest.php\"\n"),
        ("sinks.rt", "url = \"https://rt.example\"\n"),
        ("sinks.zammad", "url = \"https://zm.example\"\n"),
        ("sinks.servicenow", "url = \"https://sn.example\"\nuser = \"u\"\n"),
        (
            "sinks.connectwise",
            "url = \"https://cw.example\"\ncompany = \"c\"\npublic_key = \"p\"\nclient_id = \"i\"\nmember = \"m\"\n",
        ),
        ("sinks.autotask", "username = \"u@x.example\"\nintegration_code = \"C\"\n"),
        ("sinks.halopsa", "url = \"https://h.example\"\nclient_id = \"c\"\n"),
        ("sinks.webhook", "url = \"https://h.example\"\n"),
    ];
    let mut text = String::new();
    for (i, (section, required)) in sections.iter().enumerate() {
        // The section's own keys first: `[[…accounts]]` ends the section.
        let route = match section.starts_with("sinks.") {
            true => format!("tickets = '^\\d+$'\nsources = [\"zoom\"]\nconcurrency = {}\n", i + 1),
            false => String::new(),
        };
        text.push_str(&format!(
            "[{section}]\nallow_insecure_http = true\nmax_response_bytes = {}\n{route}{required}\n",
            2048 + i
        ));
    }
    let c = Config::from_toml_with_env(&text, "t.toml", Vec::new()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let found: Vec<_> = c.outbound_components().into_iter().map(|(o, _)| (o.section, o.limit())).collect();
    let want: Vec<_> = sections.iter().enumerate().map(|(i, (s, _))| (*s, 2048 + i as u64)).collect();
    assert_eq!(found, want);
    let mut listed: Vec<_> = OUTBOUND_SECTIONS.to_vec();
    let mut built: Vec<_> = found.iter().map(|(s, _)| *s).collect();
    listed.sort_unstable();
    built.sort_unstable();
    assert_eq!(listed, built, "OUTBOUND_SECTIONS lists exactly the sections with outbound()");
    let routes = c.sinks.routes();
    assert_eq!(routes.iter().map(|r| format!("sinks.{}", r.0)).collect::<Vec<_>>(), SINK_SECTIONS);
    assert!(routes.iter().all(|r| r.1 == Some("^\\d+$") && r.2 == Some(&["zoom".to_string()][..])), "{routes:?}");
    let concurrency = c.sinks.concurrency();
    for (i, s) in SINK_SECTIONS.iter().enumerate() {
        assert_eq!(concurrency[s.trim_start_matches("sinks.")], i + 5, "{concurrency:?}");
    }
    // The shared struct is not a key of its own.
    let e = errors(
        "[sinks.redmine]\nurl = \"https://r.example\"\noutbound = { ca_file = \"/x\" }\nroute = 1\nconcurency = 2\n",
    );
    assert_eq!(line(at(&e, "sinks.redmine.outbound")), 3);
    assert_eq!(line(at(&e, "sinks.redmine.route")), 4);
    let d = at(&e, "sinks.redmine.concurency");
    assert!(d.message.contains("did you mean `concurrency`"), "{d}");
    // A shared key of the wrong type is named as written.
    let e = errors("[sinks.webhook]\nurl = \"https://h.example\"\nconcurrency = \"4\"\nca_file = 7\n");
    assert_eq!(line(at(&e, "sinks.webhook.concurrency")), 3);
    assert_eq!(line(at(&e, "sinks.webhook.ca_file")), 4);
}

#[test]
fn the_units_credentials_are_declared_by_the_config() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/ticketsync.service")).unwrap();
    let names: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix("LoadCredential="))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    // The unit loads none by itself; its comments show the drop-in's lines.
    assert!(names.len() >= 2, "{names:?}");
    for n in names {
        assert!(ticketsync::config::is_credential(n), "{n} is not the credential of a key in config::secret_keys()");
    }
    assert!(!ticketsync::config::is_credential("teamviewer_tokn"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_every_error_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "all.toml",
        &format!(
            "[stroe]\npath = \"/x.db\"\n\n[sources.teamviewer]\nenabled = \"yes\"\ntoken = \"{CANARY}\"\n\
             schedule = \"sometimes\"\n\n[[match.rules]]\nkind = \"custm_api\"\n\n[sinks.redmine]\n\
             url = \"https://r.example\"\napi_key_file = \"{}\"\n",
            dir.path().join("absent").display()
        ),
    );
    let r = ticketsync(&cfg, &["check"], &[("TICKETSYNC__STORE__BUSY_TIMEOUT_M", "5")]).await.failed();
    assert_eq!(r.code, 1);
    let lines = r.error_lines();
    let want = [
        ("stroe", "(line 1, column 2)"),
        ("sources.teamviewer.enabled", "(line 5, column 1)"),
        ("sources.teamviewer.schedule", "(line 7, column 1)"),
        ("match.rules[0].kind", "(line 10, column 1)"),
        ("sinks.redmine.api_key_file", "(line 14, column 1)"),
        ("store.busy_timeout_m", "(environment variable TICKETSYNC__STORE__BUSY_TIMEOUT_M)"),
    ];
    assert_eq!(lines.len(), want.len(), "{}", r.stderr);
    for ((key, place), l) in want.iter().zip(&lines) {
        assert!(l.starts_with(&format!("error: {}: {key}: ", cfg.display())) && l.ends_with(place), "{l}");
    }
    assert!(!r.stderr.contains(CANARY) && !r.stdout.contains(CANARY), "{}", r.stderr);

    // Syntax errors stop the parse, all of them reported; their quoted lines are masked.
    let cfg = write(dir.path(), "syntax.toml", &format!("[sinks.redmine]\napi_key = \"{CANARY}\n[store\n"));
    let r = ticketsync(&cfg, &["check"], &[]).await.failed();
    let lines = r.error_lines();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(lines[0].contains("line 2") && lines[0].contains("api_key = ***"), "{}", r.stderr);
    assert!(lines[1].contains("line 3"), "{}", r.stderr);
    assert!(!r.stderr.contains(CANARY), "{}", r.stderr);
}

/// A key name no section has, far from every real one (so no "did you mean").
const PROBE: &str = "zzzzzzzzzzzz_probe";

/// The diagnostics of `text`, or none when it loads.
fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match Config::from_toml_with_env(text, "t.toml", Vec::<(String, String)>::new()) {
        Err(ConfigError::Many { errors, .. }) => errors,
        _ => Vec::new(),
    }
}

/// The keys the config types accept in the table at `header` (`[a.b]` or `[[a.b]]`, or
/// "" for the top level), as the unknown-key message lists them; `None` when it is no
/// table of keys (a value, a list of values).
fn keys_of(header: &str, path: &str) -> Option<Vec<String>> {
    let text = if header.is_empty() { format!("{PROBE} = 1\n") } else { format!("{header}\n{PROBE} = 1\n") };
    let d = diagnostics(&text);
    let d = d.iter().find(|d| d.key.ends_with(PROBE) && d.key.starts_with(path))?;
    let list = d.message.split("(valid keys: ").nth(1).unwrap_or_else(|| panic!("no key list: {d}"));
    Some(list.trim_end_matches(')').split(", ").map(str::to_string).collect())
}

/// Every section of the configuration and its keys, from the types: each key that is itself
/// a table (or an array of tables) becomes a section of its own. Sections are named without
/// indices (`sources.zoom.accounts`, `match.rules`).
fn sections_from_types() -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![String::new()];
    while let Some(section) = todo.pop() {
        let keys = if section.is_empty() {
            keys_of("", "")
        } else {
            keys_of(&format!("[{section}]"), &section).or_else(|| keys_of(&format!("[[{section}]]"), &section))
        }
        .unwrap_or_else(|| panic!("{section} is no table"));
        let mut leaves = Vec::new();
        for k in keys {
            let path = if section.is_empty() { k.clone() } else { format!("{section}.{k}") };
            let table =
                keys_of(&format!("[{path}]"), &path).is_some() || keys_of(&format!("[[{path}]]"), &path).is_some();
            if table {
                todo.push(path);
            } else {
                leaves.push(k);
            }
        }
        if !leaves.is_empty() {
            out.insert(section, leaves);
        }
    }
    out
}

/// The keys docs/configuration.md documents, by section, from its "Keys" part: the first
/// column of each section's table (the second in the sinks' table and for the match rules'
/// kinds), each `name` before any parenthesis; and what every sink section and every
/// outbound section takes, from the paragraph and the table that say so.
struct DocKeys {
    by_section: std::collections::BTreeMap<String, Vec<String>>,
    every_sink: Vec<String>,
    outbound: Vec<String>,
}

fn backticked_names(cell: &str) -> Vec<String> {
    // What is in parentheses (defaults, values, notes) is not a key.
    let mut plain = String::new();
    let mut depth = 0;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    plain.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn doc_keys() -> DocKeys {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let keys_part = text.split("\n## Keys\n").nth(1).expect("a Keys part");
    let mut by_section: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let (mut every_sink, mut outbound) = (Vec::new(), Vec::new());
    #[derive(PartialEq)]
    enum Mode {
        FirstColumn,
        SecondColumn,
        Sinks,
        Outbound,
        Prose,
    }
    let mut mode = Mode::Prose;
    let mut section = String::new();
    let section_of = |s: &str| s.trim().trim_matches('`').trim_matches(|c| c == '[' || c == ']').to_string();
    for line in keys_part.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            if h.starts_with("`[") {
                section = section_of(h);
                mode = Mode::FirstColumn;
            } else if h == "Sinks" {
                mode = Mode::Sinks;
            } else if h.starts_with("Outbound HTTP keys") {
                mode = Mode::Outbound;
            } else {
                mode = Mode::Prose;
            }
            continue;
        }
        if line.starts_with("`[[") {
            // A nested list's own table follows (`[[sources.zoom.accounts]]`).
            section = section_of(line.split(',').next().unwrap());
            continue;
        }
        if mode == Mode::Sinks && line.starts_with("Every sink section takes") {
            let mut para = line.to_string();
            for l in keys_part.lines().skip_while(|l| *l != line).skip(1).take_while(|l| !l.is_empty()) {
                para.push(' ');
                para.push_str(l);
            }
            every_sink = backticked_names(&para);
            continue;
        }
        let Some(row) = line.strip_prefix('|') else { continue };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells[0].starts_with("---") || cells[0] == "key" || cells[0] == "section" {
            continue;
        }
        if cells[0] == "`kind`" && cells.get(1) == Some(&"keys") {
            by_section.entry(section.clone()).or_default().push("kind".into());
            mode = Mode::SecondColumn;
            continue;
        }
        match mode {
            Mode::FirstColumn => by_section.entry(section.clone()).or_default().extend(backticked_names(cells[0])),
            Mode::SecondColumn => by_section.entry(section.clone()).or_default().extend(backticked_names(cells[1])),
            Mode::Sinks => {
                if !cells[0].is_empty() {
                    section = section_of(cells[0]);
                }
                by_section.entry(section.clone()).or_default().extend(backticked_names(cells[1]));
            }
            Mode::Outbound => outbound.extend(backticked_names(cells[0])),
            Mode::Prose => {}
        }
    }
    DocKeys { by_section, every_sink, outbound }
}

/// docs/configuration.md names every key the configuration types accept, in its section,
/// and names no key they do not (issue 18: "every key, checked against the types by a test").
#[test]
fn configuration_md_names_every_key_and_only_real_ones() {
    let types = sections_from_types();
    let docs = doc_keys();
    assert!(
        types.contains_key("store") && types.contains_key("match.rules") && types.contains_key("sources.zoom.accounts")
    );
    assert!(!docs.outbound.is_empty() && docs.every_sink.contains(&"concurrency".to_string()), "{:?}", docs.every_sink);
    let mut missing = Vec::new();
    for (section, keys) in &types {
        let documented = docs.by_section.get(section).cloned().unwrap_or_default();
        for k in keys {
            let shared = (OUTBOUND_SECTIONS.contains(&section.as_str()) && docs.outbound.contains(k))
                || (SINK_SECTIONS.contains(&section.as_str()) && docs.every_sink.contains(k));
            if !documented.contains(k) && !shared {
                missing.push(format!("{section}.{k}"));
            }
        }
    }
    assert!(missing.is_empty(), "keys docs/configuration.md does not name: {missing:?}");
    let mut unknown = Vec::new();
    for (section, keys) in &docs.by_section {
        let real =
            types.get(section).unwrap_or_else(|| panic!("docs/configuration.md: no section [{section}] in the types"));
        unknown.extend(keys.iter().filter(|k| !real.contains(k)).map(|k| format!("{section}.{k}")));
    }
    for s in SINK_SECTIONS {
        unknown
            .extend(docs.every_sink.iter().filter(|k| !types[s].contains(k)).map(|k| format!("{s}.{k} (every sink)")));
    }
    for s in OUTBOUND_SECTIONS {
        unknown.extend(docs.outbound.iter().filter(|k| !types[s].contains(k)).map(|k| format!("{s}.{k} (outbound)")));
    }
    assert!(unknown.is_empty(), "docs/configuration.md names keys the types do not have: {unknown:?}");
}
