//! Throttling and paging headers from any vendor or ticket system: `Retry-After` (seconds,
//! fractions, HTTP date, RFC 3339), `X-RateLimit-Reset`, Freshservice's `Link`, and the
//! sink error built from them.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue, LINK, RETRY_AFTER};
use reqwest::StatusCode;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = HeaderValue::from_bytes(data) else { return };
    let now = UNIX_EPOCH + Duration::from_secs(1_748_779_200);
    for name in [RETRY_AFTER.as_str(), "x-ratelimit-reset"] {
        let mut h = HeaderMap::new();
        h.insert(name, v.clone());
        for at in [now, SystemTime::now()] {
            if let Some(d) = ticketsync::http::retry_after_at(&h, at) {
                assert!(d <= ticketsync::http::MAX_RETRY_AFTER, "{d:?} above the cap");
                // What the outbox does with it: never earlier than asked, then a date.
                let wait = chrono::Duration::from_std(d).expect("capped delays fit");
                assert!(chrono::Utc::now().checked_add_signed(wait).is_some());
                let _ = ticketsync::http::honour_retry_after(Some(d), None);
            }
        }
        let err = ticketsync::sinks::SinkError::from_status("fuzz", StatusCode::TOO_MANY_REQUESTS, &h, "slow down");
        let _ = err.to_string();
    }
    let mut h = HeaderMap::new();
    h.insert(LINK, v);
    let _ = ticketsync::sinks::freshservice::next_link(&h);
});
