-- Alerts reach the right channel, once, and a failed post is tried again.

-- A post that failed (Slack down, a 5xx) is retried by the next evaluations, a few times, while
-- it is recent; one held back by the hourly cap or with no channel configured is not.
ALTER TABLE sent_alerts ADD COLUMN post_attempts smallint NOT NULL DEFAULT 0 CHECK (post_attempts >= 0);
ALTER TABLE sent_alerts ADD COLUMN last_post_error text;
CREATE INDEX sent_alerts_to_retry ON sent_alerts (tenant_id, sent_at) WHERE NOT delivered AND post_attempts > 0;

-- The operator's alerts: findings about the shared infrastructure (a dead-letter queue's depth)
-- or about no tenant (a paid Stripe session that names none). Recorded and posted once, to the
-- operator's channel, not once per tenant; they hold no tenant data.
CREATE TABLE operator_alerts (
    id               uuid PRIMARY KEY,
    rule             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'recovered')),
    dedupe_key       text NOT NULL UNIQUE,
    message          text NOT NULL,
    value            double precision,
    threshold        double precision,
    sent_at          timestamptz NOT NULL DEFAULT now(),
    delivered        boolean NOT NULL DEFAULT false,
    post_attempts    smallint NOT NULL DEFAULT 0 CHECK (post_attempts >= 0),
    last_post_error  text
);
CREATE INDEX operator_alerts_rule_time ON operator_alerts (rule, sent_at DESC);
CREATE INDEX operator_alerts_to_retry ON operator_alerts (sent_at) WHERE NOT delivered AND post_attempts > 0;
GRANT SELECT, INSERT, UPDATE ON operator_alerts TO leadfactory_app;

-- The alert for paid purchases whose fulfilment email failed or ended unknown reads them here.
CREATE INDEX emails_fulfilment_unsent ON emails (tenant_id, purchase_id)
    WHERE kind = 'fulfilment' AND send_state IN ('failed', 'unknown');
