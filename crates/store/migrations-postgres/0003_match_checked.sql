-- As migrations/0003_match_checked.sql: on a new database these touch no row; the version
-- exists so that both dialects count their schema the same way.
UPDATE sessions SET match_checked_rev = NULL WHERE match_checked_rev < revision;
UPDATE sessions SET match_checked_rev = revision
WHERE match_checked_rev IS NULL AND id IN (SELECT session_id FROM matches);
