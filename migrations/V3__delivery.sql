-- Delivery, fulfilment and the storefront.

-- When the send was claimed: a row still `sending` long after this was cut off mid-send and
-- is parked as `unknown`; a recent one is in flight in another invocation.
ALTER TABLE emails ADD COLUMN sending_at timestamptz;
-- The purchase a fulfilment email delivers; one fulfilment email per purchase.
ALTER TABLE emails ADD COLUMN purchase_id uuid REFERENCES purchases(id) ON DELETE SET NULL;
CREATE UNIQUE INDEX emails_one_fulfilment_per_purchase ON emails (purchase_id) WHERE kind = 'fulfilment';
ALTER TABLE emails ADD CONSTRAINT emails_fulfilment_has_purchase CHECK (kind <> 'fulfilment' OR purchase_id IS NOT NULL);
-- Queued outreach, for the daily backlog release.
CREATE INDEX emails_queued ON emails (tenant_id, created_at) WHERE send_state = 'queued';
