//! Hostile and misconfigured endpoints over real HTTP (issue 14, points 1, 7 and 9): a 307
//! to another port from every vendor and sink URL (the other port must receive nothing),
//! an endless response body, plain http to a remote host, the daemon's listener under
//! 1,000 idle connections and a slowloris, its bearer token, and Standard Webhooks
//! signatures with their replay window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::Utc;
use tokio::io::AsyncWriteExt;

use ticketsync::config::Config;
use ticketsync::note::{Note, Visibility};
use ticketsync::sim::webhook::WebhookSim;
use ticketsync::sim::zoom::{ZoomSim, ZoomSimOptions};
use ticketsync::sinks::webhook::{SignatureScheme, WebhookSink};
use ticketsync::sinks::TicketSink;

/// A server counting its requests; `answer` makes each response.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(answer: fn(&str, &Request) -> Response, target: String) -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = (hits.clone(), target);
    let app = Router::new()
        .fallback(move |State((hits, target)): State<(Arc<AtomicUsize>, String)>, req: Request| async move {
            hits.fetch_add(1, Ordering::SeqCst);
            answer(&target, &req)
        })
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base, hits, task }
}

/// The trap: any request here is a request that should never have been made.
fn trap(_: &str, _: &Request) -> Response {
    (StatusCode::OK, "{}").into_response()
}

/// Every request is answered `307` to the same path (and query) on `target`.
fn redirect(target: &str, req: &Request) -> Response {
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, format!("{target}{pq}"))], "").into_response()
}

fn note() -> Note {
    Note {
        title: "TeamViewer session s1 (3m 00s)".into(),
        fields: vec![],
        links: vec![],
        body: Some("printer fixed".into()),
        attachments: vec![],
        visibility: Visibility::Internal,
        marker: "tsd:v1:teamviewer:hostile-1:report".into(),
    }
}

fn load(text: &str) -> Config {
    Config::from_toml_with_env(text, "hostile.toml", Vec::<(String, String)>::new()).unwrap()
}

/// Every component's configuration with its URL on `base`, plus `extra` keys in each
/// section (e.g. `max_response_bytes`). Zoom's OAuth and API hosts are given separately.
fn everything(dir: &std::path::Path, base: &str, zoom_oauth: &str, zoom_api: &str, extra: &str) -> Config {
    load(&format!(
        r#"[store]
path = "{db}"
[sources.teamviewer]
base_url = "{base}"
token = "tv-canary"
{extra}
[sources.splashtop]
base_url = "{base}"
token = "st-canary"
{extra}
[sources.zoom]
api_url = "{zoom_api}"
oauth_url = "{zoom_oauth}"
{extra}
[[sources.zoom.accounts]]
name = "s2s"
auth = "server_to_server"
client_id = "zoom-client"
client_secret = "zoom-secret"
account_id = "Cx3wERazSgup7ZWRHQM8-w"
user_id = "tech@example.com"
[rooms.visioconference]
api_url = "{base}/api/v1"
token = "visio-canary"
{extra}
[sinks.redmine]
url = "{base}"
api_key = "redmine-canary"
{extra}
[sinks.webhook]
url = "{base}/hook"
secret = "webhook-canary"
{extra}
[sinks.zendesk]
url = "{base}"
email = "a@example.com"
token = "zendesk-canary"
{extra}
[sinks.freshservice]
url = "{base}"
api_key = "freshservice-canary"
{extra}
[sinks.jsm]
url = "{base}"
email = "a@example.com"
token = "jsm-canary"
{extra}
[sinks.glpi]
url = "{base}/apirest.php"
user_token = "glpi-canary"
app_token = "glpi-app-canary"
{extra}
"#,
        db = dir.join("t.db").display(),
    ))
}

