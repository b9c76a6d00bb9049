//! The console's pages. maud escapes every `(expr)` it interpolates, so vendor text (a
//! technician named `<script>`, a raw record) is shown, never run; nothing here builds HTML
//! by hand. Forms that change anything are shown to operators only, each with its CSRF token.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::{DeliveryQuery, Login, SessionQuery, VerifyResult};
use crate::store::console::{SessionRecord, SessionRow, SinkOutbox, SourceStatus};
use crate::store::outbox::Delivery;

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}
header{background:#1f3a5f;color:#fff;padding:.5em 1em;display:flex;gap:1.2em;align-items:center}
header a{color:#fff}header .who{margin-left:auto}main{padding:1em}
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eef}pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em;white-space:pre-wrap;word-break:break-all}
.bad{color:#a00;font-weight:bold}.ok{color:#060;font-weight:bold}.msg{padding:.4em;background:#efe;border:1px solid #9c9}
.err{padding:.4em;background:#fee;border:1px solid #c99}form.inline{display:inline}input[type=text]{width:9em}
code.head{user-select:all;background:#ffd;padding:.2em}";

fn ts(t: DateTime<Utc>) -> String {
    crate::session::ts(t)
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("–")
}

/// How long ago `at` (stored text) was, for ages and lags.
fn age(at: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(t) = at.and_then(crate::session::parse_ts) else { return "–".into() };
    let s = (now - t).num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

fn layout(l: Option<&Login>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "ticketsync · " (title) }
                style { (maud::PreEscaped(CSS)) }
            }
            body {
                header {
                    strong { "ticketsync" }
                    @if let Some(l) = l {
                        a href="/ui/" { "Overview" }
                        a href="/ui/sessions" { "Sessions" }
                        a href="/ui/unmatched" { "Unmatched" }
                        a href="/ui/deliveries" { "Deliveries" }
                        a href="/ui/audit" { "Audit" }
                        span.who { (l.user) " (" (l.role.as_str()) ") · " a href="/ui/logout" { "log out" } }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn csrf(l: &Login) -> Markup {
    html! { input type="hidden" name="csrf" value=(l.csrf); }
}

fn messages(done: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(d) = done { p.msg { (d) } }
        @if let Some(e) = error { p.err { (e) } }
    }
}

pub fn login(token: &str, error: Option<&str>) -> Markup {
    layout(
        None,
        "Log in",
        html! {
            (messages(None, error))
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(token);
                p { label { "User " input type="text" name="user" autocomplete="username" required; } }
                p { label { "Password " input type="password" name="password" autocomplete="current-password" required; } }
                p { button type="submit" { "Log in" } }
            }
        },
    )
}

pub fn overview(
    l: &Login,
    sources: &[SourceStatus],
    sinks: &[SinkOutbox],
    head: &str,
    verify: Option<&VerifyResult>,
    now: DateTime<Utc>,
) -> Markup {
    layout(
        Some(l),
        "Overview",
        html! {
            h2 { "Sources" }
            table #sources {
                tr { th { "source" } th { "last successful poll" } th { "lag" } th { "last poll" } th { "last error" } }
                @for s in sources {
                    tr {
                        td { (s.source) }
                        td { (opt(&s.last_success_at)) }
                        td { (age(s.last_success_at.as_deref(), now)) }
                        td { (opt(&s.last_poll_at)) }
                        td.bad { (crate::redact::scrubbed(s.last_error.as_deref().unwrap_or(""))) }
                    }
                }
            }
            h2 { "Sinks" }
            table #sinks {
                tr { th { "sink" } th { "pending" } th { "retrying" } th { "failed" } th { "dead" } th { "oldest pending" } }
                @for s in sinks {
                    tr {
                        td { (s.sink) }
                        td { (s.pending) }
                        td { (s.retrying) }
                        td { a href={ "/ui/deliveries?state=failed&sink=" (s.sink) } { (s.failed) } }
                        td { a href={ "/ui/deliveries?state=dead&sink=" (s.sink) } { (s.dead) } }
                        td { (age(s.oldest_pending_at.as_deref(), now)) }
                    }
                }
            }
            h2 { "Audit chain" }
            p { "Head (ID:HASH, for an external anchor): " code.head #head { (head) } }
            (verify_line(verify))
        },
    )
}

fn verify_line(v: Option<&VerifyResult>) -> Markup {
    html! {
        @match v {
            Some(v) => p #verify {
                "Last verify " (v.at) " by " (v.by) ": "
                span class=(if v.ok { "ok" } else { "bad" }) { (v.summary) }
            },
            None => p #verify { "Not verified since the daemon started." },
        }
    }
}

fn session_rows(rows: &[SessionRow]) -> Markup {
    html! {
        table #results {
            tr { th { "id" } th { "tenant" } th { "vendor" } th { "code" } th { "started" } th { "ended" } th { "technician" } th { "device" } th { "ticket" } th { "rule" } }
            @for r in rows {
                @let s = &r.session;
                tr {
                    td { a href={ "/ui/sessions/" (s.id) } { (s.id) } }
                    td { (r.tenant) }
                    td { (s.vendor) }
                    td { (opt(&s.session_code)) }
                    td { (ts(s.started_at)) }
                    td { (s.ended_at.map(ts).unwrap_or_else(|| "running".into())) }
                    td { (opt(&s.technician)) }
                    td { (opt(&s.device)) }
                    td { (opt(&r.ticket_id)) }
                    td { (opt(&r.rule)) }
                }
            }
        }
    }
}

pub fn sessions(l: &Login, q: &SessionQuery, rows: &[SessionRow], error: Option<&str>) -> Markup {
    layout(
        Some(l),
        "Sessions",
        html! {
            form method="get" action="/ui/sessions" {
                label { "code " input type="text" name="code" value=(q.code); } " "
                label { "ticket " input type="text" name="ticket" value=(q.ticket); } " "
                label { "technician " input type="text" name="technician" value=(q.technician); } " "
                label { "vendor " input type="text" name="vendor" value=(q.vendor); } " "
                label { "tenant " input type="text" name="tenant" value=(q.tenant); } " "
                label { "from " input type="text" name="from" placeholder="YYYY-MM-DD" value=(q.from); } " "
                label { "to " input type="text" name="to" placeholder="YYYY-MM-DD" value=(q.to); } " "
                button type="submit" { "Search" }
            }
            (messages(None, error))
            (session_rows(rows))
            @if rows.len() as i64 == super::PAGE {
                @if let Some(last) = rows.last() {
                    p { a #next href={ "/ui/sessions?" (q.next(last.session.id)) } { "older →" } }
                }
            }
        },
    )
}

pub fn session(l: &Login, r: &SessionRecord) -> Markup {
    let s = &r.session;
    let raw = serde_json::from_str::<serde_json::Value>(&s.raw_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| s.raw_json.clone());
    let fields: [(&str, String); 18] = [
        ("id", s.id.to_string()),
        ("tenant", r.tenant.clone()),
        ("vendor", s.vendor.clone()),
        ("external id", s.external_id.clone()),
        ("session code", opt(&s.session_code).into()),
        ("technician", opt(&s.technician).into()),
        ("device", opt(&s.device).into()),
        ("device id", opt(&s.device_id).into()),
        ("group", opt(&s.group_name).into()),
        ("started", ts(s.started_at)),
        ("ended", s.ended_at.map(ts).unwrap_or_else(|| "running".into())),
        ("duration (s)", s.duration_s.map(|d| d.to_string()).unwrap_or_else(|| "–".into())),
        ("customer", opt(&s.customer_name).into()),
        ("custom_api", opt(&s.custom_api).into()),
        ("notes", opt(&s.notes).into()),
        ("description", opt(&s.description).into()),
        ("revision", s.revision.to_string()),
        ("first seen / last seen", format!("{} / {}", r.first_seen_at, r.last_seen_at)),
    ];
    layout(
        Some(l),
        &format!("Session {}", s.id),
        html! {
            table #fields {
                @for (k, v) in &fields { tr { th { (k) } td { (v) } } }
                @if let Some(v) = &r.vanished_at { tr { th { "vanished" } td.bad { (v) } } }
            }
            h2 { "Match" }
            @match (&r.ticket_id, &r.rule) {
                (Some(t), Some(rule)) => p #match { "Ticket " strong { (t) } " by rule " code { (rule) } " at " (opt(&r.matched_at)) },
                _ => p #match {
                    "Unmatched"
                    @if let Some(rev) = r.match_checked_rev { " (the matcher examined revision " (rev) " and found no ticket)" }
                    ". " a href="/ui/unmatched" { "Link it from the unmatched queue." }
                },
            }
            h2 { "Deliveries" }
            table #deliveries {
                tr { th { "id" } th { "sink" } th { "ticket" } th { "kind" } th { "state" } th { "attempts" } th { "remote ref" } th { "last error" } }
                @for d in &r.deliveries {
                    tr {
                        td { (d.id) } td { (d.sink) } td { (d.ticket_id) } td { (d.kind.as_str()) }
                        td { (d.state.as_str()) } td { (d.attempts) } td { (opt(&d.remote_ref)) }
                        td { (crate::redact::scrubbed(d.last_error.as_deref().unwrap_or(""))) }
                    }
                }
            }
            h3 { "Attempts" }
            table #attempts {
                tr { th { "delivery" } th { "attempt" } th { "started" } th { "finished" } th { "outcome" } th { "detail" } }
                @for a in &r.attempts {
                    tr {
                        td { (a.delivery_id) } td { (a.attempt) } td { (a.started_at) } td { (opt(&a.finished_at)) }
                        td { (opt(&a.outcome)) } td { (crate::redact::scrubbed(a.detail.as_deref().unwrap_or(""))) }
                    }
                }
            }
            h2 { "Audit trail" }
            table #audit {
                tr { th { "row" } th { "at" } th { "kind" } th { "ticket" } th { "delivery" } th { "detail" } }
                @for e in &r.audit {
                    tr {
                        td { (e.id) } td { (e.at) } td { (e.kind) } td { (opt(&e.ticket_id)) }
                        td { (e.delivery_id.map(|d| d.to_string()).unwrap_or_default()) }
                        td { code { (e.detail_json) } }
                    }
                }
            }
            h2 { "The vendor's record (as received)" }
            pre #raw { (raw) }
        },
    )
}

