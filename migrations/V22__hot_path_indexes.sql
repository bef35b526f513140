-- The indexes the hot paths need once a tenant holds a million businesses (issue 27; the
-- plans test, tests/tests/suite/plans.rs, runs every hot statement on a populated database and
-- refuses a sequential scan of a large table or a scan that reads tens of thousands of rows
-- to return a few). Each names the statement that reads through it.

-- The analytics roll-up counts a day's new businesses and scores by time range.
CREATE INDEX businesses_created ON businesses (tenant_id, created_at);
CREATE INDEX scores_scored ON scores (tenant_id, scored_at);
-- The QA sampler joins a run's scores to their reports and the reports to their emails;
-- experiments count each variant's emails; purchases are found by the email that sold them
-- (experiments, the recipients' side, the funnel's per-email purchase checks).
CREATE INDEX reports_score ON reports (score_id);
CREATE INDEX emails_report ON emails (report_id) WHERE report_id IS NOT NULL;
CREATE INDEX emails_variant ON emails (variant_id) WHERE variant_id IS NOT NULL;
CREATE INDEX purchases_email ON purchases (email_id) WHERE email_id IS NOT NULL;
-- Cost per lead by tier sums each lead's ledger entries.
CREATE INDEX cost_ledger_business ON cost_ledger (business_id);
-- The checkout-expiry alert counts a window's checkouts; retention clears buyers' addresses
-- past the accounting period, oldest first.
CREATE INDEX purchases_tenant_created ON purchases (tenant_id, created_at);
-- Retention walks what it still has to purge oldest first: email bodies and stored homepages.
CREATE INDEX emails_body_unpurged ON emails (tenant_id, created_at) WHERE body_purged_at IS NULL;
CREATE INDEX assessments_raw_html ON assessments (tenant_id, assessed_at) WHERE raw_html_key IS NOT NULL;

-- Row-level security lets an index serve only leakproof comparisons (a non-leakproof one could
-- reveal other tenants' rows before the policy filters them), and lower() is not leakproof: a
-- lookup by lower(column) reads the tenant's every row. So addresses are stored normalised
-- (lower-cased, as shared::domain::Email makes them), checked here, and compared with `=`.
UPDATE businesses SET email = lower(email) WHERE email <> lower(email);
ALTER TABLE businesses ADD CONSTRAINT businesses_email_normalised CHECK (email = lower(email));
UPDATE emails SET to_email = lower(to_email) WHERE to_email <> lower(to_email);
ALTER TABLE emails ADD CONSTRAINT emails_to_email_normalised CHECK (to_email = lower(to_email));
UPDATE purchases SET customer_email = lower(customer_email) WHERE customer_email <> lower(customer_email);
ALTER TABLE purchases ADD CONSTRAINT purchases_customer_email_normalised CHECK (customer_email = lower(customer_email));
CREATE INDEX purchases_customer_email ON purchases (tenant_id, customer_email) WHERE customer_email IS NOT NULL;

-- An event's recipient (SendGrid's `email`, normalised), stored beside the payload so that the
-- soft-bounce count and erasure find a recipient's events by index; cleared with the payload
-- when retention strips it.
ALTER TABLE email_events ADD COLUMN recipient text CHECK (recipient = lower(recipient));
UPDATE email_events SET recipient = lower(btrim(raw->>'email')) WHERE raw ? 'email';
CREATE INDEX email_events_recipient ON email_events (tenant_id, recipient, occurred_at) WHERE recipient IS NOT NULL;
DROP INDEX email_events_soft_bounces;
