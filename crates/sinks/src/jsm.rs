//! Jira Service Management: internal comment via `POST /rest/servicedeskapi/request/{key}/comment`
//! (`public: false`, 201), marker scan through the same resource (`start`/`limit`,
//! `isLastPage`), and one remote link per note via `POST /rest/api/2/issue/{key}/remotelink`
//! with a stable `globalId` (an upsert: a retry updates the link instead of adding one).
//! Cloud: Basic `email:api_token`; Data Center: a personal access token as Bearer.
//!
//! Time entries (issue 20) are worklogs: Cloud `POST /rest/api/3/issue/{key}/worklog` with
//! `timeSpentSeconds`, `started` (`yyyy-MM-dd'T'HH:mm:ss.SSSZ`) and `comment` as an Atlassian
//! Document (one paragraph per line, the marker's last); Data Center the same on
//! `/rest/api/2/…` with `comment` as plain text. The scan pages `GET …/worklog` (`startAt`,
//! `maxResults`, `total`) for a worklog of the API user whose comment ends with the marker.
//! A worklog is the API user's own (Jira logs work for the caller). Documents: Jira Cloud
//! platform REST API v3 "Issue worklogs" and Jira Server/Data Center REST API 2 "worklog";
//! not checked against a live Jira (none runs here).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{self, Reply};
use super::{RemoteRef, SinkError, TicketSink};
use crate::http::Auth;
use crate::note::{Note, Visibility};
use crate::section::{
    check_url, declared_secret, require, section_basics, tuned, yes, BuildCtx, ConfigError, Errors, Outbound,
    RouteConfig, SecretUse, SinkSection,
};

pub enum JsmAuth {
    Cloud { email: String, api_token: SecretString },
    DataCenter { pat: SecretString },
}

impl From<JsmAuth> for Auth {
    fn from(a: JsmAuth) -> Auth {
        match a {
            JsmAuth::Cloud { email, api_token } => {
                Auth::Basic { user: SecretString::from(email), password: Some(api_token) }
            }
            JsmAuth::DataCenter { pat } => Auth::Bearer(pat),
        }
    }
}

pub struct JsmSink {
    api: common::SinkHttp,
    /// Jira Cloud (REST v3, ADF comments) rather than Data Center (v2, plain comments).
    cloud: bool,
    remote_links: bool,
    /// Numeric id of a text custom field holding the session code (JQL `cf[id] ~ "…"`).
    session_field: Option<u64>,
    /// The API user (`/rest/api/2/myself`: Cloud `accountId`, Data Center `key`/`name`), for
    /// the marker scan's author check.
    api_user: common::ApiUser,
}

/// Who wrote a comment, or who `/myself` is, in the same form: the Cloud `accountId`, else
/// the Data Center `key`, else `name`.
fn jira_user(v: &Value) -> Option<String> {
    ["accountId", "key", "name"].iter().find_map(|k| common::id_text(&v[*k]))
}

