"""One contract for every event store: the same behaviour tests run on PostgreSQL's and on
the in-memory one (the pattern of pyeventsourcing's recorder test cases).

``EventStoreContract`` holds the tests; each implementation is a subclass that provides
``store``. A behaviour one implementation has and the other lacks fails here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.events import (
    DataQualityIssueRaised,
    Envelope,
    LabResultReported,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalResolved,
    subject_stream,
    wrap,
)
from shared.events.reviews import DataQualityIssueReviewed
from shared.eventstore import (
    EventIdConflict,
    EventSelection,
    EventStore,
    InMemoryEventStore,
    NewEvent,
    PayloadMatch,
    PostgresEventStore,
    StreamVersionConflict,
)
from shared.eventstore.canonical import GENESIS_HASH, chain_hash
from tests.support.notifier import lifecycle, raised, signal_of

STUDY = "NCT-CONTRACT"
LAB = LabResultReported.event_type
RAISED = SafetySignalRaised.event_type
RESOLVED = SafetySignalResolved.event_type
ESCALATED = SafetySignalEscalated.event_type
ISSUE = DataQualityIssueRaised.event_type
REVIEWED = DataQualityIssueReviewed.event_type
ALT = "1742-6"


def result(
    subject: str, value: str = "9.0", *, study: str = STUDY, n: int = 0, code: str = "718-7"
) -> Envelope:
    """A lab result of one subject (haemoglobin unless ``code`` says otherwise); ``n``
    makes otherwise equal results distinct events."""
    payload = LabResultReported(
        study_id=study,
        subject_id=subject,
        loinc_code=code,
        value=Decimal(value),
        unit="g/dL",
        collected_at=datetime(2026, 6, 1, 9, n % 60, tzinfo=UTC),
        source_message_id=f"M-{subject}-{value}-{n}",
    )
    return wrap(payload, source="/tests/contract")


def signal_raised(subject: str, **changes: Any) -> Envelope:
    """A safety signal raised for one subject of the study."""
    return raised(study_id=STUDY, subject_id=subject, **changes)


def issue(subject: str, problem: str, *, study: str = STUDY) -> Envelope:
    payload = DataQualityIssueRaised(
        study_id=study,
        subject_id=subject,
        issue=problem,  # type: ignore[arg-type]
        detail=f"{problem} for the contract",
        related_event_id=uuid.uuid4(),
    )
    return wrap(payload, source="/tests/contract")


def review(subject: str, of: Envelope, note: str = "") -> Envelope:
    """A review of the issue ``of``: in the issue's own stream, naming the subject."""
    payload = DataQualityIssueReviewed(
        study_id=STUDY,
        subject_id=subject,
        issue_id=of.id,
        person_id="dm",
        role="data_manager",
        reviewed_at=datetime(2026, 6, 3, tzinfo=UTC),
        note=note,
    )
    return wrap(payload, source="/tests/contract")


def resolved(signal: Envelope, reason: str = "back in range") -> Envelope:
    payload = SafetySignalResolved(
        **lifecycle(signal_of(signal)),
        reason=reason,
        input_event_ids=(uuid.uuid4(),),
        collected_at=datetime(2026, 6, 2, tzinfo=UTC),
    )
    return wrap(payload, source="/tests/contract")


def escalated(signal: Envelope, grade: int) -> Envelope:
    payload = SafetySignalEscalated(
        **lifecycle(signal_of(signal)),
        previous_grade=grade - 1,
        grade=grade,
        input_event_ids=(uuid.uuid4(),),
        computed_values={},
        collected_at=datetime(2026, 6, 2, tzinfo=UTC),
    )
    return wrap(payload, source="/tests/contract")


async def put(store: EventStore, *envelopes: Envelope, **options: Any) -> list[int]:
    appended = await store.append([NewEvent(e) for e in envelopes], **options)
    return [a.position for a in appended]


