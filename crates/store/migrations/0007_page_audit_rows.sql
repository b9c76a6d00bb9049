-- One audit row per 100 first-seen sessions of a page (issue 15, point 3). Ingest used to write a
-- `session_seen` row per new session: 54 MB of a 189 MB database at 100k records, a
-- quarter of the bytes ingest wrote (BENCHMARKS.md, session 6). Now the sessions a page
-- stores for the first time are recorded by `sessions_seen` rows (one per 100) whose detail
-- lists, for each of them, [session id, external_id, session_code, ended, subject_sha256]: one
-- chain link per 100 sessions (not per page: the views read one session's entry out of its
-- row, a cost that grows with the row), and the row hash covers every record's subject, so `audit verify`
-- still checks each session against what was recorded when it was first seen.
--
-- Additive: existing `session_seen` rows stay and verify as before (their chain_version is
-- unchanged, and so is the row hash scheme); a database may hold both kinds.
--
-- seen_event_id: the `sessions_seen` row that lists the session (NULL for sessions seen
-- before this migration, which have their own `session_seen` row). A locator only, not
-- evidence: `audit verify` checks that the row it names is a `sessions_seen` row listing
-- this session, so pointing it elsewhere is reported. It lets the views find a session's
-- page row through the primary key instead of searching every page. No REFERENCES clause:
-- the sessions are inserted before their page row, in the same transaction.
ALTER TABLE sessions ADD COLUMN seen_event_id INTEGER;

-- A session's entry in its page row is found by position: a page row lists sessions with
-- consecutive ids in id order (they are inserted with explicit ids max(id) + 1, + 2, …),
-- so session s is entry s.id − (the first entry's id). json_extract keeps the last parsed
-- documents of a statement, so reading a page's sessions one after another parses it once
-- (json_each would parse the whole page again for every session). An entry that does not
-- name the session is not shown (`audit verify` does not rely on this, it reads the list).

-- The events of each session, one row per event and session: its own rows (session_id set)
-- and its entry in the page row that first recorded it, shown as the `session_seen` event
-- it replaces, with the same detail as before ({"ended", "external_id", "session_code"}).
-- Query it by session_id (each branch then reads one session's rows and one page row).
CREATE VIEW v_session_events AS
SELECT a.session_id, a.id AS event_id, a.at, a.kind, a.vendor, a.ticket_id, a.delivery_id, a.detail_json,
       a.subject_sha256
FROM audit_events a WHERE a.session_id IS NOT NULL
UNION ALL
SELECT sid, aid, at, 'session_seen', vendor, NULL, NULL,
       json_object('ended', json(CASE WHEN e ->> 3 THEN 'true' ELSE 'false' END),
                   'external_id', e ->> 1, 'session_code', e ->> 2),
       e ->> 4
FROM (SELECT s.id AS sid, a.id AS aid, a.at, a.vendor,
             json_extract(a.detail_json, '$.sessions[' || (s.id - json_extract(a.detail_json, '$.sessions[0][0]')) || ']') AS e
      FROM sessions s JOIN audit_events a ON a.id = s.seen_event_id AND a.kind = 'sessions_seen')
WHERE e ->> 0 = sid;

-- Everything that happened to a ticket, as before: events naming the ticket, and the events
-- of the sessions matched to it, page entries included (as `session_seen`).
DROP VIEW v_ticket_history;
CREATE VIEW v_ticket_history AS
SELECT m.ticket_id AS ticket_id, a.id AS event_id, a.at, a.kind, a.vendor, a.session_id, a.delivery_id, a.detail_json
FROM audit_events a JOIN matches m ON m.session_id = a.session_id
UNION
SELECT ticket_id, aid, at, 'session_seen', vendor, sid, NULL,
       json_object('ended', json(CASE WHEN e ->> 3 THEN 'true' ELSE 'false' END),
                   'external_id', e ->> 1, 'session_code', e ->> 2)
FROM (SELECT m.ticket_id, s.id AS sid, a.id AS aid, a.at, a.vendor,
             json_extract(a.detail_json, '$.sessions[' || (s.id - json_extract(a.detail_json, '$.sessions[0][0]')) || ']') AS e
      FROM matches m JOIN sessions s ON s.id = m.session_id
      JOIN audit_events a ON a.id = s.seen_event_id AND a.kind = 'sessions_seen')
WHERE e ->> 0 = sid
UNION
SELECT a.ticket_id, a.id, a.at, a.kind, a.vendor, a.session_id, a.delivery_id, a.detail_json
FROM audit_events a WHERE a.ticket_id IS NOT NULL;

-- The history without the hash columns, one row per event as before: a page row appears as
-- one `session_seen` row per session it lists (with that session's id and detail, and the
-- page row's id), every other row as it is. v_audit_chain keeps the rows as stored.
DROP VIEW v_audit;
CREATE VIEW v_audit AS
SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json FROM audit_events
WHERE kind <> 'sessions_seen'
UNION ALL
SELECT a.id, a.at, 'session_seen', a.vendor, e.value ->> 0, NULL, NULL,
       json_object('ended', json(CASE WHEN e.value ->> 3 THEN 'true' ELSE 'false' END),
                   'external_id', e.value ->> 1, 'session_code', e.value ->> 2)
FROM audit_events a JOIN json_each(a.detail_json, '$.sessions') e
WHERE a.kind = 'sessions_seen';
