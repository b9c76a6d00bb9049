//! Shared HTTP plumbing: one client policy, one retry policy, and the helpers every
//! vendor and sink client uses to read answers (bounded) and throttling headers.
//!
//! The outbound policy (docs/security/http.md): redirects are never followed (a redirect
//! is an error naming the URL to configure), `http://` is accepted only for loopback hosts
//! or with the component's `allow_insecure_http = true`, every body is read through
//! [`read_body`] under the component's `max_response_bytes`, and a component may add its
//! own `ca_file` to the platform's roots.
//!
//! On top of the policy, the one vendor client every source and sink uses: [`send`] (the
//! hold registry, the body under the cap), [`VendorClient::call`] (one retry-and-refresh
//! loop), [`Auth`] (how credentials are presented) and [`ApiError`] (the vendor's status and
//! code, typed).

pub mod auth;
pub mod client;
pub mod error;

use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::ExponentialBuilder;
use reqwest::header::HeaderMap;

use ticketsync_config::{self as config, ConfigError};
use ticketsync_model::session;
use ticketsync_redact as redact;
use ticketsync_store as store;

pub mod holds;
pub mod oauth;

pub use auth::{Auth, OAuthApp};
pub use client::{send, Answer, SendError, VendorClient};
pub use error::{ApiError, CallError, ErrorKind, Failure};

/// The default cap on one response body: far above any page a vendor or ticket system
/// sends (TeamViewer's 1,000-record pages are ~1 MiB), far below what hurts the host.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 32 * 1024 * 1024;

/// Build the HTTP client used by every source and sink (rustls, timeouts, user agent, no
/// redirects), with the platform's CA roots only.
pub fn client(timeout: Duration) -> reqwest::Client {
    builder(timeout).build().expect("static reqwest configuration is valid")
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("ticketsync/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .redirect(redirect_policy())
}

/// Every redirect is refused, same-origin ones included. reqwest strips `Authorization`
/// on a cross-host hop but not our other credential headers (`X-Redmine-API-Key`,
/// `X-Token`, GLPI's `App-Token` and `Session-Token`, the webhook signature), and a 307/308
/// re-sends the body: an OAuth form with `client_secret` and the refresh token, or a note.
/// A same-origin redirect is not safe either: one origin often fronts several applications
/// (a reverse proxy by path), and a POST re-sent to another path hands the form to
/// whichever of them answers. None of the APIs we call redirect in normal operation, so a
/// redirect means the configured URL is not the final one: the error names both URLs and
/// the operator configures the final one.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let refused = RedirectRefused {
            from: attempt.previous().last().map(endpoint).unwrap_or_default(),
            status: attempt.status().as_u16(),
            to: endpoint(attempt.url()),
        };
        attempt.error(refused)
    })
}

/// A redirect answer, refused (see [`redirect_policy`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{from} answered {status} to {to}; configure the final URL (redirects are not followed)")]
pub struct RedirectRefused {
    pub from: String,
    pub status: u16,
    pub to: String,
}

/// A URL as errors show it: scheme, host, port and path; never the query (which may carry
/// a token), the fragment or user info.
pub fn endpoint(u: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        u.scheme(),
        u.host_str().unwrap_or("?"),
        u.port().map(|p| format!(":{p}")).unwrap_or_default(),
        u.path()
    )
}

/// Reading an answer's body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body exceeded the component's `max_response_bytes`: reading stopped there.
    #[error("{endpoint}: response body larger than the limit of {limit} bytes (max_response_bytes); not read further")]
    TooLarge { endpoint: String, limit: u64 },
    #[error("{}", describe_transport_error(.0))]
    Transport(reqwest::Error),
}

