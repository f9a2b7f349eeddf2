-- Issue 17, the workspace's data-quality queue and signed assessments: what they read by
-- index rather than by scanning the log.
-- The data-quality issues of a study, newest first (the queue).
CREATE INDEX events_data_quality_issues_idx ON events (study_id, position)
    WHERE type = 'org.vigil.data_quality.issue_raised.v1';
-- The reviews of an issue (DataQualityIssueReviewed names it in payload.issue_id).
CREATE INDEX events_data_quality_reviews_idx ON events ((payload ->> 'issue_id'))
    WHERE type = 'org.vigil.data_quality.issue_reviewed.v1';
-- The receipt that owed an event (an issue's source message): received_messages.event_ids
-- holds the events each kept message owes.
CREATE INDEX received_messages_event_ids_idx ON received_messages USING gin (event_ids);
