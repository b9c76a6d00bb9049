//! Zendesk: private comment via `PUT /api/v2/tickets/{id}.json` (`comment.public=false`,
//! `html_body`), marker scan through `GET /api/v2/tickets/{id}/comments.json` (paged by
//! `next_page`). Zendesk allows 30 updates per ticket per 10 minutes, so due notes for
//! one ticket are written in one update ([`TicketSink::max_batch`]).

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

pub enum ZendeskAuth {
    /// `Authorization: Basic base64("{email}/token:{api_token}")`.
    ApiToken { email: String, token: SecretString },
    /// OAuth access token: `Authorization: Bearer …`.
    OAuth { token: SecretString },
}

impl From<ZendeskAuth> for Auth {
    fn from(a: ZendeskAuth) -> Auth {
        match a {
            ZendeskAuth::ApiToken { email, token } => {
                Auth::Basic { user: SecretString::from(format!("{email}/token")), password: Some(token) }
            }
            ZendeskAuth::OAuth { token } => Auth::Bearer(token),
        }
    }
}

pub struct ZendeskSink {
    api: common::SinkHttp,
    /// Numeric id of a custom ticket field that receives the session code.
    session_field: Option<u64>,
    /// `time_field_id`: the numeric custom field holding the ticket's total time in seconds.
    time_field: Option<u64>,
    max_batch: usize,
    /// The API user's id (`/api/v2/users/me.json`), for the marker scan's author check.
    api_user: common::ApiUser,
}

/// The most notes put into one update; keeps the comment readable and the body small.
pub const DEFAULT_MAX_BATCH: usize = 20;

impl common::HttpKnobs for ZendeskSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

impl ZendeskSink {
    pub fn new(
        name: &str,
        base_url: &str,
        auth: ZendeskAuth,
        session_field: Option<u64>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            api: common::SinkHttp::new(name, base_url, auth.into(), http),
            session_field,
            time_field: None,
            max_batch: DEFAULT_MAX_BATCH,
            api_user: Default::default(),
        }
    }

    async fn api_user(&self) -> Result<Option<&str>, SinkError> {
        self.api_user
            .get(|| async {
                let r = self.call(self.api.get("/api/v2/users/me.json")).await?;
                let v = common::parse_listing(&self.api.name, &r.body, "current user")?;
                Ok(common::id_text(&v["user"]["id"]))
            })
            .await
    }

    /// `sinks.zendesk.time_field_id`: where the total time of the time entries goes.
    pub fn with_time_field(mut self, field: Option<u64>) -> Self {
        self.time_field = field;
        self
    }

    fn ticket_id(&self, ticket: &str) -> Result<String, SinkError> {
        Ok(common::numeric_ticket(&self.api.name, ticket, "a Zendesk ticket id")?.to_string())
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let r = self.api.send(req).await?;
        if r.status.is_success() {
            return Ok(r);
        }
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &zendesk_error(&r.body));
        if r.status.as_u16() == 422 {
            err.message = format!("Zendesk rejected the update (HTTP 422): {}", zendesk_error(&r.body));
        }
        Err(err)
    }

    /// `next_page` is absolute; only its path and query are followed, on our own base, so
    /// credentials never go to another host.
    fn follow(&self, next: &str) -> Option<String> {
        let u = url::Url::parse(next).ok()?;
        Some(format!("{}{}?{}", self.api.base, u.path(), u.query().unwrap_or_default()))
    }
}

/// Zendesk error bodies: `{"error":"RecordNotFound","description":"Not found"}`,
/// `{"error":"Couldn't authenticate you"}` or `{"error":{"title":…,"message":…}}`.
pub fn zendesk_error(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return if body.trim_start().starts_with('<') { String::new() } else { body.to_string() };
    };
    let mut parts = Vec::new();
    match &v["error"] {
        Value::String(s) => parts.push(s.clone()),
        Value::Object(o) => {
            for k in ["title", "message"] {
                if let Some(s) = o.get(k).and_then(Value::as_str) {
                    parts.push(s.to_string());
                }
            }
        }
        _ => {}
    }
    if let Some(d) = v["description"].as_str() {
        parts.push(d.to_string());
    }
    if let Some(d) = v.get("details").filter(|d| !d.is_null()) {
        parts.push(d.to_string());
    }
    parts.join(": ")
}

