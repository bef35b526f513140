-- Domain events (docs/events/): each is recorded in the transaction that makes its fact true and
-- published to the EventBridge bus after that transaction commits; a delivery that stopped in
-- between publishes it on its redelivery, and the alerts function's sweep publishes whatever is
-- still waiting. `id` is the event's own id (consumers dedupe by it): derived from the fact, so
-- recording the same fact again is a no-op.
CREATE TABLE domain_events (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    detail_type  text NOT NULL CHECK (detail_type IN ('RunFinished', 'PurchasePaid', 'PurchaseRefunded', 'AlertRaised', 'CampaignExhausted')),
    detail       jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    publish_attempts integer NOT NULL DEFAULT 0 CHECK (publish_attempts >= 0),
    last_publish_error text
);
-- What is waiting, oldest first, per tenant (a function's flush) and overall (the sweep).
CREATE INDEX domain_events_unpublished ON domain_events (tenant_id, occurred_at) WHERE published_at IS NULL;
-- Retention by age, per tenant.
CREATE INDEX domain_events_occurred ON domain_events (tenant_id, occurred_at);

-- The events a consumer has acted on, so a re-sent event changes nothing.
CREATE TABLE consumed_events (
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    consumed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX consumed_events_at ON consumed_events (tenant_id, consumed_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['domain_events', 'consumed_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant()) '
            'WITH CHECK (tenant_id = app_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO leadfactory_app', t);
    END LOOP;
END
$$;

-- `run_finish` (V6), recording `RunFinished` with the run's new status in the same statement
-- that sets it: every path that finishes a run (a stage's last batch, targeting's empty night,
-- the idle check, a dead letter's end) passes here, and a run finalised again (a redrive ended
-- its dead messages) is a new event. The detail is `shared::events::RunFinished`.
CREATE OR REPLACE FUNCTION run_finish(p_run uuid, p_stalled boolean) RETURNS text
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    v_status text;
    v_run runs%ROWTYPE;
    v_event uuid := gen_random_uuid();
BEGIN
    INSERT INTO run_stage_stats AS s (run_id, tenant_id, stage, total, success, errors, skipped, p50_ms, p95_ms, p99_ms)
    SELECT run_id, tenant_id, stage, count(*), count(*) FILTER (WHERE status = 'ok'),
           count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE status = 'skipped'),
           percentile_cont(0.50) WITHIN GROUP (ORDER BY duration_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)
    -- One sample per processed message; detail events and markers carry no duration.
    FROM run_event_logs WHERE run_id = p_run AND duration_ms IS NOT NULL
    GROUP BY run_id, tenant_id, stage
    ON CONFLICT (run_id, stage) DO UPDATE SET total = EXCLUDED.total, success = EXCLUDED.success,
       errors = EXCLUDED.errors, skipped = EXCLUDED.skipped, p50_ms = EXCLUDED.p50_ms,
       p95_ms = EXCLUDED.p95_ms, p99_ms = EXCLUDED.p99_ms, updated_at = now();
    v_status := CASE
        WHEN p_stalled THEN 'stalled'
        WHEN NOT EXISTS (SELECT 1 FROM run_work w WHERE w.run_id = p_run AND w.state = 'dead') THEN 'succeeded'
        WHEN EXISTS (SELECT 1 FROM run_event_logs l WHERE l.run_id = p_run AND l.status = 'ok') THEN 'partial'
        ELSE 'failed'
    END;
    UPDATE runs SET status = v_status, finished_at = now(),
        stats = (SELECT coalesce(jsonb_object_agg(stage, jsonb_build_object('total', total, 'errors', errors, 'skipped', skipped)), '{}')
                 FROM run_stage_stats WHERE run_id = p_run)
    WHERE id = p_run
    RETURNING * INTO v_run;
    IF FOUND THEN
        INSERT INTO domain_events (id, tenant_id, detail_type, detail, occurred_at)
        VALUES (v_event, v_run.tenant_id, 'RunFinished', jsonb_build_object(
            'version', 1, 'event_id', v_event, 'tenant_id', v_run.tenant_id,
            'occurred_at', v_run.finished_at, 'run_id', v_run.id, 'kind', v_run.kind,
            'status', v_run.status, 'run_date', v_run.run_date, 'started_at', v_run.started_at,
            'finished_at', v_run.finished_at, 'stages', v_run.stats), v_run.finished_at);
    END IF;
    RETURN v_status;
END
$$;
