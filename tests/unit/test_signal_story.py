"""The signal page's story (pure): who was told, every delivery's outcome by person and
role (never the channel's error, which can quote an address), acknowledgements and signed
assessments, and the signal's state now."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from services.notifier.domain.signal_inbox import ASSESSMENT_SIGNED
from services.notifier.domain.signal_story import LogEntry, basis, meaning_in_words, tell
from shared.events import EventPayload, SafetySignalAmended, SafetySignalEscalated
from shared.events.notifications import (
    DeliveryAttempted,
    DeliveryFailed,
    DeliveryFellBack,
    NotificationOpened,
    NotificationResolved,
    Recipient,
    SignalAcknowledged,
)
from tests.support.notifier import T0, raised, signal_of

RAISED = raised("S1")
SIGNAL = signal_of(RAISED)
NOTICE = {
    "study_id": SIGNAL.study_id,
    "subject_id": SIGNAL.subject_id,
    "signal_id": SIGNAL.signal_id,
}
DELIVERY = uuid.uuid4()


def entry(payload: EventPayload | dict[str, Any], position: int, kind: str = "") -> LogEntry:
    data = payload if isinstance(payload, dict) else payload.model_dump(mode="json")
    kind = kind or getattr(payload, "event_type", "")
    return LogEntry(position, uuid.uuid4(), kind, T0 + timedelta(minutes=position), data)


def opened() -> NotificationOpened:
    return NotificationOpened(
        **NOTICE, site_id="S1", severity="protocol-threshold", serious=False, grade=None,
        raised_at=T0, recipients=(Recipient(person_id="pi1", role="investigator"),),
        acknowledge_by=T0 + timedelta(hours=24),
    )  # fmt: skip


def story_of(*notifications: LogEntry, roles: dict[str, str] | None = None) -> Any:
    raising = entry(RAISED.data, 1, RAISED.type)
    return tell(SIGNAL, raising, [], [], list(notifications), roles or {})


def test_deliveries_name_the_person_and_role_and_never_the_channels_error() -> None:
    failed = DeliveryFailed(
        **NOTICE, delivery_id=DELIVERY, person_id="pi1", channel="email", purpose="alert",
        attempt=1, error="550 <pi1@x.org> mailbox unavailable", retry_at=None,
    )  # fmt: skip
    fell_back = DeliveryFellBack(
        **NOTICE, delivery_id=DELIVERY, person_id="pi1", channel="email", purpose="alert",
        to_delivery_id=uuid.uuid4(), to_person_id="sub1", to_channel="email",
    )  # fmt: skip

    story = story_of(entry(opened(), 2), entry(failed, 3), entry(fell_back, 4))

    outcomes = [(d.person_id, d.role, d.outcome) for d in story.deliveries]
    assert outcomes == [
        ("pi1", "investigator", "failed (attempt 1); given up on this channel"),
        ("pi1", "investigator", "fell back to sub1 by email"),
    ]
    assert "@" not in repr(story.deliveries)


def test_an_attempt_with_no_outcome_is_shown_as_begun_and_roles_come_from_the_roster() -> None:
    attempted = DeliveryAttempted(
        **NOTICE, delivery_id=DELIVERY, person_id="sub1", channel="email", purpose="alert",
        attempt=2, message_id="<m@vigil>",
    )  # fmt: skip

    story = story_of(entry(attempted, 2), roles={"sub1": "sub_investigator"})

    assert [(d.role, d.outcome) for d in story.deliveries] == [
        ("sub_investigator", "attempt 2 begun, no outcome recorded")
    ]
    assert story.told == ()


def test_acknowledgements_by_link_and_signed_assessments_are_told_apart() -> None:
    by_link = SignalAcknowledged(
        **NOTICE, person_id="pi1", role="investigator",
        assessment="not-clinically-significant", token_id="t",
    )  # fmt: skip
    signed = {
        **{k: str(v) for k, v in NOTICE.items()},
        "person_id": "mm", "role": "medical_monitor", "printed_name": "M. Monitor",
        "meaning": "sae-confirmed", "signed_at": "2026-06-02T01:30:00+00:00",
        "confirmed_by": "password", "episode_event_id": str(uuid.uuid4()),
        "raised_event_id": str(uuid.uuid4()), "raised_position": 1,
        "latest_signal_event_id": str(uuid.uuid4()), "latest_signal_position": 1,
        "input_event_ids": [], "facts_digest": "sha256:" + "0" * 64,
    }  # fmt: skip

    story = story_of(entry(opened(), 2), entry(by_link, 3), entry(signed, 4, ASSESSMENT_SIGNED))

    first, second = story.acknowledgements
    assert (first.signed, first.meaning, first.how_confirmed) == (
        False, "not clinically significant", "acknowledgement link",
    )  # fmt: skip
    assert (second.signed, second.printed_name, second.meaning) == (
        True, "M. Monitor", "reported as a serious adverse event",
    )  # fmt: skip
    assert second.at.isoformat() == "2026-06-02T01:30:00+00:00"
    assert story.row.state == "acknowledged"
    assert not story.closed


def test_a_resolved_signal_is_closed() -> None:
    story = story_of(entry(opened(), 2), entry(NotificationResolved(**NOTICE, reason="ok"), 3))

    assert story.row.state == "resolved"
    assert story.closed


def test_a_meaning_nobody_foresaw_is_still_said_in_words() -> None:
    assert meaning_in_words("clinically-significant") == "clinically significant"
    assert meaning_in_words("needs_follow-up") == "needs follow up"


def test_the_latest_escalation_or_amendment_is_what_the_signal_rests_on_now() -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    fields = {**NOTICE, "rule_id": SIGNAL.rule_id, "rule_pack_version": SIGNAL.rule_pack_version}
    worse = SafetySignalEscalated(
        **fields, previous_grade=SIGNAL.grade, grade=3, input_event_ids=(first,),
        computed_values={"comparison": "7.4 <= 9"}, collected_at=T0 + timedelta(days=1),
    )  # fmt: skip
    corrected = SafetySignalAmended(
        **fields, reason="corrected", previous_grade=3, grade=2, input_event_ids=(second, third),
        superseded_event_ids=(first,), computed_values={"comparison": "8.5 <= 9"},
        collected_at=T0 + timedelta(days=1),
    )  # fmt: skip
    amendment = entry(corrected, 9)
    # given in any order: audit-log order decides
    rests_on = basis(SIGNAL, [amendment, entry(worse, 5)])
    assert rests_on.changed_by == amendment
    assert rests_on.now.grade == 2
    assert rests_on.now.input_event_ids == (second, third)
    assert rests_on.now.computed_values == {"comparison": "8.5 <= 9"}
    assert rests_on.now.rule_title == SIGNAL.rule_title  # what no change carries stays
    assert rests_on.ever == (*SIGNAL.input_event_ids, first, second, third)
    unchanged = basis(SIGNAL, [])
    assert unchanged.now == SIGNAL
    assert unchanged.changed_by is None


def test_the_story_splits_the_facts_into_those_it_rests_on_now_and_the_superseded() -> None:
    (old_input,) = SIGNAL.input_event_ids
    new_input = uuid.uuid4()
    fields = {**NOTICE, "rule_id": SIGNAL.rule_id, "rule_pack_version": SIGNAL.rule_pack_version}
    amended = SafetySignalAmended(
        **fields, reason="corrected", previous_grade=None, grade=3, input_event_ids=(new_input,),
        superseded_event_ids=(old_input,), computed_values={}, collected_at=T0,
    )  # fmt: skip
    old = LogEntry(2, old_input, "org.vigil.lab_result.reported.v1", T0, {})
    new = LogEntry(7, new_input, "org.vigil.lab_result.reported.v1", T0, {})
    raising = entry(RAISED.data, 3, RAISED.type)
    story = tell(SIGNAL, raising, [new, old], [entry(amended, 8)], [], {})
    assert story.inputs == (new,)
    assert story.superseded_inputs == (old,)
    assert story.missing_inputs == ()
    assert story.now.grade == 3
    assert story.changed_by is not None
    assert story.changed_by.position == 8
