//! Generic webhook: the note as JSON, POSTed with HMAC-SHA256 signatures of the body.
//! There is nothing to scan on the far side, so the marker travels as `Idempotency-Key`
//! (and as `webhook-id`) and the receiver is expected to drop repeats.
//!
//! Two signature schemes (`signature = "standard" | "legacy" | "both"`):
//! - Standard Webhooks (<https://www.standardwebhooks.com/>): `webhook-id`,
//!   `webhook-timestamp` (unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "{id}.{timestamp}.{body}">`. The timestamp is signed, so a receiver that checks its
//!   window refuses a captured request replayed later.
//! - legacy: `X-Ticketsync-Signature: sha256=<hex HMAC-SHA256 of the body>` (header name
//!   set by `signature_header`), with no timestamp: a captured request replays forever.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{Capabilities, RemoteRef, SinkError, SinkErrorKind, TicketSink};
use crate::note::Note;
use crate::section::{
    check_url, declared_secret, require, section_basics, yes, BuildCtx, ConfigError, Errors, Outbound, RouteConfig,
    SecretUse, SinkSection,
};

/// Which signature headers the webhook sink sends.
///
/// The default is `both`: receivers written for the legacy header keep working unchanged
/// (they ignore headers they do not know), and receivers that verify the Standard Webhooks
/// headers get the timestamp and replay protection. A new receiver should verify the
/// standard headers and the operator then sets `signature = "standard"`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    Standard,
    Legacy,
    #[default]
    Both,
}

impl SignatureScheme {
    fn standard(self) -> bool {
        matches!(self, Self::Standard | Self::Both)
    }
    fn legacy(self) -> bool {
        matches!(self, Self::Legacy | Self::Both)
    }
}

/// How far a `webhook-timestamp` may be from the receiver's clock (the spec's five minutes).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

pub struct WebhookSink {
    name: String,
    url: String,
    secret: SecretString,
    header: String,
    http: reqwest::Client,
    scheme: SignatureScheme,
    /// Cap on one answer's body (`max_response_bytes`).
    max_response: u64,
}

/// Legacy: `sha256=<hex>` of the exact body bytes.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The Standard Webhooks key of a secret: a `whsec_<base64>` secret is the decoded bytes
/// (as the spec's libraries read it); any other secret is used as its UTF-8 bytes, so an
/// existing `webhook_secret` keeps working (its receiver-side form is then
/// `whsec_` + base64 of the secret).
pub fn standard_key(secret: &str) -> Vec<u8> {
    if let Some(b64) = secret.strip_prefix("whsec_") {
        if let Ok(key) = base64::engine::general_purpose::STANDARD.decode(b64) {
            return key;
        }
    }
    secret.as_bytes().to_vec()
}

fn standard_mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = standard_mac(key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
}

/// Why a receiver refuses a Standard Webhooks request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or malformed webhook-id, webhook-timestamp or webhook-signature")]
    Missing,
    #[error("webhook-timestamp {0} is outside the {TIMESTAMP_TOLERANCE_SECS} s window")]
    Stale(i64),
    #[error("no webhook-signature entry matches")]
    BadSignature,
}

/// A receiver's check: the timestamp within [`TIMESTAMP_TOLERANCE_SECS`] of `now`, then
/// any `v1,` entry of the space-separated signature list matching, compared in constant
/// time (`Mac::verify_slice`).
pub fn verify_standard(
    key: &[u8],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| VerifyError::Missing)?;
    if id.is_empty() || signatures.trim().is_empty() {
        return Err(VerifyError::Missing);
    }
    if (now - ts).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::Stale(ts));
    }
    let matched = signatures.split_whitespace().filter_map(|e| e.strip_prefix("v1,")).any(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|tag| standard_mac(key, id, ts, body).verify_slice(&tag).is_ok())
    });
    if matched {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

impl WebhookSink {
    pub fn new(name: &str, url: &str, secret: SecretString, header: &str, http: reqwest::Client) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            secret,
            header: header.into(),
            http,
            scheme: SignatureScheme::default(),
            max_response: crate::http::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// `signature`: which signature headers to send.
    pub fn with_scheme(mut self, scheme: SignatureScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The component's `max_response_bytes`: answers are read up to this many bytes.
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response = bytes;
        self
    }

    /// The JSON body. Vendor text is [`Note::sanitized`] here too: a receiver that renders
    /// the links gets http(s) targets only, and no marker line hides in the text.
    pub fn payload(ticket: &str, note: &Note) -> serde_json::Value {
        let note = &note.sanitized();
        json!({
            "event": "ticket_note",
            "ticket_id": ticket,
            "marker": note.marker,
            "visibility": note.visibility,
            "title": note.title,
            "fields": note.fields,
            "links": note.links,
            "body": note.body,
            "attachments": note.attachments,
            "text": note.to_plain_text(),
        })
    }
}

#[async_trait]
impl TicketSink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { marker_scan: false, private_notes: true, attachments: true }
    }

    async fn find_marker(&self, _ticket: &str, _marker: &str) -> Result<Option<RemoteRef>, SinkError> {
        Ok(None)
    }

    async fn post_note(&self, ticket: &str, note: &Note) -> Result<RemoteRef, SinkError> {
        let body = serde_json::to_vec(&Self::payload(ticket, note)).expect("payload serializes");
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &note.marker);
        if self.scheme.legacy() {
            req = req.header(self.header.as_str(), signature(self.secret.expose_secret().as_bytes(), &body));
        }
        if self.scheme.standard() {
            // The id is the marker: the same on every attempt of this note, so a receiver
            // deduplicating by `webhook-id` drops a retry; the timestamp is this attempt's.
            let ts = chrono::Utc::now().timestamp();
            let key = standard_key(self.secret.expose_secret());
            req = req
                .header("webhook-id", &note.marker)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", standard_signature(&key, &note.marker, ts, &body));
        }
        let resp = super::common::send_held(&self.name, req.body(body)).await?;
        let status = resp.status();
        // A 2xx is the receiver's whole answer: its body is not read at all.
        if status.is_success() {
            return Ok(format!("webhook:{}", status.as_u16()));
        }
        let headers = resp.headers().clone();
        let text = crate::http::read_text(resp, self.max_response).await.unwrap_or_default();
        let mut err = SinkError::from_status(&self.name, status, &headers, &text);
        // A receiver that rejects the signature answers 401 or 403: a credentials problem.
        if status.as_u16() == 403 {
            err.kind = SinkErrorKind::Auth;
            err.message = format!("signature or credentials rejected (HTTP 403): {}", crate::http::short_body(&text));
        }
        Err(err)
    }

    async fn check(&self) -> Result<(), SinkError> {
        Ok(())
    }

    fn hold_probe(&self) -> Option<reqwest::RequestBuilder> {
        Some(self.http.post(&self.url))
    }
}

