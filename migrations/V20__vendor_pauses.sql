-- The vendor kill switch: an operator stops every function calling a vendor (the whole fleet, or
-- one tenant's work) until resumed or until a given time. The stages read the active pauses
-- before a batch's paid calls (`shared::vendors::pauses`); a batch that would call a paused
-- vendor waits on its queue instead, reserving no budget.
CREATE TABLE vendor_pauses (
    id          uuid PRIMARY KEY,
    vendor      text NOT NULL CHECK (vendor IN ('yelp', 'places', 'pagespeed', 'openai', 'sendgrid', 'stripe', 'slack')),
    -- NULL: every tenant (an operator's pause, `leadfactory vendor pause`).
    tenant_id   uuid REFERENCES tenants(id) ON DELETE CASCADE,
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    -- Who paused it: 'cli:<os user>' or 'api:<key prefix>'.
    paused_by   text NOT NULL,
    paused_at   timestamptz NOT NULL DEFAULT now(),
    -- It ends by itself at this time, if set.
    until       timestamptz,
    resumed_at  timestamptz,
    resumed_by  text
);
-- At most one open pause per vendor and scope: pausing again changes its reason and end.
CREATE UNIQUE INDEX vendor_pauses_one_open ON vendor_pauses
    (vendor, coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)) WHERE resumed_at IS NULL;

-- A tenant sees and changes its own pauses and sees the fleet's; the operators' roles (not
-- members of leadfactory_app) see and change every pause.
ALTER TABLE vendor_pauses ENABLE ROW LEVEL SECURITY;
ALTER TABLE vendor_pauses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vendor_pauses USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY fleet_read ON vendor_pauses FOR SELECT USING (tenant_id IS NULL);
CREATE POLICY operator_all ON vendor_pauses
    USING (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'))
    WITH CHECK (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'));
GRANT SELECT, INSERT, UPDATE ON vendor_pauses TO leadfactory_app;

-- What the stages' per-container cache reads, for every tenant at once: the open pauses that
-- have not run out. Holds no personal data.
CREATE FUNCTION active_vendor_pauses()
    RETURNS TABLE (vendor text, tenant_id uuid, reason text, paused_at timestamptz, until timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT vendor, tenant_id, reason, paused_at, until FROM vendor_pauses
          WHERE resumed_at IS NULL AND (until IS NULL OR until > now()) $$;
REVOKE EXECUTE ON FUNCTION active_vendor_pauses() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION active_vendor_pauses() TO leadfactory_app;