#[async_trait]
impl TicketSink for ZendeskSink {
    common::scanning_http_sink!();

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let id = self.ticket_id(ticket)?;
        let mut url = Some(format!("{}/api/v2/tickets/{id}/comments.json?per_page=100", self.api.base));
        let mut pages = 0;
        let me = self.api_user().await?;
        while let Some(u) = url.take() {
            pages += 1;
            let r = self.call(self.api.http.get(&u)).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "comments")?;
            for c in v["comments"].as_array().into_iter().flatten() {
                // The marker must end the comment (or one of the notes batched in it, split
                // at our `<hr>`), and the comment must be the API user's.
                let hit = match c["html_body"].as_str() {
                    Some(h) => common::html_ends_with_marker(h, marker),
                    None => ["plain_body", "body"]
                        .iter()
                        .any(|k| c[*k].as_str().is_some_and(|t| crate::marker::ends_with_marker(t, marker))),
                } && common::author_ok(me, common::id_text(&c["author_id"]));
                if hit {
                    return Ok(Some(format!("ticket:{id}#comment-{}", c["id"])));
                }
            }
            // A runaway next_page chain must not loop forever.
            if pages < 1000 {
                url = v["next_page"].as_str().and_then(|n| self.follow(n));
            }
        }
        Ok(None)
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        self.post_notes(ticket, std::slice::from_ref(note)).await
    }

    async fn post_notes(&self, ticket: &str, notes: &[Note]) -> Result<RemoteRef, SinkError> {
        let id = self.ticket_id(ticket)?;
        let public = notes.iter().all(|n| n.visibility == Visibility::Public);
        let mut t = json!({"comment": {"html_body": common::to_html_many(&notes.iter().map(|n| n.with_inline_cut(self.api.inline_limit)).collect::<Vec<_>>()), "public": public}});
        if let Some(fid) = self.session_field {
            if let Some(code) = notes.iter().rev().find_map(|n| common::field(n, "Session code")) {
                t["custom_fields"] = json!([{"id": fid, "value": code}]);
            }
        }
        let r = self.call(self.api.put(&format!("/api/v2/tickets/{id}.json")).json(&json!({"ticket": t}))).await?;
        let audit = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["audit"]["id"].as_u64());
        Ok(match audit {
            Some(a) => format!("ticket:{id}#audit-{a}"),
            None => format!("ticket:{id}"),
        })
    }

    /// Zendesk has no time tracking of its own: with `time_field_id`, an entry is a private
    /// comment (the entry's text, the marker last) and the custom field's total raised by the
    /// entry's seconds, in one ticket update.
    fn supports_time_entries(&self) -> bool {
        self.time_field.is_some()
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        self.find_marker(ticket, marker).await
    }

    async fn post_time_entry(&self, ticket: &str, entry: &crate::TimeEntry) -> Result<RemoteRef, SinkError> {
        let Some(fid) = self.time_field else {
            return Err(SinkError::new(&self.api.name, SinkErrorKind::Permanent, "no time_field_id configured"));
        };
        let id = self.ticket_id(ticket)?;
        let r = self.call(self.api.get(&format!("/api/v2/tickets/{id}.json"))).await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let field =
            v["ticket"]["custom_fields"].as_array().into_iter().flatten().find(|f| f["id"].as_u64() == Some(fid));
        let before = field
            .map(|f| &f["value"])
            .and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|t| t.trim().parse().ok())))
            .unwrap_or(0);
        let html: String = entry
            .comment(entry.technician.is_some())
            .lines()
            .map(|l| format!("<p>{}</p>", common::escape_html(l)))
            .collect();
        let t = json!({
            "comment": {"html_body": html, "public": false},
            "custom_fields": [{"id": fid, "value": before + entry.seconds()}],
        });
        let r = self.call(self.api.put(&format!("/api/v2/tickets/{id}.json")).json(&json!({"ticket": t}))).await?;
        let audit = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["audit"]["id"].as_u64());
        Ok(match audit {
            Some(a) => format!("ticket:{id}#audit-{a}"),
            None => format!("ticket:{id}"),
        })
    }

    async fn find_ticket_by_session_code(&self, code: &str) -> Result<Option<String>, SinkError> {
        let Some(fid) = self.session_field else { return Ok(None) };
        let query = format!("type:ticket custom_field_{fid}:\"{}\"", code.replace('"', ""));
        let r = self.call(self.api.get("/api/v2/search.json").query(&[("query", query)])).await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        Ok(v["results"].as_array().and_then(|a| a.first()).and_then(|t| t["id"].as_u64()).map(|i| i.to_string()))
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.call(self.api.get("/api/v2/users/me.json")).await.map(|_| ())
    }
}

