-- Compute cost beside vendor cost (shared::compute): each function invocation's billed
-- milliseconds at its configured memory, its Lambda request and the SQS, S3 and EventBridge
-- requests its work made, priced at list prices when recorded. A batch's row is split per
-- tenant and run by its messages; the platform's own work (schedules over every tenant, the
-- HTTP functions' requests before a tenant is known) has no tenant.
CREATE TABLE compute_usage (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid REFERENCES tenants(id) ON DELETE CASCADE,
    run_id       uuid REFERENCES runs(id) ON DELETE SET NULL,
    function     text NOT NULL,
    invocations  integer NOT NULL CHECK (invocations >= 0),
    billed_ms    bigint NOT NULL CHECK (billed_ms >= 0),
    memory_mb    integer NOT NULL CHECK (memory_mb > 0),
    sqs_requests integer NOT NULL CHECK (sqs_requests >= 0),
    s3_requests  integer NOT NULL CHECK (s3_requests >= 0),
    events       integer NOT NULL CHECK (events >= 0),
    cost_nanos   bigint NOT NULL CHECK (cost_nanos >= 0),
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX compute_usage_tenant_time ON compute_usage (tenant_id, occurred_at);
CREATE INDEX compute_usage_run ON compute_usage (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX compute_usage_time ON compute_usage (occurred_at);
ALTER TABLE compute_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE compute_usage FORCE ROW LEVEL SECURITY;
-- A tenant reads its own rows; the owner and operators read all and write through the functions below.
CREATE POLICY tenant_isolation ON compute_usage FOR SELECT USING (tenant_id = app_current_tenant());
CREATE POLICY owner_all ON compute_usage USING (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'))
    WITH CHECK (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'));
GRANT SELECT ON compute_usage TO leadfactory_app;

-- One batch's rows, its tenants' and the platform's together (a function knows no single
-- tenant). It travels in the transaction that marks a stage's batch done: rows it cannot write
-- are dropped with a warning (the exception block is a subtransaction), never failing the batch.
CREATE FUNCTION record_compute_usage(p_tenants uuid[], p_runs uuid[], p_functions text[], p_invocations int[],
                                     p_billed_ms bigint[], p_memory int[], p_sqs int[], p_s3 int[], p_events int[],
                                     p_cost bigint[])
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    INSERT INTO compute_usage (tenant_id, run_id, function, invocations, billed_ms, memory_mb,
                               sqs_requests, s3_requests, events, cost_nanos)
    SELECT * FROM UNNEST(p_tenants, p_runs, p_functions, p_invocations, p_billed_ms, p_memory, p_sqs, p_s3, p_events, p_cost);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'compute usage not recorded (% rows): %', cardinality(p_functions), SQLERRM;
END
$$;

-- The deployment's compute since a time, per function: the infra budget alert's figure.
CREATE FUNCTION compute_cost_since(p_since timestamptz)
    RETURNS TABLE (function text, invocations bigint, cost_nanos bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT function, sum(invocations)::bigint, sum(cost_nanos)::bigint FROM compute_usage
        WHERE occurred_at >= p_since GROUP BY function ORDER BY 3 DESC
    $$;

-- Retention: rows past the period, the platform's included.
CREATE FUNCTION purge_compute_usage(p_cutoff timestamptz, p_batch int)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        WITH gone AS (
            DELETE FROM compute_usage WHERE id IN (
                SELECT id FROM compute_usage WHERE occurred_at < p_cutoff ORDER BY occurred_at LIMIT p_batch)
            RETURNING 1)
        SELECT count(*) FROM gone
    $$;

REVOKE EXECUTE ON FUNCTION record_compute_usage(uuid[], uuid[], text[], int[], bigint[], int[], int[], int[], int[], bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION compute_cost_since(timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION purge_compute_usage(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_compute_usage(uuid[], uuid[], text[], int[], bigint[], int[], int[], int[], int[], bigint[]) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION compute_cost_since(timestamptz) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION purge_compute_usage(timestamptz, int) TO leadfactory_app;

-- The analytics roll-up per tenant and day: compute beside the vendors' spend and the leads
-- they bought (funnel_daily's), so infra cost per 1,000 leads sits beside vendor cost.
CREATE TABLE infra_daily (
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    day           date NOT NULL,
    invocations   bigint NOT NULL,
    gb_seconds    double precision NOT NULL,
    infra_nanos   bigint NOT NULL,
    vendor_micros bigint NOT NULL,
    sourced       bigint NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);
ALTER TABLE infra_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE infra_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON infra_daily USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY owner_read ON infra_daily FOR SELECT USING (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'));
GRANT SELECT, INSERT, UPDATE, DELETE ON infra_daily TO leadfactory_app;
