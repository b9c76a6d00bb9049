-- Views auditors and operators asked for (issue 6), as migrations/0002_auditor_views.sql.

CREATE VIEW v_ticket_history AS
SELECT m.ticket_id AS ticket_id, a.id AS event_id, a.at, a.kind, a.vendor, a.session_id, a.delivery_id, a.detail_json
FROM audit_events a JOIN matches m ON m.session_id = a.session_id
UNION
SELECT a.ticket_id, a.id, a.at, a.kind, a.vendor, a.session_id, a.delivery_id, a.detail_json
FROM audit_events a WHERE a.ticket_id IS NOT NULL;

CREATE VIEW v_outbox_summary AS
SELECT sink, state, COUNT(*) AS deliveries, MIN(created_at) AS oldest_created_at, MAX(updated_at) AS last_change_at
FROM deliveries GROUP BY sink, state;

CREATE VIEW v_source_health AS
SELECT source, last_poll_at, last_success_at, last_error, updated_at FROM source_cursors;

CREATE VIEW v_audit_chain AS
SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json, prev_hash, hash FROM audit_events;
