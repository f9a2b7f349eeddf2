-- The event store: every fact and decision Vigil records, in order, never edited.
CREATE TABLE events (
    position      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    stream_id     text        NOT NULL,
    type          text        NOT NULL,
    study_id      text        NOT NULL,
    subject_id    text,
    clinical_time timestamptz,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    source        text        NOT NULL,
    envelope      jsonb       NOT NULL
);
CREATE INDEX events_stream_idx ON events (stream_id, position);
CREATE INDEX events_study_subject_idx ON events (study_id, subject_id, position);

-- Read model of each subject, kept in the same transaction as the events it derives from.
CREATE TABLE subject_state (
    study_id          text  NOT NULL,
    subject_id        text  NOT NULL,
    site_id           text  NOT NULL,
    sex               text  NOT NULL,
    birth_date        date  NOT NULL,
    weight_kg         numeric,
    last_event_id     uuid  NOT NULL,
    PRIMARY KEY (study_id, subject_id)
);

-- Transactional outbox: events to publish to Kafka once their transaction committed.
CREATE TABLE outbox (
    event_id     uuid        PRIMARY KEY REFERENCES events (event_id),
    topic        text        NOT NULL,
    key          bytea       NOT NULL,
    value        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (created_at) WHERE published_at IS NULL;
