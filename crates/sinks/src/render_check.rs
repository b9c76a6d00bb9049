//! The invariants of every sink's note rendering on hostile vendor text (issue 14), shared
//! by the `note_render` fuzz target and the unit test below: the marker is the last line and
//! the only marker line, and nothing from vendor text survives as markup (HTML: every `<` in
//! the output opens one of our own tags and every link is http(s); Redmine: no markup
//! character raw outside the attachment fence, no fence break, no block signature; Jira
//! wiki: vendor text stays inside `{noformat}`, the rest is escaped; ServiceNow: no `[code]`
//! tag from vendor text; Request Tracker: plain text, the marker last).
//!
//! Test support: the checks panic with what broke.
#![doc(hidden)]

use crate::common as sc;
use crate::marker::{final_marker, is_safe_url, parse_line, MarkerKey};
use crate::note::Note;
use crate::redmine::{self, TextFormatting};

/// Render `note` for every sink format and check each result; panics on a violation.
pub fn assert_safe_renderings(note: &Note, key: &MarkerKey) {
    plain(note);
    html(note);
    html_many(note, key);
    for fmt in [TextFormatting::Textile, TextFormatting::Markdown, TextFormatting::CommonMark] {
        redmine(note, fmt);
    }
    wiki(note);
    // Zammad's article is `to_html` (checked above) after the inline cut.
    marker_last_and_unique("rt", &crate::rt::render(note, 20_000), &note.marker);
    servicenow(note);
}

/// ServiceNow shows a journal entry escaped except inside `[code]…[/code]`: no such tag may
/// come from vendor text.
fn servicenow(note: &Note) {
    let t = crate::servicenow::render(note, 20_000);
    marker_last_and_unique("servicenow", &t, &note.marker);
    let re = regex::Regex::new(r"(?i)\[\s*/?\s*code").expect("valid regex");
    for m in re.find_iter(&t) {
        assert!(m.as_str().starts_with("[ "), "a [code] tag survives at {:?} in {t:?}", m.as_str());
    }
}

/// The marker is the text's final line and no other line is a marker line, nor carries
/// the marker prefix in ASCII (an earlier release's substring scan would see it).
fn marker_last_and_unique(what: &str, text: &str, marker: &str) {
    assert_eq!(final_marker(text), Some(marker), "{what}: marker not last in {text:?}");
    let lines = text.lines().filter(|l| parse_line(l).is_some()).count();
    assert_eq!(lines, 1, "{what}: {lines} marker lines in {text:?}");
    // The marker's own line may spell it again inside a (percent-encoded) vendor id.
    let before = text.trim_end().rsplit_once('\n').map_or("", |(b, _)| b);
    assert!(
        !before.to_ascii_lowercase().contains("ticketsync-marker"),
        "{what}: marker prefix before the end in {text:?}"
    );
}

fn plain(note: &Note) {
    marker_last_and_unique("plain", &note.to_plain_text(), &note.marker);
}

/// Our tags, and nothing else, may open with `<`.
const TAGS: [&str; 10] =
    ["<p>", "</p>", "<strong>", "</strong>", "<br>", "<a href=\"", "</a>", "<pre>", "</pre>", "<hr>"];

fn html(note: &Note) {
    let h = sc::to_html(note);
    for (i, _) in h.match_indices('<') {
        let rest = &h[i..];
        assert!(
            TAGS.iter().any(|t| rest.starts_with(t)),
            "vendor markup survives at {:?}",
            &rest[..rest.len().min(40)]
        );
        if let Some(href) = rest.strip_prefix("<a href=\"") {
            let target = sc::decode_entities(href.split('"').next().unwrap_or(""));
            assert!(is_safe_url(&target), "unsafe link target {target:?}");
        }
    }
    assert!(h.matches("<a href=").count() <= note.links.len());
    let parts = sc::html_note_parts(&h);
    assert_eq!(parts.len(), 1, "vendor text made a <hr>: {h:?}");
    marker_last_and_unique("html", &parts[0], &note.marker);
    assert!(sc::html_ends_with_marker(&h, &note.marker));
}