/// What each component says when its endpoint misbehaves, by name. `zoom_token` is the
/// OAuth token endpoint (Server-to-Server grant, a POST with the client secret).
async fn every_component_error(
    cfg: &Config,
    store: &ticketsync::store::Store,
    zoom_token: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let tv = ticketsync::sources::teamviewer::TeamViewerApi::new(cfg.sources.teamviewer.as_ref().unwrap(), store)
        .unwrap()
        .with_max_retries(0);
    out.push(("teamviewer".into(), tv.connections_page(Utc::now(), None).await.unwrap_err().to_string()));
    let st = ticketsync::sources::splashtop::SplashtopApi::new(cfg.sources.splashtop.as_ref().unwrap(), store)
        .unwrap()
        .with_max_retries(0);
    out.push(("splashtop".into(), st.basic_info().await.unwrap_err().to_string()));
    let zoom = ticketsync::sources::zoom::ZoomApi::new(cfg.sources.zoom.as_ref().unwrap(), 0, store)
        .unwrap()
        .with_max_retries(0);
    let name = if zoom_token { "zoom oauth token" } else { "zoom api" };
    out.push((name.into(), zoom.check().await.unwrap_err().to_string()));
    let visio = ticketsync::sources::visio::create_room(cfg.rooms.visioconference.as_ref().unwrap(), "101").await;
    out.push(("visioconference".into(), visio.unwrap_err().to_string()));
    let sinks = ticketsync::app::build_sinks(cfg).unwrap();
    let mut names: Vec<_> = sinks.keys().cloned().collect();
    names.sort();
    for name in names {
        let said = match sinks[&name].post_note("101", &note()).await {
            Ok(r) => format!("delivered {r}"),
            Err(e) => e.to_string(),
        };
        out.push((name, said));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_any_vendor_or_sink_is_refused_and_names_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::temp_store(dir.path()).await;
    let other = server(trap, String::new()).await;
    let hostile = server(redirect, other.base.clone()).await;
    let zoom = ZoomSim::start(ZoomSimOptions::default()).await.unwrap();

    // Every API URL redirects; Zoom's OAuth host is the simulator so the API call is reached.
    let cfg = everything(dir.path(), &hostile.base, &zoom.base_url, &format!("{}/v2", hostile.base), "");
    let mut errors = every_component_error(&cfg, &store, false).await;
    // Zoom's token endpoint redirects: a 307 would re-post the client secret. A fresh
    // store, so no token from the first pass is reused.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = crate::support::temp_store(dir2.path()).await;
    let cfg = everything(dir2.path(), &hostile.base, &hostile.base, &zoom.api_url(), "");
    errors
        .extend(every_component_error(&cfg, &store2, true).await.into_iter().filter(|(n, _)| n == "zoom oauth token"));

    let names: Vec<&str> = errors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "teamviewer",
            "splashtop",
            "zoom api",
            "visioconference",
            "freshservice",
            "glpi",
            "jsm",
            "redmine",
            "webhook",
            "zendesk",
            "zoom oauth token"
        ]
    );
    for (name, e) in &errors {
        println!("redirect refused: {name}: {e}");
        assert!(e.contains(&format!("answered 307 to {}/", other.base)), "{name}: {e}");
        assert!(e.contains(&format!("{}/", hostile.base)) && e.contains("configure the final URL"), "{name}: {e}");
    }
    let (asked, followed) = (hostile.hits.load(Ordering::SeqCst), other.hits.load(Ordering::SeqCst));
    println!(
        "redirects: {} components, {asked} requests answered 307, {followed} requests to the other port",
        errors.len()
    );
    assert!(asked >= errors.len(), "every component reached the redirecting endpoint ({asked})");
    assert_eq!(followed, 0, "no request may follow a redirect to another origin");
}

