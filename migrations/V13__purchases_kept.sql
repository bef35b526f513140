-- No purchase left behind.

-- Disputes: `charge.dispute.created` opens one, `charge.dispute.closed` ends it won or lost. The
-- download is refused while a dispute is open or after it is lost.
ALTER TABLE purchases ADD COLUMN dispute_id text;
ALTER TABLE purchases ADD COLUMN dispute_status text CHECK (dispute_status IN ('open', 'won', 'lost'));
ALTER TABLE purchases ADD COLUMN disputed_at timestamptz;

-- Stripe events we act on that name no tenant we can find (no `metadata.tenant_id`, no purchase
-- with their payment intent): kept for an operator, never only logged. They belong to no tenant,
-- so they live outside RLS and outside the application role's reach: the webhook records them
-- and the alerts function counts them through the two definer functions below; operators read
-- them as the owner (`leadfactory purchase unattributed`).
CREATE TABLE unattributed_stripe_events (
    event_id           text PRIMARY KEY,
    type               text NOT NULL,
    created            timestamptz NOT NULL,
    -- A paid (or no-payment-required) checkout session: money taken and nothing delivered.
    paid_session       boolean NOT NULL,
    stripe_session_id  text,
    amount_cents       bigint,
    currency           text,
    payload            jsonb NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz,
    resolution         text
);
REVOKE ALL ON unattributed_stripe_events FROM PUBLIC;

CREATE FUNCTION record_unattributed_stripe_event(p_event_id text, p_type text, p_created timestamptz,
        p_paid_session boolean, p_session text, p_amount bigint, p_currency text, p_payload jsonb)
    RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        WITH ins AS (
            INSERT INTO unattributed_stripe_events (event_id, type, created, paid_session, stripe_session_id,
                                                    amount_cents, currency, payload)
            VALUES (p_event_id, p_type, p_created, p_paid_session, p_session, p_amount, p_currency, p_payload)
            ON CONFLICT (event_id) DO NOTHING RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM ins)
    $$;
REVOKE EXECUTE ON FUNCTION record_unattributed_stripe_event(text, text, timestamptz, boolean, text, bigint, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_unattributed_stripe_event(text, text, timestamptz, boolean, text, bigint, text, jsonb) TO leadfactory_app;

-- What the alerts function may know of them: how many paid sessions wait, since when (no
-- payloads, no buyers).
CREATE FUNCTION unattributed_paid_sessions() RETURNS TABLE (waiting bigint, oldest timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT count(*), min(received_at) FROM unattributed_stripe_events WHERE paid_session AND resolved_at IS NULL $$;
REVOKE EXECUTE ON FUNCTION unattributed_paid_sessions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unattributed_paid_sessions() TO leadfactory_app;

-- A fulfilment sent again on request (`leadfactory purchase resend`, `POST /v1/purchases/{id}/resend`):
-- one email row per (purchase, request key), the first fulfilment's key being ''.
ALTER TABLE emails ADD COLUMN request_key text NOT NULL DEFAULT '';
DROP INDEX emails_one_fulfilment_per_purchase;
CREATE UNIQUE INDEX emails_one_fulfilment_per_request ON emails (purchase_id, request_key) WHERE kind = 'fulfilment';
