//! A small fault-injecting HTTP/1.1 proxy on 127.0.0.1, put in front of a real Redmine or a
//! simulator. Every connection carries one request (`Connection: close` both ways). A request
//! that matches a queued fault gets it; every other request is forwarded untouched.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer without forwarding.
    Respond { status: u16, headers: Vec<(String, String)>, body: String },
    /// Forward, read the whole upstream answer (so the request is applied), then hold the
    /// answer back this long before passing it on.
    ForwardThenDelay(Duration),
    /// Forward, read the upstream answer, then close the client connection without answering.
    ForwardThenDrop,
}

impl Fault {
    pub fn status(status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
        Fault::Respond {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.into(),
        }
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub fault: Option<Fault>,
    /// Status the upstream answered, once it has (None for `Respond` faults).
    pub upstream_status: Option<u16>,
    /// When the proxy wrote its answer to the client (None if it never did).
    pub answered_at: Option<SystemTime>,
}

#[derive(Default)]
struct State {
    faults: VecDeque<(Option<String>, Option<String>, Fault)>,
    seen: Vec<Seen>,
}

pub struct FaultProxy {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// `upstream` is a base URL such as `http://127.0.0.1:3000` (a path is ignored).
    pub async fn start(upstream: &str) -> FaultProxy {
        let u = url::Url::parse(upstream).expect("upstream URL");
        let host =
            format!("{}:{}", u.host_str().expect("upstream host"), u.port_or_known_default().expect("upstream port"));
        let addr: SocketAddr =
            tokio::net::lookup_host(&host).await.expect("resolve upstream").next().expect("upstream address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let base_url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (st, host) = (st.clone(), host.clone());
                tokio::spawn(async move {
                    let _ = handle(conn, addr, &host, &st).await;
                });
            }
        });
        FaultProxy { base_url, state, task }
    }

    /// Give `fault` to the next request of any method.
    pub fn push(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back((None, None, fault));
    }

    /// Give `fault` to the next request with this method (`PUT`, `POST`); others pass.
    pub fn push_on(&self, method: &str, fault: Fault) {
        self.state.lock().unwrap().faults.push_back((Some(method.to_ascii_uppercase()), None, fault));
    }

    /// Give `fault` to the next request with this method whose path contains `path_part`.
    pub fn push_on_path(&self, method: &str, path_part: &str, fault: Fault) {
        self.state.lock().unwrap().faults.push_back((Some(method.to_ascii_uppercase()), Some(path_part.into()), fault));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn queued_faults(&self) -> usize {
        self.state.lock().unwrap().faults.len()
    }

    /// Wait (bounded) until `pred` holds for the requests seen so far.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&[Seen]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !pred(&self.seen()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fault proxy: still waiting for {what}; seen {:?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read one request: the head (up to the blank line) and a `Content-Length` body.
async fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "fault proxy does not support chunked requests"
    );
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// Rewrite a head: drop hop-by-hop connection headers (and `Host` if `host` is given), add
/// `Connection: close`.
fn rewrite_head(head: &str, host: Option<&str>) -> String {
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if i > 0 && (name == "connection" || name == "keep-alive" || (host.is_some() && name == "host")) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if let Some(h) = host {
        out.push_str(&format!("Host: {h}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, host: &str, st: &Mutex<State>) -> std::io::Result<()> {
    let (head, body) = read_request(&mut client).await?;
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let (idx, fault) = {
        let mut g = st.lock().unwrap();
        let pos = g.faults.iter().position(|(m, p, _)| {
            m.as_deref().is_none_or(|m| m == method) && p.as_deref().is_none_or(|p| path.contains(p))
        });
        let fault = pos.and_then(|p| g.faults.remove(p)).map(|(_, _, f)| f);
        g.seen.push(Seen { method, path, fault: fault.clone(), upstream_status: None, answered_at: None });
        (g.seen.len() - 1, fault)
    };
    let answered = |st: &Mutex<State>| st.lock().unwrap().seen[idx].answered_at = Some(SystemTime::now());

    if let Some(Fault::Respond { status, headers, body }) = &fault {
        let reason = reqwest::StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Fault");
        let mut resp =
            format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n", body.len());
        for (k, v) in headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("Connection: close\r\n\r\n");
        resp.push_str(body);
        // Stamp before writing: the client cannot have read the answer earlier than this.
        answered(st);
        client.write_all(resp.as_bytes()).await?;
        return client.shutdown().await;
    }

    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(rewrite_head(&head, Some(host)).as_bytes()).await?;
    up.write_all(&body).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), up.read_to_end(&mut resp)).await??;
    let resp_head_end = find(&resp, b"\r\n\r\n").map(|i| i + 4).unwrap_or(resp.len());
    let resp_head = String::from_utf8_lossy(&resp[..resp_head_end]).trim_end().to_string();
    let status = resp_head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    st.lock().unwrap().seen[idx].upstream_status = status;

    match fault {
        Some(Fault::ForwardThenDrop) => return Ok(()),
        Some(Fault::ForwardThenDelay(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let mut out = rewrite_head(&resp_head, None).into_bytes();
    out.extend_from_slice(&resp[resp_head_end..]);
    answered(st);
    client.write_all(&out).await?;
    client.shutdown().await
}
