//! Vendor and ticket-system simulators on 127.0.0.1, speaking the real wire formats.
//! Used by the integration tests, `ticketsync demo` and the benchmarks.

pub mod autotask;
pub mod connectwise;
pub mod freshservice;
pub mod glpi;
pub mod halopsa;
pub mod html;
pub mod jsm;
pub mod redmine;
pub mod rt;
pub mod servicenow;
pub mod splashtop;
pub mod teamviewer;
pub mod visio;
pub mod webhook;
pub mod zammad;
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

/// A simulator's HTTP server on 127.0.0.1: bound first (so the simulator can learn its own
/// URL before building its router), then served until [`Served::stop`] or drop. Every
/// simulator owns one, so starting and stopping them is written once.
pub struct Served {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A listener on 127.0.0.1 (`port` 0: any free one) and its `http://addr` URL.
pub async fn listen(port: u16) -> std::io::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

impl Served {
    /// Serves `app` on `listener` in a task of its own.
    pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> Served {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        });
        Served { stop: Some(stop), task: Some(task) }
    }

    /// Binds any free port and serves `app` there; the `http://addr` URL.
    pub async fn start(app: axum::Router) -> std::io::Result<(Served, String)> {
        let (listener, url) = listen(0).await?;
        Ok((Served::serve(listener, app), url))
    }

    /// Stops accepting, lets in-flight requests finish for up to 5 s, then aborts: a delay
    /// fault can hold a request open far longer than a test wants to wait.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
