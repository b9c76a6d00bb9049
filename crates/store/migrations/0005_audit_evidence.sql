-- Audit evidence (issue 14, point 5). Additive: existing rows keep chain_version 1 and
-- verify exactly as before; rows written from now on carry the scheme they were hashed
-- with and the hash of the record they are about.
--   chain_version 1: SHA-256 over the row (before this migration)
--   chain_version 2: SHA-256 over the row and subject_sha256 (no audit key configured)
--   chain_version 3: HMAC-SHA256 under store.audit_key over the row and subject_sha256
-- subject_sha256: for an event that records a session's content (session_seen,
-- session_updated) the hash of that sessions row as stored; for delivery_enqueued the hash
-- of the deliveries row (sink, ticket, session, kind, marker and the exact note_json).
-- `ticketsync audit verify` recomputes it from the current row and compares with the
-- latest event about that row. The columns are added, not rewritten: the append-only
-- triggers stay, and no existing row changes.
ALTER TABLE audit_events ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit_events ADD COLUMN subject_sha256 TEXT;
-- verify finds each delivery's events through this (sessions have audit_events_session).
-- Partial: the events about no delivery (most of them) cost no index entry at ingest.
CREATE INDEX audit_events_delivery ON audit_events (delivery_id) WHERE delivery_id IS NOT NULL;
-- The view for re-checking a copy gains the two columns the hash of rows 2 and 3 covers
-- (appended: the existing columns keep their names and order).
DROP VIEW v_audit_chain;
CREATE VIEW v_audit_chain AS
SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash,
       chain_version, subject_sha256
FROM audit_events;
