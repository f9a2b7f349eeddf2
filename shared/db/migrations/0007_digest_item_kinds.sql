-- A finding's digest may carry more than its first alert: that it resolved, reopened or was
-- withdrawn, possibly on a later day than the alert. Each such item of one signal is a row
-- of its own, named by the purpose of the message (raised, resolved-1, reopened-1, ...).
ALTER TABLE digest_items ADD COLUMN item text NOT NULL DEFAULT 'raised';
ALTER TABLE digest_items DROP CONSTRAINT digest_items_pkey;
ALTER TABLE digest_items ADD PRIMARY KEY (study_id, person_id, signal_id, item);
