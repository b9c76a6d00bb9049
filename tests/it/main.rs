//! Integration tests: one binary (one link step) with a module per area.

mod audit;
mod audit_evidence;
mod backlog;
mod bad_data;
mod cli;
mod config_check;
mod console;
mod crash;
mod disk_full;
mod faultproxy;
mod faults;
mod first_run;
mod hostile;
mod hostile_http;
mod init;
mod instances;
mod markers;
mod oauth;
mod ops;
mod package;
mod pipeline;
mod psa;
// Only with the in-memory ticket system (`--features fake-sink`).
#[cfg(feature = "fake-sink")]
mod registry;
mod relink;
mod reload;
mod sinks;
mod splashtop;
mod store_batch;
mod store_conformance;
mod store_copy;
mod support;
mod teamviewer;
mod tenants;
mod ticket_systems;
mod time_entries;
mod zoom;
