-- A run finalised `failed` (every message dead) is finalised again, like a `partial` one, once a
-- redrive has ended all its dead messages: its outcome changed. (`finish_runs` of V6 refinished
-- only `partial` runs, so a night whose every sourcing job was dead-lettered and then redriven
-- stayed `failed` after it succeeded.)
CREATE OR REPLACE FUNCTION finish_runs(p_runs uuid[]) RETURNS integer
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
               OR (r.status IN ('partial', 'failed')
                   AND NOT EXISTS (SELECT 1 FROM run_work w WHERE w.run_id = r.id AND w.state = 'dead')))
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
