-- Emails and purchases point at each other (a purchase's outreach and fulfilment emails; a
-- fulfilment email's purchase). Deferrable (still checked immediately by default) so a restore
-- can load both tables in one transaction with SET CONSTRAINTS ALL DEFERRED.
ALTER TABLE emails ALTER CONSTRAINT emails_purchase_id_fkey DEFERRABLE INITIALLY IMMEDIATE;
ALTER TABLE purchases ALTER CONSTRAINT purchases_email_id_fkey DEFERRABLE INITIALLY IMMEDIATE;
ALTER TABLE purchases ALTER CONSTRAINT purchases_fulfilment_email_id_fkey DEFERRABLE INITIALLY IMMEDIATE;
