-- Every SECURITY DEFINER function: callable only by the roles granted it (not PUBLIC), and with
-- a search_path that puts pg_temp last, so no caller's temporary object can stand in for ours.
-- V1's three doors predate the rule.
ALTER FUNCTION api_key_lookup(text) SET search_path = public, pg_temp;
ALTER FUNCTION report_tenant_by_token(text) SET search_path = public, pg_temp;
ALTER FUNCTION list_tenant_ids() SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION api_key_lookup(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION report_tenant_by_token(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION list_tenant_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_key_lookup(text) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION report_tenant_by_token(text) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION list_tenant_ids() TO leadfactory_app;
