//! Rate-limit holds at the scope the systems apply them: one ticket system (its origin and
//! the credentials we present to it), not one delivery or one ticket.
//!
//! A `429` or `503` with `Retry-After` (or `X-RateLimit-Reset`), or a `403` that says it is a
//! rate limit (`Retry-After`, or `X-RateLimit-Remaining: 0`), holds every request to that
//! system until the time given: the sinks ask [`Holds::remaining`] before each request (and
//! send nothing while held), the delivery loop dispatches nothing to a held sink. A bare
//! `429` is not a system-wide signal: Zendesk's per-ticket update limit (30 updates per
//! ticket per 10 minutes) answers so, and it stays per ticket (the delivery's own backoff).
//!
//! The registry is process-wide on purpose: two sinks (or a sink and a lookup) that talk to
//! the same system with the same credentials share its limit, whoever saw the answer.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

/// Request headers that carry the caller's identity to the systems we talk to. Their values
/// are hashed into the key, never kept.
/// GLPI's `Session-Token` is left out: it changes at every re-login, while the party
/// (the `App-Token`'s client) stays the same.
const CREDENTIAL_HEADERS: [&str; 5] = ["authorization", "x-redmine-api-key", "app-token", "x-api-key", "private-token"];

/// One rate-limited party: scheme, host and port, and a digest of the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HoldKey {
    origin: String,
    credentials: [u8; 32],
}

impl HoldKey {
    /// The key of a built request: its URL's origin and its credential headers.
    pub fn of(req: &reqwest::Request) -> HoldKey {
        let mut h = Sha256::new();
        for name in CREDENTIAL_HEADERS {
            for v in req.headers().get_all(name) {
                h.update(name.as_bytes());
                h.update([0]);
                h.update(v.as_bytes());
                h.update([0]);
            }
        }
        HoldKey { origin: req.url().origin().ascii_serialization(), credentials: h.finalize().into() }
    }

    /// The origin (`https://host:port`) for logs; never the credentials.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// How long an answer asks the whole system to be left alone, if it does.
pub fn hold_signal(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let wait = crate::retry_after(headers);
    match status.as_u16() {
        429 | 503 => wait,
        403 => {
            let exhausted =
                headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == "0");
            let asked = headers.contains_key(reqwest::header::RETRY_AFTER);
            // A 403 without either is a permission problem, not a rate limit.
            (exhausted || asked).then(|| wait.unwrap_or(FALLBACK_403_HOLD))
        }
        _ => None,
    }
}

/// A `403` that says "rate limit exhausted" without saying until when.
const FALLBACK_403_HOLD: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Holds {
    map: Mutex<HashMap<HoldKey, Instant>>,
}

static GLOBAL: LazyLock<Holds> = LazyLock::new(Holds::default);

impl Holds {
    /// The registry every sink consults.
    pub fn global() -> &'static Holds {
        &GLOBAL
    }

    /// Hold `key` for `wait` from now. A hold is only ever extended: a shorter answer
    /// arriving late (a request sent before the first 429) must not end it early.
    pub fn hold(&self, key: &HoldKey, wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(key.clone()).or_insert(until);
        if *e < until {
            *e = until;
        }
        tracing::warn!(system = %key.origin, wait_ms = wait.as_millis() as u64, "rate limited: holding every request to this system");
    }

    /// How long `key` is still held, if it is.
    pub fn remaining(&self, key: &HoldKey) -> Option<Duration> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let until = *map.get(key)?;
        let now = Instant::now();
        if until <= now {
            map.remove(key);
            return None;
        }
        Some(until - now)
    }
}

/// What [`send`] did with a request.
pub enum Sent {
    /// The system answered (any status); a hold it asked for is already registered.
    Answered(reqwest::Response),
    /// Not sent: the system (`origin`) is held for `left` more.
    Held { left: Duration, origin: String },
}

/// Send `req` unless its system is held; register the hold an answer asks for. Every sink
/// request goes through here, so no path (post, marker scan, lookup, re-login) sends early.
pub async fn send(req: reqwest::RequestBuilder) -> Result<Sent, reqwest::Error> {
    let (client, built) = req.build_split();
    let built = built?;
    let key = HoldKey::of(&built);
    if let Some(left) = Holds::global().remaining(&key) {
        return Ok(Sent::Held { left, origin: key.origin });
    }
    let resp = client.execute(built).await?;
    if let Some(wait) = hold_signal(resp.status(), resp.headers()) {
        Holds::global().hold(&key, wait);
    }
    Ok(Sent::Answered(resp))
}

