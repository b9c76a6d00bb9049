//! The web console (issue 21) against a real daemon: a TeamViewer simulator, a Redmine
//! simulator as the ticket system, `ticketsync run` with `[console]` on. Plain HTTP for what
//! a browser never sends (a POST without its CSRF token, a viewer's POST, a login flood);
//! headless Chromium through chromedriver (WebDriver, fantoccini) for what a person does:
//! link an unmatched session, retry a dead delivery, read every page as a viewer. The same
//! run takes the screenshots (into docs/console/ with `TICKETSYNC_UPDATE_SCREENSHOTS=1`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use ticketsync::sim::redmine::RedmineSim;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};

const TOKEN: &str = "54213-ConsoleTokenAbCdEf01";
const OPERATOR: (&str, &str) = ("ann", "ann's long passphrase");
const VIEWER: (&str, &str) = ("vic", "vic's long passphrase");
/// A technician's name that is a script: every page must show it as text.
const HOSTILE: &str = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";
const UNMATCHED_ID: &str = "5ae6d2a9-57e9-4c62-b236-280390954b6f";

fn date(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn connection(id: &str, ticket: Option<&str>, user: &str, minutes_ago: i64) -> Value {
    let start = Utc::now() - chrono::Duration::minutes(minutes_ago);
    let mut c = json!({
        "id": id, "userid": "u11293276", "username": user, "deviceid": "1234567890",
        "start_date": date(start), "end_date": date(start + chrono::Duration::minutes(15)),
        "support_session_type": 1,
    });
    if let Some(t) = ticket {
        c["custom_api"] = json!(format!("{{\"ticket_id\":\"{t}\"}}"));
    }
    c
}

struct Env {
    _dir: tempfile::TempDir,
    db: crate::support::TestDb,
    redmine: RedmineSim,
    _tv: TeamViewerSim,
    child: tokio::process::Child,
    base: String,
}

/// The daemon with the console on, after its first poll: session 101 matched and delivered,
/// the unmatched one waiting, and the note for ticket 999 (which Redmine does not have) dead.
async fn start(extra: &str) -> Env {
    let tv =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..Default::default() }).await.unwrap();
    tv.add_connection(connection("0755a8dd-df19-4ea7-af47-cabb6b2a97e4", Some("101"), "Jon Snow", 120));
    tv.add_connection(connection(UNMATCHED_ID, None, HOSTILE, 90));
    tv.add_connection(connection("9f3b1c2e-1111-4ea7-af47-cabb6b2a97e4", Some("999"), "Jon Snow", 60));
    let redmine = RedmineSim::start("rm-key", &[101, 102]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::TestDb::new(dir.path()).await;
    let mut users = String::new();
    for ((name, password), role) in [(OPERATOR, "operator"), (VIEWER, "viewer")] {
        let file = dir.path().join(format!("{name}.hash"));
        std::fs::write(&file, ticketsync::console::hash_password(password).unwrap()).unwrap();
        users.push_str(&format!(
            "[[console.users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash_file = \"{}\"\n",
            file.display()
        ));
    }
    let cfg = dir.path().join("ticketsync.toml");
    std::fs::write(
        &cfg,
        format!(
            "{store}\n[daemon]\ndelivery_interval_secs = 1\n\n[sources.teamviewer]\nbase_url = \"{tv}\"\ntoken = \"{TOKEN}\"\n\n\
             [sinks.redmine]\nurl = \"{rm}\"\napi_key = \"rm-key\"\n\n[console]\nenabled = true\nsecure_cookie = false\n{extra}\n{users}",
            store = db.store_section(),
            tv = tv.base_url,
            rm = redmine.base_url,
        ),
    )
    .unwrap();
    let (child, mut lines) = crate::support::spawn_daemon(&cfg);
    let addr = crate::support::read_until(&mut lines, 20, "the listener's address", &mut Vec::new(), |l| {
        serde_json::from_str::<Value>(l).ok().and_then(|v| v["address"].as_str().map(str::to_string))
    })
    .await;
    // The daemon's warnings and errors in the test's output, for a failure's reader.
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("\"WARN\"") || l.contains("\"ERROR\"") {
                eprintln!("daemon: {l}");
            }
        }
    });
    let env = Env { _dir: dir, db, redmine, _tv: tv, child, base: format!("http://{addr}") };
    wait_until("the note on ticket 101", || env.redmine.journals(101).len() == 1).await;
    let http = Http::new(&env.base);
    http.login(OPERATOR).await;
    wait_until_async("the dead delivery for ticket 999", || async {
        http.get("/ui/deliveries?state=dead").await.1.contains("ticket not found")
    })
    .await;
    env
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 30 s"));
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 30 s"));
}

