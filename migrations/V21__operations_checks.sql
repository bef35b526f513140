-- Operations checks. The monthly restore drill's outcomes (the backup function, `{"drill": true}`): the newest
-- backup loaded into temporary copies of the tables and read back (`shared::backup::drill`).
-- The alerts function reads the latest and alerts on a failure (critical). No personal data.
CREATE TABLE backup_drills (
    id       uuid PRIMARY KEY,
    prefix   text,
    ran_at   timestamptz NOT NULL DEFAULT now(),
    passed   boolean NOT NULL,
    tables   integer NOT NULL DEFAULT 0 CHECK (tables >= 0),
    rows     bigint NOT NULL DEFAULT 0 CHECK (rows >= 0),
    -- Why it failed (the drill's error: a table, a checksum, a missing backup).
    failure  text
);
CREATE INDEX backup_drills_latest ON backup_drills (ran_at DESC);
-- The one table the backup role writes.
GRANT INSERT ON backup_drills TO leadfactory_backup;
GRANT SELECT ON backup_drills TO leadfactory_app;

-- The alerts function's health checks (every evaluation, every five minutes): each component's
-- consecutive failures, so one blip does not page and the alert names what failed since when
-- (HEALTH_CHECK_FAILURES_THRESHOLD in a row, 2 by default). A component is a queue or DLQ
-- (`queue:<name>`) today; no personal data.
CREATE TABLE health_checks (
    component      text PRIMARY KEY,
    failures       integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_error     text,
    checked_at     timestamptz NOT NULL,
    failing_since  timestamptz
);
GRANT SELECT, INSERT, UPDATE ON health_checks TO leadfactory_app;
