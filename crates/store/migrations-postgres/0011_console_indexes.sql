-- As migrations/0011_console_indexes.sql: the console's session page and search (issue 21).
CREATE INDEX deliveries_session ON deliveries (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX sessions_code_any ON sessions (session_code_norm);
CREATE INDEX sessions_technician ON sessions (technician);
