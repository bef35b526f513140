-- The operators' roles. Row-level security is forced on the schema owner too, so an owner that
-- is not a superuser (RDS) reads every tenant table as empty: an export made as the owner would
-- be empty and look valid, and COPY FROM refuses tables under RLS. Two roles with BYPASSRLS do
-- the operator work instead, each with only the privileges it needs:
-- * leadfactory_backup: reads everything (`export`, `status`, `dlq list/show`'s reasons);
-- * leadfactory_restore: loads an export into an empty database (`restore`).
-- An administrator creates them (docs/deploy.md: BYPASSRLS needs one); a superuser running the
-- migrations (the local run and the tests) creates them here.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leadfactory_backup') THEN
        CREATE ROLE leadfactory_backup LOGIN NOSUPERUSER BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leadfactory_restore') THEN
        CREATE ROLE leadfactory_restore LOGIN NOSUPERUSER BYPASSRLS;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO leadfactory_backup, leadfactory_restore;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO leadfactory_backup, leadfactory_restore;
GRANT INSERT ON ALL TABLES IN SCHEMA public TO leadfactory_restore;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO leadfactory_restore;
-- Tables and sequences later migrations create get the same.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO leadfactory_backup, leadfactory_restore;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT ON TABLES TO leadfactory_restore;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO leadfactory_restore;
