-- `vigil audit export --study/--subject` selects a study's or a subject's rows by what
-- their hashes cover (the envelope's studyid and subject attributes), not by the study_id
-- and subject_id columns, which the hash does not cover: a row moved to another subject
-- by editing those columns stays in its subject's export (and `vigil audit verify` finds
-- the edit). These expressions must stay equal to HASHED_STUDY_SQL and HASHED_SUBJECT_SQL
-- in shared/eventstore/canonical.py, or the planner will not use the index.
CREATE INDEX events_hashed_subject_idx ON events (
    (((envelope_json)::jsonb ->> 'studyid')),
    (CASE WHEN strpos(((envelope_json)::jsonb ->> 'subject'), '/') > 0
          THEN substr(((envelope_json)::jsonb ->> 'subject'),
                      strpos(((envelope_json)::jsonb ->> 'subject'), '/') + 1)
          WHEN ((envelope_json)::jsonb ->> 'subject') <> '' THEN '' END),
    position
);
