-- The event store: every fact and decision Vigil records, in order, never edited.
-- Positions are assigned by the appender under one advisory lock, so they are gapless
-- and become visible in order; each row's hash chains it to the row before it.

CREATE TABLE event_store_identity (
    store_id   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    singleton  boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton)
);
INSERT INTO event_store_identity DEFAULT VALUES;

CREATE TABLE events (
    position       bigint      PRIMARY KEY CHECK (position > 0),
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    stream_version integer     NOT NULL CHECK (stream_version > 0),
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    study_id       text,
    subject_id     text,
    clinical_time  timestamptz,
    recorded_at    timestamptz NOT NULL,
    source         text        NOT NULL,
    -- the exact JSON texts the hash covers; the jsonb columns are derived from them by the
    -- database itself, so what queries read can never differ from what was hashed
    envelope_json  text        NOT NULL,
    payload_json   text        NOT NULL,
    envelope       jsonb       GENERATED ALWAYS AS (envelope_json::jsonb) STORED,
    payload        jsonb       GENERATED ALWAYS AS (payload_json::jsonb) STORED,
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_study_subject_idx ON events (study_id, subject_id, position);
-- Rows of a few kB stay inline and uncompressed: verification reads every row, and
-- decompressing each one would cost more than the disk it saves.
ALTER TABLE events SET (toast_tuple_target = 8160);

COMMENT ON TABLE events IS
    'Append-only audit log. Canonical row encoding and hash chain: shared/eventstore/canonical.py';

-- Nobody edits the record: not the services, not an administrator by accident.
CREATE FUNCTION vigil_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Record a correcting event instead of changing history.';
END
$$;

CREATE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();

-- Rows enter only through the event store's append, which holds the append lock: a
-- stray INSERT could otherwise take a position out of order or break the chain.
CREATE FUNCTION vigil_require_append_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
          AND classid = 0 AND objid = 7345002 AND objsubid = 1
    ) THEN
        RAISE EXCEPTION 'append to % only through the event store (append lock not held)',
            TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_require_append_lock BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_require_append_lock();

-- Results of `vigil audit verify` and `vigil audit anchor`: append-only as well.
CREATE TABLE audit_checkpoints (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('verified', 'anchored')),
    position    bigint      NOT NULL,
    hash        bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by text        NOT NULL DEFAULT current_user
);
CREATE TRIGGER audit_checkpoints_refuse_update_delete BEFORE UPDATE OR DELETE
    ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER audit_checkpoints_refuse_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();

-- Transactional outbox: events to publish to Kafka once their transaction committed.
CREATE TABLE outbox (
    event_id     uuid        PRIMARY KEY REFERENCES events (event_id),
    topic        text        NOT NULL,
    key          bytea,
    value        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE published_at IS NULL;

-- Projections: read models rebuilt from the log; each remembers how far it has read.
CREATE TABLE projection_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE subject_state (
    study_id     text    NOT NULL,
    subject_id   text    NOT NULL,
    state        jsonb   NOT NULL,
    position     bigint  NOT NULL,
    PRIMARY KEY (study_id, subject_id)
);
