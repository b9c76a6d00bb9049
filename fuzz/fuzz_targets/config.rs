//! The config loader: arbitrary text as the TOML file. It must answer with an error, never
//! panic; and a config it accepts must not panic when the daemon starts from it, so the
//! numbers the components turn into durations and dates are checked here as they use them
//! (teamviewer.rs/splashtop.rs/zoom.rs `new`, oauth_client, pipeline, health, daemon).
#![no_main]

use chrono::{Duration, Utc};
use libfuzzer_sys::fuzz_target;
use ticketsync::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg = match Config::from_toml_with_env(text, "fuzz.toml", Vec::new()) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    cfg.validate().expect("a loaded config validates again");
    let _ = (cfg.notes_tz(), cfg.daemon_tz());
    let _ = cfg.sinks.routes();
    let _ = ticketsync::matcher::compile_all(&cfg.matching.rules).expect("validated rules compile");
    starts(&cfg);
});

fn fits(what: &str, d: Option<Duration>) -> Duration {
    let d = d.unwrap_or_else(|| panic!("{what}: accepted, but out of chrono's range"));
    let now = Utc::now();
    assert!(now.checked_add_signed(d).is_some() && now.checked_sub_signed(d).is_some(), "{what}: date overflow");
    d
}

fn starts(cfg: &Config) {
    let d = &cfg.daemon;
    assert!(d.shutdown_grace_secs.checked_add(1).is_some(), "daemon.shutdown_grace_secs overflows");
    assert!((d.delivery_interval_secs as i64).checked_mul(1000).is_some(), "daemon.delivery_interval_secs overflows");
    fits("http.readiness_grace_secs", Duration::try_seconds(cfg.http.readiness_grace_secs as i64));
    fits("outbox.give_up_after_hours", Duration::try_hours(cfg.outbox.give_up_after_hours as i64));
    fits("outbox.max_backoff_secs", Duration::try_seconds(cfg.outbox.max_backoff_secs as i64));
    fits("outbox.base_backoff_secs", Duration::try_seconds(cfg.outbox.base_backoff_secs as i64));
    if let Some(tv) = &cfg.sources.teamviewer {
        fits("teamviewer.overlap_minutes", Duration::try_minutes(tv.overlap_minutes as i64));
        fits("teamviewer.initial_lookback_days", Duration::try_days(tv.initial_lookback_days as i64));
        fits("teamviewer.open_session_max_age_hours", Duration::try_hours(tv.open_session_max_age_hours as i64));
        fits("teamviewer.valid_hours", Duration::try_hours(tv.valid_hours.max(1) as i64));
    }
    if let Some(st) = &cfg.sources.splashtop {
        fits("splashtop.overlap_minutes", Duration::try_minutes(st.overlap_minutes as i64));
        fits("splashtop.initial_lookback_days", Duration::try_days(st.initial_lookback_days as i64));
        fits("splashtop.open_session_max_age_hours", Duration::try_hours(st.open_session_max_age_hours as i64));
        fits("splashtop.refresh_token_days", Duration::try_days(st.refresh_token_days as i64));
        fits("splashtop.refresh_warn_days", Duration::try_days(st.refresh_warn_days as i64));
    }
    if let Some(z) = &cfg.sources.zoom {
        fits("zoom.recording_deadline_minutes", Duration::try_minutes(z.recording_deadline_minutes as i64));
        fits("zoom.lookback_days", Duration::try_days(z.lookback_days.max(1) as i64));
        let _ = z.account(None);
    }
}