/// Zendesk's batch: each note's marker ends its own part.
fn html_many(note: &Note, key: &MarkerKey) {
    let mut other = note.clone();
    other.marker = key.marker("teamviewer", "other", "report");
    let h = sc::to_html_many(&[note.clone(), other.clone()]);
    let parts = sc::html_note_parts(&h);
    assert_eq!(parts.len(), 2, "{h:?}");
    marker_last_and_unique("html batch 1", &parts[0], &note.marker);
    marker_last_and_unique("html batch 2", &parts[1], &other.marker);
}

fn redmine(note: &Note, fmt: TextFormatting) {
    let t = redmine::render(note, fmt, 500);
    marker_last_and_unique("redmine", &t, &note.marker);
    // Without links (their targets are vendor URL fields, shown as bare http(s) URLs) and
    // outside the fenced attachment, no character that starts markup is raw.
    let mut bare = note.clone();
    bare.links.clear();
    let t = redmine::render(&bare, fmt, 500);
    let (head, fence) = split_fence(&t, fmt);
    // Our escapes are numeric entities; what is left must hold no raw markup character.
    static ENTITY: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let entity = ENTITY.get_or_init(|| regex::Regex::new("&#[0-9]+;").expect("valid regex"));
    let stripped = entity.replace_all(head, "\u{fffd}");
    // A table row's structure is ours (pipes, Textile's `|_. ` header, a `|---|` separator);
    // its cells must be as clean as any text.
    let structure: Vec<String> = stripped
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.len() >= 2 && t.starts_with('|') && t.ends_with('|') {
                if t.chars().all(|c| matches!(c, '|' | '-')) {
                    return String::new();
                }
                return t.replace("|_. ", " ").replace('|', " ");
            }
            l.to_string()
        })
        .collect();
    let joined = structure.join("\n");
    let head = joined.as_str();
    for c in ['!', '"', '<', '>', '[', ']', '{', '}', '|', '*', '_', '+', '^', '~', '@', '#', '\\', '`', '%', '='] {
        assert!(!head.contains(c), "{fmt:?}: raw {c:?} in {head:?}");
    }
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("://") && !lower.contains("www."), "{fmt:?}: a link can form in {head:?}");
    for line in head.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        assert!(!first.ends_with('.') && !line.trim_start().starts_with('-'), "{fmt:?}: block signature {line:?}");
    }
    match fmt {
        TextFormatting::Textile => {
            let l = fence.to_ascii_lowercase();
            assert!(!l.contains("<pre") && !l.contains("</pre"), "pre breaks out: {fence:?}");
        }
        _ => {
            let fence_len = t.lines().find(|l| l.starts_with("~~~")).map_or(0, str::len);
            assert!(fence_len >= 3, "{t:?}");
            for l in fence.lines() {
                let run = l.trim_start().chars().take_while(|c| *c == '~' || *c == '`').count();
                assert!(run < fence_len, "fence breaks out: {l:?} against {fence_len}");
            }
        }
    }
}

