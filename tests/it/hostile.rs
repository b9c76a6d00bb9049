//! Hostile vendors (issue 14): one endpoint that echoes every request header and body in its
//! 400/401/500 answers, configured as every vendor (TeamViewer, Splashtop, Zoom,
//! visioconference.me) and every sink (Redmine, Zendesk, Freshservice, JSM, GLPI, webhook),
//! each secret a distinct canary, driven through the real binary at trace level: `check`,
//! `doctor`, `sync-once`, `run` (with /metrics, then SIGTERM), `session create`, `auth`,
//! `deliveries`, `audit show` and `audit export`. No canary may appear, in any form it
//! travelled in, in any output, database file or export.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aho_corasick::AhoCorasick;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{TimeDelta, Utc};

use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};

/// Every request it receives, as text, is the body of its error answer (in each field a
/// vendor client may read an error from). The status is the first path segment.
struct Echo {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move { echo(&log, method, uri, headers, body) }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Echo { base, seen }
    }

    /// `<base>/<status>/<component>`: every call under it is answered with `status`.
    fn url(&self, status: u16, component: &str) -> String {
        format!("{}/{status}/{component}", self.base)
    }

    /// A 401 saying `invalid_token`.
    fn invalid_token_url(&self, component: &str) -> String {
        format!("{}/401i/{component}", self.base)
    }

    fn seen(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

fn echo(log: &Mutex<Vec<String>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let segment = uri.path().split('/').nth(1).unwrap_or_default();
    // `401i`: a 401 whose `error` is `invalid_token`, which makes an OAuth client refresh
    // (and send its refresh token here too).
    let invalid_token = segment.ends_with('i');
    let status = Some(segment.trim_end_matches('i'))
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let mut dump = format!("{method} {uri}");
    for (k, v) in &headers {
        dump.push_str(&format!(" | {k}: {}", String::from_utf8_lossy(v.as_bytes())));
    }
    dump.push_str(&format!(" | body: {}", String::from_utf8_lossy(&body)));
    log.lock().unwrap().push(dump.clone());
    let answer = serde_json::json!({
        "error": dump, "error_description": dump, "reason": dump, "message": dump, "description": dump,
        "errors": [dump], "errorMessages": [dump], "code": status.as_u16(),
    });
    let mut answer = answer;
    if invalid_token {
        answer["error"] = "invalid_token".into();
    }
    (status, axum::Json(answer)).into_response()
}

struct Run {
    what: String,
    code: i32,
    stdout: String,
    stderr: String,
}

async fn ticketsync(config: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let mut cmd = command(config, args, env);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ticketsync {args:?} did not finish in 120 s"))
        .expect("spawn ticketsync");
    let secs = started.elapsed().as_secs_f64();
    if secs > 5.0 {
        // Not an assertion: retries and refresh waits against a hostile endpoint take time.
        println!("slow: ticketsync {} took {secs:.1}s", args.join(" "));
    }
    Run {
        what: format!("{} {}", config.file_name().unwrap().to_string_lossy(), args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn command(config: &Path, args: &[&str], env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TICKETSYNC_LOG", "trace")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The first `http…` line a command printed (an authorize URL).
fn printed_url(r: &Run) -> String {
    r.stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no URL printed by {}: {}\n{}", r.what, r.stdout, r.stderr))
        .to_string()
}

fn query(url: &str, key: &str) -> String {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// The redirect an operator would paste: `code` plus the `state` the printed URL carries.
fn redirect(authorize_url: &str, code: &str) -> String {
    let back = query(authorize_url, "redirect_uri");
    let mut u = url::Url::parse(&back).unwrap();
    u.query_pairs_mut().append_pair("code", code).append_pair("state", &query(authorize_url, "state"));
    u.to_string()
}

/// Every form a secret travels in: plain, URL-encoded (form, upper- and lower-case
/// percent), base64 (both alphabets; padding is a suffix), the `user:secret` pairs of
/// Basic auth, and the base64 characters that encode it at any position inside a longer
/// base64 value (whole 3-byte groups, for each of the three alignments).
fn forms(secret: &str, users: &[&str]) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut out = vec![secret.to_string(), form.clone(), form.to_lowercase()];
    for e in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        out.push(e.encode(secret));
        for u in users {
            out.push(e.encode(format!("{u}:{secret}")));
        }
        for offset in 0..3usize {
            let mut buf = vec![b'\0'; offset];
            buf.extend_from_slice(secret.as_bytes());
            let enc = e.encode(&buf);
            let (first, end) = (offset.div_ceil(3), buf.len() / 3);
            out.push(enc[first * 4..end * 4].to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

struct Canaries {
    names: Vec<String>,
    values: Vec<String>,
    matcher: AhoCorasick,
    /// Pattern index → canary index.
    owner: Vec<usize>,
}

impl Canaries {
    fn new(list: &[(&str, String)], users: &[&str]) -> Canaries {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        for (i, (_, v)) in list.iter().enumerate() {
            for f in forms(v, users) {
                patterns.push(f);
                owner.push(i);
            }
        }
        Canaries {
            names: list.iter().map(|(n, _)| n.to_string()).collect(),
            values: list.iter().map(|(_, v)| v.clone()).collect(),
            matcher: AhoCorasick::new(&patterns).unwrap(),
            owner,
        }
    }

    /// Names of the canaries found in `hay`, in any form.
    fn found(&self, hay: &[u8]) -> Vec<&str> {
        let mut hits: Vec<&str> =
            self.matcher.find_overlapping_iter(hay).map(|m| self.names[self.owner[m.pattern()]].as_str()).collect();
        hits.sort();
        hits.dedup();
        hits
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const EMAIL: &str = "agent@example.com";
const ZOOM_S2S_ID: &str = "zoom-s2s-client-id";
const ZOOM_USER_ID: &str = "zoom-user-client-id";
const TV_CLIENT_ID: &str = "12333-133Ea4Hdf3e9ec0543fX";

/// The proof that this test can fail: the endpoint really answers with what it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_echo_endpoint_really_echoes() {
    let e = Echo::start().await;
    for status in [400u16, 401, 500] {
        let r = reqwest::Client::new()
            .post(format!("{}/x?access_token=CANARY-q", e.url(status, "probe")))
            .header("Authorization", "Basic Q0FOQVJZLWg=")
            .header("X-Token", "CANARY-header-0001")
            .form(&[("client_secret", "CANARY/form+1")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let body = r.text().await.unwrap();
        for needle in ["CANARY-header-0001", "Basic Q0FOQVJZLWg=", "CANARY%2Fform%2B1", "access_token=CANARY-q"] {
            assert!(body.contains(needle), "{needle} not echoed: {body}");
        }
        let c = Canaries::new(&[("form", "CANARY/form+1".into()), ("header", "CANARY-header-0001".into())], &[]);
        assert_eq!(c.found(body.as_bytes()), ["form", "header"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_from_hostile_vendors_and_sinks_never_leave() {
    let e = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = |name: &str| format!("CANARY/{name}+{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (tv_token, tv_cs, st_token, st_cs) = (c("tv-token"), c("tv-client"), c("st-token"), c("st-client"));
    let (zoom_s2s, zoom_user, visio) = (c("zoom-s2s"), c("zoom-user"), c("visio"));
    let (redmine, zendesk, fresh, jsm) = (c("redmine"), c("zendesk"), c("freshservice"), c("jsm"));
    let (glpi_user, glpi_app, webhook) = (c("glpi-user"), c("glpi-app"), c("webhook"));
    // Keys that never leave the process (the audit chain's HMAC key, at least 32 bytes; the
    // marker MAC key) and the listener's bearer token, which the /metrics probe below sends.
    let (audit_key, marker_key, metrics_token) =
        (c("audit-key-long-enough-for-hmac"), c("marker-key"), c("metrics-token"));
    // Through the two other ways a secret arrives: a `*_file` and an environment override.
    let redmine_file = write(d, "redmine.secret", &format!("{redmine}\n"));
    let glpi_env = vec![("TICKETSYNC__SINKS__GLPI__APP_TOKEN".to_string(), glpi_app.clone())];

    let sinks = format!(
        "[outbox]\nbase_backoff_secs = 1\nmax_backoff_secs = 2\n\n\
         [sinks.redmine]\nurl = \"{}\"\napi_key_file = \"{}\"\n\n\
         [sinks.zendesk]\nurl = \"{}\"\nemail = \"{EMAIL}\"\ntoken = \"{zendesk}\"\n\n\
         [sinks.freshservice]\nurl = \"{}\"\napi_key = \"{fresh}\"\n\n\
         [sinks.jsm]\nurl = \"{}\"\nemail = \"{EMAIL}\"\ntoken = \"{jsm}\"\n\n\
         [sinks.glpi]\nurl = \"{}/apirest.php\"\nuser_token = \"{glpi_user}\"\n\n\
         [sinks.webhook]\nurl = \"{}\"\nsecret = \"{webhook}\"\n",
        e.url(401, "redmine"),
        redmine_file.display(),
        e.url(400, "zendesk"),
        e.url(500, "freshservice"),
        e.url(401, "jsm"),
        e.url(400, "glpi"),
        e.url(500, "webhook"),
    );
    let zoom = format!(
        "[sources.zoom]\napi_url = \"{}\"\noauth_url = \"{}\"\n\n\
         [[sources.zoom.accounts]]\nname = \"s2s\"\nauth = \"server_to_server\"\nclient_id = \"{ZOOM_S2S_ID}\"\n\
         client_secret = \"{zoom_s2s}\"\naccount_id = \"zoom-account-1\"\n\n\
         [[sources.zoom.accounts]]\nname = \"user\"\nauth = \"oauth\"\nclient_id = \"{ZOOM_USER_ID}\"\nclient_secret = \"{zoom_user}\"\n",
        e.url(401, "zoom-api"),
        e.url(400, "zoom-oauth"),
    );
    let visio_cfg = format!("[rooms.visioconference]\napi_url = \"{}\"\ntoken = \"{visio}\"\n", e.url(500, "visio"));
    // Every vendor with its token auth, every sink: all hostile.
    let hostile = |db: &Path, extra: &str| {
        format!(
            "[store]\npath = \"{}\"\naudit_key = \"{audit_key}\"\n\n[notes]\nmarker_key = \"{marker_key}\"\n{extra}\n\
             [sources.teamviewer]\nbase_url = \"{}\"\ntoken = \"{tv_token}\"\n\n\
             [sources.splashtop]\nbase_url = \"{}\"\nconsole_url = \"{}\"\ntoken = \"{st_token}\"\n\n{zoom}\n{visio_cfg}\n{sinks}",
            db.display(),
            e.url(401, "teamviewer"),
            e.url(400, "splashtop"),
            e.url(400, "splashtop-console"),
        )
    };
    // The OAuth variants of TeamViewer and Splashtop.
    let oauth = |db: &Path, tv_base: &str| {
        format!(
            "[store]\npath = \"{}\"\n\n\
             [sources.teamviewer]\nbase_url = \"{tv_base}\"\nauthorize_url = \"{tv_base}/oauth2/authorize\"\nauth = \"oauth\"\n\
             client_id = \"{TV_CLIENT_ID}\"\nclient_secret = \"{tv_cs}\"\n\n\
             [sources.splashtop]\nbase_url = \"{}\"\nconsole_url = \"{}\"\nauth = \"oauth\"\nclient_id = \"st-client-id\"\n\
             client_secret = \"{st_cs}\"\n\n{zoom}",
            db.display(),
            e.url(400, "splashtop"),
            e.url(401, "splashtop-console"),
        )
    };

    let mut runs: Vec<Run> = Vec::new();
    let none: Vec<(String, String)> = Vec::new();

    // 1. Everything hostile: check, doctor, sync-once, session create on every provider.
    let h_db = d.join("hostile.db");
    let h = write(d, "hostile.toml", &hostile(&h_db, ""));
    runs.push(ticketsync(&h, &["check"], &glpi_env).await);
    runs.push(ticketsync(&h, &["doctor"], &glpi_env).await);
    runs.push(ticketsync(&h, &["sync-once"], &glpi_env).await);
    for p in ["teamviewer", "splashtop", "zoom", "visioconference"] {
        runs.push(ticketsync(&h, &["session", "create", "--ticket", "101", "--provider", p], &glpi_env).await);
    }
    runs.push(ticketsync(&h, &["auth", "zoom", "--account", "s2s"], &glpi_env).await);

    // 2. OAuth against hostile token endpoints: the code exchanges post the client secrets.
    let o_db = d.join("oauth.db");
    let o = write(d, "oauth.toml", &oauth(&o_db, &e.url(401, "teamviewer")));
    runs.push(ticketsync(&o, &["check"], &none).await);
    for (provider, extra) in [("teamviewer", None), ("splashtop", None), ("zoom", Some("user"))] {
        let mut args = vec!["auth", provider];
        if let Some(a) = extra {
            args.extend(["--account", a]);
        }
        let printed = ticketsync(&o, &args, &none).await;
        let url = printed_url(&printed);
        runs.push(printed);
        let back = redirect(&url, "CODE-from-the-operator");
        args.extend(["--code", back.as_str()]);
        runs.push(ticketsync(&o, &args, &none).await);
    }
    runs.push(ticketsync(&o, &["doctor"], &none).await);

    // 3. Live tokens: authorize at a real simulator, then meet a hostile API with them. The
    //    stored access token is echoed back, and so is the refresh token of the refresh
    //    that follows the 401.
    let sim = TeamViewerSim::start(SimOptions {
        oauth_client: Some((TV_CLIENT_ID.into(), tv_cs.clone())),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let l_db = d.join("live.db");
    let good = write(d, "live-good.toml", &oauth(&l_db, &sim.base_url));
    let printed = ticketsync(&good, &["auth", "teamviewer"], &none).await;
    let url = printed_url(&printed);
    runs.push(printed);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let approved = http.get(&url).send().await.unwrap();
    let back = approved.headers()["location"].to_str().unwrap().to_string();
    let r = ticketsync(&good, &["auth", "teamviewer", "--code", &back], &none).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    runs.push(r);
    let (live_access, live_refresh) = {
        let store = ticketsync::store::Store::open_read_only(&l_db).await.unwrap();
        let key =
            ticketsync::store::tokens::TokenKey::derive("teamviewer", &secrecy::SecretString::from(tv_cs.clone()));
        let t = ticketsync::store::tokens::load(&store, "teamviewer", &key).await.unwrap().unwrap();
        store.close().await;
        use secrecy::ExposeSecret;
        (t.access.unwrap().expose_secret().to_string(), t.refresh.unwrap().expose_secret().to_string())
    };
    let live_bad = write(d, "live-hostile.toml", &oauth(&l_db, &e.invalid_token_url("teamviewer")));
    runs.push(ticketsync(&live_bad, &["sync-once"], &none).await);
    runs.push(ticketsync(&live_bad, &["doctor"], &none).await);
    runs.push(ticketsync(&live_bad, &["session", "create", "--ticket", "101"], &none).await);

    // 4. Sessions from a good source, notes to hostile sinks: every delivery fails with an
    //    echo, stored as its last error, listed by `deliveries`, exported.
    let src = TeamViewerSim::start(SimOptions { script_tokens: vec![tv_token.clone()], ..SimOptions::default() })
        .await
        .unwrap();
    let now = Utc::now();
    for (i, ticket) in ["101", "102"].iter().enumerate() {
        let t = now - TimeDelta::minutes(40 - i as i64 * 10);
        src.add_connection(serde_json::json!({
            "id": format!("eeeeeeee-0000-4000-8000-00000000000{i}"), "username": "Jon Snow", "deviceid": "1234567890",
            "start_date": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "end_date": (t + TimeDelta::minutes(5)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "session_code": format!("s100-200-30{i}"), "custom_api": serde_json::json!({"ticket_id": ticket}).to_string()
        }));
    }
    let m_db = d.join("main.db");
    let p = write(
        d,
        "deliver.toml",
        &format!(
            "[store]\npath = \"{}\"\n\n[sources.teamviewer]\nbase_url = \"{}\"\ntoken = \"{tv_token}\"\n\n{sinks}",
            m_db.display(),
            src.base_url
        ),
    );
    let r = ticketsync(&p, &["sync-once"], &glpi_env).await;
    assert!(r.stdout.contains("teamviewer: 2 records"), "{}\n{}", r.stdout, r.stderr);
    runs.push(r);
    let r = ticketsync(&p, &["deliveries"], &glpi_env).await;
    assert!(r.stdout.contains("12 deliveries"), "two sessions, six sinks: {}", r.stdout);
    assert!(r.stdout.contains("[REDACTED]"), "the stored echoes are there, masked: {}", r.stdout);
    runs.push(r);
    runs.push(ticketsync(&p, &["audit", "show", "--ticket", "101"], &glpi_env).await);
    let mut exports = Vec::new();
    for f in ["csv", "jsonl"] {
        let out = d.join(format!("export.{f}"));
        let o = out.to_str().unwrap().to_string();
        runs.push(
            ticketsync(
                &p,
                &["audit", "export", "--from", "2000-01-01", "--to", "2100-01-01", "--format", f, "-o", &o],
                &glpi_env,
            )
            .await,
        );
        exports.push(out);
    }

    // 5. The daemon, everything hostile, on the database with the failed deliveries (due
    //    again within a second or two), with its listener: until each source has failed a
    //    poll (and /metrics says so), then SIGTERM.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r_cfg = write(
        d,
        "run.toml",
        &hostile(
            &m_db,
            &format!("\n[http]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nmetrics_token = \"{metrics_token}\"\n"),
        )
        .replace("[outbox]\n", "[daemon]\ndelivery_interval_secs = 1\n\n[outbox]\n"),
    );
    // Files, not pipes: at trace level the daemon writes faster than a pipe nobody reads
    // drains, and would block on its log writes.
    let (out_path, err_path) = (d.join("run.stdout"), d.join("run.stderr"));
    let mut child = command(&r_cfg, &["run"], &glpi_env)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut metrics = String::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        if let Ok(resp) = probe.get(format!("http://127.0.0.1:{port}/metrics")).bearer_auth(&metrics_token).send().await
        {
            metrics = resp.text().await.unwrap_or_default();
            let polled = |s: &str, outcome: &str| {
                metrics.lines().any(|l| {
                    l.starts_with("ticketsync_polls_total")
                        && l.contains(&format!("source=\"{s}\""))
                        && l.contains(&format!("outcome=\"{outcome}"))
                })
            };
            // Zoom's poll succeeds as a whole while each account fails (recorded per account).
            if polled("teamviewer", "error") && polled("splashtop", "error") && polled("zoom", "") {
                break;
            }
        }
    }
    assert!(metrics.contains("outcome=\"error\""), "the daemon polled and failed: {metrics}");
    // The refused paths of the metrics token: no token, and a wrong one that shares the real
    // token's prefix. Their answers are checked for every canary below, like the rest.
    let mut refused = Vec::new();
    for (what, token) in [("no token", None), ("wrong token", Some(format!("{metrics_token}-wrong")))] {
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut req = probe.get(format!("http://127.0.0.1:{port}/metrics"));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "/metrics with {what} is refused");
        let head = format!("{:?}", resp.headers());
        refused.push((format!("/metrics with {what}"), format!("{head}\n{}", resp.text().await.unwrap()).into_bytes()));
    }

    // Let the delivery loop meet the sinks once more.
    let attempts_before: i64 = {
        let store = ticketsync::store::Store::open_read_only(&m_db).await.unwrap();
        let n =
            sqlx::query_scalar("SELECT COUNT(*) FROM delivery_attempts").fetch_one(store.sqlite_pool()).await.unwrap();
        store.close().await;
        n
    };
    for _ in 0..100 {
        let store = ticketsync::store::Store::open_read_only(&m_db).await.unwrap();
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM delivery_attempts").fetch_one(store.sqlite_pool()).await.unwrap();
        store.close().await;
        if n > attempts_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    runs.push(Run {
        what: "run.toml run (SIGTERM)".into(),
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    });
    std::fs::remove_file(&out_path).unwrap();
    std::fs::remove_file(&err_path).unwrap();

    // The canaries, in every form, everywhere.
    let list = [
        ("teamviewer token", tv_token),
        ("teamviewer client secret", tv_cs),
        ("teamviewer live access token", live_access),
        ("teamviewer live refresh token", live_refresh),
        ("splashtop token", st_token),
        ("splashtop client secret", st_cs),
        ("zoom s2s client secret", zoom_s2s),
        ("zoom user client secret", zoom_user),
        ("visioconference token", visio),
        ("redmine api key (file)", redmine),
        ("zendesk token", zendesk),
        ("freshservice api key", fresh),
        ("jsm token", jsm),
        ("glpi user token", glpi_user),
        ("glpi app token (env)", glpi_app),
        ("webhook secret", webhook),
        ("audit key", audit_key),
        ("marker key", marker_key),
        ("metrics bearer token", metrics_token),
    ];
    let users = [format!("{EMAIL}/token"), EMAIL.to_string(), ZOOM_S2S_ID.into(), ZOOM_USER_ID.into()];
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let canaries = Canaries::new(&list, &users);

    // Each canary but the webhook's (an HMAC key, never sent) went out and came back in an
    // error body: without redaction, these answers are what would be logged and stored.
    let seen = e.seen();
    let echoed = canaries.found(seen.as_bytes());
    let not_echoed: Vec<&str> = canaries.names.iter().map(String::as_str).filter(|n| !echoed.contains(n)).collect();
    assert_eq!(
        not_echoed,
        ["webhook secret", "audit key", "marker key", "metrics bearer token"],
        "every secret that is sent to a vendor or sink was echoed back"
    );
    assert!(runs.iter().any(|r| r.stderr.contains("TRACE")), "trace logging was on");

    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for r in &runs {
        places.push((format!("stdout of {}", r.what), r.stdout.clone().into_bytes()));
        places.push((format!("stderr of {}", r.what), r.stderr.clone().into_bytes()));
    }
    places.push(("/metrics".into(), metrics.into_bytes()));
    places.extend(refused);
    for entry in std::fs::read_dir(d).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The configuration and the secret file hold the canaries by design.
        if name.ends_with(".toml") || name.ends_with(".secret") {
            continue;
        }
        places.push((name, std::fs::read(&path).unwrap()));
    }
    for x in &exports {
        assert!(places.iter().any(|(n, b)| n == x.file_name().unwrap().to_str().unwrap() && !b.is_empty()));
    }
    for db in [&h_db, &o_db, &l_db, &m_db] {
        let name = db.file_name().unwrap().to_string_lossy().into_owned();
        assert!(places.iter().any(|(n, _)| *n == name), "{name} was written");
    }
    if std::env::var_os("CANARY_LIST_PLACES").is_some() {
        for (n, b) in &places {
            eprintln!("place {n} ({} bytes)", b.len());
        }
    }
    let mut found = Vec::new();
    for (place, bytes) in &places {
        for name in canaries.found(bytes) {
            found.push(format!("{name} in {place}"));
        }
    }
    println!(
        "canary: {} secrets ({} echoed back by the hostile endpoint, {} requests), {} places checked, {} found",
        canaries.values.len(),
        echoed.len(),
        e.seen.lock().unwrap().len(),
        places.len(),
        found.len()
    );
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}

/// The state directory and the database files are private whatever the umask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_secrets_database_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for umask in ["022", "000"] {
        let state = dir.path().join(format!("state-{umask}")).join("lib");
        let db = state.join("t.db");
        let cfg = write(dir.path(), &format!("c{umask}.toml"), &format!("[store]\npath = \"{}\"\n", db.display()));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" --config \"$1\" migrate"))
            .arg(env!("CARGO_BIN_EXE_ticketsync"))
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700, "umask {umask}");
        assert_eq!(mode(state.parent().unwrap()), 0o700, "umask {umask}");
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            if suffix.is_empty() || p.exists() {
                assert_eq!(mode(&p), 0o600, "{} with umask {umask}", p.display());
            }
        }
        // An older database left 0644 is tightened at the next open.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = ticketsync::store::Store::open(&db, Duration::from_secs(5)).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", db.display()));
            assert_eq!(mode(&p), 0o600, "{} after reopening", p.display());
        }
        store.close().await;
    }
}
