-- Retention clears the scraped contact lists of every business never written to once it was
-- last seen long enough ago, whether or not an outreach address was chosen for it: the purge
-- finds those businesses by age through this index (V18's covers only those with an address).
CREATE INDEX businesses_last_seen ON businesses (tenant_id, last_seen_at);
