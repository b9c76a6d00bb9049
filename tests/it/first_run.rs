//! The first run reads what the operator expects (issue 15 point 5): the first poll says the
//! range it reads and how to backfill the rest, `check` warns when `initial_lookback_days`
//! reads less than TeamViewer keeps, and a page that does not parse is asked for again with
//! the shared backoff, the same way for every vendor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use ticketsync::config::{Config, SplashtopConfig, TeamViewerConfig};
use ticketsync::pipeline::ingest;
use ticketsync::sim::splashtop::{SimOptions as StSimOptions, SplashtopSim, SIM_TEAM_ID};
use ticketsync::sim::teamviewer::{Fault, SimOptions, TeamViewerSim};
use ticketsync::sim::zoom::{participant, ZoomFault, ZoomSim, ZoomSimOptions};
use ticketsync::sources::splashtop::{SplashtopApi, SplashtopSource};
use ticketsync::sources::teamviewer::{TeamViewerApi, TeamViewerSource};

use crate::support::temp_store;

const TOKEN: &str = "54213-2YotnFZFEjr1zCsicMWp";
const CONNECTIONS: &str = "/api/v1/reports/connections";

async fn tv_sim(n: usize) -> TeamViewerSim {
    let sim =
        TeamViewerSim::start(SimOptions { script_tokens: vec![TOKEN.into()], ..SimOptions::default() }).await.unwrap();
    sim.generate(n, 3, Utc::now() - TimeDelta::hours(6));
    sim
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("c.toml");
    std::fs::write(&p, format!("[store]\npath = \"{}\"\n{body}", dir.join("t.db").display())).unwrap();
    p
}

fn bin(cfg: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ticketsync"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("TICKETSYNC_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// `sync-once` (stderr) and the daemon (its INFO log) say on the first poll what range is read
/// and how to read what is older; later polls do not repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_poll_says_what_it_reads_and_how_to_backfill() {
    let sim = tv_sim(3).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[sources.teamviewer]\nbase_url = \"{}\"\ntoken = \"{TOKEN}\"\ninitial_lookback_days = 60\n",
            sim.base_url
        ),
    );
    let out = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || bin(&cfg, &["sync-once"])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let from = (Utc::now() - TimeDelta::days(60)).format("%Y-%m-%d").to_string();
    let line = stderr.lines().find(|l| l.contains("first poll of teamviewer")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("INFO") && line.contains("initial_lookback_days = 60"), "{line}");
    assert!(line.contains(&from) && line.contains("to now"), "the range read: {line}");
    assert!(
        line.contains(&format!("ticketsync backfill --source teamviewer --from <first day> --to {from}")),
        "{line}"
    );
    let again = tokio::task::spawn_blocking(move || bin(&cfg, &["sync-once"])).await.unwrap();
    assert!(!String::from_utf8_lossy(&again.stderr).contains("first poll"), "said once");
    println!("first poll notice: {line}");
}

/// `check` before the first poll: a lookback shorter than TeamViewer's report retention
/// (assumed 12 months) is a warning naming the backfill command; none when it is long enough
/// or once the source has polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_the_initial_lookback_is_shorter_than_retention() {
    let sim = tv_sim(1).await;
    let dir = tempfile::tempdir().unwrap();
    let tv = |days: u64| {
        format!(
            "[sources.teamviewer]\nbase_url = \"{}\"\ntoken = \"{TOKEN}\"\ninitial_lookback_days = {days}\n",
            sim.base_url
        )
    };
    let run = |cfg: PathBuf, args: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || {
            let o = bin(&cfg, args);
            (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string())
        })
    };
    let cfg = write_config(dir.path(), &tv(7));
    let (ok, out) = run(cfg.clone(), &["check"]).await.unwrap();
    assert!(ok, "a warning, not an error: {out}");
    let warn = out
        .lines()
        .find(|l| l.contains("warning: sources.teamviewer.initial_lookback_days = 7"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(warn.contains("365 days") && warn.contains("ticketsync backfill --source teamviewer"), "{warn}");

    let (_, out) = run(write_config(dir.path(), &tv(400)), &["check"]).await.unwrap();
    assert!(!out.contains("initial_lookback_days"), "{out}");

    let cfg = write_config(dir.path(), &tv(7));
    assert!(run(cfg.clone(), &["sync-once"]).await.unwrap().0);
    let (_, out) = run(cfg, &["check"]).await.unwrap();
    assert!(!out.contains("initial_lookback_days"), "the first poll is done: {out}");
}

/// TeamViewer: a page that does not parse (an HTML proxy page with status 200) is asked for
/// again; the poll completes with every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_page_is_refetched_teamviewer() {
    let sim = tv_sim(5).await;
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = TeamViewerConfig {
        base_url: sim.base_url.clone(),
        token: Some(SecretString::from(TOKEN.to_string())),
        request_timeout_secs: 10,
        ..Default::default()
    };
    sim.push_fault(Fault {
        times: 2,
        body: "<html>502 from a proxy</html>".into(),
        ..Fault::new("/reports/connections", 200)
    });
    let src = TeamViewerSource::with_api(&cfg, TeamViewerApi::new(&cfg, &store).unwrap().with_max_retries(3));
    let s = ingest::poll(&src, &store, &CancellationToken::new()).await.expect("the page is re-read");
    assert_eq!((s.inserted, s.complete), (5, true));
    let reads = sim.requests().iter().filter(|r| r.path == CONNECTIONS).count();
    assert_eq!(reads, 3, "two unparsable answers, then the page");

    // Never parsable: the poll fails (transient), naming the attempts; the cursor is kept.
    sim.push_fault(Fault { times: 10, body: "not json".into(), ..Fault::new("/reports/connections", 200) });
    let src = TeamViewerSource::with_api(&cfg, TeamViewerApi::new(&cfg, &store).unwrap().with_max_retries(1));
    let err = ingest::poll(&src, &store, &CancellationToken::new()).await.unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("malformed page") && err.to_string().contains("2 attempt"),
        "{err}"
    );
}