/// A worklog's comment as text: Data Center's string, or Cloud's Atlassian Document with a
/// line per paragraph.
fn worklog_comment(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Object(_) => c["content"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                p["content"].as_array().into_iter().flatten().filter_map(|t| t["text"].as_str()).collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The remote link's `globalId` for a note: the same on every attempt.
pub fn global_id(marker: &str) -> String {
    format!("ticketsync:{marker}")
}

impl common::HttpKnobs for JsmSink {
    fn http_mut(&mut self) -> &mut common::SinkHttp {
        &mut self.api
    }
}

impl JsmSink {
    pub fn new(
        name: &str,
        base_url: &str,
        auth: JsmAuth,
        remote_links: bool,
        session_field: Option<u64>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            cloud: matches!(auth, JsmAuth::Cloud { .. }),
            api: common::SinkHttp::new(name, base_url, auth.into(), http),
            remote_links,
            session_field,
            api_user: Default::default(),
        }
    }

    async fn api_user(&self) -> Result<Option<&str>, SinkError> {
        self.api_user
            .get(|| async {
                let r = self.call(self.api.get("/rest/api/2/myself")).await?;
                let v = common::parse_listing(&self.api.name, &r.body, "current user")?;
                Ok(jira_user(&v))
            })
            .await
    }

    /// An issue key (`HELP-42`) or a numeric issue id.
    fn key(&self, ticket: &str) -> Result<String, SinkError> {
        let t = ticket.trim();
        let ok = t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty()
            || t.split_once('-').is_some_and(|(p, n)| {
                p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_digit())
            });
        if !ok {
            return Err(common::not_a_ticket(&self.api.name, ticket, "a Jira issue key"));
        }
        Ok(t.to_ascii_uppercase())
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Reply, SinkError> {
        let r = self.api.send(req.header("Accept", "application/json")).await?;
        if r.status.is_success() {
            return Ok(r);
        }
        let detail = jira_error(&r.body);
        let mut err = SinkError::from_status(&self.api.name, r.status, &r.headers, &detail);
        if r.status.as_u16() == 400 {
            err.message = format!("Jira rejected the request (HTTP 400): {detail}");
        }
        Err(err)
    }
}

/// JSM: `{"errorMessage":…,"i18nErrorMessage":{…}}`; platform: `{"errorMessages":[…],"errors":{…}}`.
pub fn jira_error(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return if body.trim_start().starts_with('<') { String::new() } else { body.to_string() };
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = v["errorMessage"].as_str() {
        parts.push(m.into());
    }
    parts.extend(v["errorMessages"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string));
    if let Some(o) = v["errors"].as_object() {
        parts.extend(o.iter().map(|(k, m)| format!("{k}: {}", m.as_str().unwrap_or_default())));
    }
    parts.join("; ")
}

#[async_trait]
impl TicketSink for JsmSink {
    common::scanning_http_sink!();

    async fn find_marker(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let key = self.key(ticket)?;
        let mut start = 0u64;
        let me = self.api_user().await?;
        for _ in 0..1000 {
            let url = format!(
                "{}/rest/servicedeskapi/request/{key}/comment?public=true&internal=true&start={start}&limit=50",
                self.api.base
            );
            let r = self.call(self.api.http.get(&url)).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "comments")?;
            let values = v["values"].as_array().cloned().unwrap_or_default();
            // The comment's wiki body must end with the marker line, and be the API user's.
            if let Some(c) = values.iter().find(|c| {
                c["body"].as_str().is_some_and(|b| crate::marker::ends_with_marker(b, marker))
                    && common::author_ok(me, jira_user(&c["author"]))
            }) {
                return Ok(Some(format!("{key}#comment-{}", c["id"].as_str().unwrap_or_default())));
            }
            if v["isLastPage"].as_bool().unwrap_or(true) || values.is_empty() {
                break;
            }
            start += values.len() as u64;
        }
        Ok(None)
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let key = self.key(ticket)?;
        // The link first: it is an upsert by globalId, so a retry after a lost answer (when
        // the marker scan then finds the comment) still leaves exactly one link.
        if self.remote_links {
            // Only an http(s) target becomes a link (`Note::sanitized`).
            let safe = note.sanitized();
            if let Some(link) = safe.links.first() {
                let body = json!({
                    "globalId": global_id(&note.marker),
                    "application": {"type": "org.ticketsync", "name": "ticketsync"},
                    "relationship": "remote support session",
                    "object": {"url": link.url, "title": safe.title, "summary": link.label},
                });
                self.call(self.api.post(&format!("/rest/api/2/issue/{key}/remotelink")).json(&body)).await?;
            }
        }
        let body = json!({"body": common::to_jira_wiki(&note.with_inline_cut(self.api.inline_limit)), "public": note.visibility == Visibility::Public});
        let r = self.call(self.api.post(&format!("/rest/servicedeskapi/request/{key}/comment")).json(&body)).await?;
        let id = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["id"].as_str().map(str::to_string));
        Ok(match id {
            Some(c) => format!("{key}#comment-{c}"),
            None => key,
        })
    }

    fn supports_time_entries(&self) -> bool {
        true
    }

    async fn find_time_entry(&self, ticket: &str, marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        let key = self.key(ticket)?;
        let me = self.api_user().await?;
        let version = if self.cloud { 3 } else { 2 };
        let mut start = 0u64;
        for _ in 0..1000 {
            let url =
                format!("{}/rest/api/{version}/issue/{key}/worklog?startAt={start}&maxResults=100", self.api.base);
            let r = self.call(self.api.http.get(&url)).await?;
            let v = common::parse_listing(&self.api.name, &r.body, "worklogs")?;
            let logs = v["worklogs"].as_array().cloned().unwrap_or_default();
            if let Some(w) = logs.iter().find(|w| {
                crate::time_entry::ends_with_marker(&worklog_comment(&w["comment"]), marker)
                    && common::author_ok(me, jira_user(&w["author"]))
            }) {
                return Ok(Some(format!("{key}#worklog-{}", common::id_text(&w["id"]).unwrap_or_default())));
            }
            start += logs.len() as u64;
            if logs.is_empty() || start >= v["total"].as_u64().unwrap_or(0) {
                break;
            }
        }
        Ok(None)
    }

    async fn post_time_entry(&self, ticket: &str, entry: &crate::TimeEntry) -> Result<RemoteRef, SinkError> {
        let key = self.key(ticket)?;
        let text = entry.comment(entry.technician.is_some());
        let comment = match self.cloud {
            true => {
                let paragraphs: Vec<Value> = text
                    .lines()
                    .map(|l| json!({"type": "paragraph", "content": [{"type": "text", "text": l}]}))
                    .collect();
                json!({"type": "doc", "version": 1, "content": paragraphs})
            }
            false => json!(text),
        };
        let body = json!({
            "timeSpentSeconds": entry.seconds(),
            "started": entry.started_at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
            "comment": comment,
        });
        let version = if self.cloud { 3 } else { 2 };
        let r = self.call(self.api.post(&format!("/rest/api/{version}/issue/{key}/worklog")).json(&body)).await?;
        let id = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| common::id_text(&v["id"]));
        Ok(match id {
            Some(w) => format!("{key}#worklog-{w}"),
            None => key,
        })
    }

    async fn find_ticket_by_session_code(&self, code: &str) -> Result<Option<String>, SinkError> {
        let Some(fid) = self.session_field else { return Ok(None) };
        let jql = format!("cf[{fid}] ~ \"{}\"", code.replace(['"', '\\'], ""));
        let r = self
            .call(self.api.get("/rest/api/2/search").query(&[
                ("jql", jql.as_str()),
                ("fields", "key"),
                ("maxResults", "2"),
            ]))
            .await?;
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        Ok(v["issues"].as_array().and_then(|a| a.first()).and_then(|i| i["key"].as_str()).map(str::to_string))
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.call(self.api.get("/rest/api/2/myself")).await.map(|_| ())
    }
}