/// The longest hold a source's in-process retry waits out before giving the poll up to the
/// next schedule: the same cap as for a `Retry-After` its own call received
/// ([`crate::honour_retry_after`]).
pub const SOURCE_WAIT_CAP: Duration = Duration::from_secs(900);

/// For clients that retry in process (the sources' vendor calls): wait out a hold on the
/// request's system (at most `cap`; a longer one is left to the caller's next poll, which
/// gets [`Sent::Held`]), then send as [`send`] does. Holds are shared, so a `Retry-After`
/// seen by one call (or one task) holds every other call to that vendor account too.
pub async fn send_waiting(req: reqwest::RequestBuilder, cap: Duration) -> Result<Sent, reqwest::Error> {
    let (client, built) = req.build_split();
    let built = built?;
    let key = HoldKey::of(&built);
    if let Some(left) = Holds::global().remaining(&key) {
        if left > cap {
            return Ok(Sent::Held { left, origin: key.origin });
        }
        tracing::info!(system = %key.origin, wait_ms = left.as_millis() as u64, "waiting out a rate-limit hold");
        tokio::time::sleep(left).await;
    }
    send(reqwest::RequestBuilder::from_parts(client, built)).await
}

/// How long the system a probe request (built, never sent) would reach is still held.
pub fn held(probe: reqwest::RequestBuilder) -> Option<Duration> {
    let req = probe.build().ok()?;
    Holds::global().remaining(&HoldKey::of(&req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn key(url: &str, auth: &str) -> HoldKey {
        let c = reqwest::Client::new();
        HoldKey::of(&c.get(url).header("X-Redmine-API-Key", auth).build().unwrap())
    }

    #[test]
    fn key_is_origin_and_credentials_not_path() {
        assert_eq!(key("http://h:1/issues/1.json", "k"), key("http://h:1/issues/2.json?x=1", "k"));
        assert_ne!(key("http://h:1/issues/1.json", "k"), key("http://h:1/issues/1.json", "other"));
        assert_ne!(key("http://h:1/issues/1.json", "k"), key("http://h:2/issues/1.json", "k"));
        assert!(!format!("{:?}", key("http://h:1/", "secret-key")).contains("secret-key"));
    }

    #[test]
    fn which_answers_hold_the_system() {
        let mut ra = HeaderMap::new();
        ra.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(hold_signal(StatusCode::TOO_MANY_REQUESTS, &ra), Some(Duration::from_secs(7)));
        assert_eq!(hold_signal(StatusCode::SERVICE_UNAVAILABLE, &ra), Some(Duration::from_secs(7)));
        // Zendesk's per-ticket update limit: a bare 429 stays per ticket.
        assert_eq!(hold_signal(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()), None);
        assert_eq!(hold_signal(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()), None);
        assert_eq!(hold_signal(StatusCode::FORBIDDEN, &HeaderMap::new()), None, "a permission problem");
        let mut rl = HeaderMap::new();
        rl.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        assert_eq!(hold_signal(StatusCode::FORBIDDEN, &rl), Some(FALLBACK_403_HOLD));
        rl.insert("x-ratelimit-reset", HeaderValue::from_static("12"));
        assert_eq!(hold_signal(StatusCode::FORBIDDEN, &rl), Some(Duration::from_secs(12)));
        assert_eq!(hold_signal(StatusCode::INTERNAL_SERVER_ERROR, &ra), None);
    }

    #[test]
    fn holds_extend_never_shorten_and_expire() {
        let h = Holds::default();
        let k = key("http://h:1/", "k");
        assert_eq!(h.remaining(&k), None);
        h.hold(&k, Duration::from_secs(30));
        h.hold(&k, Duration::from_millis(1));
        assert!(h.remaining(&k).unwrap() > Duration::from_secs(29));
        assert_eq!(h.remaining(&key("http://h:1/", "other")), None, "other credentials are another party");
        let k2 = key("http://h:2/", "k");
        h.hold(&k2, Duration::ZERO);
        assert_eq!(h.remaining(&k2), None);
    }
}
