-- One outreach per inbox per campaign, not only per business row: two rows that share an address
-- (a chain's branches, or domain duplicates decided by racing batches) must not both be mailed.
--
-- Outreach written before this rule may already hold such pairs. The queued ones that an
-- earlier outreach of their campaign already took are cancelled; the ones already handed to
-- SendGrid are history and are kept, flagged `duplicate_inbox`, outside the index.
ALTER TABLE emails ADD COLUMN duplicate_inbox boolean NOT NULL DEFAULT false;

WITH ranked AS (
    SELECT id, send_state,
           row_number() OVER (PARTITION BY tenant_id, campaign_id, lower(to_email)
                              ORDER BY (send_state = 'queued'), created_at, id) AS n
    FROM emails
    WHERE kind = 'outreach' AND send_state <> 'cancelled'
)
UPDATE emails e
SET send_state = CASE WHEN r.send_state = 'queued' THEN 'cancelled' ELSE e.send_state END,
    duplicate_inbox = r.send_state <> 'queued',
    last_error = CASE WHEN r.send_state = 'queued'
                      THEN 'another outreach of this campaign went to this address' ELSE e.last_error END
FROM ranked r
WHERE r.id = e.id AND r.n > 1;

CREATE UNIQUE INDEX emails_one_outreach_per_inbox ON emails (tenant_id, campaign_id, lower(to_email))
    WHERE kind = 'outreach' AND send_state <> 'cancelled' AND NOT duplicate_inbox;

-- Why the business's address is the one written to (see assessment's `recipient`): an address
-- on the business's own domain, linked or in the text, or a personal mailbox the page links as
-- its contact. NULL for addresses stored before the choice was recorded.
ALTER TABLE businesses ADD COLUMN email_reason text
    CHECK (email_reason IN ('own_domain_link', 'own_domain_text', 'mailbox_link'));

-- Delivery sends a campaign's waiting outreach oldest first: for each email it may claim, it
-- counts the campaign's older waiting ones (up to the day's room) on this index.
CREATE INDEX emails_waiting_by_age ON emails (campaign_id, created_at, id)
    WHERE kind = 'outreach' AND send_state = 'queued';
