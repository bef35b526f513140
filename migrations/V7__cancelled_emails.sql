-- An outreach email cancelled before it was sent: its address was erased while it waited in the
-- queue (or in a cap's backlog). Delivery never claims it; the backlog release never lists it.
ALTER TABLE emails DROP CONSTRAINT emails_send_state_check;
ALTER TABLE emails ADD CONSTRAINT emails_send_state_check
    CHECK (send_state IN ('queued', 'sending', 'sent', 'failed', 'unknown', 'cancelled'));
