-- Targeting goes deeper each night: one cursor per (campaign, location, category) holds the next
-- Yelp offset to ask for, advanced in the transaction that stores the night's expansion.
-- `known_total` is Yelp's `total` for the search, as sourcing last saw it; an area is exhausted
-- when its cursor reaches the smaller of that and Yelp's depth cap (240).
CREATE TABLE targeting_cursors (
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    campaign_id   uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    location      text NOT NULL,
    category      text NOT NULL,
    next_offset   integer NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    known_total   integer CHECK (known_total >= 0),
    exhausted_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, location, category)
);
ALTER TABLE targeting_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE targeting_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON targeting_cursors USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON targeting_cursors TO leadfactory_app;
