"""The inbox's row of a signal, folded from its events (pure): state, deadline, level,
values, site; the same whatever batches the log is cut into."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from services.notifier.domain.signal_inbox import (
    ASSESSMENT_SIGNED,
    InboxEvent,
    InboxRow,
    fold,
)
from shared.events import (
    Envelope,
    EventPayload,
    SafetySignalEscalated,
    SafetySignalRetracted,
    SafetySignalRouted,
)
from shared.events.notifications import (
    NotificationEscalated,
    NotificationOpened,
    NotificationReopened,
    NotificationResolved,
    Recipient,
    SignalAcknowledged,
)
from tests.support.notifier import T0, lifecycle, raised, signal_of

RAISED = raised(site_id=None)
SIGNAL = signal_of(RAISED)
DEADLINE = T0 + timedelta(hours=24)
NOTICE = {
    "study_id": SIGNAL.study_id,
    "subject_id": SIGNAL.subject_id,
    "signal_id": SIGNAL.signal_id,
}


def event(source: Envelope | EventPayload, position: int) -> InboxEvent:
    """An event of the log at ``position``, recorded ``position`` minutes after T0."""
    data = source.data if isinstance(source, Envelope) else source.model_dump(mode="json")
    kind = source.type if isinstance(source, Envelope) else source.event_type
    return InboxEvent(position, kind, T0 + timedelta(minutes=position), data)


def opened() -> NotificationOpened:
    return NotificationOpened(
        **NOTICE, site_id=None, severity="protocol-threshold", serious=False, grade=None,
        raised_at=T0, recipients=(Recipient(person_id="mm", role="medical_monitor"),),
        acknowledge_by=DEADLINE,
    )  # fmt: skip


def acknowledged() -> SignalAcknowledged:
    return SignalAcknowledged(
        **NOTICE, person_id="mm", role="medical_monitor",
        assessment="clinically-significant", token_id="t1",
    )  # fmt: skip


def the_row(*sources: Envelope | EventPayload) -> InboxRow:
    rows = fold({}, [event(source, i + 1) for i, source in enumerate(sources)])
    return rows[SIGNAL.signal_id]


def test_a_raised_signal_is_open_with_what_was_found_and_its_deadline_once_told() -> None:
    row = the_row(RAISED, opened())

    assert row.state == "open"
    assert (row.rule_id, row.analyte, row.value) == ("anaemia-hb-le-9", "haemoglobin", "8 g/dL")
    assert row.acknowledge_by == DEADLINE
    assert row.escalation_level == 0
    assert row.raised_position == 1
    assert (row.position, row.last_change_at) == (2, T0 + timedelta(minutes=2))


def test_an_escalation_raises_the_level_and_the_last_level_keeps_the_missed_deadline() -> None:
    first = NotificationEscalated(
        **NOTICE, level=1, overdue_since=DEADLINE, recipients=(),
        acknowledge_by=DEADLINE + timedelta(hours=24),
    )  # fmt: skip
    last = NotificationEscalated(
        **NOTICE, level=2, overdue_since=DEADLINE + timedelta(hours=24), recipients=(),
        acknowledge_by=None,
    )  # fmt: skip

    assert the_row(RAISED, opened(), first).acknowledge_by == DEADLINE + timedelta(hours=24)
    row = the_row(RAISED, opened(), first, last)
    assert row.escalation_level == 2
    assert row.acknowledge_by == DEADLINE + timedelta(hours=24)  # overdue since then
    assert row.state == "open"


def test_an_acknowledgement_by_link_or_by_signed_assessment_acknowledges() -> None:
    assert the_row(RAISED, opened(), acknowledged()).state == "acknowledged"

    signed = InboxEvent(3, ASSESSMENT_SIGNED, T0, {**NOTICE, "signal_id": str(SIGNAL.signal_id)})
    rows = fold({}, [event(RAISED, 1), event(opened(), 2), signed])
    assert rows[SIGNAL.signal_id].state == "acknowledged"


def test_a_reopened_signal_is_open_again_and_its_earlier_acknowledgement_counts_no_more() -> None:
    resolved = NotificationResolved(**NOTICE, reason="back in range")
    reopened = NotificationReopened(
        **NOTICE, reason="the result was wrong", acknowledge_by=DEADLINE + timedelta(days=3)
    )

    assert the_row(RAISED, opened(), acknowledged(), resolved).state == "resolved"
    row = the_row(RAISED, opened(), acknowledged(), resolved, reopened)
    assert row.state == "open"
    assert row.acknowledge_by == DEADLINE + timedelta(days=3)


def test_a_retracted_signal_stays_retracted_whatever_came_before() -> None:
    retracted = SafetySignalRetracted(**lifecycle(SIGNAL), reason="entered in error")
    resolved = NotificationResolved(**NOTICE, reason="back in range")

    assert the_row(RAISED, opened(), resolved, retracted).state == "retracted"


def test_a_worse_grade_and_a_routing_change_the_row() -> None:
    worse = SafetySignalEscalated(
        **lifecycle(SIGNAL), previous_grade=None, grade=3, input_event_ids=(uuid.uuid4(),),
        computed_values={}, observed_value=Decimal("7.1"), observed_unit="g/dL",
        collected_at=T0 + timedelta(days=1),
    )  # fmt: skip
    routed = SafetySignalRouted(
        **{**lifecycle(SIGNAL), "site_id": "S2"}, enrolment_event_id=uuid.uuid4()
    )

    row = the_row(RAISED, opened(), worse, routed)
    assert (row.grade, row.value, row.site_id) == (3, "7.1 g/dL", "S2")
    assert row.collected_at == T0 + timedelta(days=1)


def test_notification_events_of_a_signal_the_inbox_does_not_hold_change_nothing() -> None:
    assert fold({}, [event(opened(), 1), event(acknowledged(), 2)]) == {}


def test_folding_in_batches_gives_the_rows_folding_at_once_gives() -> None:
    other = raised(site_id="S1")
    sources = [RAISED, other, opened(), acknowledged(), NotificationResolved(**NOTICE, reason="x")]
    events = [event(source, i + 1) for i, source in enumerate(sources)]

    at_once = fold({}, events)
    rows: dict[uuid.UUID, InboxRow] = {}
    for one in events:
        rows.update(fold(rows, [one]))

    assert rows == at_once
    assert at_once[signal_of(other).signal_id].state == "open"
    assert at_once[SIGNAL.signal_id].state == "resolved"
