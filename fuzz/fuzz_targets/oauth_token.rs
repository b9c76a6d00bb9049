//! The OAuth token endpoint's success body (TeamViewer, Splashtop, Zoom) and the expiry
//! dates the client stores from it.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ticketsync::oauth::TokenResponse;

fuzz_target!(|data: &[u8]| {
    let body = common::body(data);
    let Ok(t) = TokenResponse::parse(&body) else { return };
    let now = common::now();
    let access = t.access_expires_at(now);
    assert!(ticketsync::session::parse_ts(&access).is_some(), "unreadable access expiry {access:?}");
    for configured in [None, Some(chrono::Duration::days(30))] {
        if let Some(r) = t.refresh_expires_at(configured, now) {
            assert!(ticketsync::session::parse_ts(&r).is_some(), "unreadable refresh expiry {r:?}");
        }
    }
});