/// Splashtop: a `data` that is not a page of logs is asked for again, as for TeamViewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_page_is_refetched_splashtop() {
    let sim =
        SplashtopSim::start(StSimOptions { api_tokens: vec![TOKEN.into()], ..StSimOptions::default() }).await.unwrap();
    sim.generate(4, 5, Utc::now() - TimeDelta::hours(6));
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(dir.path()).await;
    let cfg = SplashtopConfig {
        base_url: Some(sim.base_url.clone()),
        console_url: Some(sim.base_url.clone()),
        token: Some(SecretString::from(TOKEN.to_string())),
        request_timeout_secs: 10,
        team_id: Some(SIM_TEAM_ID),
        ..Default::default()
    };
    let logs = ticketsync::sources::splashtop::wire::session_logs_path(SIM_TEAM_ID);
    sim.push_fault(Fault {
        times: 2,
        body: r#"{"result":20200,"data":{"logs":"not a list"}}"#.into(),
        ..Fault::new(logs.clone(), 200)
    });
    let src = SplashtopSource::with_api(&cfg, SplashtopApi::new(&cfg, &store).unwrap().with_max_retries(3));
    let s = ingest::poll(&src, &store, &CancellationToken::new()).await.expect("the page is re-read");
    assert_eq!((s.inserted, s.complete), (4, true));
    let reads = sim.requests().iter().filter(|(_, p, _)| *p == logs).count();
    assert_eq!(reads, 3, "two unparsable answers, then the page");
}

/// Zoom: a participants page that does not parse is asked for again, as for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_page_is_refetched_zoom() {
    let zoom = ZoomSim::start(ZoomSimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"[store]
path = "{db}"

[sources.zoom]
api_url = "{api}"
oauth_url = "{oauth}"
request_timeout_secs = 10
auto_recording = "none"

[[sources.zoom.accounts]]
name = "s2s"
auth = "server_to_server"
client_id = "zoom-client"
client_secret = "zoom-secret"
account_id = "Cx3wERazSgup7ZWRHQM8-w"
user_id = "tech@example.com"
"#,
        db = dir.path().join("t.db").display(),
        api = zoom.api_url(),
        oauth = zoom.base_url,
    );
    let config = Config::from_toml_with_env(&toml, "t.toml", Vec::<(String, String)>::new()).unwrap();
    let app = ticketsync::app::App::build(config).await.unwrap();
    let c = ticketsync::launchers::create_session_on(&app, "zoom", "77", None, None, None).await.unwrap();
    let id: i64 = c.code.parse().unwrap();
    let start = Utc::now() - TimeDelta::minutes(40);
    let people = vec![participant("Ann", "ann@acme.example", start, start + TimeDelta::minutes(20))];
    zoom.end_meeting(id, Some("plainuuid0001"), start, start + TimeDelta::minutes(25), people);
    let path = "/past_meetings/plainuuid0001/participants";
    zoom.fail_next(ZoomFault {
        path_prefix: path.into(),
        times: 2,
        status: 200,
        headers: vec![],
        body: json!("garbage"),
    });
    let r = tokio::time::timeout(Duration::from_secs(60), app.cycle()).await.unwrap().expect("the page is re-read");
    assert_eq!(r.polled[0].1.inserted, 1);
    let reads = zoom.log().iter().filter(|l| l.path.ends_with(path)).count();
    assert_eq!(reads, 3, "two unparsable answers, then the page");
}
