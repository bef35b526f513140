-- Pipeline details found while building the stages.

-- A business found to be a second listing of another (same website domain seen at enrichment).
ALTER TABLE businesses ADD COLUMN duplicate_of uuid REFERENCES businesses(id) ON DELETE SET NULL;
ALTER TABLE businesses ADD CONSTRAINT businesses_not_own_duplicate CHECK (duplicate_of IS DISTINCT FROM id);

-- Which tiers a campaign contacts.
ALTER TABLE campaigns ADD COLUMN qualify_tiers text[] NOT NULL DEFAULT '{A,B}'
    CHECK (qualify_tiers <@ ARRAY['A', 'B', 'C', 'D']::text[] AND cardinality(qualify_tiers) > 0);

-- Runs are finalised once; which stages a run reached is read from its events.
CREATE INDEX run_event_logs_run_event ON run_event_logs (run_id, event);
CREATE INDEX processed_messages_pending ON processed_messages (tenant_id, stage) WHERE status = 'in_progress';
