//! Generic webhook: the note as JSON, POSTed with an HMAC-SHA256 signature of the body.
//! There is nothing to scan on the far side, so the marker travels as `Idempotency-Key`
//! and the receiver is expected to drop repeats.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Sha256;

use super::{Capabilities, RemoteRef, SinkError, SinkErrorKind, TicketSink};
use crate::note::Note;

pub struct WebhookSink {
    name: String,
    url: String,
    secret: SecretString,
    header: String,
    http: reqwest::Client,
}

/// `sha256=<hex>` of the exact body bytes.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookSink {
    pub fn new(name: &str, url: &str, secret: SecretString, header: &str, http: reqwest::Client) -> Self {
        Self { name: name.into(), url: url.into(), secret, header: header.into(), http }
    }

    pub fn payload(ticket: &str, note: &Note) -> serde_json::Value {
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
        let sig = signature(self.secret.expose_secret().as_bytes(), &body);
        let req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(self.header.as_str(), sig)
            .header("Idempotency-Key", &note.marker)
            .body(body);
        let resp = super::common::send_held(&self.name, req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(format!("webhook:{}", status.as_u16()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
