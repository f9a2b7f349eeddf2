-- Notifier: the deliveries table becomes an outbox of messages per signal, purpose (the
-- first alert, an escalation level, a withdrawal...), channel and recipient. A delivery is
-- claimed by pushing its next attempt past a lease, so an instance that dies mid-send
-- leaves it to be retried (with the same Message-ID) once the lease runs out.
ALTER TABLE deliveries
    ADD COLUMN purpose    text NOT NULL DEFAULT 'raised',
    ADD COLUMN study_id   text,
    ADD COLUMN subject_id text,
    ADD COLUMN person_id  text,
    ADD COLUMN body_html  text,
    ADD COLUMN content    jsonb,
    ADD COLUMN link       text,
    ADD COLUMN give_up_at timestamptz;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'sent', 'abandoned', 'cancelled'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_signal_id_channel_recipient_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_once
    UNIQUE (signal_id, purpose, channel, recipient);
CREATE INDEX deliveries_signal_idx ON deliveries (signal_id);

-- Escalation timers are read from the notification streams of the audit log.
CREATE INDEX events_notification_streams_idx ON events (stream_id, stream_version)
    WHERE stream_id LIKE 'notification-%';

-- Findings held for a person's daily digest (a working table; what was sent is an event).
CREATE TABLE digest_items (
    study_id   text        NOT NULL,
    person_id  text        NOT NULL,
    signal_id  uuid        NOT NULL,
    line       text        NOT NULL,
    held_at    timestamptz NOT NULL,
    digest_day date,
    PRIMARY KEY (study_id, person_id, signal_id)
);
CREATE INDEX digest_items_pending_idx ON digest_items (study_id, person_id) WHERE digest_day IS NULL;
