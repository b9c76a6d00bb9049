//! ticketsync's domain, below every other crate: a session as stored ([`session`]), the note
//! rendered for a ticket ([`note`]) and the MAC'd marker line that makes delivery idempotent
//! ([`marker`]). No I/O here.

pub mod marker;
pub mod note;
pub mod session;
