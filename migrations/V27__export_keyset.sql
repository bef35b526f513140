-- The ops API's CSV exports page by (creation time, id) within the tenant, so a page reads the
-- heap in the order it was written instead of walking random UUIDs (docs/performance.md: a page
-- of leads at 1M businesses read rows scattered over the whole table). Each index replaces the
-- (tenant, time) index it extends; the roll-ups and retention that read those still can.
DROP INDEX businesses_created;
CREATE INDEX businesses_created ON businesses (tenant_id, created_at, id);
CREATE INDEX emails_created ON emails (tenant_id, created_at, id);
DROP INDEX purchases_tenant_created;
CREATE INDEX purchases_tenant_created ON purchases (tenant_id, created_at, id);
DROP INDEX cost_ledger_tenant_time;
CREATE INDEX cost_ledger_tenant_time ON cost_ledger (tenant_id, occurred_at, id);

-- The owner's read policies (V1, V8) were permissive policies for every role outside
-- leadfactory_app, so an application role's rows of these tables were `tenant_id = … OR NOT
-- pg_has_role(…)`: the OR kept the tenant out of the index condition, and a tenant's page of
-- purchases read the whole table. The definer functions that need them run as the tables'
-- owner, and the operators' roles bypass row-level security, so the policies name the owner.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'reports', 'tenants', 'purchases'] LOOP
        EXECUTE format('DROP POLICY owner_read ON %I', t);
        EXECUTE format('CREATE POLICY owner_read ON %I FOR SELECT TO %I USING (true)', t,
            (SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = t));
    END LOOP;
END $$;
