-- As migrations/0004_marker_key.sql: keys every instance sharing this store agrees on.
CREATE TABLE store_secrets (
    name        TEXT COLLATE "C" PRIMARY KEY,
    value       BYTEA NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);
