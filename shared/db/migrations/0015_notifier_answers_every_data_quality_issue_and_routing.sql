-- Issue 15: no data-quality issue reaches nobody. The notifier now answers every kind:
-- the medical monitors acknowledge a protocol analyte in an unknown unit
-- ('unit-not-convertible') and a dose or route a rule could not read on a medication it
-- counts ('dose-not-convertible', 'route-not-recognised'); the study's data manager is
-- told of what needs a query ('implausible-value', 'implausible-time',
-- 'reference-range-implausible', 'medication-not-recognised', 'missing-input',
-- 'reference-range-missing'). It also answers a signal routed to its subject's site once
-- the subject is enrolled ('org.vigil.safety_signal.routed.v1'). Its catch-up reads them
-- from the audit log like the other events it answers, so the partial index of migration
-- 0014 is recreated with them. The condition must stay equal to CAUSES_SQL in
-- services/notifier/adapters/signal_log.py.
--
-- Issues of the new kinds recorded before this version are behind the catch-up's
-- checkpoint already: they are not told now (they were never told before either).
DROP INDEX IF EXISTS events_notifier_causes_idx;
CREATE INDEX events_notifier_causes_idx ON events (position)
    WHERE (type IN ('org.vigil.safety_signal.raised.v1',
                    'org.vigil.safety_signal.escalated.v1',
                    'org.vigil.safety_signal.amended.v1',
                    'org.vigil.safety_signal.resolved.v1',
                    'org.vigil.safety_signal.reopened.v1',
                    'org.vigil.safety_signal.retracted.v1',
                    'org.vigil.safety_signal.routed.v1')
           OR (type = 'org.vigil.data_quality.issue_raised.v1'
               AND payload ->> 'issue' IN ('unknown-subject', 'result-unreadable', 'abnormal-result-unreadable', 'censored-result', 'conflicting-results', 'unit-not-convertible', 'dose-not-convertible', 'route-not-recognised', 'implausible-value', 'implausible-time', 'reference-range-implausible', 'medication-not-recognised', 'missing-input', 'reference-range-missing')));
