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
        let sig = signature(self.secret.expose_secret().as_bytes(), &body);
        let resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(self.header.as_str(), sig)
            .header("Idempotency-Key", &note.marker)
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::from_transport(&self.name, &e))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
