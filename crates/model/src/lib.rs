//! ticketsync's domain, below every other crate: a session as stored ([`session`]), the note
//! rendered for a ticket ([`note`]), the MAC'd marker line that makes delivery idempotent
//! ([`marker`]), and a delivery's state and note kind ([`delivery`]). No I/O here.

pub mod delivery;
pub mod marker;
pub mod note;
pub mod session;
