-- Secrets that belong to the database rather than to one host: every instance sharing this
-- store must agree on them. First use: `marker` (issue 14), the key of the notes' marker MAC,
-- generated at first start unless `notes.marker_key` is configured. A general table so that
-- other store-held keys can be added by name. Not part of the audit history, not exported.
CREATE TABLE store_secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
