"""The rules service takes from each input topic only the event types that travel there;
any other valid event found there is refused, by type and topic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.safety_rules.entrypoints.records import on_their_topics, parse_records
from shared.batch_consumer import Record
from shared.events import Envelope, LabResultReported, wrap
from shared.events.catalogue import Party, entries
from shared.events.topics import (
    ADVERSE_EVENTS,
    DATA_QUALITY,
    LAB_RESULTS,
    MEDICATIONS,
    SAFETY_SIGNALS,
    SUBJECTS,
    travels_on,
)
from tests.support.notifier import T0, raised

# what the rules consume as events (the dead-letter topic's records are read otherwise)
RULES_INPUT_TOPICS = (SUBJECTS, LAB_RESULTS, ADVERSE_EVENTS, MEDICATIONS, DATA_QUALITY)


def result() -> Envelope:
    return wrap(
        LabResultReported(
            study_id="NCT05262686", subject_id="01-003", loinc_code="718-7",
            value=Decimal("8.6"), unit="g/dL", collected_at=T0, source_message_id="LAB-1",
        ),
        source="/tests",
    )  # fmt: skip


@pytest.mark.parametrize("topic", RULES_INPUT_TOPICS)
def test_each_input_topic_takes_the_types_the_catalogue_says_the_rules_read_there(
    topic: str,
) -> None:
    for entry in entries():
        read_there = entry.topic == topic and Party.SAFETY_RULES in entry.flow.consumers
        assert travels_on(entry.payload, topic) == read_there, entry.event_type


def test_a_type_kept_in_the_audit_log_only_travels_on_no_topic() -> None:
    kept_only = [entry.payload for entry in entries() if entry.topic is None]
    assert kept_only
    for payload in kept_only:
        for topic in (*RULES_INPUT_TOPICS, SAFETY_SIGNALS):
            assert not travels_on(payload, topic), payload.event_type


def test_a_signal_on_an_input_topic_is_refused_by_type_and_topic_and_a_result_is_kept() -> None:
    signal, good = raised(subject_id="01-003"), result()
    entries_, rejected = parse_records(
        [Record(LAB_RESULTS, 0, 1, signal.to_json()), Record(LAB_RESULTS, 0, 2, good.to_json())]
    )
    assert rejected == []

    kept, refused = on_their_topics(entries_)

    assert [entry.envelope for entry in kept] == [good]
    (item,) = refused
    assert (item.record.offset, item.event_id) == (1, None)
    assert item.reason == (
        "not an input of the rules service: org.vigil.safety_signal.raised.v1 "
        "does not travel on vigil.lab-results.v1"
    )
    assert "01-003" not in item.reason
    assert str(signal.id) not in item.reason


def test_a_result_on_the_subjects_topic_is_refused() -> None:
    (entry,), _ = parse_records([Record(SUBJECTS, 3, 9, result().to_json())])

    kept, (item,) = on_their_topics([entry])

    assert kept == []
    assert "org.vigil.lab_result.reported.v1 does not travel on vigil.subjects.v1" in item.reason
