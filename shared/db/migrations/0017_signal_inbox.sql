-- The workspace's inbox: one row per safety signal, a projection of the audit log kept by
-- the notifier (services/notifier/adapters/signal_inbox.py, checkpoint 'signal_inbox' in
-- projection_checkpoints). It can be dropped and rebuilt from position 0; nothing else
-- writes it. The columns are those of InboxRow in services/notifier/domain/signal_inbox.py
-- (rows are written with jsonb_populate_recordset, by column name).
CREATE TABLE signal_inbox (
    signal_id           uuid        PRIMARY KEY,
    study_id            text        NOT NULL,
    subject_id          text        NOT NULL,
    site_id             text,
    rule_id             text        NOT NULL,
    rule_title          text        NOT NULL,
    grade               smallint,
    grading             text,
    severity            text        NOT NULL,
    serious             boolean     NOT NULL,
    analyte             text        NOT NULL,
    observed_value      text,
    observed_unit       text,
    observed_comparator text,
    collected_at        timestamptz NOT NULL,
    raised_at           timestamptz NOT NULL,
    acknowledge_by      timestamptz,
    escalation_level    integer     NOT NULL,
    acknowledged        boolean     NOT NULL,
    resolved            boolean     NOT NULL,
    retracted           boolean     NOT NULL,
    state               text        NOT NULL
        CHECK (state IN ('open', 'acknowledged', 'resolved', 'retracted')),
    last_change_at      timestamptz NOT NULL,
    raised_position     bigint      NOT NULL,
    position            bigint      NOT NULL
);
-- a person's inbox: their studies and sites, open signals by deadline first
CREATE INDEX signal_inbox_scope_idx ON signal_inbox (study_id, site_id, state, acknowledge_by);
-- the live updates: what changed after the position a page was given
CREATE INDEX signal_inbox_position_idx ON signal_inbox (position);
