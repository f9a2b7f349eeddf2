-- Issue 18: inserting into the audit log parsed each row's envelope text five more times,
-- for the index the export finds a study's or a subject's rows by (migration 0012: one
-- `envelope_json::jsonb` per use in its expressions), and that took about a third of the
-- database's share of every append. The same values are in the `envelope` jsonb column,
-- which PostgreSQL generates from the hashed text as the row is stored (`vigil audit
-- verify` checks it still is, and that generated columns cannot be written): the index
-- now reads them from there. The export finds rows by this index and keeps only those
-- whose hashed text names the study and subject (shared/eventstore/export.py).
-- These expressions must stay equal to INDEXED_STUDY_SQL and INDEXED_SUBJECT_SQL in
-- shared/eventstore/canonical.py, or the planner will not use the index.
-- Rebuilding it holds off appends while it runs (about a minute per few million events).
DROP INDEX IF EXISTS events_hashed_subject_idx;
CREATE INDEX events_hashed_subject_idx ON events (
    ((envelope ->> 'studyid')),
    (CASE WHEN strpos((envelope ->> 'subject'), '/') > 0
          THEN substr((envelope ->> 'subject'), strpos((envelope ->> 'subject'), '/') + 1)
          WHEN (envelope ->> 'subject') <> '' THEN '' END),
    position
);
