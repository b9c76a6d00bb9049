//! Vendor and ticket-system simulators on 127.0.0.1, speaking the real wire formats.
//! Used by the integration tests, `ticketsync demo` and the benchmarks.

pub mod freshservice;
pub mod glpi;
pub mod html;
pub mod jsm;
pub mod redmine;
pub mod splashtop;
pub mod teamviewer;
pub mod visio;
pub mod webhook;
pub mod zendesk;
pub mod zoom;

use std::sync::{Arc, Mutex};

use axum::response::Response;

/// Text a simulator sends as other bytes, wherever it appears in an answer: a vendor whose
/// database holds a name in a legacy encoding (`"José"` sent as Latin-1 `b"Jos\xe9"`, not
/// UTF-8), or one that cuts UTF-16 text in the middle of a surrogate pair (`"💻"` sent as
/// the JSON escape `\ud83d` alone). The rest of the answer, and the wire format, stay as
/// the vendor's.
#[derive(Clone, Default)]
pub struct MisEncoding(Arc<Mutex<Vec<Substitution>>>);

/// Text (as UTF-8) and the bytes sent in its place.
type Substitution = (Vec<u8>, Vec<u8>);

impl MisEncoding {
    pub fn add(&self, text: &str, bytes: &[u8]) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((text.as_bytes().to_vec(), bytes.to_vec()));
    }

    /// The answer with every registered text replaced by its bytes.
    pub async fn apply(&self, resp: Response) -> Response {
        let subs = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if subs.is_empty() {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let Ok(mut bytes) = axum::body::to_bytes(body, usize::MAX).await.map(|b| b.to_vec()) else {
            return Response::from_parts(parts, axum::body::Body::empty());
        };
        for (from, to) in &subs {
            bytes = replace_bytes(&bytes, from, to);
        }
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        Response::from_parts(parts, axum::body::Body::from(bytes))
    }
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if !from.is_empty() && hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The user id the simulators give a person (not the API user) who writes on a ticket.
pub const PERSON_ID: u64 = 7;