/// An endless body, as fast as the socket takes it; counts what it managed to hand over.
async fn endless_server(sent: Arc<AtomicUsize>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(move || {
        let sent = sent.clone();
        async move {
            let chunk = bytes_of(64 * 1024);
            let stream = futures::stream::repeat_with(move || {
                sent.fetch_add(chunk.len(), Ordering::Relaxed);
                Ok::<_, std::io::Error>(chunk.clone())
            });
            ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response()
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    let mut v = b"[".to_vec();
    v.resize(n, b' ');
    axum::body::Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_response_body_is_cut_at_the_limit_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::temp_store(dir.path()).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let (base, task) = endless_server(sent.clone()).await;
    const LIMIT: u64 = 1024 * 1024;
    let extra = format!("max_response_bytes = {LIMIT}");
    let zoom = ZoomSim::start(ZoomSimOptions::default()).await.unwrap();
    let cfg = everything(dir.path(), &base, &zoom.base_url, &format!("{base}/v2"), &extra);
    let mut errors = every_component_error(&cfg, &store, false).await;
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = crate::support::temp_store(dir2.path()).await;
    let cfg = everything(dir2.path(), &base, &base, &zoom.api_url(), &extra);
    errors
        .extend(every_component_error(&cfg, &store2, true).await.into_iter().filter(|(n, _)| n == "zoom oauth token"));
    assert_eq!(errors.len(), 11);
    // The webhook's 2xx is its whole answer: delivered, the body never read.
    let (_, webhook) = errors.iter().find(|(n, _)| n == "webhook").unwrap();
    assert_eq!(webhook, "delivered webhook:200");
    for (name, e) in errors.iter().filter(|(n, _)| n != "webhook") {
        println!("endless body: {name}: {e}");
        assert!(e.contains(&format!("larger than the limit of {LIMIT} bytes (max_response_bytes)")), "{name}: {e}");
        assert!(e.contains(&format!("{base}/")), "{name}: the error names the endpoint: {e}");
    }
    task.abort();
    // Each of the 11 reads stopped at 1 MiB; what the server pushed beyond that sat in
    // socket buffers. An unbounded reader would still be reading.
    let total = sent.load(Ordering::Relaxed);
    println!(
        "endless body: 10 reads cut at 1 MiB each (the webhook's 2xx needs no body); the server pushed {} MiB in all into socket buffers before the readers hung up",
        total / (1024 * 1024)
    );
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_by_check_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: String| {
        let path = dir.path().join("ticketsync.toml");
        std::fs::write(&path, text).unwrap();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
                .arg("--config")
                .arg(&path)
                .arg("check")
                .env_clear()
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
            )
        }
    };
    let db = dir.path().join("t.db");
    let section = |url: &str, extra: &str| {
        format!("[store]\npath = \"{}\"\n[sinks.redmine]\nurl = \"{url}\"\napi_key = \"k\"\n{extra}\n", db.display())
    };
    let (ok, out) = run(section("http://redmine.example.test", "")).await;
    assert!(!ok, "{out}");
    assert!(out.contains("sinks.redmine.url") && out.contains("sinks.redmine.allow_insecure_http = true"), "{out}");
    println!("http refused: {}", out.lines().find(|l| l.contains("sinks.redmine.url")).unwrap_or(""));
    // The same for a source, named by its own key.
    let (ok, out) = run(format!(
        "[store]\npath = \"{}\"\n[sources.teamviewer]\nbase_url = \"http://10.1.2.3\"\ntoken = \"t\"\n",
        db.display()
    ))
    .await;
    assert!(!ok && out.contains("sources.teamviewer.base_url"), "{out}");
    // Loopback needs no opt-in.
    for url in ["http://127.0.0.1:3300", "http://localhost:3300", "http://[::1]:3300", "https://redmine.example.test"] {
        let (ok, out) = run(section(url, "")).await;
        assert!(ok, "{url}: {out}");
        assert!(!out.contains("warning: sinks.redmine.url"), "{url}: {out}");
    }
    // The explicit opt-in passes, with a warning.
    let (ok, out) = run(section("http://redmine.example.test", "allow_insecure_http = true")).await;
    assert!(ok, "{out}");
    assert!(out.contains("warning: sinks.redmine.url = http://redmine.example.test: plain http"), "{out}");
}

#[test]
fn a_ca_file_is_checked_at_load_and_named_when_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, TEST_CA).unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let text = |p: &std::path::Path| {
        format!(
            "[sinks.redmine]\nurl = \"https://redmine.example.test\"\napi_key = \"k\"\nca_file = \"{}\"\n",
            p.display()
        )
    };
    let cfg = load(&text(&good));
    let r = cfg.sinks.redmine.as_ref().unwrap();
    assert!(r.outbound().client(Duration::from_secs(5)).is_ok());
    for p in [bad.clone(), dir.path().join("missing.pem")] {
        let e =
            Config::from_toml_with_env(&text(&p), "t.toml", Vec::<(String, String)>::new()).unwrap_err().to_string();
        assert!(e.contains("sinks.redmine.ca_file"), "{e}");
    }
}

