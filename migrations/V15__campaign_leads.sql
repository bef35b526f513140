-- De-duplication is about the business; eligibility is per campaign. A business found by
-- campaign A is handed on for an overlapping campaign B too (once per 30 days per campaign):
-- sourcing records here each (campaign, business) it hands on, in the transaction that stores
-- the page, and asks here whether a known business was handed on for this campaign lately.
CREATE TABLE campaign_leads (
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    business_id  uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    campaign_id  uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    run_id       uuid REFERENCES runs(id) ON DELETE SET NULL,
    handed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, campaign_id)
);
CREATE INDEX campaign_leads_campaign ON campaign_leads (tenant_id, campaign_id, handed_at);
ALTER TABLE campaign_leads ENABLE ROW LEVEL SECURITY;
ALTER TABLE campaign_leads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON campaign_leads USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON campaign_leads TO leadfactory_app;

-- What was handed on before: each business for the campaign that found it, when it was last
-- worked on.
INSERT INTO campaign_leads (tenant_id, business_id, campaign_id, run_id, handed_at)
SELECT b.tenant_id, b.id, b.campaign_id, b.first_run_id,
       coalesce(greatest((SELECT max(a.assessed_at) FROM assessments a WHERE a.business_id = b.id),
                         (SELECT e.enriched_at FROM enrichments e WHERE e.business_id = b.id)), b.created_at)
FROM businesses b WHERE b.campaign_id IS NOT NULL
ON CONFLICT DO NOTHING;
