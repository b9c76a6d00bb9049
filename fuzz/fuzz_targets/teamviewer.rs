//! TeamViewer Web API answers as the client receives them: a connection-report page
//! (`GET /reports/connections`), the `POST /sessions` answer, and error bodies.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use reqwest::header::HeaderMap;
use serde_json::Value;
use ticketsync::sources::screen;
use ticketsync::sources::teamviewer::{self, wire};

fuzz_target!(|data: &[u8]| {
    let body = common::body(data);
    // connections_page: the body decoded as the client does (bad UTF-8 and lone surrogates
    // repaired and remembered), then every record parsed and screened.
    if let Ok(mut d) = screen::json_body::<wire::ConnectionsPage>(data) {
        d.value.repairs = d.repairs;
        for rec in d.value.take_sessions(common::now()) {
            match rec {
                Ok(s) => {
                    assert!(!s.external_id.is_empty() && s.external_id.len() <= 128);
                    assert!(serde_json::from_str::<Value>(&s.raw_json).is_ok(), "raw_json is the record's JSON text");
                    assert!(s.ended_at.is_none_or(|e| e >= s.started_at), "end before start accepted");
                    common::after_parse(&s);
                }
                Err(r) => assert!(!r.reason.is_empty()),
            }
        }
    }
    // A record on its own, whatever JSON it is.
    if let Ok(v) = serde_json::from_str::<Value>(&body) {
        if let Ok(s) = wire::parse_record(&v, common::now()) {
            common::after_parse(&s);
        }
        // create_session: JSON first, then the typed view of it.
        let _ = serde_json::from_value::<wire::CreatedSession>(v);
    }
    // Error answers, as `call` classifies them.
    for status in [400, 401, 403, 429, 503] {
        let _ = teamviewer::classify(status, &HeaderMap::new(), &body).to_string();
    }
});
