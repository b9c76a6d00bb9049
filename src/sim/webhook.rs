//! A webhook receiver that checks the signatures and drops repeats by `Idempotency-Key`,
//! as the webhook sink's contract asks receivers to: the Standard Webhooks headers when
//! present (signature compared in constant time, timestamp within five minutes of its
//! clock), the legacy header when present, and at least one of them.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

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
    task: tokio::task::JoinHandle<()>,
}

impl WebhookSim {
    pub async fn start(secret: &str, header: &str) -> std::io::Result<WebhookSim> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = Shared { secret: secret.into(), header: header.to_ascii_lowercase(), inner: inner.clone() };
        let app = Router::new().route("/hook", post(receive)).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WebhookSim { url, inner, task })
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
    pub fn shutdown(self) {
        self.task.abort();
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
        let want = crate::sinks::webhook::signature(s.secret.as_bytes(), &body);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(sig.as_bytes(), want.as_bytes())) {
            g.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
    }
    if let Some(sig) = standard {
        let key = crate::sinks::webhook::standard_key(&s.secret);
        let checked = crate::sinks::webhook::verify_standard(
            &key,
            &header("webhook-id").unwrap_or_default(),
            &header("webhook-timestamp").unwrap_or_default(),
            &sig,
            &body,
            chrono::Utc::now().timestamp(),
        );
        match checked {
            Ok(()) => g.standard_signed += 1,
            Err(crate::sinks::webhook::VerifyError::Stale(_)) => {
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
