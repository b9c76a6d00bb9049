//! A webhook receiver that checks the signatures and drops repeats by `Idempotency-Key`,
//! as the webhook sink's contract asks receivers to: the Standard Webhooks headers when
//! present (signature compared in constant time, timestamp within five minutes of its
//! clock), the legacy header when present, and at least one of them.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Default)]
struct Inner {
    accepted: Vec<Value>,
    requests: usize,
    duplicates: usize,
    bad_signatures: usize,
    /// Requests with a valid standard signature but a timestamp outside the window.
    stale: usize,
    /// Requests that carried the Standard Webhooks headers (and passed them).
    standard_signed: usize,
}

#[derive(Clone)]
struct Shared {
    secret: String,
    header: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct WebhookSim {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    server: crate::Served,
}

impl WebhookSim {
    pub async fn start(secret: &str, header: &str) -> std::io::Result<WebhookSim> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = Shared { secret: secret.into(), header: header.to_ascii_lowercase(), inner: inner.clone() };
        let app = Router::new().route("/hook", post(receive)).with_state(shared);
        let (server, url) = crate::Served::start(app).await?;
        Ok(WebhookSim { url: format!("{url}/hook"), inner, server })
    }

    /// Payloads accepted once each (duplicates by Idempotency-Key are not included).
    pub fn accepted(&self) -> Vec<Value> {
        self.inner.lock().expect("sim lock").accepted.clone()
    }
    pub fn requests(&self) -> usize {
        self.inner.lock().expect("sim lock").requests
    }
    pub fn duplicates(&self) -> usize {
        self.inner.lock().expect("sim lock").duplicates
    }
    pub fn bad_signatures(&self) -> usize {
        self.inner.lock().expect("sim lock").bad_signatures
    }
    pub fn stale(&self) -> usize {
        self.inner.lock().expect("sim lock").stale
    }
    pub fn standard_signed(&self) -> usize {
        self.inner.lock().expect("sim lock").standard_signed
    }
    /// Stops the server (dropping it does the same).
    pub fn shutdown(self) {
        drop(self.server);
    }
}

async fn receive(State(s): State<Shared>, h: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let mut g = s.inner.lock().expect("sim lock");
    g.requests += 1;
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let legacy = header(s.header.as_str());
    let standard = header("webhook-signature");
    if legacy.is_none() && standard.is_none() {
        g.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if let Some(sig) = legacy {
        let want = legacy_signature(s.secret.as_bytes(), &body);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(sig.as_bytes(), want.as_bytes())) {
            g.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
    }
    if let Some(sig) = standard {
        let key = standard_key(&s.secret);
        let checked = verify_standard(
            &key,
            &header("webhook-id").unwrap_or_default(),
            &header("webhook-timestamp").unwrap_or_default(),
            &sig,
            &body,
            chrono::Utc::now().timestamp(),
        );
        match checked {
            Ok(()) => g.standard_signed += 1,
            Err(Refused::Stale) => {
                g.stale += 1;
                return StatusCode::UNAUTHORIZED;
            }
            Err(_) => {
                g.bad_signatures += 1;
                return StatusCode::UNAUTHORIZED;
            }
        }
    }
    let key = h.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if g.accepted.iter().any(|p| p["marker"].as_str() == Some(key.as_str())) {
        g.duplicates += 1;
        return StatusCode::OK;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => {
            g.accepted.push(v);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

// The receiver's side of the signing contract, written here from the contract (README's
// webhook section and the Standard Webhooks spec) rather than borrowed from the sink: a
// receiver that shared the sink's code would accept whatever the sink gets wrong, and the
// simulators are outsiders that import no product code.

/// Standard Webhooks' tolerance between the sender's timestamp and the receiver's clock.
const TOLERANCE_SECS: i64 = 5 * 60;

/// Legacy header: `sha256=<hex HMAC-SHA256 of the exact body bytes>`.
fn legacy_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A `whsec_<base64>` secret is its decoded bytes; any other secret its UTF-8 bytes.
fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Missing,
    Stale,
    BadSignature,
}

/// The timestamp within the window, then any `v1,` entry of the space-separated list
/// matching HMAC-SHA256 of `{id}.{timestamp}.{body}`, compared in constant time.
fn verify_standard(
    key: &[u8],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), Refused> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| Refused::Missing)?;
    if id.is_empty() || signatures.trim().is_empty() {
        return Err(Refused::Missing);
    }
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(Refused::Stale);
    }
    let matched = signatures.split_whitespace().filter_map(|e| e.strip_prefix("v1,")).any(|b64| {
        base64::engine::general_purpose::STANDARD.decode(b64).is_ok_and(|tag| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(format!("{id}.{ts}.").as_bytes());
            mac.update(body);
            mac.verify_slice(&tag).is_ok()
        })
    });
    if matched {
        Ok(())
    } else {
        Err(Refused::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector, checked from the receiver's side.
    #[test]
    fn receiver_accepts_the_spec_vector_and_refuses_stale_or_forged() {
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert_eq!(verify_standard(&key, id, "1614265330", sig, body, 1614265330 + 299), Ok(()));
        assert_eq!(verify_standard(&key, id, "1614265330", sig, body, 1614265330 + 301), Err(Refused::Stale));
        assert_eq!(verify_standard(&key, "msg_other", "1614265330", sig, body, 1614265330), Err(Refused::BadSignature));
        assert_eq!(verify_standard(&key, "", "1614265330", sig, body, 1614265330), Err(Refused::Missing));
        assert_eq!(standard_key("plain"), b"plain");
    }
}