/// The whole body, read chunk by chunk and abandoned as soon as it passes `limit` bytes,
/// so an endless or oversized answer costs at most `limit` bytes of memory. Every client
/// reads bodies through here (or [`read_text`]).
pub async fn read_body(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    let too_large = |resp: &reqwest::Response| BodyError::TooLarge { endpoint: endpoint(resp.url()), limit };
    // A declared length over the limit is refused before a byte is read.
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large(&resp));
    }
    let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large(&resp));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// [`read_body`] as text (invalid UTF-8 replaced: every API we call answers UTF-8 JSON).
pub async fn read_text(resp: reqwest::Response, limit: u64) -> Result<String, BodyError> {
    let bytes = read_body(resp, limit).await?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A component's outbound keys (`allow_insecure_http`, `ca_file`, `max_response_bytes`),
/// as every source, room provider and sink section carries them.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    /// The config section, e.g. `sinks.redmine`, for error messages.
    pub section: &'a str,
    pub allow_insecure_http: bool,
    pub ca_file: Option<&'a Path>,
    pub max_response_bytes: Option<u64>,
}

/// Loopback hosts (127.0.0.0/8, ::1, `localhost`): plain http never leaves the machine.
pub fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl Outbound<'_> {
    /// The body cap of this component's answers.
    pub fn limit(&self) -> u64 {
        self.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
    }

    /// `key` (a URL this component calls) is https, or http to a loopback host, or http
    /// with `allow_insecure_http = true`.
    pub fn check_url(&self, key: &str, url: &str) -> Result<(), ConfigError> {
        let Ok(u) = url::Url::parse(url) else {
            return Ok(()); // the component's own validation names a malformed URL
        };
        if u.scheme() != "http" || is_loopback(&u) || self.allow_insecure_http {
            return Ok(());
        }
        Err(crate::config::key_err(
            key,
            format!(
                "http:// to a host that is not loopback sends credentials and notes in clear text: \
                 use https://, or set {}.allow_insecure_http = true",
                self.section
            ),
        ))
    }

    /// `ca_file` parses as PEM with at least one certificate, `max_response_bytes` is sane.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(n) = self.max_response_bytes {
            if n < 1024 {
                return Err(crate::config::key_err(
                    &format!("{}.max_response_bytes", self.section),
                    "at least 1024 (the default is 33554432, 32 MiB)",
                ));
            }
        }
        self.extra_roots().map(|_| ())
    }

    /// This component's `http://` URLs to hosts that are not loopback (only possible with
    /// `allow_insecure_http = true`), for the start-up warning.
    pub fn insecure<'u>(&self, urls: &'u [(String, String)]) -> Vec<&'u (String, String)> {
        urls.iter()
            .filter(|(_, u)| url::Url::parse(u).is_ok_and(|u| u.scheme() == "http" && !is_loopback(&u)))
            .collect()
    }

    fn extra_roots(&self) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        let Some(path) = self.ca_file else { return Ok(Vec::new()) };
        let key = format!("{}.ca_file", self.section);
        let pem = std::fs::read(path)
            .map_err(|e| crate::config::key_err(&key, format!("cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            crate::config::key_err(&key, format!("{}: not a PEM certificate bundle ({e})", path.display()))
        })?;
        if certs.is_empty() {
            return Err(crate::config::key_err(&key, format!("{}: no PEM certificate in the file", path.display())));
        }
        Ok(certs)
    }

    /// The component's client: the shared policy, plus its `ca_file` added to the
    /// platform's roots.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, ConfigError> {
        let roots = self.extra_roots()?;
        let (key, b) = if roots.is_empty() {
            (self.section.to_string(), builder(timeout))
        } else {
            (format!("{}.ca_file", self.section), builder(timeout).tls_certs_merge(roots))
        };
        // The platform's roots are loaded here; a failure is an error naming the
        // component, not a panic.
        b.build().map_err(|e| {
            let mut msg = format!("cannot build the HTTP client: {e}");
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg = format!("{msg}: {c}");
                cur = c.source();
            }
            crate::config::key_err(&key, format!("{msg} (check SSL_CERT_FILE / SSL_CERT_DIR and ca_file)"))
        })
    }
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
    // A refused redirect says everything itself (both URLs, what to configure).
    if err.is_redirect() {
        if let Some(r) = find_source::<RedirectRefused>(err) {
            return format!("redirect refused: {r}");
        }
    }
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

