-- As migrations/0005_audit_evidence.sql (chain_version 1, 2, 3; subject_sha256).
ALTER TABLE audit_events ADD COLUMN chain_version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit_events ADD COLUMN subject_sha256 TEXT COLLATE "C";
CREATE INDEX audit_events_delivery ON audit_events (delivery_id) WHERE delivery_id IS NOT NULL;
DROP VIEW v_audit_chain;
CREATE VIEW v_audit_chain AS
SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash,
       chain_version, subject_sha256
FROM audit_events;
