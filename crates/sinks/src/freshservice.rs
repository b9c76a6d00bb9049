//! Freshservice: private note via `POST /api/v2/tickets/{id}/notes` (`private: true`, HTML
//! `body`, 201), marker scan through `GET /api/v2/tickets/{id}/conversations` (paged with
//! `page`/`per_page` and a `Link: <…>; rel="next"` header). API key as Basic `{key}:X`.
//! Failed calls count against Freshservice's rate limit, so no 4xx but 429 is retried.
//!
//! Time entries (issue 20): `POST /api/v2/tickets/{id}/time_entries` with `time_spent`
//! (`hh:mm`), `billable`, `agent_id` (mandatory: the mapped technician, else the agent found
//! by e-mail through `GET /api/v2/agents?email=`, else the API user's own agent id from
//! `/api/v2/agents/me`), `start_time`, `executed_at` and `note` (the entry's comment, the
//! marker line last); the scan lists `GET /api/v2/tickets/{id}/time_entries`. Documents:
//! Freshservice API v2 reference, "Time Entries" (create, list) and "Agents" (filter by
//! email); not checked against a live Freshservice (none runs here).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, SinkErrorKind, TicketSink};
use crate::http::Auth;
use crate::note::{Note, Visibility};
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, yes, BuildCtx, ConfigError, Errors, Outbound,
    RouteConfig, SecretUse, SinkSection,
};

pub struct FreshserviceSink {
    api: common::SinkHttp,
    /// Name of a custom field (`cf_session_code`) holding the session code, for lookups.
    session_field: Option<String>,
    /// The API key's agent id (`/api/v2/agents/me`), for the marker scan's author check.
    api_user: common::ApiUser,
}

impl common::HttpKnobs for FreshserviceSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

impl FreshserviceSink {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: SecretString,
        session_field: Option<String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            // Freshworks: the API key is the user name, any password.
            api: common::SinkHttp::new(
                name,
                base_url,
                Auth::Basic { user: api_key, password: Some(SecretString::from("X")) },
                http,
            ),
            session_field,
            api_user: Default::default(),
        }
    }

    async fn api_user(&self) -> Result<Option<&str>, SinkError> {
        self.api_user
            .get(|| async {
                let r = self.call(self.api.get("/api/v2/agents/me")).await?;
                let v = common::parse_listing(&self.api.name, &r.body, "current agent")?;
                Ok(common::id_text(&v["agent"]["id"]))
            })
            .await
    }

    /// Freshservice shows tickets as `INC-42`; the API wants `42`.
    fn ticket_id(&self, ticket: &str) -> Result<String, SinkError> {
        let t = ticket.trim_start_matches('#');
        let id = ["INC-", "SR-", "inc-", "sr-"].iter().find_map(|p| t.strip_prefix(p)).unwrap_or(t);
        match common::is_decimal(id) {
            true => Ok(id.to_string()),
            false => Err(common::not_a_ticket(&self.api.name, ticket, "a Freshservice ticket id")),
        }
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let r = self.api.send(req).await?;
        if r.status.is_success() {
            return Ok(r);
        }
        let detail = freshservice_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        match r.status.as_u16() {
            // Every failed call costs rate-limit credit: only 429 and 5xx are worth repeating.
            408 | 425 => err.kind = SinkErrorKind::Permanent,
            400 | 422 => err.message = format!("Freshservice rejected the note (HTTP {}): {detail}", r.status.as_u16()),
            _ => {}
        }
        Err(err)
    }
}

/// `{"description":"Validation failed","errors":[{"field":…,"message":…,"code":…}]}` or
/// `{"code":"invalid_credentials","message":…}`.
pub fn freshservice_error(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return if body.trim_start().starts_with('<') { String::new() } else { body.to_string() };
    };
    let mut parts: Vec<String> =
        ["code", "description", "message"].iter().filter_map(|k| v[*k].as_str().map(str::to_string)).collect();
    for e in v["errors"].as_array().into_iter().flatten() {
        parts.push(format!("{}: {}", e["field"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or_default()));
    }
    parts.join("; ")
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find(|p| p.contains("rel=\"next\"")).and_then(|p| {
        let start = p.find('<')? + 1;
        // The `>` after the `<`: a stray `>` before it must not make the range run backwards.
        let end = start + p[start..].find('>')?;
        Some(p[start..end].to_string())
    })
}

