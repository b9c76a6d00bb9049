//! Ticket-system answers the sinks read: the listings of the marker scans (Redmine
//! journals, Zendesk comments, Freshservice conversations, JSM comments, GLPI follow-ups)
//! and each system's error body.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ticketsync::sinks::{common as sc, freshservice, glpi, jsm, redmine, zendesk};

const MARKER: &str = "tsd:v1:teamviewer:abc:report";

fuzz_target!(|data: &[u8]| {
    let body = common::body(data);
    let _ = freshservice::freshservice_error(&body);
    let _ = glpi::glpi_error(&body);
    let _ = jsm::jira_error(&body);
    let _ = zendesk::zendesk_error(&body);
    let _ = redmine::redmine_errors(&body);
    let Ok(v) = sc::parse_listing("fuzz", &body, "listing") else { return };
    // The scans' reads, as each sink's find_marker does them: the note's final line (HTML
    // reduced to text, batched notes split at `<hr>`), and the author's id.
    let hit = |t: &Value| {
        t.as_str().is_some_and(|t| {
            let _ = sc::decode_entities(t);
            ticketsync::marker::ends_with_marker(t, MARKER)
                || sc::html_ends_with_marker(t, MARKER)
                || sc::html_ends_with_marker(&sc::unescape_html(t), MARKER)
        })
    };
    for who in [&v["user"]["id"], &v["agent"]["id"], &v["session"]["glpiID"], &v["accountId"]] {
        let _ = sc::author_ok(Some("1"), sc::id_text(who));
    }
    let _ = v["issue"]["journals"].as_array().into_iter().flatten().any(|j| hit(&j["notes"]));
    for key in ["comments", "conversations"] {
        for c in v[key].as_array().into_iter().flatten() {
            let _ = ["body", "html_body", "plain_body", "body_text"].iter().any(|k| hit(&c[*k]));
            let _ = format!("{}", c["id"]);
        }
    }
    let _ = v["next_page"].as_str().and_then(|n| url_path_and_query(n));
    let _ = v["values"].as_array().into_iter().flatten().any(|c| hit(&c["body"]));
    let _ = v.as_array().into_iter().flatten().any(|f| hit(&f["content"]));
});

/// Zendesk's `follow`: only the path and query of `next_page` are kept.
fn url_path_and_query(n: &str) -> Option<String> {
    let u = reqwest::Url::parse(n).ok()?;
    Some(format!("{}?{}", u.path(), u.query().unwrap_or_default()))
}
