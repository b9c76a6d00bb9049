//! Shared HTTP plumbing: one client builder, one retry policy, and the helpers every
//! vendor and sink client uses to read throttling answers.

use std::time::Duration;

use backon::ExponentialBuilder;
use reqwest::header::HeaderMap;

/// Build the HTTP client used by every source and sink (rustls, timeouts, user agent).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("ticketsync/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .build()
        .expect("static reqwest configuration is valid")
}

/// The in-process retry policy shared by every HTTP client: exponential backoff with
/// jitter and a cap. Long outages are not retried here but by the outbox and the cursor,
/// which survive restarts.
pub fn retry_policy(max_times: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(60))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(max_times)
}

/// For backon's `adjust`: a server's `Retry-After` replaces the computed delay (never
/// earlier than the server asked), capped so one answer cannot stall a poll for hours;
/// without one, the policy's own delay (or its give-up) stands.
pub fn honour_retry_after(retry_after: Option<Duration>, computed: Option<Duration>) -> Option<Duration> {
    match retry_after {
        Some(ra) => Some(ra.min(Duration::from_secs(900))),
        None => computed,
    }
}

/// Exponential backoff with full jitter for the durable outbox retry (attempt is 1-based).
pub fn outbox_backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let capped = exp.min(cap.as_secs_f64());
    // Jitter between 50% and 100% keeps retries spread without ever collapsing to zero.
    let jitter = 0.5 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64(capped * jitter)
}

/// `Retry-After` as seconds or as an HTTP date; falls back to `X-RateLimit-Reset`
/// (epoch seconds, or seconds from now when small).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, std::time::SystemTime::now())
}

pub fn retry_after_at(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    parse_retry_after(headers, now).map(|d| d.min(MAX_RETRY_AFTER))
}

/// No server means more than a day; a larger value (or `1e300`) would overflow the outbox's
/// date arithmetic.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

fn parse_retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    if let Some(v) = headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER));
            }
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
        // Zoom's daily limits send an RFC 3339 timestamp (`2020-05-31T00:00:00Z`).
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(v) {
            let at: std::time::SystemTime = at.with_timezone(&chrono::Utc).into();
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    if let Some(v) = headers.get("x-ratelimit-reset").and_then(|v| v.to_str().ok()) {
        if let Ok(n) = v.trim().parse::<u64>() {
            let now_s = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            // Small values are a delay, large ones an epoch timestamp.
            return Some(if n > 1_000_000_000 {
                Duration::from_secs(n.saturating_sub(now_s))
            } else {
                Duration::from_secs(n)
            });
        }
    }
    None
}

/// A vendor error body cut to a readable length for logs and error text.
pub fn short_body(body: &str) -> String {
    // Scrubbed before it is cut, so that no prefix of a secret survives at the cut.
    let b = crate::redact::scrub(body.trim());
    let b = b.as_ref();
    let mut out: String = b.chars().take(300).collect();
    if b.chars().count() > 300 {
        out.push('…');
    }
    out.replace(['\n', '\r'], " ")
}

/// A transport error without the URL's query string (which may carry a token).
pub fn describe_transport_error(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "bad response body"
    } else if err.is_request() {
        "request failed"
    } else {
        "HTTP error"
    };
    let target = err
        .url()
        .map(|u| {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let mut source = String::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(e) = cur {
        source = e.to_string();
        cur = e.source();
    }
    match (target.is_empty(), source.is_empty()) {
        (false, false) => format!("{what} ({target}): {source}"),
        (false, true) => format!("{what} ({target})"),
        (true, false) => format!("{what}: {source}"),
        (true, true) => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(17)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(42));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(42)));
        // A date in the past means "now".
        let past = httpdate::fmt_http_date(now - Duration::from_secs(42));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after_at(&h, now), Some(Duration::ZERO));
        let rfc3339 = chrono::DateTime::<chrono::Utc>::from(now + Duration::from_secs(30)).to_rfc3339();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&rfc3339).unwrap());
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn ratelimit_reset_epoch_and_delta() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1700000030"));
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(30)));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("12"));
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(12)));
        assert_eq!(retry_after_at(&HeaderMap::new(), SystemTime::now()), None);
    }

    /// Regression (seen while writing the fuzz target `http_headers`, which now guards it):
    /// `1e20` made `Duration::from_secs_f64` panic, and a huge delay overflowed the outbox's
    /// `now + wait`.
    #[test]
    fn absurd_retry_after_is_capped_not_a_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        for v in ["1e20", "18446744073709551615", "100000000000000.5", "9999-12-31T23:59:59Z"] {
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            assert_eq!(retry_after_at(&h, now), Some(MAX_RETRY_AFTER), "{v}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("18446744073709551615"));
        assert_eq!(retry_after_at(&h, now), Some(MAX_RETRY_AFTER));
        let wait = chrono::Duration::from_std(MAX_RETRY_AFTER).unwrap();
        assert!(chrono::Utc::now().checked_add_signed(wait).is_some());
    }

    #[test]
    fn outbox_backoff_grows_and_is_capped() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(600);
        let first = outbox_backoff(1, base, cap);
        assert!(first >= Duration::from_secs(5) && first <= base);
        let late = outbox_backoff(30, base, cap);
        assert!(late <= cap && late >= cap / 2);
    }

    #[test]
    fn short_body_is_cut_and_single_line() {
        let long = "x".repeat(1000);
        assert_eq!(short_body(&long).chars().count(), 301);
        assert_eq!(short_body("a\nb"), "a b");
    }
}