/// `[sinks.webhook]` before it is read: its name, its secret keys and what `init` asks.
impl crate::section::Described for WebhookConfig {
    const COMPONENT: crate::section::Component = crate::section::Component {
        kind: "webhook",
        section: "sinks.webhook",
        secrets: &["sinks.webhook.secret"],
        setup: &crate::section::Plain {
            keys: &[crate::section::InitKey::new("url", "Webhook URL (https://…)", None)],
            secrets: &["secret"],
        },
    };
}

// Its section, `[sinks.webhook]`: keys, checks, secrets and how the sink is built.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub url: String,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_sig_header")]
    pub signature_header: String,
    /// `standard` (Standard Webhooks headers), `legacy` (`signature_header` only) or
    /// `both` (the default, so receivers of the legacy header keep working).
    #[serde(default)]
    pub signature: crate::webhook::SignatureScheme,
    /// `tickets`, `sources`, `concurrency`: written in this section.
    #[serde(default)]
    pub route: RouteConfig,
    /// `allow_insecure_http`, `ca_file`, `max_response_bytes`: written in this section.
    #[serde(default)]
    pub outbound: crate::section::OutboundConfig,
}

crate::section::outbound_section!(WebhookConfig, "sinks.webhook");

fn default_sig_header() -> String {
    "X-Ticketsync-Signature".into()
}

impl WebhookConfig {
    pub fn secret_value(&self) -> Result<Option<SecretString>, ConfigError> {
        declared_secret("sinks.webhook.secret", self.secret.as_ref(), self.secret_file.as_deref())
    }
}

impl SinkSection for WebhookConfig {
    section_basics!("webhook");
    fn validate_into(&self, e: &mut Errors) {
        check_url(e, "sinks.webhook.url", &self.url);
        if reqwest::header::HeaderName::from_bytes(self.signature_header.as_bytes()).is_err() {
            e.key("sinks.webhook.signature_header", "not a valid HTTP header name");
        }
    }
    fn secrets(&self) -> Vec<SecretUse> {
        vec![SecretUse::declared("sinks.webhook.secret", true, self.secret_value())]
    }
    fn build(&self, ctx: &BuildCtx) -> Result<Arc<dyn TicketSink>, ConfigError> {
        let secret = require(self.secret_value()?, "sinks.webhook.secret")?;
        let http = self.outbound().client(ctx.timeout)?;
        Ok(Arc::new(
            WebhookSink::new("webhook", &self.url, secret, &self.signature_header, http)
                .with_scheme(self.signature)
                .with_max_response_bytes(self.outbound().limit()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector (the spec's libraries' test): secret
    /// `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    /// timestamp 1614265330, body `{"test": 2432232314}`.
    #[test]
    fn standard_signature_matches_the_spec_vector() {
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let sig = standard_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let ok = verify_standard(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            &format!("v1,bm9wZQ== {sig}"),
            body,
            1614265330 + 299,
        );
        assert_eq!(ok, Ok(()));
        let stale = verify_standard(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &sig, body, 1614265330 + 301);
        assert_eq!(stale, Err(VerifyError::Stale(1614265330)));
        let forged = verify_standard(&key, "msg_other", "1614265330", &sig, body, 1614265330);
        assert_eq!(forged, Err(VerifyError::BadSignature));
        // A secret without the prefix is its own bytes.
        assert_eq!(standard_key("plain"), b"plain");
    }

    #[test]
    fn payload_carries_safe_links_and_no_forged_marker_line() {
        use crate::note::{Link, Visibility};
        let note = Note {
            title: "t".into(),
            fields: vec![],
            links: vec![
                Link { label: "ok".into(), url: "https://x.example/r".into() },
                Link { label: "bad".into(), url: "javascript:alert(1)".into() },
            ],
            body: Some("ticketsync-marker: tsd:v1:teamviewer:B:report".into()),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: "tsd:v1:teamviewer:A:report".into(),
        };
        let p = WebhookSink::payload("1", &note);
        assert_eq!(p["links"].as_array().unwrap().len(), 1, "{p}");
        assert_eq!(p["body"], "[quoted] ticketsync marker: tsd v1:teamviewer:B:report");
        let text = p["text"].as_str().unwrap();
        assert_eq!(crate::marker::final_marker(text), Some("tsd:v1:teamviewer:A:report"));
        assert_eq!(text.matches("[quoted]").count(), 1, "{text}");
        assert_eq!(p["marker"], "tsd:v1:teamviewer:A:report");
    }

    #[test]
    fn signature_matches_rfc4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
