-- Notifier work queue: one row per signal, channel and recipient; the unique key is what
-- makes a redelivered signal produce no second message.
CREATE TABLE deliveries (
    delivery_id     uuid        PRIMARY KEY,
    signal_id       uuid        NOT NULL,
    channel         text        NOT NULL,
    recipient       text        NOT NULL,
    message_id      text        NOT NULL,
    subject_line    text        NOT NULL,
    body_text       text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'sent')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at         timestamptz,
    UNIQUE (signal_id, channel, recipient)
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
