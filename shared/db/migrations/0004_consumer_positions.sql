-- Where each consumer group has got to in each partition, written in the same transaction
-- as what it stored. Kafka's committed offsets are only a hint: on assignment a consumer
-- seeks to the position recorded here, so a broker that forgot its offsets changes nothing.
CREATE TABLE consumer_positions (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (group_id, topic, partition)
);