/// `[sinks.jsm]` before it is read: its name, its secret keys and what `init` asks.
impl crate::section::Described for JsmConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "jsm",
        section: "sinks.jsm",
        secrets: &["sinks.jsm.token"],
        setup: &crate::section::Plain {
            keys: &[
                crate::section::InitKey::new("url", "Jira URL (https://<site>.atlassian.net)", None),
                crate::section::InitKey::new("email", "Atlassian account e-mail", None),
            ],
            secrets: &["token"],
        },
    };
}

// Its section, `[sinks.jsm]`: keys, checks, secrets and how the sink is built.

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JsmDeployment {
    /// Atlassian Cloud: `email` + API token.
    #[default]
    Cloud,
    /// Data Center / Server: personal access token.
    DataCenter,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsmConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `https://{site}.atlassian.net` or the Data Center base URL.
    pub url: String,
    #[serde(default)]
    pub deployment: JsmDeployment,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Add a remote link (upserted by a stable globalId) for the note's first link.
    #[serde(default = "yes")]
    pub remote_links: bool,
    /// Numeric id of a text custom field holding the session code (JQL `cf[id]`).
    #[serde(default)]
    pub session_code_field_id: Option<u64>,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: crate::section::RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::section::OutboundConfig,
}

crate::section::outbound_section!(JsmConfig, "sinks.jsm");

impl JsmConfig {
    fn check_into(&self, e: &mut Errors) {
        check_url(e, "sinks.jsm.url", &self.url);
        if self.deployment == JsmDeployment::Cloud && self.email.as_deref().unwrap_or("").is_empty() {
            e.key("sinks.jsm.email", "required when deployment = \"cloud\"");
        }
    }
    pub fn token_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.jsm.token", self.token.as_ref(), self.token_file.as_deref())
    }
    pub fn token_secret(&self) -> Result<SecretString, ConfigError> {
        require(self.token_value()?, "sinks.jsm.token")
    }
}

impl SinkSection for JsmConfig {
    section_basics!("jsm");
    fn validate_into(&self, e: &mut Errors) {
        self.check_into(e)
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.jsm.token", true, self.token_value())]
    }
    fn basic_pairs(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        match (self.deployment, &self.email, self.token_secret()) {
            (JsmDeployment::Cloud, Some(email), Ok(t)) => vec![(email.clone(), t.expose_secret().to_string())],
            _ => Vec::new(),
        }
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let token = self.token_secret()?;
        let auth = match self.deployment {
            JsmDeployment::Cloud => JsmAuth::Cloud { email: self.email.clone().unwrap_or_default(), api_token: token },
            JsmDeployment::DataCenter => JsmAuth::DataCenter { pat: token },
        };
        let http = self.outbound().client(ctx.timeout)?;
        let sink = JsmSink::new("jsm", &self.url, auth, self.remote_links, self.session_code_field_id, http);
        Ok(tuned(sink, ctx, &self.outbound()))
    }
}