/// A cookie-keeping client that does not follow redirects, so each answer is seen.
struct Http {
    base: String,
    client: reqwest::Client,
    cookies: std::sync::Mutex<Vec<(String, String)>>,
}

impl Http {
    fn new(base: &str) -> Http {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Http { base: base.to_string(), client, cookies: Default::default() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&self, r: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (k, rest) = v.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap().to_string();
            jar.retain(|(n, _)| n != k);
            if !value.is_empty() {
                jar.push((k.to_string(), value));
            }
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().await;
        let r = r.unwrap();
        self.keep(&r);
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        (r.status().as_u16(), r.text().await.unwrap(), location)
    }

    async fn login_status(&self, (user, password): (&str, &str)) -> u16 {
        let (status, page) = self.get("/ui/login").await;
        assert_eq!(status, 200, "{page}");
        let csrf = hidden(&page, "csrf");
        self.post("/ui/login", &[("user", user), ("password", password), ("csrf", &csrf)]).await.0
    }

    async fn login(&self, who: (&str, &str)) {
        assert_eq!(self.login_status(who).await, 303, "login as {}", who.0);
    }
}

/// The value of the first hidden input named `name` in `page`.
fn hidden(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no input {name} in {page}"));
    let tail = &page[at..];
    let v = tail.find("value=\"").unwrap() + 7;
    tail[v..v + tail[v..].find('"').unwrap()].to_string()
}

/// Every audit row's kind and detail, through the store's export (either backend).
async fn audit_rows(db: &crate::support::TestDb) -> Vec<(String, Value)> {
    let store = ticketsync::store::Store::connect(&db.url, Duration::from_secs(5), None).await.unwrap();
    let mut rows = Vec::new();
    let range = ticketsync::store::history::EventRange { from: "0000", to: "9999", vendor: None };
    ticketsync::store::history::export_events(&store, range, |item| {
        if let ticketsync::store::history::ExportItem::Event(e) = item {
            rows.push((e.kind.clone(), serde_json::from_str(&e.detail_json).unwrap()));
        }
        Ok(())
    })
    .await
    .unwrap();
    store.close().await;
    rows
}

async fn stop(mut env: Env) {
    let pid = nix::unistd::Pid::from_raw(env.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), env.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

/// What a browser never sends, refused: no login, a POST without the CSRF token, a viewer's
/// POST (with a token), a login flood; and vendor text is escaped on every page that shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_csrf_less_and_viewer_posts_and_escapes_vendor_text() {
    let env = start("login_attempts = 3\ntrusted_proxies = [\"127.0.0.1\"]\n").await;
    let anon = Http::new(&env.base);
    // From a trusted proxy, X-Forwarded-User names a configured user, with that user's role;
    // a name that is no user gets nothing.
    let as_user = |name: &str| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/ui/unmatched", env.base))
            .header("x-forwarded-user", name)
    };
    let r = as_user(VIEWER.0).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("vic (viewer)") && !page.contains("method=\"post\""), "{page}");
    assert_eq!(as_user("mallory").send().await.unwrap().status().as_u16(), 303);
    let (status, _) = anon.get("/ui/").await;
    assert_eq!(status, 303, "no login: to the login page");
    assert_eq!(anon.post("/ui/retry", &[("id", "1"), ("csrf", "x")]).await.0, 401);

    let op = Http::new(&env.base);
    op.login(OPERATOR).await;
    let (status, page) = op.get("/ui/unmatched").await;
    assert_eq!(status, 200);
    assert!(page.contains("&lt;script&gt;document.title"), "{page}");
    assert!(!page.contains("<script>") && !page.contains("<img src=x"), "vendor markup reached the page: {page}");
    let csrf = hidden(&page, "csrf");
    // The session's own page: fields and the raw record, escaped.
    let (_, sessions) = op.get(&format!("/ui/sessions?code={UNMATCHED_ID}")).await;
    let id = sessions.split("href=\"/ui/sessions/").nth(1).unwrap().split('"').next().unwrap().to_string();
    // By tenant: the sessions of a configuration without [[tenants]] are the default's.
    assert!(op
        .get(&format!("/ui/sessions?code={UNMATCHED_ID}&tenant=default"))
        .await
        .1
        .contains(&format!("/ui/sessions/{id}\"")));
    assert!(!op.get(&format!("/ui/sessions?code={UNMATCHED_ID}&tenant=acme")).await.1.contains("/ui/sessions/"));
    let (status, page) = op.get(&format!("/ui/sessions/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(UNMATCHED_ID) && page.contains("&lt;img src=x"), "{page}");
    assert!(!page.contains("<script>") && !page.contains("<img src=x"), "{page}");

    // Without the token, and with a wrong one: refused, nothing linked.
    let (status, body, _) = op.post("/ui/link", &[("code", UNMATCHED_ID), ("ticket", "102")]).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = op.post("/ui/link", &[("code", UNMATCHED_ID), ("ticket", "102"), ("csrf", "0000")]).await;
    assert_eq!(status, 403);
    // A viewer, token or not: refused.
    let viewer = Http::new(&env.base);
    viewer.login(VIEWER).await;
    let (_, vpage) = viewer.get("/ui/unmatched").await;
    assert!(vpage.contains("&lt;script&gt;") && !vpage.contains("method=\"post\""), "{vpage}");
    for (path, form) in [
        ("/ui/link", vec![("code", UNMATCHED_ID), ("ticket", "102"), ("csrf", csrf.as_str())]),
        ("/ui/retry", vec![("id", "1"), ("csrf", csrf.as_str())]),
        ("/ui/retry-bulk", vec![("state", "dead"), ("csrf", csrf.as_str())]),
        ("/ui/audit/verify", vec![("csrf", csrf.as_str())]),
        ("/ui/audit/export", vec![("csrf", csrf.as_str())]),
    ] {
        assert_eq!(viewer.post(path, &form).await.0, 403, "viewer POST {path}");
    }
    assert!(
        !audit_rows(&env.db).await.iter().any(|(k, _)| k == "link_created" || k == "delivery_requeued"),
        "a refused POST changed nothing"
    );
    // With the token, the operator's link goes through.
    let (status, _, location) =
        op.post("/ui/link", &[("code", UNMATCHED_ID), ("ticket", "102"), ("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert!(location.unwrap().contains("done="));
    wait_until("the linked session's note on ticket 102", || env.redmine.journals(102).len() == 1).await;

    // Failed logins: 3 allowed per user name, then 429 even with the right password.
    let flood = Http::new(&env.base);
    for _ in 0..3 {
        assert_eq!(flood.login_status((VIEWER.0, "wrong")).await, 401);
    }
    assert_eq!(flood.login_status(VIEWER).await, 429);
    // The export streams the chain, and the export itself is an audit row naming ann.
    let (status, body, _) = op.post("/ui/audit/export", &[("format", "jsonl"), ("csrf", &csrf)]).await;
    assert_eq!(status, 200);
    assert!(body.lines().count() > 3 && body.contains("link_created"), "{body}");
    let rows = audit_rows(&env.db).await;
    let exported = rows.iter().find(|(k, _)| k == "audit_exported").expect("an audit_exported row");
    assert_eq!((exported.1["by"].as_str(), exported.1["via"].as_str()), (Some("ann"), Some("console")));
    stop(env).await;
}

struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, or `None` (and a note) where it is not installed
/// outside CI; in CI (`CI=true`) a missing driver fails the test: .ci/run installs it.
async fn chromedriver() -> Option<Driver> {
    if !Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var("CI").is_err(),
            "{CHROMEDRIVER} missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
        eprintln!("skipped: {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let d = Driver { child, url };
    wait_until_async("chromedriver answers", || async {
        reqwest::get(format!("{}/status", d.url)).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    Some(d)
}

async fn browser(driver: &Driver, profile: &Path) -> fantoccini::Client {
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1100,760",
                     format!("--user-data-dir={}", profile.display())]
        }
    }))
    .unwrap();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    fantoccini::ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

/// Every run takes the screenshots; they replace the committed ones in docs/console/ only
/// with `TICKETSYNC_UPDATE_SCREENSHOTS=1` (else each test run rewrote tracked files, and the
/// PNGs conflicted at every merge), otherwise they go to target/console-screenshots/.
fn shots_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = if std::env::var_os("TICKETSYNC_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs/console")
    } else {
        root.join("target/console-screenshots")
    };
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &fantoccini::Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

use fantoccini::Locator;

async fn log_in(c: &fantoccini::Client, base: &str, (user, password): (&str, &str)) {
    c.goto(&format!("{base}/ui/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    c.find(Locator::Css("input[name=user]")).await.unwrap().send_keys(user).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("span.who")).await.unwrap();
}

/// A person in Chromium: the operator links the unmatched session (its note lands on the
/// simulator's ticket), retries the dead delivery once the ticket exists (its note lands),
/// verifies the chain; the viewer reads every page and finds no form that changes anything;
/// the audit rows name ann. Screenshots of the main pages go to docs/console/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_links_retries_and_viewers_only_read() {
    let Some(driver) = chromedriver().await else { return };
    let env = start("").await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    log_in(&c, &env.base, OPERATOR).await;
    let who = c.find(Locator::Css("span.who")).await.unwrap().text().await.unwrap();
    assert!(who.contains("ann (operator)"), "{who}");
    shot(&c, "overview").await;

    // The unmatched queue: the hostile technician is text, the title untouched by it.
    c.goto(&format!("{}/ui/unmatched", env.base)).await.unwrap();
    assert!(c.title().await.unwrap().starts_with("ticketsync"), "a vendor string ran as script");
    let row = c.find(Locator::XPath(&format!("//tr[td[contains(., '{UNMATCHED_ID}')]]"))).await.unwrap();
    assert!(row.text().await.unwrap().contains("<script>"), "shown as text");
    shot(&c, "unmatched").await;
    row.find(Locator::Css("input[name=ticket]")).await.unwrap().send_keys("102").await.unwrap();
    row.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    let msg = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p.msg"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(msg.contains("linked") && msg.contains("102"), "{msg}");
    wait_until("the linked session's note on ticket 102", || env.redmine.journals(102).len() == 1).await;
    assert!(env.redmine.journals(102)[0].notes.contains(UNMATCHED_ID), "{:?}", env.redmine.journals(102));

    // The dead delivery: ticket 999 now exists (the sink recovered); retry it.
    c.goto(&format!("{}/ui/deliveries?state=dead", env.base)).await.unwrap();
    let dead = c.find(Locator::XPath("//table[@id='failed']//tr[td[text()='999']]")).await.unwrap();
    assert!(dead.text().await.unwrap().contains("ticket not found"));
    shot(&c, "deliveries").await;
    env.redmine.add_issues([999]);
    dead.find(Locator::Css("form.retry button")).await.unwrap().click().await.unwrap();
    let msg = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p.msg"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(msg.contains("requeued"), "{msg}");
    wait_until("the retried note on ticket 999", || env.redmine.journals(999).len() == 1).await;

    // A session's page, then the audit page with an on-demand verify.
    c.goto(&format!("{}/ui/sessions?ticket=102", env.base)).await.unwrap();
    shot(&c, "sessions").await;
    c.find(Locator::Css("table#results td a")).await.unwrap().click().await.unwrap();
    let matched = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p#match"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(matched.contains("102") && matched.contains("manual"), "{matched}");
    shot(&c, "session").await;
    c.goto(&format!("{}/ui/audit", env.base)).await.unwrap();
    c.find(Locator::Css("form.verify button")).await.unwrap().click().await.unwrap();
    let verdict = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("p#verify span.ok"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(verdict.starts_with("OK"), "{verdict}");
    shot(&c, "audit").await;
    c.goto(&format!("{}/ui/logout", env.base)).await.unwrap();

    // The viewer: every page readable, no form that posts anything.
    log_in(&c, &env.base, VIEWER).await;
    for page in ["/ui/", "/ui/sessions", "/ui/unmatched", "/ui/deliveries", "/ui/audit"] {
        c.goto(&format!("{}{page}", env.base)).await.unwrap();
        c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("h1")).await.unwrap();
        let posts = c.find_all(Locator::Css("form[method=post]")).await.unwrap();
        assert!(posts.is_empty(), "{page}: a viewer sees {} form(s) that post", posts.len());
    }
    c.close().await.unwrap();

    // The audit rows name the person and the way they came.
    let rows = audit_rows(&env.db).await;
    let by = |kind: &str| {
        rows.iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, d)| (d["by"].as_str().unwrap_or("").to_string(), d["via"].as_str().unwrap_or("").to_string()))
            .collect::<Vec<_>>()
    };
    let ann = ("ann".to_string(), "console".to_string());
    assert_eq!(by("link_created"), vec![ann.clone()]);
    assert_eq!(by("delivery_requeued"), vec![ann.clone()]);
    assert_eq!(by("audit_verified"), vec![ann]);
    stop(env).await;
}

/// The CLI's `link` and `retry` name the OS user in their audit rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_link_and_retry_name_the_os_user() {
    // X-Forwarded-User from an address that is not a trusted proxy: ignored.
    let env = start("trusted_proxies = [\"192.0.2.1\"]\n").await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/ui/", env.base))
        .header("x-forwarded-user", OPERATOR.0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "the header counts only from a trusted proxy");
    let cfg = env._dir.path().join("ticketsync.toml");
    let run = |args: &'static [&'static str]| {
        let mut c = crate::support::ticketsync(&cfg, args);
        c.env("USER", "olga");
        c
    };
    let s = run(&["link", "--session", UNMATCHED_ID, "--ticket", "102"]).status().await.unwrap();
    assert!(s.success());
    let rows = audit_rows(&env.db).await;
    let dead = rows
        .iter()
        .find(|(k, d)| k == "delivery_dead" && d["error"].as_str().is_some_and(|e| e.contains("not found")))
        .map(|_| ());
    assert!(dead.is_some(), "a dead delivery to retry");
    // The dead delivery's id, from the operator's page.
    let http = Http::new(&env.base);
    http.login(OPERATOR).await;
    let (_, page) = http.get("/ui/deliveries?state=dead").await;
    let id = hidden(&page[page.find("form").unwrap()..], "id");
    let id: &'static str = Box::leak(id.into_boxed_str());
    let args: &'static [&'static str] = Box::leak(vec!["retry", id].into_boxed_slice());
    assert!(run(args).status().await.unwrap().success());
    let rows = audit_rows(&env.db).await;
    for kind in ["link_created", "delivery_requeued"] {
        let (_, d) = rows.iter().rev().find(|(k, _)| k == kind).unwrap();
        assert_eq!((d["by"].as_str(), d["via"].as_str()), (Some("olga"), Some("cli")), "{kind}: {d}");
    }
    stop(env).await;
}
