-- Stripe does not promise that a charge carries its payment intent's metadata, so a
-- `charge.*` event without `metadata.tenant_id` is attributed through the payment intent stored
-- with the purchase: a narrow definer door like `report_tenant_by_token`.
CREATE INDEX purchases_payment_intent ON purchases (stripe_payment_intent) WHERE stripe_payment_intent IS NOT NULL;

-- The definer runs as the schema owner, which FORCE ROW LEVEL SECURITY binds when it is not a
-- superuser (RDS): it may read purchases, as it may read reports (V1's owner_read policies).
CREATE POLICY owner_read ON purchases FOR SELECT USING (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'));

CREATE FUNCTION purchase_tenant_by_payment_intent(p_intent text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT tenant_id FROM purchases WHERE stripe_payment_intent = p_intent LIMIT 1 $$;
REVOKE EXECUTE ON FUNCTION purchase_tenant_by_payment_intent(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purchase_tenant_by_payment_intent(text) TO leadfactory_app;
