"""Which valid events the notifier cannot act on, and the reason its consumer dead-letters
them with: the type or the field and the problem, never a value."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.notifier import handlers
from shared.events import LabResultReported, wrap
from tests.support.notifier import context, implausible, raised, roster, study_roster

CONTEXT = context(roster())


def test_a_signal_of_a_study_with_a_roster_is_acted_on() -> None:
    assert handlers.why_not_acted_on(raised(), CONTEXT) is None


def test_a_data_quality_issue_of_a_study_with_a_roster_is_acted_on() -> None:
    issue = implausible("01-003")
    assert handlers.why_not_acted_on(issue, context(study_roster())) is None


def test_an_event_of_a_type_the_notifier_does_not_answer_is_named_by_its_type() -> None:
    lab = wrap(
        LabResultReported(
            study_id="NCT-NOTIFY", subject_id="01-003", loinc_code="718-7",
            value=Decimal("8.0"), unit="g/dL",
            collected_at=datetime(2026, 11, 20, 8, 30, tzinfo=UTC), source_message_id="LAB-1",
        ),
        source="/test/lab",
    )  # fmt: skip

    reason = handlers.why_not_acted_on(lab, CONTEXT)

    assert reason == (
        "the notifier does not act on events of type org.vigil.lab_result.reported.v1"
    )


def test_a_signal_or_issue_of_a_study_without_a_roster_names_the_field_not_the_study() -> None:
    signal = raised(study_id="NCT00000000", subject_id="01-001")
    issue = implausible("01-003")  # a study CONTEXT has no roster for

    for event in (signal, issue):
        reason = handlers.why_not_acted_on(event, CONTEXT)
        assert reason == "study_id: the notifier has no roster for this study"
        assert str(event.data["study_id"]) not in reason
