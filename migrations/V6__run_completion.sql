-- Run completion without a driver: every message a run has put on a queue and not yet ended is
-- a `run_work` row, written in the same transactions that record next hops and mark messages
-- processed. A message that ends in its dead-letter queue stays as `dead`. When a run has no
-- `pending` row left, the function that ended its last message finalises it; a run whose work
-- stops moving is finalised `stalled` by the scheduled check (the alerts function).

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'partial', 'stalled'));

CREATE TABLE run_work (
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    run_id      uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    -- The queue the message waits on (its consuming stage's input queue) and its idempotency key.
    queue       text NOT NULL,
    key         text NOT NULL,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    -- Why a dead message failed (the last error), for the run's record.
    reason      text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, queue, key)
);
CREATE INDEX run_work_pending ON run_work (run_id) WHERE state = 'pending';

ALTER TABLE run_work ENABLE ROW LEVEL SECURITY;
ALTER TABLE run_work FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON run_work USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON run_work TO leadfactory_app;

-- Finalises one run (whose row the caller has locked): per-stage counts and p50/p95/p99 from
-- the run's latency samples, then the status: `stalled` when asked, `succeeded` when no message
-- ended dead, `partial` when some did but others succeeded, `failed` when nothing succeeded.
-- Runs as the caller (RLS applies); idempotent.
CREATE FUNCTION run_finish(p_run uuid, p_stalled boolean) RETURNS text
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    v_status text;
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
    WHERE id = p_run;
    RETURN v_status;
END
$$;

-- Finalises those of `p_runs` whose work has all ended: called by a stage after it committed a
-- batch, so the batch that ended a run's last message finishes it (whichever of two concurrent
-- last batches commits second sees no pending work). A run already finalised is finalised again
-- only when its outcome can have changed: `stalled`, or `partial` with no dead message left (a
-- redrive ended them). Returns how many runs it finalised.
CREATE FUNCTION finish_runs(p_runs uuid[]) RETURNS integer
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    v_run uuid;
    n integer := 0;
BEGIN
    FOR v_run IN
        SELECT r.id FROM runs r
        WHERE r.id = ANY(p_runs)
          AND (r.status IN ('running', 'stalled')
               OR (r.status = 'partial' AND NOT EXISTS (SELECT 1 FROM run_work w WHERE w.run_id = r.id AND w.state = 'dead')))
          AND NOT EXISTS (SELECT 1 FROM run_work w WHERE w.run_id = r.id AND w.state = 'pending')
        ORDER BY r.id
        FOR UPDATE OF r
    LOOP
        PERFORM run_finish(v_run, false);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Finalises the tenant's running runs in which nothing has moved since `p_idle_since`: a run
-- with work still pending becomes `stalled` (its messages are lost or parked in a DLQ that the
-- function never saw them reach), one without is finished normally. The scheduled check.
CREATE FUNCTION finish_idle_runs(p_idle_since timestamptz) RETURNS TABLE (run_id uuid, status text)
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    v_run uuid;
BEGIN
    FOR v_run IN
        SELECT r.id FROM runs r
        WHERE r.status = 'running' AND r.started_at < p_idle_since
          AND NOT EXISTS (SELECT 1 FROM run_work w WHERE w.run_id = r.id AND w.updated_at >= p_idle_since)
          AND NOT EXISTS (SELECT 1 FROM run_event_logs l WHERE l.run_id = r.id AND l.created_at >= p_idle_since)
        ORDER BY r.id
        FOR UPDATE OF r SKIP LOCKED
    LOOP
        run_id := v_run;
        status := run_finish(v_run, EXISTS (SELECT 1 FROM run_work w WHERE w.run_id = v_run AND w.state = 'pending'));
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE EXECUTE ON FUNCTION run_finish(uuid, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION finish_runs(uuid[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION finish_idle_runs(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION run_finish(uuid, boolean) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION finish_runs(uuid[]) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION finish_idle_runs(timestamptz) TO leadfactory_app;
