-- The notifier now also answers the data-quality issues about a censored result no rule
-- could judge ('censored-result': the exact value is needed) and about reports of one
-- result that contradict each other without a correction ('conflicting-results'): the
-- medical monitors are told and must acknowledge. Its catch-up reads them from the audit
-- log like the other events it answers, so the partial index of migration 0013 is
-- recreated with them. The condition must stay equal to CAUSES_SQL in
-- services/notifier/adapters/signal_log.py.
DROP INDEX IF EXISTS events_notifier_causes_idx;
CREATE INDEX events_notifier_causes_idx ON events (position)
    WHERE (type IN ('org.vigil.safety_signal.raised.v1',
                    'org.vigil.safety_signal.escalated.v1',
                    'org.vigil.safety_signal.amended.v1',
                    'org.vigil.safety_signal.resolved.v1',
                    'org.vigil.safety_signal.reopened.v1',
                    'org.vigil.safety_signal.retracted.v1')
           OR (type = 'org.vigil.data_quality.issue_raised.v1'
               AND payload ->> 'issue' IN ('unknown-subject', 'result-unreadable', 'abnormal-result-unreadable', 'censored-result', 'conflicting-results')));
