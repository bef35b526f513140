-- Webhook events move an email's delivery status and times many times after it is written;
-- none of those columns is indexed, so with room on its page the update is HOT (no new index
-- entries in the table's ten indexes). At a million emails that keeps a 1,000-event SendGrid
-- batch from touching thousands of random index pages (docs/performance.md, scale).
ALTER TABLE emails SET (fillfactor = 85);
