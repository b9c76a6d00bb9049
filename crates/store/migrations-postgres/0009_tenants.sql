-- As migrations/0009_tenants.sql: the tenant on every row of the work (issue 17, point 3),
-- 'default' for the rows written before tenants and for a configuration without
-- `[[tenants]]`. Keys by name (cursors, OAuth tokens, leases) carry `<tenant>/` instead.
ALTER TABLE sessions ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE ticket_links ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE matches ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE deliveries ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE audit_events ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE quarantine ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';

CREATE INDEX ticket_links_tenant_code ON ticket_links (tenant, session_code_norm);
CREATE INDEX sessions_tenant_started ON sessions (tenant, vendor, started_at);
