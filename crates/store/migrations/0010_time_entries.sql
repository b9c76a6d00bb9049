-- Billable time entries (issue 20). A time entry is a delivery like a note: its row in
-- `deliveries` (kind 'time_entry', the entry as JSON in note_json, its own MAC'd marker) goes
-- through the same states, claims, fencing and marker scan. These tables say what it bills.
--
-- time_sessions: one row per session report queued for a sink (written with the report's
-- delivery, in its transaction), the session's standing towards a time entry on that sink:
--   open     not decided yet (its group of reconnects may still grow)
--   entered  counted in time_entry_id
--   skipped  no entry by policy (reason says why: a DoNotBill session under `skip`)
--   off      the sink had no time policy when the session was examined
-- A session is counted in one entry per sink at most: the state moves once from 'open'.
CREATE TABLE time_entries (
    id              INTEGER PRIMARY KEY,
    delivery_id     INTEGER NOT NULL UNIQUE REFERENCES deliveries (id),
    sink            TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    vendor          TEXT NOT NULL,
    session_code    TEXT,                   -- the group's session code as the vendor wrote it
    first_session_id INTEGER NOT NULL REFERENCES sessions (id),
    sessions        INTEGER NOT NULL,       -- how many sessions (reconnects) the entry covers
    started_at      TEXT NOT NULL,          -- first session's start
    ended_at        TEXT NOT NULL,          -- last session's end
    raw_seconds     INTEGER NOT NULL,       -- time in the sessions, gaps not counted
    minutes         INTEGER NOT NULL,       -- billed minutes, rounded by the sink's policy
    billable        INTEGER NOT NULL CHECK (billable IN (0, 1)),
    technician      TEXT,                   -- as the vendor named them
    ticket_user     TEXT,                   -- the ticket system's user it is for (NULL: the API user, or found by e-mail at send)
    created_at      TEXT NOT NULL
);
CREATE INDEX time_entries_started ON time_entries (started_at);

CREATE TABLE time_sessions (
    report_id       INTEGER PRIMARY KEY REFERENCES deliveries (id),
    sink            TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    session_id      INTEGER NOT NULL REFERENCES sessions (id),
    state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'entered', 'skipped', 'off')),
    time_entry_id   INTEGER REFERENCES time_entries (id),
    reason          TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX time_sessions_open ON time_sessions (sink, ticket_id) WHERE state = 'open';
CREATE INDEX time_sessions_session ON time_sessions (session_id);

-- For billing clerks: one row per time entry, with its delivery's state.
CREATE VIEW v_time_entries AS
SELECT t.id AS time_entry_id, t.delivery_id, t.sink, t.ticket_id, t.vendor, t.session_code,
       s.external_id, t.sessions, t.started_at, t.ended_at,
       t.raw_seconds, t.raw_seconds / 60.0 AS minutes_raw, t.minutes AS minutes_billed,
       t.billable, t.technician, t.ticket_user,
       d.state, d.last_error, d.remote_ref, d.delivered_at, t.created_at
FROM time_entries t
JOIN deliveries d ON d.id = t.delivery_id
JOIN sessions s ON s.id = t.first_session_id;
