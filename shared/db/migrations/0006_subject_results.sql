-- The subject_state documents no longer carry every result: each measurement the projection
-- keeps is a row here, so a batch writes what it adds and a document stays the size of a
-- subject's latest and baseline values, not of the trial so far. The rows are read back only
-- to re-derive a subject's latest and baseline values (a superseded latest or baseline
-- value, a new Day 0).
CREATE TABLE subject_results (
    event_id     uuid        PRIMARY KEY,
    study_id     text        NOT NULL,
    subject_id   text        NOT NULL,
    analyte      text        NOT NULL,
    collected_at timestamptz NOT NULL,
    entry        jsonb       NOT NULL
);
CREATE INDEX subject_results_subject_idx
    ON subject_results (study_id, subject_id, analyte, collected_at, event_id);

-- Documents written before this migration: their results move here, unchanged.
INSERT INTO subject_results (event_id, study_id, subject_id, analyte, collected_at, entry)
SELECT (item ->> 'event_id')::uuid, s.study_id, s.subject_id, history.analyte,
       (item ->> 'collected_at')::timestamptz, item
  FROM subject_state AS s,
       jsonb_each(s.state -> 'results') AS history (analyte, items),
       jsonb_array_elements(history.items) AS item
    ON CONFLICT (event_id) DO NOTHING;
UPDATE subject_state SET state = state - 'results' WHERE state ? 'results';
