//! ticketsync: remote-support sessions → SQLite audit history → helpdesk tickets.
//!
//! A record flows one way: source → store → matcher → outbox → sink → audit.

pub mod app;
pub mod auth_zoom;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod console;
pub mod credentials;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod export;
pub mod health;
pub use ticketsync_http as http;
pub use ticketsync_http::holds;
pub mod init;
pub mod launchers;
pub use ticketsync_model::marker;
pub use ticketsync_pipeline::matcher;
pub mod metrics;
pub mod operator;
pub use ticketsync_http::oauth;
pub use ticketsync_model::note;
pub use ticketsync_model::session;
pub use ticketsync_model::time_entry;
pub use ticketsync_pipeline as pipeline;
pub use ticketsync_pipeline::render;
/// `report::session_note`, as callers have always named it.
pub use ticketsync_pipeline::render as report;
pub use ticketsync_redact as redact;
/// The simulators (crates/sim), linked only with the `demo` feature.
#[cfg(feature = "demo")]
pub use ticketsync_sim as sim;
pub use ticketsync_sinks as sinks;
pub use ticketsync_sources as sources;
pub use ticketsync_sources::schedule;
pub use ticketsync_store as store;
