//! Shared test helpers.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ticketsync::store::Store;

pub async fn temp_store(dir: &Path) -> Store {
    Store::open(&dir.join("t.db"), Duration::from_secs(5)).await.expect("open store")
}

/// Redmine under CI is a requirement, never a skip; locally a missing one fails with the
/// command that starts it.
pub fn redmine_env() -> Option<(String, String)> {
    match (std::env::var("REDMINE_URL"), std::env::var("REDMINE_API_KEY")) {
        (Ok(u), Ok(k)) if !u.is_empty() && !k.is_empty() => Some((u, k)),
        _ => None,
    }
}