/// Test-only TLS material (tests/fixtures/tls): a CA, and a leaf for 127.0.0.1 signed by it.
const TEST_CA: &str = include_str!("../fixtures/tls/ca.pem");
const TEST_LEAF: &str = include_str!("../fixtures/tls/leaf.pem");
const TEST_LEAF_KEY: &str = include_str!("../fixtures/tls/leaf.key");

/// An https server on 127.0.0.1 with a certificate from the test CA, answering every
/// request like Redmine's `/users/current.json`; counts failed handshakes.
async fn internal_ca_server(handshake_failures: Arc<AtomicUsize>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(TEST_LEAF.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(TEST_LEAF_KEY.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, failures) = (acceptor.clone(), handshake_failures.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(r#"{"user":{"id":1}}"#.to_string()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_trusts_an_internal_ca_for_its_section_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("internal-ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    let failures = Arc::new(AtomicUsize::new(0));
    let (base, task) = internal_ca_server(failures.clone()).await;
    let redmine = |extra: String| {
        load(&format!(
            "[store]\npath = \"{}\"\n[sinks.redmine]\nurl = \"{base}\"\napi_key = \"k\"\n{extra}\n",
            dir.path().join("t.db").display()
        ))
    };
    // Without ca_file: the platform roots do not know the internal CA.
    let sinks = ticketsync::app::build_sinks(&redmine(String::new())).unwrap();
    let e = sinks["redmine"].check().await.unwrap_err().to_string();
    println!("ca_file: without it: {e}");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // With it: the same server is trusted.
    let sinks = ticketsync::app::build_sinks(&redmine(format!("ca_file = \"{}\"", ca.display()))).unwrap();
    sinks["redmine"].check().await.expect("the internal CA is trusted through ca_file");
    // (The server counts its failed handshakes only as it notices them: not asserted.)
    println!(
        "ca_file: with it: redmine check OK over https with the internal CA ({} failed handshake seen by the server)",
        failures.load(Ordering::SeqCst)
    );
    task.abort();
}

async fn listener(
    opts: ticketsync::health::ListenerOptions,
) -> (String, tempfile::TempDir, tokio_util::sync::CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::temp_store(dir.path()).await;
    let health = Arc::new(ticketsync::health::Health {
        store,
        sources: vec![],
        tz: chrono_tz::UTC,
        started_at: Utc::now(),
        grace: chrono::Duration::seconds(120),
        sinks: vec![],
        added_at: Default::default(),
        instance_id: "test".into(),
        shared_store: false,
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ticketsync::health::serve_with(l, health, opts, cancel.clone()));
    (addr, dir, cancel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_with_1000_idle_connections_and_a_slowloris() {
    let (addr, _dir, cancel) = listener(ticketsync::health::ListenerOptions::default()).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // A slowloris: one byte of a request head per second, never finishing.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let slowloris = tokio::spawn(async move {
        for b in b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let resp = http.get(format!("http://{addr}/readyz")).send().await.expect("/readyz answers");
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    // The listener kept at most its limit open: the oldest idle connections were closed
    // (each by its own task, given a moment to run).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for s in &idle {
        let mut buf = [0u8; 1];
        if matches!(s.try_read(&mut buf), Ok(0)) {
            closed += 1;
        }
    }
    println!("listener: 1000 idle connections + 1 slowloris open, /readyz answered {status}; {closed} idle connections closed by the listener (limit 256)");
    assert!(closed >= 1000 - 256, "{closed}");
    slowloris.abort();
    cancel.cancel();
}

/// The header-read timeout closes a silent connection and a slowloris that keeps sending
/// head bytes (the deadline is not reset per byte). No timing is asserted: each is simply
/// closed by the server before a generous 30 s client deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_are_closed_by_the_header_read_timeout() {
    let opts =
        ticketsync::health::ListenerOptions { header_read_timeout: Duration::from_secs(1), ..Default::default() };
    let (addr, _dir, cancel) = listener(opts).await;
    let wait_closed = |mut s: tokio::net::TcpStream, drip: bool| async move {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 512];
        loop {
            if drip && s.write_all(b"X").await.is_err() {
                return true; // reset by the server
            }
            match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {} // an answer (or hyper's 408): the close follows
                Err(_) if tokio::time::Instant::now() > deadline => return false,
                Err(_) => {}
            }
        }
    };
    let idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /readyz HTTP/1.1\r\nX-Slow: ").await.unwrap();
    // Keep-alive: one request answered, then silence; the same deadline applies.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (idle_closed, slow_closed, kept_closed) =
        tokio::join!(wait_closed(idle, false), wait_closed(slow, true), wait_closed(kept, false));
    println!(
        "listener: header_read_timeout 1 s: idle connection closed {idle_closed}, slowloris closed {slow_closed}, idle keep-alive closed {kept_closed}"
    );
    assert!(idle_closed && slow_closed && kept_closed);
    cancel.cancel();
}

#[tokio::test]
async fn metrics_need_the_bearer_token_and_bodies_are_limited() {
    let opts = ticketsync::health::ListenerOptions {
        token: Some("metrics-canary-token".to_string().into()),
        ..Default::default()
    };
    let (addr, _dir, cancel) = listener(opts).await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status() }
    };
    assert_eq!(get("/healthz", None).await, StatusCode::OK);
    assert_eq!(get("/readyz", None).await, StatusCode::OK);
    assert_eq!(get("/metrics", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/metrics", Some("metrics-canary-tokeN")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/metrics", Some("metrics-canary-token")).await, StatusCode::OK);
    assert_eq!(get("/other", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get("/other", Some("metrics-canary-token")).await, StatusCode::NOT_FOUND);
    let big = http.post(format!("http://{addr}/healthz")).body(vec![b'x'; 64 * 1024]).send().await.unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let head = http.get(format!("http://{addr}/healthz")).header("X-Big", "y".repeat(64 * 1024)).send().await;
    assert!(head.is_err() || head.unwrap().status().is_client_error(), "a 64 KiB head is refused");
    cancel.cancel();
}

#[tokio::test]
async fn webhook_standard_signature_is_verified_and_a_replay_is_refused() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sim = WebhookSim::start(secret, "X-Ticketsync-Signature").await.unwrap();
    let http = ticketsync::http::client(Duration::from_secs(10));
    for (i, scheme) in
        [SignatureScheme::Standard, SignatureScheme::Both, SignatureScheme::Legacy].into_iter().enumerate()
    {
        let sink =
            WebhookSink::new("webhook", &sim.url, secret.to_string().into(), "X-Ticketsync-Signature", http.clone())
                .with_scheme(scheme);
        let mut n = note();
        n.marker = format!("tsd:v1:teamviewer:hostile-{i}:report");
        sink.post_note("101", &n).await.unwrap();
    }
    assert_eq!(sim.accepted().len(), 3);
    assert_eq!(sim.standard_signed(), 2, "standard and both carry the webhook-* headers");
    assert_eq!(sim.bad_signatures(), 0);

    // A captured request replayed ten minutes later: the signature is valid, the
    // timestamp is not.
    let key = ticketsync::sinks::webhook::standard_key(secret);
    let body = serde_json::to_vec(&WebhookSink::payload("101", &note())).unwrap();
    let old = Utc::now().timestamp() - 600;
    let id = "tsd:v1:teamviewer:replayed:report";
    let replay = http
        .post(&sim.url)
        .header("webhook-id", id)
        .header("webhook-timestamp", old.to_string())
        .header("webhook-signature", ticketsync::sinks::webhook::standard_signature(&key, id, old, &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sim.stale(), 1);
    // A fresh timestamp with the old signature is a forgery.
    let now = Utc::now().timestamp();
    let forged = http
        .post(&sim.url)
        .header("webhook-id", id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", ticketsync::sinks::webhook::standard_signature(&key, id, old, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sim.bad_signatures(), 1);
    assert_eq!(sim.accepted().len(), 3);
    println!("webhook: 3 schemes delivered, 2 standard-signed, 1 replay (stale) and 1 forgery refused");
    sim.shutdown();
}
