//! HTML → plain text the way helpdesks derive their `plain_body`/`body_text`: block ends
//! and `<br>` become line breaks, tags go, entities are decoded.

pub fn to_text(html: &str) -> String {
    let mut s = html.replace("<br>", "\n").replace("<br/>", "\n").replace("<br />", "\n");
    for end in ["</p>", "</pre>", "<hr>"] {
        s = s.replace(end, "\n");
    }
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string()
}