pub fn unmatched(l: &Login, rows: &[SessionRow], done: Option<&str>, error: Option<&str>) -> Markup {
    layout(
        Some(l),
        "Unmatched sessions",
        html! {
            (messages(done, error))
            p { "Sessions no rule matched, newest first, with the fields the rules look at. A link flows through the normal pipeline: the next match pass matches the session and queues its notes." }
            table #unmatched {
                tr {
                    th { "id" } th { "tenant" } th { "vendor" } th { "code / vendor id" } th { "started" } th { "technician" }
                    th { "custom_api" } th { "notes / description" } th { "customer" }
                    @if l.operator() { th { "link to ticket" } }
                }
                @for r in rows {
                    @let s = &r.session;
                    @let key = s.session_code.clone().unwrap_or_else(|| s.external_id.clone());
                    tr {
                        td { a href={ "/ui/sessions/" (s.id) } { (s.id) } }
                        td { (r.tenant) }
                        td { (s.vendor) }
                        td.code { (key) }
                        td { (ts(s.started_at)) }
                        td { (opt(&s.technician)) }
                        td { (opt(&s.custom_api)) }
                        td { (short(s.notes.as_deref().or(s.description.as_deref()).unwrap_or("–"))) }
                        td { (opt(&s.customer_name)) }
                        @if l.operator() {
                            td {
                                form.inline.link method="post" action="/ui/link" {
                                    (csrf(l))
                                    input type="hidden" name="code" value=(key);
                                    input type="hidden" name="tenant" value=(r.tenant);
                                    input type="text" name="ticket" placeholder="ticket id" required;
                                    " " button type="submit" { "Link" }
                                }
                            }
                        }
                    }
                }
            }
            @if rows.len() as i64 == super::PAGE {
                @if let Some(last) = rows.last() {
                    p { a #next href={ "/ui/unmatched?before=" (last.session.id) } { "older →" } }
                }
            }
        },
    )
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(160).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

pub fn deliveries(l: &Login, q: &DeliveryQuery, rows: &[Delivery]) -> Markup {
    layout(
        Some(l),
        "Failed and dead deliveries",
        html! {
            (messages(Some(q.done.as_str()).filter(|s| !s.is_empty()), Some(q.error.as_str()).filter(|s| !s.is_empty())))
            form method="get" action="/ui/deliveries" {
                label { "state "
                    select name="state" {
                        option value="" selected[q.state.is_empty()] { "failed and dead" }
                        option value="failed" selected[q.state == "failed"] { "failed" }
                        option value="dead" selected[q.state == "dead"] { "dead" }
                    }
                } " "
                label { "sink " input type="text" name="sink" value=(q.sink); } " "
                button type="submit" { "Filter" }
            }
            @if l.operator() && !rows.is_empty() {
                form.bulk method="post" action="/ui/retry-bulk" {
                    (csrf(l))
                    input type="hidden" name="state" value=(q.state);
                    input type="hidden" name="sink" value=(q.sink);
                    button type="submit" { "Retry every delivery of this filter" }
                }
            }
            table #failed {
                tr {
                    th { "id" } th { "sink" } th { "ticket" } th { "session" } th { "kind" } th { "state" } th { "attempts" } th { "reason" }
                    @if l.operator() { th { "" } }
                }
                @for d in rows {
                    tr {
                        td { (d.id) } td { (d.sink) } td { (d.ticket_id) }
                        td { @if let Some(s) = d.session_id { a href={ "/ui/sessions/" (s) } { (s) } } }
                        td { (d.kind.as_str()) } td { (d.state.as_str()) } td { (d.attempts) }
                        td { (crate::redact::scrubbed(d.last_error.as_deref().unwrap_or(""))) }
                        @if l.operator() {
                            td {
                                form.inline.retry method="post" action="/ui/retry" {
                                    (csrf(l))
                                    input type="hidden" name="id" value=(d.id);
                                    button type="submit" { "Retry" }
                                }
                            }
                        }
                    }
                }
            }
            @if rows.len() as i64 == super::PAGE {
                @if let Some(last) = rows.last() {
                    p { a #next href={ "/ui/deliveries?state=" (q.state) "&sink=" (q.sink) "&before=" (last.id) } { "older →" } }
                }
            }
        },
    )
}

pub fn audit(l: &Login, head: &str, verify: Option<&VerifyResult>) -> Markup {
    layout(
        Some(l),
        "Audit",
        html! {
            p { "Chain head (ID:HASH) — copy it to an external anchor; " code { "ticketsync audit verify --expect-head ID:HASH" } " later proves no row was removed from the end:" }
            p { code.head #head { (head) } }
            (verify_line(verify))
            @if l.operator() {
                form.verify method="post" action="/ui/audit/verify" {
                    (csrf(l))
                    button type="submit" { "Verify the chain now" }
                }
                h2 { "Export" }
                form.export method="post" action="/ui/audit/export" {
                    (csrf(l))
                    label { "from " input type="text" name="from" placeholder="YYYY-MM-DD"; } " "
                    label { "to " input type="text" name="to" placeholder="YYYY-MM-DD"; } " "
                    select name="format" { option value="jsonl" { "JSON lines" } option value="csv" { "CSV" } }
                    " " button type="submit" { "Download" }
                }
            }
        },
    )
}
