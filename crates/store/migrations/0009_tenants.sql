-- Tenants (issue 17, point 3): a managed service provider's customer companies, each with
-- its own vendor accounts and ticket systems, in one store. Every row of the work names its
-- tenant; rows written before tenants existed, and every row of a configuration without
-- `[[tenants]]`, belong to the tenant 'default'. Additive: no existing column, key or view
-- changes, so the default tenant's rows, markers and audit hashes stay what they were.
--
-- What is keyed by name rather than by row (a source's cursor, an OAuth token, a lease)
-- carries the tenant in its key instead: `<tenant>/<key>`, unchanged for 'default'.
--
-- The store reads and writes the work of one tenant at a time (a tenant-scoped handle), so a
-- session is only ever matched against its own tenant's links and its notes only queued for,
-- claimed by and delivered to its own tenant's sinks. (sessions keeps UNIQUE (vendor,
-- external_id): a vendor id already stored for another tenant is refused, not updated.)
ALTER TABLE sessions ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE ticket_links ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE matches ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE deliveries ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE audit_events ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE quarantine ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';

-- A tenant's links by code (the matcher's look-up), its sessions by code and start.
CREATE INDEX ticket_links_tenant_code ON ticket_links (tenant, session_code_norm);
CREATE INDEX sessions_tenant_started ON sessions (tenant, vendor, started_at);