#[async_trait]
impl TicketSink for FreshserviceSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let mut url = Some(format!("{}/api/v2/tickets/{id}/conversations?page=1&per_page=100", self.api.base));
        let mut pages = 0;
        let me = self.api_user().await?;
        while let Some(u) = url.take() {
            pages += 1;
            let r = self.call(self.api.http.get(&u)).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "conversations")?;
            for c in v["conversations"].as_array().into_iter().flatten() {
                // The marker must end the note (HTML `body`, else `body_text`), written by us.
                let hit = match c["body"].as_str() {
                    Some(h) => common::html_ends_with_marker(h, marker),
                    None => c["body_text"].as_str().is_some_and(|t| crate::marker::ends_with_marker(t, marker)),
                } && common::author_ok(me, common::id_text(&c["user_id"]));
                if hit {
                    return Ok(Some(format!("ticket:{id}#conversation-{}", c["id"])));
                }
            }
            if pages < 1000 {
                // Follow only the path and query, on our own base.
                url = next_link(&r.headers)
                    .and_then(|n| url::Url::parse(&n).ok())
                    .map(|n| format!("{}{}?{}", self.api.base, n.path(), n.query().unwrap_or_default()));
            }
        }
        Ok(None)
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let body = json!({"body": common::to_html(&note.with_inline_cut(self.api.inline_limit)), "private": note.visibility == Visibility::Internal});
        let r = self.call(self.api.post(&format!("/api/v2/tickets/{id}/notes")).json(&body)).await?;
        let cid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["conversation"]["id"].as_u64());
        Ok(match cid {
            Some(c) => format!("ticket:{id}#conversation-{c}"),
            None => format!("ticket:{id}"),
        })
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let r = self.call(self.api.get(&format!("/api/v2/tickets/{id}/time_entries"))).await?;
        let v = common::parse_listing(&self.api.name, &r.body, "time entries")?;
        let found = v["time_entries"].as_array().into_iter().flatten().find(|t| {
            t["note"].as_str().is_some_and(|n| crate::time_entry::ends_with_marker(&common::html_to_text(n), marker))
        });
        Ok(found.map(|t| format!("ticket:{id}#time-entry-{}", t["id"])))
    }

    async fn post_time_entry(&self, ticket: &str, entry: &crate::TimeEntry) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let mut agent = entry.user.clone();
        if agent.is_none() {
            if let Some(mail) = entry.technician_email.as_deref() {
                agent = self.user_by_email(mail).await?;
            }
        }
        let as_api_user = agent.is_none();
        if agent.is_none() {
            agent = self.api_user().await?.map(str::to_string);
        }
        let Some(agent) = agent.and_then(|a| a.parse::<u64>().ok()) else {
            return Err(SinkError::new(&self.api.name, SinkErrorKind::Permanent, "no agent id for the time entry"));
        };
        let body = json!({
            "time_spent": entry.hh_mm(),
            "billable": entry.billable,
            "agent_id": agent,
            "start_time": entry.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "executed_at": entry.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "note": entry.comment(as_api_user),
        });
        let r = self.call(self.api.post(&format!("/api/v2/tickets/{id}/time_entries")).json(&body)).await?;
        let tid = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["time_entry"]["id"].as_u64());
        Ok(match tid {
            Some(t) => format!("ticket:{id}#time-entry-{t}"),
            None => format!("ticket:{id}"),
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<String>, SinkError> {
        let r = self.call(self.api.get("/api/v2/agents").query(&[("email", email)])).await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        Ok(v["agents"].as_array().and_then(|a| a.first()).and_then(|a| common::id_text(&a["id"])))
    }

    async fn find_ticket_by_session_code(&self, code: &str) -> Result<Option<String>, SinkError> {
        let Some(field) = &self.session_field else { return Ok(None) };
        let query = format!("\"{field}:'{}'\"", code.replace(['\'', '"'], ""));
        let r = self.call(self.api.get("/api/v2/tickets/filter").query(&[("query", query)])).await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        Ok(v["tickets"].as_array().and_then(|a| a.first()).and_then(|t| t["id"].as_u64()).map(|i| i.to_string()))
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.call(self.api.get("/api/v2/agents/me")).await.map(|_| ())
    }
}

/// `[sinks.freshservice]` before it is read: its name, its secret keys and what `init` asks.
impl crate::section::Described for FreshserviceConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "freshservice",
        section: "sinks.freshservice",
        secrets: &["sinks.freshservice.api_key"],
        setup: &crate::section::Plain {
            keys: &[crate::section::InitKey::new("url", "Freshservice URL (https://<domain>.freshservice.com)", None)],
            secrets: &["api_key"],
        },
    };
}

// Its section, `[sinks.freshservice]`: keys, checks, secrets and how the sink is built.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshserviceConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `https://{domain}.freshservice.com`
    pub url: String,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Name of a custom ticket field holding the session code (`cf_session_code`), for lookups.
    #[serde(default)]
    pub session_code_field: Option<String>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::section::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::section::OutboundConfig,
}

crate::section::outbound_section!(FreshserviceConfig, "sinks.freshservice");

impl FreshserviceConfig {
    fn check_into(&self, e: &mut Errors) {
        check_url(e, "sinks.freshservice.url", &self.url);
    }
    pub fn api_key_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.freshservice.api_key", self.api_key.as_ref(), self.api_key_file.as_deref())
    }
    pub fn api_key_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.api_key_value()?, "sinks.freshservice.api_key")
    }
}

impl SinkSection for FreshserviceConfig {
    section_basics!("freshservice");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.freshservice.api_key", true, self.api_key_value())]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        // Freshworks: the API key is the user name, any password (we send "X").
        self.api_key_secret().map(|k| vec![(k.expose_secret().to_string(), "X".into())]).unwrap_or_default()
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let http = self.outbound().client(ctx.timeout)?;
        let sink = FreshserviceSink::new(
            "freshservice",
            &self.url,
            self.api_key_secret()?,
            self.session_code_field.clone(),
            http,
        );
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, LINK};

    fn link(v: &'static str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(LINK, HeaderValue::from_static(v));
        next_link(&h)
    }

    #[test]
    fn next_link_is_the_rel_next_target() {
        assert_eq!(
            link(r#"<https://x.test/c?page=2>; rel="next", <https://x.test/c?page=1>; rel="prev""#).as_deref(),
            Some("https://x.test/c?page=2")
        );
        assert_eq!(link(r#"<https://x.test/c?page=1>; rel="prev""#), None);
    }

    /// Regression (fuzz target `http_headers`, fuzz/artifacts crash-bf471f26…): a `>` before
    /// the `<` in the `rel="next"` part panicked with "begin > end" when slicing.
    #[test]
    fn stray_angle_bracket_is_no_panic() {
        assert_eq!(link(r#" https://x.test/c?page=1>; r2l="next<rel="next" "#), None,);
        assert_eq!(link(r#"x> <https://x.test/c?page=3>; rel="next""#).as_deref(), Some("https://x.test/c?page=3"));
    }
}
