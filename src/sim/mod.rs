//! Vendor and ticket-system simulators on 127.0.0.1, speaking the real wire formats.
//! Used by the integration tests, `ticketsync demo` and the benchmarks.

pub mod freshservice;
pub mod glpi;
pub mod html;
pub mod jsm;
pub mod redmine;
pub mod splashtop;
pub mod teamviewer;
pub mod visio;
pub mod webhook;
pub mod zendesk;
pub mod zoom;