class EventStoreContract:
    """The behaviour every EventStore has; subclasses provide the ``store`` fixture."""

    # -- appending and reading back ----------------------------------------------------

    async def test_an_empty_log_has_no_head_but_genesis(self, store: EventStore) -> None:
        assert await store.head() == (0, GENESIS_HASH)
        assert await store.read_all() == []
        assert await store.append([]) == []

    async def test_appended_events_get_gapless_positions_and_per_stream_versions(
        self, store: EventStore
    ) -> None:
        a1, b1, a2 = result("A", n=1), result("B", n=1), result("A", n=2)
        appended = await store.append([NewEvent(a1), NewEvent(b1), NewEvent(a2)])

        assert [(x.position, x.stream_version, x.new) for x in appended] == [
            (1, 1, True),
            (2, 1, True),
            (3, 2, True),
        ]
        assert [x.stream_id for x in appended] == [
            subject_stream(STUDY, "A"),
            subject_stream(STUDY, "B"),
            subject_stream(STUDY, "A"),
        ]
        stored = await store.read_all()
        assert [e.event_id for e in stored] == [a1.id, b1.id, a2.id]
        assert [e.to_envelope() for e in stored] == [a1, b1, a2]
        assert (stored[0].study_id, stored[0].subject_id) == (STUDY, "A")
        assert stored[0].type == LAB
        assert stored[0].schema_version == 1
        assert stored[0].clinical_time == datetime(2026, 6, 1, 9, 1, tzinfo=UTC)

    async def test_each_event_is_chained_to_the_one_before(self, store: EventStore) -> None:
        await put(store, result("A", n=1), result("B", n=1))
        await put(store, result("A", n=2))

        stored = await store.read_all()
        assert stored[0].prev_hash == GENESIS_HASH
        for before, event in zip([None, *stored], stored, strict=False):
            prev = GENESIS_HASH if before is None else before.hash
            assert event.prev_hash == prev
            assert event.hash == chain_hash(prev, event.canonical())
        assert await store.head() == (3, stored[-1].hash)

    async def test_a_batch_is_recorded_at_the_time_given(self, store: EventStore) -> None:
        at = datetime(2026, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
        await put(store, result("A"), recorded_at=at)
        (event,) = await store.read_all()
        assert event.recorded_at == at

    async def test_a_stream_reads_in_version_order_after_a_version(self, store: EventStore) -> None:
        events = [result("A", n=n) for n in range(4)]
        await put(store, result("B"), *events)

        stream = await store.read_stream(subject_stream(STUDY, "A"))
        assert [e.event_id for e in stream] == [e.id for e in events]
        assert [e.stream_version for e in stream] == [1, 2, 3, 4]
        later = await store.read_stream(subject_stream(STUDY, "A"), after_version=2)
        assert [e.event_id for e in later] == [events[2].id, events[3].id]
        assert await store.read_stream("subject-nobody") == []

    async def test_reading_all_starts_after_a_position_and_stops_at_the_limit(
        self, store: EventStore
    ) -> None:
        events = [result("A", n=n) for n in range(5)]
        at = datetime(2026, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
        await put(store, *events[:3])
        await put(store, *events[3:], recorded_at=at)

        page = await store.read_all(after_position=1, limit=2)
        assert [e.position for e in page] == [2, 3]
        payloads = await store.read_payloads(after_position=3)
        assert [(p.position, p.event_id, p.type) for p in payloads] == [
            (4, events[3].id, LAB),
            (5, events[4].id, LAB),
        ]
        assert payloads[0].payload == events[3].data
        assert (payloads[0].study_id, payloads[0].subject_id) == (STUDY, "A")
        assert payloads[0].recorded_at == at  # when the event was recorded, for read models
        assert await store.read_all(after_position=5) == []

    # -- idempotence and conflicts -----------------------------------------------------

    async def test_an_event_appended_again_is_a_no_op_at_its_first_position(
        self, store: EventStore
    ) -> None:
        first = result("A")
        await put(store, result("B"), first)
        again = await store.append([NewEvent(first), NewEvent(first), NewEvent(result("C"))])

        assert [(a.position, a.new) for a in again] == [(2, False), (2, False), (3, True)]
        assert await store.stored_ids([first.id, uuid.uuid4()]) == {first.id}

    async def test_an_id_stored_with_other_content_is_refused_and_nothing_is_kept(
        self, store: EventStore
    ) -> None:
        first = result("A", "9.0")
        await put(store, first)
        impostor = result("A", "7.0").model_copy(update={"id": first.id})

        with pytest.raises(EventIdConflict, match="already stored at position 1") as refused:
            await put(store, result("B"), impostor)
        assert (refused.value.event_id, refused.value.position) == (first.id, 1)
        assert [e.event_id for e in await store.read_all()] == [first.id]

    async def test_an_id_twice_in_one_batch_with_other_content_is_refused(
        self, store: EventStore
    ) -> None:
        first = result("A", "9.0")
        twin = result("A", "7.0").model_copy(update={"id": first.id})

        with pytest.raises(EventIdConflict, match="earlier in the same batch") as refused:
            await put(store, first, twin)
        assert refused.value.position is None
        assert await store.head() == (0, GENESIS_HASH)

    async def test_an_event_expecting_another_stream_version_is_refused(
        self, store: EventStore
    ) -> None:
        await put(store, result("A", n=1))

        with pytest.raises(StreamVersionConflict, match="at version 1, expected 0") as refused:
            await store.append(
                [NewEvent(result("B")), NewEvent(result("A", n=2), expected_version=0)]
            )
        assert refused.value.stream_id == subject_stream(STUDY, "A")
        assert (refused.value.expected, refused.value.actual) == (0, 1)
        assert len(await store.read_all()) == 1
        (ok,) = await store.append([NewEvent(result("A", n=2), expected_version=1)])
        assert (ok.position, ok.stream_version) == (2, 2)

    async def test_a_batch_expecting_streams_at_versions_is_refused_when_one_moved(
        self, store: EventStore
    ) -> None:
        await put(store, result("A", n=1), result("A", n=2))
        stream = subject_stream(STUDY, "A")

        with pytest.raises(StreamVersionConflict, match="at version 2, expected 1"):
            await put(store, result("A", n=3), expected_versions={stream: 1})
        with pytest.raises(StreamVersionConflict, match="at version 0, expected 3"):
            await put(store, result("B"), expected_versions={"subject-other/X": 3})
        assert await put(store, result("A", n=3), expected_versions={stream: 2}) == [3]

    # -- named queries -----------------------------------------------------------------

    async def test_events_are_found_by_id_in_log_order(self, store: EventStore) -> None:
        a, b, c = result("A"), result("B"), result("C")
        await put(store, a, b, c)
        unknown = uuid.uuid4()

        found = await store.read_events([c.id, a.id, unknown])
        assert [e.event_id for e in found] == [a.id, c.id]
        assert await store.positions_of([c.id, unknown, a.id]) == {a.id: 1, c.id: 3}
        event = await store.find_event(b.id, LAB)
        assert event is not None
        assert event.position == 2
        assert await store.find_event(b.id, RAISED) is None
        assert await store.find_event(unknown, LAB) is None

    async def test_only_streams_holding_events_exist(self, store: EventStore) -> None:
        await put(store, result("A"))
        a, b = subject_stream(STUDY, "A"), subject_stream(STUDY, "B")
        assert await store.existing_streams([a, b]) == {a}
        assert await store.existing_streams([]) == set()

    async def test_streams_read_after_their_own_versions_by_stream_then_version(
        self, store: EventStore
    ) -> None:
        b = [result("B", n=n) for n in range(3)]
        a = [result("A", n=n) for n in range(3)]
        await put(store, b[0], a[0], b[1], a[1], b[2], a[2])
        sa, sb = subject_stream(STUDY, "A"), subject_stream(STUDY, "B")

        read = await store.read_streams_after({sb: 1, sa: 2, "subject-nobody/X": 0})
        assert [(e.stream_id, e.stream_version, e.event_id) for e in read] == [
            (sa, 3, a[2].id),
            (sb, 2, b[1].id),
            (sb, 3, b[2].id),
        ]
        assert read[0].payload == a[2].data
        assert read[0].position == 6
        assert await store.read_streams_after({}) == []

    async def test_events_of_types_in_streams_and_between_positions(
        self, store: EventStore
    ) -> None:
        signal = signal_raised("A")
        await put(store, result("A"), signal, result("B"), resolved(signal))
        stream = signal_of(signal).stream_id

        in_streams = await store.read_streams_of_types([stream], [RAISED, RESOLVED])
        assert [(e.position, e.type) for e in in_streams] == [(2, RAISED), (4, RESOLVED)]
        assert await store.read_streams_of_types([stream], [ISSUE]) == []
        between = await store.read_types_between([LAB], after=1, upto=3)
        assert [(e.position, e.subject_id) for e in between] == [(3, "B")]
        assert [e.position for e in await store.read_types_between([LAB], after=0, upto=4)] == [
            1,
            3,
        ]

    async def test_a_studys_subject_facts_are_read_by_stream_then_version(
        self, store: EventStore
    ) -> None:
        b1, a1, other, a2 = (
            result("B"),
            result("A", n=1),
            result("A", study="NCT-X"),
            result("A", n=2),
        )
        await put(store, b1, a1, other, signal_raised("A"), a2)

        facts = await store.read_study_subject_events(STUDY, [LAB])
        assert [e.event_id for e in facts] == [a1.id, a2.id, b1.id]
        assert [e.stream_version for e in facts] == [1, 3, 1]
        assert facts[0].recorded_at.tzinfo is not None

    async def test_a_subjects_events_of_types_are_read_in_log_order_whatever_their_stream(
        self, store: EventStore
    ) -> None:
        a1, a2, problem = result("A", n=1), result("A", n=2), issue("A", "missing-input")
        reviewed, signal = review("A", problem), signal_raised("A")
        await put(
            store,
            a1,
            result("B"),
            signal,
            result("A", study="NCT-X"),
            problem,
            reviewed,
            a2,
        )

        read = await store.read_subject_events(STUDY, "A", [LAB, ISSUE, REVIEWED])
        assert [(e.position, e.event_id) for e in read] == [
            (1, a1.id),
            (5, problem.id),
            (6, reviewed.id),
            (7, a2.id),
        ]
        assert read[2].stream_id != read[0].stream_id  # the review is in the issue's stream
        assert read[0].payload == a1.data
        signals = await store.read_subject_events(STUDY, "A", [RAISED])
        assert [e.event_id for e in signals] == [signal.id]
        assert await store.read_subject_events(STUDY, "nobody", [LAB]) == []
        assert await store.read_subject_events(STUDY, "A", []) == []

    async def test_a_studys_events_of_types_and_of_payload_matches_are_read_in_log_order(
        self, store: EventStore
    ) -> None:
        alt_a, alt_b = result("A", code=ALT), result("B", "40", code=ALT)
        liver, other_rule = signal_raised("A", rule_id="hys-law"), signal_raised("B")
        problem = issue("B", "missing-input")
        await put(
            store,
            result("A"),  # 1: another analyte
            alt_a,  # 2
            other_rule,  # 3: another rule
            result("A", code=ALT, study="NCT-X"),  # 4: another study
            problem,  # 5
            liver,  # 6
            alt_b,  # 7
            resolved(liver),  # 8: of a type no match names
            escalated(liver, 3),  # 9
        )
        matching = [
            PayloadMatch((LAB,), "loinc_code", (ALT, "1920-8")),
            PayloadMatch((RAISED, ESCALATED), "rule_id", ("hys-law", "other")),
        ]

        read = await store.read_study_events(STUDY, [ISSUE], matching=matching)
        assert [e.event_id for e in read[:4]] == [alt_a.id, problem.id, liver.id, alt_b.id]
        assert [e.position for e in read] == [2, 5, 6, 7, 9]
        assert [e.subject_id for e in read] == ["A", "B", "A", "B", "A"]
        assert [e.event_id for e in await store.read_study_events(STUDY, [ISSUE])] == [problem.id]
        only_alt = await store.read_study_events("NCT-X", [], matching=matching[:1])
        assert [e.position for e in only_alt] == [4]
        assert await store.read_study_events("NCT-nobody", [LAB], matching=matching) == []

    async def test_the_events_a_payload_match_selects_are_read_in_log_order(
        self, store: EventStore
    ) -> None:
        first, second = issue("A", "missing-input"), issue("B", "unknown-subject")
        reviews = [review("A", first, "a"), review("B", second), review("A", first, "b")]
        await put(store, first, second, *reviews, result("A", code=ALT))

        of_first = await store.read_matching(
            PayloadMatch((REVIEWED,), "issue_id", (str(first.id),))
        )
        assert [(e.position, e.event_id) for e in of_first] == [
            (3, reviews[0].id),
            (5, reviews[2].id),
        ]
        assert of_first[1].payload["note"] == "b"
        both = PayloadMatch((REVIEWED,), "issue_id", (str(second.id), str(first.id)))
        assert [e.position for e in await store.read_matching(both)] == [3, 4, 5]
        assert await store.read_matching(PayloadMatch((LAB,), "issue_id", (str(first.id),))) == []
        assert await store.read_matching(PayloadMatch((REVIEWED,), "issue_id", ())) == []
        alt = await store.read_matching(PayloadMatch((LAB,), "loinc_code", (ALT,)))
        assert [e.position for e in alt] == [6]

    async def test_the_latest_events_of_a_type_in_studies_come_newest_first_up_to_a_limit(
        self, store: EventStore
    ) -> None:
        issues = [
            issue("A", "missing-input"),  # 1
            issue("A", "missing-input", study="NCT-X"),  # 2
            issue("B", "unknown-subject"),  # 4
            issue("C", "missing-input", study="NCT-Y"),  # 5
        ]
        await put(store, *issues[:2], result("A"), *issues[2:], result("B"))

        latest = await store.read_latest_of_type(ISSUE, [STUDY, "NCT-X"], limit=10)
        assert [(e.position, e.event_id) for e in latest] == [
            (4, issues[2].id),
            (2, issues[1].id),
            (1, issues[0].id),
        ]
        assert latest[0].payload == issues[2].data
        limited = await store.read_latest_of_type(ISSUE, [STUDY, "NCT-Y"], limit=2)
        assert [e.position for e in limited] == [5, 4]
        assert [e.position for e in await store.read_latest_of_type(LAB, [STUDY], limit=5)] == [
            6,
            3,
        ]
        assert await store.read_latest_of_type(ISSUE, [], limit=10) == []
        assert await store.read_latest_of_type(RAISED, [STUDY], limit=10) == []

    async def test_the_last_event_of_a_type_in_each_of_several_streams(
        self, store: EventStore
    ) -> None:
        first_a, second_a, only_c = signal_raised("A"), signal_raised("A"), signal_raised("C")
        await put(store, first_a, result("A"), result("B"), second_a, only_c, result("A", n=2))
        a, b, c = (subject_stream(STUDY, s) for s in "ABC")

        last = await store.last_of_type_in_streams([a, b, c, "subject-nobody/X", a], RAISED)
        assert {stream: e.event_id for stream, e in last.items()} == {
            a: second_a.id,
            c: only_c.id,
        }
        assert (last[a].position, last[a].stream_version) == (4, 3)
        assert last[a].payload == second_a.data
        assert await store.last_of_type_in_streams([b], RAISED) == {}
        assert await store.last_of_type_in_streams([], RAISED) == {}

    async def test_a_signals_history_is_what_followed_its_raising(self, store: EventStore) -> None:
        signal = signal_raised("A")
        other = signal_raised("A")
        await put(store, signal, other, escalated(signal, 3), resolved(other), resolved(signal))
        stream = signal_of(signal).stream_id

        history = await store.read_signal_history(stream, signal_of(signal).signal_id)
        assert [(e.position, e.type) for e in history] == [
            (3, ESCALATED),
            (5, RESOLVED),
        ]
        assert await store.read_signal_history(stream, uuid.uuid4()) == []

    async def test_open_streams_are_those_whose_last_turn_did_not_close_them(
        self, store: EventStore
    ) -> None:
        # subject streams stand in for notifications: raised opens, resolved closes
        closed, reopened = signal_raised("closed"), signal_raised("reopened")
        again = signal_raised("reopened", signal_id=uuid.uuid4())
        await put(
            store,
            result("closed"),
            closed,
            resolved(closed),
            result("reopened"),
            reopened,
            resolved(reopened),
            again,
            result("never-turned"),
        )
        prefix = f"subject-{STUDY}/"

        open_events = await store.read_open_streams(
            prefix, [LAB], turning_types=[RAISED, RESOLVED], closing_types=[RESOLVED]
        )
        assert [e.subject_id for e in open_events] == ["never-turned", "reopened"]
        assert (
            await store.read_open_streams(
                "subject-elsewhere", [LAB], turning_types=[RAISED], closing_types=[RESOLVED]
            )
            == []
        )

    async def test_the_last_of_a_type_and_the_count_after_a_version(
        self, store: EventStore
    ) -> None:
        first, second = signal_raised("A"), signal_raised("A")
        await put(store, result("A", n=1), first, result("A", n=2), second, result("A", n=3))
        stream = signal_of(first).stream_id

        last = await store.last_of_type(stream, RAISED)
        assert last is not None
        assert (last.stream_version, last.event_id) == (4, second.id)
        assert await store.last_of_type(stream, RESOLVED) is None
        assert await store.count_of_type(stream, LAB, after_version=0) == 3
        assert await store.count_of_type(stream, LAB, after_version=3) == 1
        assert await store.count_of_type("subject-nobody", LAB, after_version=0) == 0

    async def test_a_selection_reads_its_kinds_with_whether_the_grace_has_passed(
        self, store: EventStore
    ) -> None:
        selection = EventSelection(
            types=(RAISED,),
            payload_type=ISSUE,
            payload_field="issue",
            payload_values=("unknown-subject", "censored-result"),
        )
        long_ago = datetime.now(UTC) - timedelta(hours=2)
        await put(store, signal_raised("A"), recorded_at=long_ago)  # 1
        await put(
            store,
            result("A"),  # 2: not selected
            issue("A", "unit-not-convertible"),  # 3: an issue of another kind
            issue("A", "unknown-subject"),  # 4
            signal_raised("B"),  # 5
            issue("B", "censored-result"),  # 6
        )

        read = await store.read_selected(selection, after=0, upto=6, limit=10, grace_seconds=3600)
        assert [(r.event.position, r.due) for r in read] == [
            (1, True),
            (4, False),
            (5, False),
            (6, False),
        ]
        assert read[1].event.payload["issue"] == "unknown-subject"
        page = await store.read_selected(selection, after=1, upto=5, limit=1, grace_seconds=0)
        assert [(r.event.position, r.due) for r in page] == [(4, True)]

        backlog = await store.selected_backlog(selection, after=1)
        assert backlog.events == 3
        assert backlog.oldest_age_seconds is not None
        assert 0 <= backlog.oldest_age_seconds < 600
        everything = await store.selected_backlog(selection, after=0)
        assert everything.events == 4
        assert everything.oldest_age_seconds is not None
        assert everything.oldest_age_seconds >= 7000
        nothing = await store.selected_backlog(selection, after=6)
        assert (nothing.events, nothing.oldest_age_seconds) == (0, None)


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, in_memory_event_store: InMemoryEventStore) -> EventStore:
        return in_memory_event_store


@pytest.mark.integration
class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, postgres_event_store: PostgresEventStore) -> EventStore:
        return postgres_event_store