/// `[sinks.zendesk]` before it is read: its name, its secret keys and what `init` asks.
impl crate::section::Described for ZendeskConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "zendesk",
        section: "sinks.zendesk",
        secrets: &["sinks.zendesk.token"],
        setup: &crate::section::Plain {
            keys: &[
                crate::section::InitKey::new("url", "Zendesk URL (https://<subdomain>.zendesk.com)", None),
                crate::section::InitKey::new("email", "Zendesk agent e-mail", None),
            ],
            secrets: &["token"],
        },
    };
}

// Its section, `[sinks.zendesk]`: keys, checks, secrets and how the sink is built.

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ZendeskAuthKind {
    /// `email` + API token (Basic `{email}/token:{token}`).
    #[default]
    ApiToken,
    /// An OAuth access token (Bearer).
    Oauth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `https://{subdomain}.zendesk.com`
    pub url: String,
    #[serde(default)]
    pub auth: ZendeskAuthKind,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Id of a custom ticket field (text) that receives the session code.
    #[serde(default)]
    pub session_code_field_id: Option<u64>,
    /// A numeric custom ticket field for the total time spent, in seconds (Zendesk has no time
    /// tracking of its own): with it, `time_entries = true` writes a private comment and
    /// raises the field by the entry (docs/time-entries.md).
    #[serde(default)]
    pub time_field_id: Option<u64>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::section::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::section::OutboundConfig,
}

crate::section::outbound_section!(ZendeskConfig, "sinks.zendesk");

impl ZendeskConfig {
    fn check_into(&self, e: &mut Errors) {
        check_url(e, "sinks.zendesk.url", &self.url);
        if self.auth == ZendeskAuthKind::ApiToken && self.email.as_deref().unwrap_or("").is_empty() {
            e.key("sinks.zendesk.email", "required when auth = \"api_token\"");
        }
    }
    pub fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.zendesk.token", self.token.as_ref(), self.token_file.as_deref())
    }
    pub fn token_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.token_value()?, "sinks.zendesk.token")
    }
}

impl SinkSection for ZendeskConfig {
    section_basics!("zendesk");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.zendesk.token", true, self.token_value())]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        match (self.auth, &self.email, self.token_secret()) {
            (ZendeskAuthKind::ApiToken, Some(email), Ok(t)) => {
                vec![(format!("{email}/token"), t.expose_secret().to_string())]
            }
            _ => Vec::new(),
        }
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let token = self.token_secret()?;
        let auth = match self.auth {
            ZendeskAuthKind::ApiToken => ZendeskAuth::ApiToken { email: self.email.clone().unwrap_or_default(), token },
            ZendeskAuthKind::Oauth => ZendeskAuth::OAuth { token },
        };
        let http = self.outbound().client(ctx.timeout)?;
        let sink = ZendeskSink::new("zendesk", &self.url, auth, self.session_code_field_id, http)
            .with_time_field(self.time_field_id);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}
