//! ticketsync's domain, below every other crate: a session as stored ([`session`]), the note
//! rendered for a ticket ([`note`]), the MAC'd marker line that makes delivery idempotent
//! ([`marker`]), a delivery's state and note kind ([`delivery`]), the billable time entry with its
//! policy ([`time_entry`]), and the tenant every row belongs to ([`tenant`]). No I/O here.

pub mod delivery;
pub mod marker;
pub mod note;
pub mod session;
pub mod tenant;
pub mod time_entry;