/// The first error of type `E` in `err`'s source chain.
pub fn find_source<'e, E: std::error::Error + 'static>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e E> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
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
    fn https_is_required_except_for_loopback_or_an_explicit_opt_in() {
        let o =
            Outbound { section: "sinks.redmine", allow_insecure_http: false, ca_file: None, max_response_bytes: None };
        for ok in
            ["https://r.example", "http://127.0.0.1:3300", "http://127.9.9.9", "http://[::1]:80", "http://LOCALHOST/x"]
        {
            assert!(o.check_url("sinks.redmine.url", ok).is_ok(), "{ok}");
        }
        for bad in ["http://r.example", "http://10.0.0.1", "http://[::2]", "http://localhost.evil.example"] {
            let e = o.check_url("sinks.redmine.url", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("sinks.redmine.url: ") && e.contains("sinks.redmine.allow_insecure_http = true"),
                "{e}"
            );
        }
        let open = Outbound { allow_insecure_http: true, ..o };
        assert!(open.check_url("sinks.redmine.url", "http://r.example").is_ok());
        let urls = vec![("k".to_string(), "http://r.example".to_string()), ("l".into(), "http://127.0.0.1".into())];
        assert_eq!(open.insecure(&urls).len(), 1);
        assert_eq!(o.limit(), DEFAULT_MAX_RESPONSE_BYTES);
        let tiny = Outbound { max_response_bytes: Some(10), ..o };
        assert!(tiny.validate().unwrap_err().to_string().starts_with("sinks.redmine.max_response_bytes"));
    }

    #[test]
    fn endpoints_never_show_a_query_or_user_info() {
        let u = url::Url::parse("https://user:pw@h.example:8443/a/b?token=s3cret#frag").unwrap();
        assert_eq!(endpoint(&u), "https://h.example:8443/a/b");
    }

    #[test]
    fn short_body_is_cut_and_single_line() {
        let long = "x".repeat(1000);
        assert_eq!(short_body(&long).chars().count(), 301);
        assert_eq!(short_body("a\nb"), "a b");
    }
}

/// The outbound HTTP keys of every component that calls a vendor or a ticket system. They
/// are written in the component's own section (`[sinks.redmine]` `ca_file = …`, unchanged);
/// the parse gathers them into the section's `outbound` field.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// `http://` to a host that is not loopback (warned at start-up); https otherwise.
    pub allow_insecure_http: bool,
    /// Extra CA certificates (PEM bundle) trusted for this component, beside the platform's.
    pub ca_file: Option<PathBuf>,
    /// Cap on one response body, in bytes (default 32 MiB).
    pub max_response_bytes: Option<u64>,
}

impl OutboundConfig {
    pub const KEYS: [&'static str; 3] = ["allow_insecure_http", "ca_file", "max_response_bytes"];

    /// These keys as the HTTP layer takes them, for the section `section`.
    pub fn for_section<'a>(&'a self, section: &'a str) -> crate::Outbound<'a> {
        crate::Outbound {
            section,
            allow_insecure_http: self.allow_insecure_http,
            ca_file: self.ca_file.as_deref(),
            max_response_bytes: self.max_response_bytes,
        }
    }
}

/// `outbound()` of a section struct with an `outbound: OutboundConfig` field; the binary's
/// `OUTBOUND_SECTIONS` (where the parse looks for these keys) is every registered component's
/// section (a test checks).
#[macro_export]
macro_rules! outbound_section {
    ($t:ty, $section:literal) => {
        impl $t {
            /// This section's outbound HTTP keys (see `ticketsync_http::Outbound`).
            pub fn outbound(&self) -> $crate::Outbound<'_> {
                self.outbound.for_section($section)
            }
        }
    };
}
