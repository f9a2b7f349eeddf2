-- Everything ingest receives, verbatim, before it answers the sender (ALCOA+: original).
CREATE TABLE received_messages (
    receipt_id   uuid        PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    channel      text        NOT NULL,
    source       text        NOT NULL,
    content_type text,
    raw          bytea       NOT NULL,
    raw_sha256   bytea       NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('accepted', 'rejected')),
    reason       text,
    event_ids    uuid[]      NOT NULL
);
CREATE INDEX received_messages_time_idx ON received_messages (received_at);
CREATE TRIGGER received_messages_refuse_update_delete BEFORE UPDATE OR DELETE
    ON received_messages FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER received_messages_refuse_truncate BEFORE TRUNCATE ON received_messages
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();

-- What ingest must see reach the audit log: re-driven until the event is in `events`.
CREATE TABLE ingest_outbox (
    event_id      uuid        PRIMARY KEY,
    receipt_id    uuid        NOT NULL REFERENCES received_messages (receipt_id),
    topic         text        NOT NULL,
    key           bytea,
    value         bytea       NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at  timestamptz,
    redrives      integer     NOT NULL DEFAULT 0,
    next_check_at timestamptz NOT NULL
);
CREATE INDEX ingest_outbox_due_idx ON ingest_outbox (next_check_at);
