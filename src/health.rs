//! The optional HTTP listener of `ticketsync run` (`[http]`): `/healthz` (the process
//! answers), `/readyz` (the store answers and every source polled successfully within its
//! schedule), `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use croner::Cron;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

pub struct Health {
    pub store: Store,
    /// Cursor key (the source name, or `zoom:<account>`) and its source's parsed schedule.
    pub sources: Vec<(String, Cron)>,
    pub tz: chrono_tz::Tz,
    /// When the daemon started: a source that has not completed a poll since is judged
    /// from here, so a fresh start gets one schedule interval to finish its first poll.
    pub started_at: DateTime<Utc>,
    pub grace: chrono::Duration,
    /// Configured sink names, for the per-sink metrics.
    pub sinks: Vec<String>,
}

impl Health {
    pub fn from_app(app: &crate::app::App, started_at: DateTime<Utc>) -> anyhow::Result<Health> {
        let mut sources = Vec::new();
        for (src, schedule) in &app.sources {
            let cron = crate::daemon::parse_cron(schedule).map_err(anyhow::Error::msg)?;
            // A source polling several accounts (Zoom) is ready only when each of them is.
            for key in src.cursor_keys() {
                sources.push((key, cron.clone()));
            }
        }
        Ok(Health {
            store: app.store.clone(),
            sources,
            tz: app.config.daemon_tz(),
            started_at,
            grace: chrono::Duration::seconds(app.config.http.readiness_grace_secs as i64),
            sinks: app.sink_names.clone(),
        })
    }

    /// Every readiness check with its result, at `now`.
    pub async fn readiness(&self, now: DateTime<Utc>) -> Vec<(String, bool, String)> {
        let mut checks = Vec::new();
        let cursors: Result<Vec<(String, Option<String>)>, _> =
            sqlx::query_as("SELECT source, last_success_at FROM source_cursors").fetch_all(&self.store.pool).await;
        let cursors = match cursors {
            Ok(c) => {
                match self.store.write_failure() {
                    Some((since, error)) => checks.push((
                        "store".to_string(),
                        false,
                        format!("database {}: writes refused since {since}: {error}", self.store.path()),
                    )),
                    None => checks.push(("store".to_string(), true, "database answers".to_string())),
                }
                c
            }
            Err(e) => {
                checks.push(("store".to_string(), false, format!("database error: {e}")));
                return checks;
            }
        };
        for (name, cron) in &self.sources {
            let last = cursors
                .iter()
                .find(|(s, _)| s == name)
                .and_then(|(_, t)| t.as_deref())
                .and_then(crate::session::parse_ts);
            let reference = last.map_or(self.started_at, |l| l.max(self.started_at));
            let check = format!("source:{name}");
            let last_txt = last.map(crate::session::ts).unwrap_or_else(|| "never".into());
            match cron.find_next_occurrence(&reference.with_timezone(&self.tz), false) {
                Ok(due) => {
                    let due = due.with_timezone(&Utc);
                    let ok = now <= due + self.grace;
                    let detail = if ok {
                        format!("last successful poll {last_txt}; next run due {}", crate::session::ts(due))
                    } else {
                        format!(
                            "missed its schedule: last successful poll {last_txt}, a poll was due by {} (grace {}s)",
                            crate::session::ts(due),
                            self.grace.num_seconds()
                        )
                    };
                    checks.push((check, ok, detail));
                }
                Err(e) => checks.push((check, false, format!("schedule has no next run: {e}"))),
            }
        }
        checks
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(h): State<Arc<Health>>) -> Response {
    let checks = h.readiness(Utc::now()).await;
    let ready = checks.iter().all(|c| c.1);
    let body = json!({
        "ready": ready,
        "checks": checks.iter().map(|(name, ok, detail)| json!({"name": name, "ok": ok, "detail": detail})).collect::<Vec<_>>(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(h): State<Arc<Health>>) -> Response {
    let handle = crate::metrics::install();
    if let Err(e) = crate::metrics::refresh_from_store(&h.store.pool, &h.sinks).await {
        tracing::warn!(error = %e, "metrics: database gauges not refreshed");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

/// Serve until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(health)).with_graceful_shutdown(async move { cancel.cancelled().await }).await
}
