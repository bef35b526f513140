-- Retention for the operators' own records, which live outside every tenant and outside the
-- application role's reach (docs/data.md): the retention function purges them through these
-- two doors, a batch at a time. Each returns the rows it touched.

-- Operator alerts past the period are deleted (the cooldown reads only recent ones).
CREATE FUNCTION purge_operator_alerts(p_cutoff timestamptz, p_batch int)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        WITH gone AS (
            DELETE FROM operator_alerts WHERE id IN (
                SELECT id FROM operator_alerts WHERE sent_at < p_cutoff ORDER BY id LIMIT p_batch)
            RETURNING 1)
        SELECT count(*) FROM gone
    $$;

-- A resolved unattributed Stripe event keeps its facts (type, session, amount, resolution) and
-- loses the payload (buyer details) once past the period; an unresolved one keeps everything.
CREATE FUNCTION strip_unattributed_stripe_payloads(p_cutoff timestamptz, p_batch int)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        WITH stripped AS (
            UPDATE unattributed_stripe_events
               SET payload = jsonb_build_object('id', payload->'id', 'type', payload->'type', 'stripped', true)
             WHERE event_id IN (
                SELECT event_id FROM unattributed_stripe_events
                 WHERE resolved_at IS NOT NULL AND resolved_at < p_cutoff AND NOT (payload ? 'stripped')
                 ORDER BY event_id LIMIT p_batch)
            RETURNING 1)
        SELECT count(*) FROM stripped
    $$;

REVOKE EXECUTE ON FUNCTION purge_operator_alerts(timestamptz, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION strip_unattributed_stripe_payloads(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_operator_alerts(timestamptz, int) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION strip_unattributed_stripe_payloads(timestamptz, int) TO leadfactory_app;

-- The purges below find their rows by age through these indexes.
CREATE INDEX email_events_unstripped ON email_events (tenant_id, occurred_at) WHERE NOT (raw ? 'stripped');
CREATE INDEX stripe_events_unstripped ON stripe_events (tenant_id, created)
    WHERE processed_at IS NOT NULL AND NOT (payload ? 'stripped');
CREATE INDEX businesses_with_address ON businesses (tenant_id, last_seen_at) WHERE email IS NOT NULL;
-- Whether a business was ever written to.
CREATE INDEX emails_business ON emails (business_id);
