-- As migrations/0008_leases.sql: leases with fencing tokens (issue 17), a row per lease name,
-- held by one instance until `expires_at_ms` (Unix milliseconds); `token` grows by one each
-- time the lease changes hands. Not audit history: updated in place, in no view.
CREATE TABLE leases (
    name          TEXT COLLATE "C" PRIMARY KEY,
    holder        TEXT COLLATE "C" NOT NULL,
    token         BIGINT NOT NULL,
    acquired_at   TEXT COLLATE "C" NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