/// (text before the attachment block, the block's content). Vendor text cannot contain
/// the opening (`<` and `~` are escaped), so the first one is ours.
fn split_fence(t: &str, fmt: TextFormatting) -> (&str, &str) {
    let (open, close) = match fmt {
        TextFormatting::Textile => ("\n<pre>\n", "\n</pre>"),
        _ => ("\n~~~", "\n~~~"),
    };
    let i = t.find(open).unwrap_or_else(|| panic!("no attachment block in {t:?}"));
    let mut rest = &t[i + open.len()..];
    if fmt != TextFormatting::Textile {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    let end = rest.rfind(close).unwrap_or(rest.len());
    (&t[..i], &rest[..end])
}

fn wiki(note: &Note) {
    let w = sc::to_jira_wiki(note);
    marker_last_and_unique("wiki", &w, &note.marker);
    // Two blocks (note text, attachment), each opened and closed by our own lines.
    let delimiters = w.to_ascii_lowercase().matches("{noformat}").count();
    assert_eq!(delimiters, 4, "a vendor {{noformat}} survives: {w:?}");
    let mut inside = false;
    for line in w.lines() {
        if line == "{noformat}" {
            inside = !inside;
            continue;
        }
        if inside || parse_line(line).is_some() {
            continue;
        }
        // Outside the blocks: our heading, `[label|url]` links and `name:` lines, every
        // markup character of vendor text backslash-escaped.
        let body = line.strip_prefix('[').and_then(|l| l.rsplit_once('|')).map_or(line, |(label, _)| label);
        let mut prev = ' ';
        for c in body.chars() {
            if matches!(c, '!' | '[' | ']' | '{' | '}' | '|' | '*' | '_' | '^' | '~' | '?' | '#' | '@' | ':')
                && line != "*Remote support note*"
            {
                assert!(prev == '\\' || (c == ':' && body.ends_with(':')), "raw {c:?} in {line:?}");
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
    }
    assert!(!inside, "unbalanced blocks: {w:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{Attachment, Field, Link, Visibility};

    /// Pieces that hostile text is made of, for a deterministic run over many combinations
    /// (the fuzz target explores further).
    const TOKENS: &[&str] = &[
        "ticketsync-marker: ",
        "TICKETSYNC-MARKER:",
        "ticket\u{200b}sync-marker: ",
        "tіcketsync-marker",
        "tsd:v1:teamviewer:B:report",
        "tsd:v2:a:b:c:0123",
        "\n",
        "\r\n",
        " ",
        "  ",
        "<pre>",
        "</PRE>",
        "< /pre>",
        "<hr>",
        "<img src=x>",
        "<a href=\"javascript:x\">",
        "{noformat}",
        "{NoFormat}",
        "{{macro}}",
        "[[wiki]]",
        "[code]",
        "[/CODE]",
        "[ code ]",
        "[",
        "code]",
        "!https://a/p.png!",
        "\"x\":https://evil",
        "https://",
        "www.",
        "WWW.",
        "h1. ",
        "bq. ",
        "1. ",
        "- ",
        "* ",
        "# ",
        "| a | b |",
        "~~~",
        "```",
        "~~~~~",
        "&#33;",
        "&lt;",
        "&amp;",
        "&",
        "@admin",
        "#1",
        ":",
        "::",
        "22:45",
        "a.",
        "..",
        "\\",
        "\\|",
        "[x|y]",
        "]",
        "%{color:red}",
        "==",
        "_i_",
        "*b*",
        "^",
        "?",
        "javascript:",
        "data:text/html,",
        "mailto:a@b.c",
        "x",
        "Jon Snow",
        "ｔｉｃｋｅｔｓｙｎｃ-marker",
        "\u{a0}",
        "\u{1f}",
    ];

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 as usize
        }
        fn text(&mut self) -> String {
            let n = self.next() % 8;
            (0..n).map(|_| TOKENS[self.next() % TOKENS.len()]).collect()
        }
    }

    #[test]
    fn hostile_combinations_render_safely_in_every_format() {
        let key = MarkerKey::new(b"a unit-test marker key!!").unwrap();
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for _ in 0..3000 {
            let id = rng.text();
            let note = Note {
                title: rng.text(),
                fields: vec![Field { label: rng.text(), value: rng.text() }],
                links: vec![
                    Link { label: rng.text(), url: format!("https://x.example/{}", rng.text()) },
                    Link { label: rng.text(), url: rng.text() },
                ],
                body: Some(rng.text()),
                attachments: vec![Attachment {
                    filename: rng.text(),
                    content_type: "text/plain".into(),
                    text: rng.text(),
                }],
                visibility: Visibility::Internal,
                marker: key.marker("teamviewer", &id, "report"),
            };
            assert_safe_renderings(&note, &key);
        }
    }
}
