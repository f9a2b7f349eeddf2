-- Events the rules service could not store or judge (poison records). When a batch fails
-- for a reason its data causes, the rules service splits it until it finds the record that
-- fails, and in the transaction that moves its consumer positions past that record it
-- appends the record's InputRejected event (the `rejected-input` stream, named here by
-- `rejection_id`) and this row. Ingest's re-drive counts an owed event listed here as
-- settled, so it never republishes it; the receipt that owed it is the received_messages
-- row whose `event_ids` holds `event_id` (received_messages itself is never changed).
-- Append-only, like the audit trail it points into.
CREATE TABLE dead_lettered_events (
    event_id         uuid        PRIMARY KEY,
    rejection_id     uuid        NOT NULL,
    origin           text        NOT NULL,
    reason           text        NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER dead_lettered_events_refuse_update_delete BEFORE UPDATE OR DELETE
    ON dead_lettered_events FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER dead_lettered_events_refuse_truncate BEFORE TRUNCATE ON dead_lettered_events
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();
