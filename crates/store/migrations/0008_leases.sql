-- Leases (issue 17): work only one instance may do at a time, such as polling one source
-- account, when several instances share one database. A row per lease name, held by one
-- instance (`holder`, its instance id) until `expires_at_ms` (Unix milliseconds, the
-- holder's clock: instances need synchronised clocks, and a TTL far above their skew).
--
-- `token` is the fencing token: it grows by one every time the lease changes hands (or is
-- taken again after it expired), never otherwise. The holder's writes of the guarded work
-- (a source's cursor, with its page) check and extend the lease in their own transaction,
-- naming the token they were granted; once another instance has taken over, the token
-- differs and the write fails, so an instance that lost its lease (paused, partitioned,
-- slower than the TTL) cannot write a page after the new holder started.
--
-- Not audit history: a lease says who works now, not what happened, so it is updated in
-- place and in no view.
CREATE TABLE leases (
    name          TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    token         INTEGER NOT NULL,
    acquired_at   TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
