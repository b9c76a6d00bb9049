//! The vendor client: one send (through the hold registry, body read under the cap) for
//! every source and sink, and one retry-and-refresh loop for the sources' API calls.

use std::time::Duration;

use backon::Retryable;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::auth::Auth;
use super::error::{ApiError, CallError};
use super::{read_body, retry_policy, BodyError};
use crate::holds::{self, Sent};

/// A whole answer: status, headers and the body as bytes (a page decoder reports bad UTF-8
/// instead of having it replaced silently).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced: every API we call answers UTF-8 JSON).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why [`send`] has no answer to give.
#[derive(Debug)]
pub enum SendError {
    /// Not sent: `origin` asked every caller to wait `left` more.
    Held { left: Duration, origin: String },
    /// No answer (or a refused redirect).
    Transport(reqwest::Error),
    /// The answer's body could not be read whole.
    Body { status: u16, error: BodyError },
}

/// Send `req` through the hold registry ([`crate::holds`]) and read its whole body, at most
/// `limit` bytes. With `wait`, a hold up to that long is waited out first (the sources'
/// in-process retry); without, a held system is not called (the sinks: the outbox retries).
pub async fn send(req: reqwest::RequestBuilder, limit: u64, wait: Option<Duration>) -> Result<Answer, SendError> {
    let sent = match wait {
        Some(cap) => holds::send_waiting(req, cap).await,
        None => holds::send(req).await,
    };
    let resp = match sent.map_err(SendError::Transport)? {
        Sent::Answered(resp) => resp,
        Sent::Held { left, origin } => return Err(SendError::Held { left, origin }),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = read_body(resp, limit).await.map_err(|error| SendError::Body { status, error })?;
    Ok(Answer { status, headers, body })
}

impl SendError {
    /// As a source's [`ApiError`] for `what`.
    pub fn into_api(self, vendor: &'static str, what: &str) -> ApiError {
        match self {
            SendError::Held { left, origin } => ApiError::held(vendor, what, left, &origin),
            SendError::Transport(e) => ApiError::transport(vendor, what, &e, None),
            SendError::Body { status, error } => ApiError::body(vendor, what, error, status),
        }
    }
}

/// One vendor API: its base URL, credentials, body cap and retry budget.
pub struct VendorClient {
    vendor: &'static str,
    http: reqwest::Client,
    base: String,
    auth: Auth,
    accept_json: bool,
    max_retries: usize,
    max_response: u64,
}

impl VendorClient {
    /// `base` is prefixed to every path; five retries unless [`Self::with_max_retries`].
    pub fn new(vendor: &'static str, http: reqwest::Client, base: String, auth: Auth, max_response: u64) -> Self {
        VendorClient { vendor, http, base, auth, accept_json: false, max_retries: 5, max_response }
    }

    /// Send `Accept: application/json` with every request.
    pub fn accept_json(mut self) -> Self {
        self.accept_json = true;
        self
    }

    pub fn with_max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    pub fn max_retries(&self) -> usize {
        self.max_retries
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// [`Self::call`] for APIs whose 2xx body is the answer: any other status is the
    /// vendor's error as its `classify` reads it (status, headers, body text).
    pub async fn call_body<C>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        classify: C,
    ) -> Result<Vec<u8>, CallError>
    where
        C: Fn(u16, &HeaderMap, &str) -> ApiError,
    {
        let decode = |a: Answer| {
            // Bytes, not text: a page decoder reports bad UTF-8 instead of having it replaced
            // silently, and quarantines the records it touched.
            if a.is_success() {
                return Ok(a.body);
            }
            let mut e = classify(a.status, &a.headers, &a.text());
            e.what = path.to_string();
            Err(e)
        };
        self.call(method, path, query, body, decode).await
    }

    /// One call with the shared retry policy: whatever `decode` (the vendor's classifier,
    /// given every answer) calls transient, and transport errors, back off and retry,
    /// honouring `Retry-After` through the hold registry; an access token `decode` says is
    /// expired is refreshed once (OAuth; the rotated refresh token is committed before the
    /// new access token is used, see [`crate::oauth`]).
    pub async fn call<T, F>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        decode: F,
    ) -> Result<T, CallError>
    where
        F: Fn(Answer) -> Result<T, ApiError>,
    {
        // A vendor read is a page fetch of a poll: its duration, retries and holds included,
        // goes to `ticketsync_page_fetch_duration_seconds{source}` (through the `metrics`
        // facade, so this layer names no product module), on every way out of this function.
        let _timer = (method == reqwest::Method::GET).then(|| ReadTimer::new(self.vendor));
        let url = format!("{}{}", self.base, path);
        let mut refreshed = false;
        loop {
            let presented = self.auth.present().await?;
            let attempt = || async {
                let mut req = self.auth.apply(self.http.request(method.clone(), &url), &presented).query(query);
                if self.accept_json {
                    req = req.header(reqwest::header::ACCEPT, "application/json");
                }
                if let Some(b) = body {
                    req = req.json(b);
                }
                // Through the hold registry: a Retry-After one call saw holds every call to
                // this account (another source task, `doctor`, a launcher), not just its own.
                let answer = send(req, self.max_response, Some(holds::SOURCE_WAIT_CAP))
                    .await
                    .map_err(|e| e.into_api(self.vendor, path))?;
                decode(answer)
            };
            let res = attempt
                .retry(retry_policy(self.max_retries))
                .when(|e: &ApiError| e.transient)
                .adjust(|e: &ApiError, dur| super::honour_retry_after(e.retry_after, dur))
                .notify(|e: &ApiError, dur| tracing::warn!(source = self.vendor, error = %e, retry_in_ms = dur.as_millis() as u64, "retrying vendor call"))
                .await;
            match (res, &self.auth) {
                (Err(e), Auth::OAuth(o)) if e.auth_expired && !refreshed => {
                    tracing::info!(source = self.vendor, provider = %o.provider, status = ?e.status, code = ?e.code,
                        error = ?e.error, "access token rejected, refreshing");
                    o.refresh(presented.generation).await?;
                    refreshed = true;
                }
                (res, _) => return res.map_err(CallError::Api),
            }
        }
    }
}

/// Records the time from its creation to its drop as a page fetch of `source`.
struct ReadTimer {
    source: &'static str,
    started: std::time::Instant,
}

impl ReadTimer {
    fn new(source: &'static str) -> ReadTimer {
        ReadTimer { source, started: std::time::Instant::now() }
    }
}

impl Drop for ReadTimer {
    fn drop(&mut self) {
        metrics::histogram!("ticketsync_page_fetch_duration_seconds", "source" => self.source)
            .record(self.started.elapsed().as_secs_f64());
    }
}
