-- The SendGrid webhook's soft-bounce count reads a tenant's recent "blocked" bounces of a few
-- addresses: an index on exactly that, so a batch never scans the tenant's events.
CREATE INDEX email_events_soft_bounces ON email_events (tenant_id, lower(raw->>'email'), occurred_at)
    WHERE event = 'bounce' AND bounce_type = 'blocked';
