//! Benchmark driver for `bench/run.sh`. The simulators run in their own process (their memory
//! is not ticketsync's); `ingest` and `deliver` run exactly what the daemon runs for those
//! stages (`Source::poll`, `App::match_pass`, `pipeline::deliver_due`) through the library, so
//! `/usr/bin/time` measures ticketsync alone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use chrono::{TimeDelta, Utc};
use clap::{Parser, Subcommand};
use ticketsync::app::App;
use ticketsync::config::Config;
use ticketsync::sim::teamviewer::{SimOptions, TeamViewerSim};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// TeamViewer simulator with `n` generated ended connections; prints `api=<url> admin=<url>`.
    /// `GET <admin>/requests` answers the number of API requests served so far.
    TvSim {
        #[arg(long)]
        n: usize,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
    },
    /// Webhook receiver answering 200 after a fixed latency; prints `url=<url> admin=<url>`.
    /// `GET <admin>/count` answers `<requests> <distinct Idempotency-Keys>`.
    SinkSim {
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
    },
    /// Redmine simulator holding issues `first..first+count` (the tickets `tv-sim` generates:
    /// 10000 onwards), answering every request after `latency-ms`; prints `url=<url>
    /// admin=<url>`. `GET <admin>/count` answers the number of PUTs (notes) so far.
    RedmineSim {
        #[arg(long)]
        api_key: String,
        #[arg(long, default_value_t = 10_000)]
        first: u64,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Poll every configured source to the end, then one matching pass (fills the outbox).
    Ingest {
        #[arg(long)]
        config: PathBuf,
    },
    /// Delivery passes until nothing is due.
    Deliver {
        #[arg(long)]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().cmd {
        Cmd::TvSim { n, token, page_size } => tv_sim(n, token, page_size).await,
        Cmd::SinkSim { latency_ms } => sink_sim(latency_ms).await,
        Cmd::RedmineSim { api_key, first, count, latency_ms } => redmine_sim(api_key, first, count, latency_ms).await,
        Cmd::Ingest { config } => ingest(config).await,
        Cmd::Deliver { config } => deliver(config).await,
    }
}

async fn serve(router: Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(url)
}

async fn tv_sim(n: usize, token: String, page_size: usize) -> Result<()> {
    let sim = TeamViewerSim::start(SimOptions { script_tokens: vec![token], page_size, ..Default::default() }).await?;
    // Every record has ended well before now (one every 5–15 s, up to 90 min long).
    let first = Utc::now() - TimeDelta::seconds(n as i64 * 15) - TimeDelta::days(1);
    sim.generate(n, 7, first);
    let sim = Arc::new(sim);
    let admin = serve(Router::new().route("/requests", get(tv_requests)).with_state(sim.clone())).await?;
    println!("api={} admin={admin}", sim.api_url());
    std::future::pending::<()>().await;
    Ok(())
}

async fn tv_requests(State(sim): State<Arc<TeamViewerSim>>) -> String {
    sim.requests().len().to_string()
}

#[derive(Default)]
struct SinkCounts {
    requests: AtomicU64,
    keys: Mutex<std::collections::HashSet<String>>,
    latency: Duration,
}

async fn sink_sim(latency_ms: u64) -> Result<()> {
    let counts = Arc::new(SinkCounts { latency: Duration::from_millis(latency_ms), ..Default::default() });
    let hook = serve(Router::new().route("/hook", post(sink_receive)).with_state(counts.clone())).await?;
    let admin = serve(Router::new().route("/count", get(sink_count)).with_state(counts)).await?;
    println!("url={hook}/hook admin={admin}");
    std::future::pending::<()>().await;
    Ok(())
}

async fn redmine_sim(api_key: String, first: u64, count: u64, latency_ms: u64) -> Result<()> {
    let ids: Vec<u64> = (first..first + count).collect();
    let sim = Arc::new(ticketsync::sim::redmine::RedmineSim::start(&api_key, &ids).await?);
    sim.set_delay(Duration::from_millis(latency_ms));
    let admin = serve(Router::new().route("/count", get(redmine_count)).with_state(sim.clone())).await?;
    println!("url={} admin={admin}", sim.base_url);
    std::future::pending::<()>().await;
    Ok(())
}

async fn redmine_count(State(sim): State<Arc<ticketsync::sim::redmine::RedmineSim>>) -> String {
    sim.put_count().to_string()
}

async fn sink_receive(State(c): State<Arc<SinkCounts>>, h: HeaderMap) -> StatusCode {
    c.requests.fetch_add(1, Ordering::Relaxed);
    let key = h.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    c.keys.lock().expect("counts lock").insert(key);
    tokio::time::sleep(c.latency).await;
    StatusCode::OK
}

async fn sink_count(State(c): State<Arc<SinkCounts>>) -> String {
    format!("{} {}", c.requests.load(Ordering::Relaxed), c.keys.lock().expect("counts lock").len())
}

async fn ingest(config: PathBuf) -> Result<()> {
    let app = App::build(Config::load(&config)?).await?;
    let t = Instant::now();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (mut pages, mut records, mut inserted, mut quarantined) = (0, 0, 0, 0);
    // Ended sessions are matched in their page's transaction (the store's page hook, as in
    // the daemon); the pass then finds only what that left.
    let mut m = ticketsync::pipeline::MatchStats::default();
    for (src, _) in &app.sources {
        let s = ticketsync::pipeline::ingest::poll(src.as_ref(), &app.store, &cancel)
            .await
            .with_context(|| format!("polling {}", src.name()))?;
        anyhow::ensure!(s.complete, "{}: poll stopped before the last page", src.name());
        (pages, records, inserted, quarantined) =
            (pages + s.pages, records + s.records, inserted + s.inserted, quarantined + s.quarantined);
        (m.matched, m.enqueued) = (m.matched + s.matched, m.enqueued + s.enqueued);
    }
    let polled = t.elapsed();
    m.add(app.match_pass().await?);
    println!(
        "pages={pages} records={records} inserted={inserted} quarantined={quarantined} matched={} enqueued={} \
         poll_s={:.3} total_s={:.3}",
        m.matched,
        m.enqueued,
        polled.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn deliver(config: PathBuf) -> Result<()> {
    let app = App::build(Config::load(&config)?).await?;
    let t = Instant::now();
    let (mut attempted, mut delivered, mut other) = (0, 0, 0);
    loop {
        let d = ticketsync::pipeline::deliver_due(&app.store, &app.sinks, &app.policy).await?;
        if d.attempted == 0 {
            break;
        }
        attempted += d.attempted;
        delivered += d.delivered + d.found_existing;
        other += d.retrying + d.failed + d.dead;
    }
    for sink in app.sinks.values() {
        sink.close().await;
    }
    println!(
        "attempted={attempted} delivered={delivered} not_delivered={other} concurrency={} total_s={:.3}",
        app.policy.concurrency,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
