//! Splashtop API answers: the `result` envelope (any status), session-log pages and each
//! log record, `users/basic_info`, the channel list and the support-session answer.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use reqwest::header::HeaderMap;
use serde_json::Value;
use ticketsync::sources::screen;
use ticketsync::sources::splashtop::{self, wire};

fuzz_target!(|data: &[u8]| {
    let body = common::body(data);
    for status in [200, 401, 403, 404, 429, 500] {
        match splashtop::classify("/fuzz", status, &HeaderMap::new(), data) {
            Ok(d) => on_data(d.value.get(), d.repairs),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if let Ok(env) = serde_json::from_str::<wire::Envelope>(&body) {
        let _ = (env.ok(), env.error_message());
        if let Some(code) = env.result {
            let _ = (wire::result_kind(code), wire::is_expired_token(Some(code), 401));
        }
    }
    // A log record straight from the page's `logs` array.
    if let Ok(v) = serde_json::from_str::<Value>(&body) {
        on_log(&v, screen::Repairs::default());
    }
});

fn on_data(text: &str, repairs: screen::Repairs) {
    // logs_page: each record's text is kept as sent.
    if let Ok(mut page) = serde_json::from_str::<wire::LogsPage>(text) {
        let texts: Vec<String> = page.logs.iter().map(|r| r.get().to_string()).collect();
        page.repairs = repairs;
        for (s, text) in page.take_sessions(common::now()).iter().zip(&texts) {
            if let Ok(s) = s {
                assert_eq!(&s.raw_json, text, "raw_json is the record's text");
            }
        }
        for text in &texts {
            if let Ok(rec) = serde_json::from_str::<Value>(text) {
                on_log(&rec, repairs);
            }
        }
    }
    let Ok(data) = serde_json::from_str::<Value>(text) else { return };
    let data = &data;
    // team_id / default_channel / create_support_session
    let _ = (wire::team_id(data), wire::account_email(data), wire::default_channel(data));
    if let Ok(s) = wire::support_session(data) {
        let _ = wire::end_user_link(&s, "https://my.splashtop.com/");
        let _ = wire::technician_link(&s.code, Some("owner@example.com"));
    }
}

fn on_log(rec: &Value, repairs: screen::Repairs) {
    let _ = (wire::file_transfers(rec), wire::chat_transcript(rec), wire::connection_details(rec));
    match screen::screen(rec, repairs, wire::parse_log(rec, common::now())) {
        Ok(s) => {
            assert!(s.ended_at.is_none_or(|e| e >= s.started_at), "end before start accepted");
            common::after_parse(&s);
        }
        Err(r) => assert!(!r.reason.is_empty()),
    }
}
