-- The matching pass now reads only the sessions waiting for it, through the partial index
-- sessions_to_match (ended_at IS NOT NULL AND match_checked_rev IS NULL). A session the
-- vendor changed after it was examined used to be found by match_checked_rev < revision,
-- which only a scan of the whole table answers; its mark is now cleared when it changes.
-- Matched sessions are marked examined too, so they leave the index. No history changes:
-- this is the matcher's bookkeeping, not audit data.
UPDATE sessions SET match_checked_rev = NULL WHERE match_checked_rev < revision;
UPDATE sessions SET match_checked_rev = revision
WHERE match_checked_rev IS NULL AND id IN (SELECT session_id FROM matches);
