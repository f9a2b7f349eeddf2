-- The notifier's catch-up follows the audit log for the events it answers (signals raised,
-- escalated, amended, resolved, reopened, retracted; a result about a subject nobody
-- enrolled), so that a signal the broker never delivered is still told. Each round reads
-- the few such events after its checkpoint (a row of projection_checkpoints named
-- 'notifier.catch-up'); this index holds only them, so a round costs a handful of index
-- pages however long the log is, and appending a fact costs nothing more. The condition
-- must stay equal to CAUSES_SQL in services/notifier/adapters/signal_log.py: a new kind
-- the notifier answers needs a migration that recreates this index with it.
--
-- A signal already in the log when this version starts is read once by the first rounds
-- (the checkpoint starts at 0): what the notifier answered before is left as it is; a
-- signal nobody was told about is told then.
CREATE INDEX events_notifier_causes_idx ON events (position)
    WHERE (type IN ('org.vigil.safety_signal.raised.v1',
                    'org.vigil.safety_signal.escalated.v1',
                    'org.vigil.safety_signal.amended.v1',
                    'org.vigil.safety_signal.resolved.v1',
                    'org.vigil.safety_signal.reopened.v1',
                    'org.vigil.safety_signal.retracted.v1')
           OR (type = 'org.vigil.data_quality.issue_raised.v1'
               AND payload ->> 'issue' IN ('unknown-subject')));
