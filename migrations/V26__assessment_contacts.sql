-- The addresses a homepage published, one row each, instead of an array on the assessment:
-- erasure and the subject export find an address's homepages by index. Under row-level
-- security only leakproof comparisons may use an index, and array containment is not one, so
-- a search of `contact_emails` read every assessment of the tenant (7 ms at 10k businesses,
-- 239 ms at 1M). Addresses are stored normalised, as every stored address is (V22).
CREATE TABLE assessment_contacts (
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    address       text NOT NULL CHECK (address = lower(address) AND address <> ''),
    assessment_id uuid NOT NULL REFERENCES assessments(id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, address, assessment_id)
);
-- An assessment's own addresses: the stage's replacement on a redelivery, retention's purge,
-- and the cascade when an assessment goes.
CREATE INDEX assessment_contacts_assessment ON assessment_contacts (assessment_id);

ALTER TABLE assessment_contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE assessment_contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON assessment_contacts USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON assessment_contacts TO leadfactory_app;

INSERT INTO assessment_contacts (tenant_id, address, assessment_id)
SELECT DISTINCT a.tenant_id, lower(e), a.id
FROM assessments a CROSS JOIN LATERAL unnest(a.contact_emails) e
WHERE e <> '';

ALTER TABLE assessments DROP COLUMN contact_emails;
