-- ticketsync core schema. Timestamps are UTC RFC 3339 text with milliseconds and a
-- trailing Z ("2024-04-16T20:45:02.000Z"): fixed width, so text order is time order.

-- Sessions as the vendors reported them, one row per (vendor, external_id).
CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    vendor          TEXT NOT NULL,
    external_id     TEXT NOT NULL,          -- vendor's report id (TeamViewer: lower-cased GUID)
    session_code    TEXT,                   -- as the vendor wrote it, e.g. s119-457-589
    session_code_norm TEXT,                 -- lower case, no dashes or spaces
    technician      TEXT,
    technician_id   TEXT,
    device          TEXT,
    device_id       TEXT,
    group_name      TEXT,
    started_at      TEXT NOT NULL,
    ended_at        TEXT,                   -- NULL while the session is running
    duration_s      INTEGER,
    notes           TEXT,
    description     TEXT,                   -- service-case description / session note
    custom_api      TEXT,                   -- vendor join key field (TeamViewer custom_api)
    customer_name   TEXT,
    customer_email  TEXT,
    raw_json        TEXT NOT NULL,          -- the vendor's record exactly as received
    content_hash    TEXT NOT NULL,          -- sha256 of raw_json, to detect vendor-side changes
    revision        INTEGER NOT NULL DEFAULT 1,
    first_seen_at   TEXT NOT NULL,
    last_seen_at    TEXT NOT NULL,
    last_walk_id    TEXT,                   -- the poll walk that last returned the record
    vanished_at     TEXT,                   -- the vendor stopped returning it (deleted report)
    match_checked_rev INTEGER,              -- revision the matcher last evaluated without a match
    UNIQUE (vendor, external_id)
);
CREATE INDEX sessions_code ON sessions (vendor, session_code_norm);
CREATE INDEX sessions_open ON sessions (vendor, started_at) WHERE ended_at IS NULL;
CREATE INDEX sessions_started ON sessions (vendor, started_at);
CREATE INDEX sessions_to_match ON sessions (id) WHERE ended_at IS NOT NULL AND match_checked_rev IS NULL;
-- (match_checked_rev < revision rows are rare: a vendor-side change after examination.)

-- Where each source stopped: committed with every page.
CREATE TABLE source_cursors (
    source          TEXT PRIMARY KEY,
    cursor_json     TEXT NOT NULL,
    last_poll_at    TEXT,
    last_success_at TEXT,
    last_error      TEXT,
    updated_at      TEXT NOT NULL
);

-- Records that could not be parsed: kept with the reason, never silently dropped.
CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    external_id     TEXT,
    reason          TEXT NOT NULL,
    raw             TEXT NOT NULL,
    received_at     TEXT NOT NULL
);

-- Ticket links: a session created for a ticket (its code), or a manual link.
CREATE TABLE ticket_links (
    id              INTEGER PRIMARY KEY,
    vendor          TEXT NOT NULL,
    session_code    TEXT NOT NULL,
    session_code_norm TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('created', 'manual')),
    details_json    TEXT,                   -- links returned by the vendor (no secrets)
    created_at      TEXT NOT NULL,
    created_by      TEXT
);
CREATE INDEX ticket_links_code ON ticket_links (session_code_norm);

-- The match of a session to a ticket and the rule that decided it.
CREATE TABLE matches (
    session_id      INTEGER PRIMARY KEY REFERENCES sessions (id),
    ticket_id       TEXT NOT NULL,
    rule            TEXT NOT NULL,          -- custom_api | session_code | notes_regex | manual
    rule_detail     TEXT,
    matched_at      TEXT NOT NULL
);
CREATE INDEX matches_ticket ON matches (ticket_id);

-- The outbox: one row per note per sink.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    sink            TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    session_id      INTEGER REFERENCES sessions (id),
    link_id         INTEGER REFERENCES ticket_links (id),
    kind            TEXT NOT NULL,          -- session_report | session_links | customer_link
    marker          TEXT NOT NULL,
    note_json       TEXT NOT NULL,          -- the vendor-neutral note, fixed at enqueue time
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'delivered', 'failed', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    remote_ref      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    delivered_at    TEXT,
    UNIQUE (sink, marker)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_ticket ON deliveries (ticket_id);

-- Every attempt at a delivery and its outcome.
CREATE TABLE delivery_attempts (
    id              INTEGER PRIMARY KEY,
    delivery_id     INTEGER NOT NULL REFERENCES deliveries (id),
    attempt         INTEGER NOT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    outcome         TEXT,                   -- delivered | found_existing | retry | ambiguous | failed | dead | interrupted
    detail          TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

-- OAuth tokens, encrypted with a key derived from the client secret (never in clear).
CREATE TABLE oauth_tokens (
    provider        TEXT PRIMARY KEY,
    access_token_enc  TEXT,
    refresh_token_enc TEXT,
    access_expires_at TEXT,
    refresh_expires_at TEXT,
    updated_at      TEXT NOT NULL,
    generation      INTEGER NOT NULL DEFAULT 1
);

-- Pending OAuth authorization requests (state parameter check).
CREATE TABLE oauth_states (
    state           TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    created_at      TEXT NOT NULL
);

-- Append-only history. Each row chains to the previous one by SHA-256 so edits,
-- deletions and reordering are detectable.
CREATE TABLE audit_events (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    kind            TEXT NOT NULL,
    vendor          TEXT,
    session_id      INTEGER REFERENCES sessions (id),
    ticket_id       TEXT,
    delivery_id     INTEGER REFERENCES deliveries (id),
    detail_json     TEXT NOT NULL DEFAULT '{}',
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX audit_events_ticket ON audit_events (ticket_id);
CREATE INDEX audit_events_session ON audit_events (session_id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- Views for auditors.
CREATE VIEW v_sessions_by_ticket AS
SELECT m.ticket_id, s.vendor, s.external_id, s.session_code, s.technician, s.device,
       s.group_name, s.started_at, s.ended_at, s.duration_s, m.rule, m.rule_detail, m.matched_at
FROM matches m JOIN sessions s ON s.id = m.session_id;

CREATE VIEW v_deliveries AS
SELECT d.id AS delivery_id, d.sink, d.ticket_id, d.kind, d.marker, d.state, d.attempts,
       d.last_error, d.remote_ref, d.created_at, d.delivered_at,
       s.vendor, s.external_id, s.session_code
FROM deliveries d LEFT JOIN sessions s ON s.id = d.session_id;

CREATE VIEW v_delivery_attempts AS
SELECT a.delivery_id, d.sink, d.ticket_id, a.attempt, a.started_at, a.finished_at, a.outcome, a.detail
FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id;

CREATE VIEW v_unmatched AS
SELECT s.id AS session_id, s.vendor, s.external_id, s.session_code, s.technician, s.device,
       s.started_at, s.ended_at, s.notes, s.description
FROM sessions s LEFT JOIN matches m ON m.session_id = s.id
WHERE m.session_id IS NULL AND s.vanished_at IS NULL;

CREATE VIEW v_quarantine AS
SELECT id, source, external_id, reason, received_at, raw FROM quarantine;

CREATE VIEW v_audit AS
SELECT id, at, kind, vendor, session_id, ticket_id, delivery_id, detail_json FROM audit_events;
