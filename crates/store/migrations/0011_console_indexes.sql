-- The web console (issue 21) reads a session's deliveries on its page and searches sessions
-- by code or technician across every vendor: without these, each is a scan of the whole
-- table (a million sessions: seconds). Indexes only; no row changes.
CREATE INDEX deliveries_session ON deliveries (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX sessions_code_any ON sessions (session_code_norm);
CREATE INDEX sessions_technician ON sessions (technician);
