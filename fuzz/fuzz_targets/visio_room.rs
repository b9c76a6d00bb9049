//! visioconference.me `POST /entreprise/visio` answers, success and error statuses.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ticketsync::sources::visio;

fuzz_target!(|data: &[u8]| {
    let body = common::body(data);
    for status in [200, 201, 400, 401, 500] {
        match visio::parse_created_room(status, &body) {
            Ok(room) => {
                assert!(!room.uniqid.is_empty());
                let _ = room.moderator_link("Jane Agent");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
