-- As migrations/0007_page_audit_rows.sql: one `sessions_seen` audit row per 100 first-seen
-- sessions, whose detail lists [session id, external_id, session_code, ended,
-- subject_sha256] for each; sessions.seen_event_id names that row. The views show each
-- listed session as the `session_seen` event it replaces, with the same detail text SQLite's
-- json_object writes ({"ended":true,"external_id":"…","session_code":"…"}, no spaces).
ALTER TABLE sessions ADD COLUMN seen_event_id BIGINT;

-- The detail of a page entry shown as a `session_seen` event.
CREATE FUNCTION session_seen_detail(e jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"ended":' || CASE WHEN (e ->> 3)::boolean THEN 'true' ELSE 'false' END
        || ',"external_id":' || COALESCE(to_json(e ->> 1)::text, 'null')
        || ',"session_code":' || COALESCE(to_json(e ->> 2)::text, 'null') || '}'
$$;

CREATE VIEW v_session_events AS
SELECT a.session_id, a.id AS event_id, a.at, a.kind, a.vendor, a.ticket_id, a.delivery_id, a.detail_json,
       a.subject_sha256
FROM audit_events a WHERE a.session_id IS NOT NULL
UNION ALL
SELECT sid, aid, at, 'session_seen', vendor, NULL, NULL, session_seen_detail(e) COLLATE "C", (e ->> 4) COLLATE "C"
FROM (SELECT s.id AS sid, a.id AS aid, a.at, a.vendor,
             (a.detail_json::jsonb -> 'sessions') -> (s.id - ((a.detail_json::jsonb #>> '{sessions,0,0}')::bigint))::int AS e
      FROM sessions s JOIN audit_events a ON a.id = s.seen_event_id AND a.kind = 'sessions_seen') p
WHERE (e ->> 0)::bigint = sid;

DROP VIEW v_ticket_history;
CREATE VIEW v_ticket_history AS
SELECT m.ticket_id AS ticket_id, a.id AS event_id, a.at, a.kind, a.vendor, a.session_id, a.delivery_id, a.detail_json
FROM audit_events a JOIN matches m ON m.session_id = a.session_id
UNION
SELECT ticket_id, aid, at, 'session_seen', vendor, sid, NULL, session_seen_detail(e) COLLATE "C"
FROM (SELECT m.ticket_id, s.id AS sid, a.id AS aid, a.at, a.vendor,
             (a.detail_json::jsonb -> 'sessions') -> (s.id - ((a.detail_json::jsonb #>> '{sessions,0,0}')::bigint))::int AS e
      FROM matches m JOIN sessions s ON s.id = m.session_id
      JOIN audit_events a ON a.id = s.seen_event_id AND a.kind = 'sessions_seen') p
WHERE (e ->> 0)::bigint = sid
UNION
SELECT a.ticket_id, a.id, a.at, a.kind, a.vendor, a.session_id, a.delivery_id, a.detail_json
FROM audit_events a WHERE a.ticket_id IS NOT NULL;

DROP VIEW v_audit;
CREATE VIEW v_audit AS
SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json FROM audit_events
WHERE kind <> 'sessions_seen'
UNION ALL
SELECT a.id, a.at, 'session_seen', a.vendor, (e.value ->> 0)::bigint, NULL, NULL, session_seen_detail(e.value) COLLATE "C"
FROM audit_events a CROSS JOIN LATERAL jsonb_array_elements(a.detail_json::jsonb -> 'sessions') AS e(value)
WHERE a.kind = 'sessions_seen';
