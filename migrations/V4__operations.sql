-- Operations: the retention function (application role) records what it purged.
GRANT SELECT, INSERT ON retention_runs TO leadfactory_app;
ALTER TABLE retention_runs ADD COLUMN batches integer NOT NULL DEFAULT 0 CHECK (batches >= 0);
-- Left for the next run when the batch budget ran out.
ALTER TABLE retention_runs ADD COLUMN remaining boolean NOT NULL DEFAULT false;
