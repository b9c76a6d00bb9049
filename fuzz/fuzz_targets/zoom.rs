//! Zoom REST answers: paged lists (participants, recordings), a past meeting, the
//! meeting-create answer and error bodies; parsed records go through `to_session` and
//! into the note (participants, recording links).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ticketsync::sources::screen;
use ticketsync::sources::zoom::{self, wire};

fuzz_target!(|data: &[u8]| {
    let body = common::body(data);
    let _ = serde_json::from_str::<wire::ErrorBody>(&body);
    let Ok(v) = serde_json::from_str::<Value>(&body) else { return };
    let _ = serde_json::from_value::<wire::CreatedMeeting>(v.clone());
    // `walk`: a page, the items under the endpoint's key.
    let mut participants = Vec::new();
    let mut recording = None;
    // Decoded as the client does: bytes, with bad UTF-8 and lone surrogates repaired.
    if let Ok(page) = screen::json_body::<wire::Page>(data).map(|d| d.value) {
        let _ = page.next_page_token.as_deref().map(wire::uuid_segment);
        for item in page.rest.get("participants").and_then(Value::as_array).into_iter().flatten() {
            if let Ok(p) = serde_json::from_value::<wire::Participant>(item.clone()) {
                if !participants.contains(&p) {
                    participants.push(p);
                }
            }
        }
        for item in page.rest.get("meetings").and_then(Value::as_array).into_iter().flatten() {
            if let Ok(r) = serde_json::from_value::<wire::RecordingMeeting>(item.clone()) {
                let _ = wire::uuid_segment(&r.uuid);
                recording.get_or_insert(r);
            }
        }
    }
    // `past_meeting`: the body itself, or a `meeting` member so one input carries all three.
    let pm = v.get("meeting").cloned().unwrap_or(v);
    let Ok(pm) = serde_json::from_value::<wire::PastMeeting>(pm) else { return };
    let _ = wire::uuid_segment(&pm.uuid);
    for expect_recordings in [true, false] {
        let deadline = chrono::Duration::minutes(24 * 60);
        let r = zoom::to_session(
            "support",
            pm.clone(),
            participants.clone(),
            recording.clone(),
            expect_recordings,
            deadline,
            common::now(),
        );
        if let Ok(s) = r {
            common::after_parse(&s);
        }
    }
});
