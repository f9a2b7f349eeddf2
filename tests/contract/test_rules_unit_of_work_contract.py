"""The contract of the rules service's unit of work (``RulesUnitOfWork``), run against every
implementation: PostgreSQL's (``services.safety_rules.adapters.postgres``) and the in-memory
one the unit tests run on (``services.safety_rules.adapters.in_memory``). What ``handle_batch``
relies on: which events are stored, the time a batch is recorded at, appends that are
idempotent by event id and checked against the streams' versions, subjects' histories,
and outbox entries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import asyncpg
import pytest

from services.safety_rules.adapters.in_memory import InMemoryRulesStore
from services.safety_rules.adapters.postgres import HistoryCache, PostgresRulesUnitOfWork
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.handlers.ports import RulesUnitOfWork
from shared.events import Envelope, subject_stream, wrap
from shared.eventstore import EventIdConflict, StreamVersionConflict
from tests.support.rules_harness import RECORDED_FROM, STUDY, fact

T = TypeVar("T")
RECORDED = datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)
SUBJECT, OTHER_SUBJECT = "01-001", "01-002"
STREAM = subject_stream(STUDY, SUBJECT)


# -- the implementations -------------------------------------------------------------------


class RulesStorage(Protocol):
    """Where units of work of one implementation keep their events, and how a test reads
    what the port itself does not return (the outbox)."""

    async def run(self, work: Callable[[RulesUnitOfWork], Awaitable[T]]) -> T:
        """One unit of work: everything ``work`` does commits, or none of it when it raises."""
        ...

    async def outbox(self) -> list[tuple[str, uuid.UUID]]:
        """Each outbox entry: its topic and event id."""
        ...


class InMemoryRules:
    def __init__(self) -> None:
        self.store = InMemoryRulesStore(clock=RECORDED_FROM)

    async def run(self, work: Callable[[RulesUnitOfWork], Awaitable[T]]) -> T:
        with self.store.transaction():
            return await work(self.store.unit_of_work())

    async def outbox(self) -> list[tuple[str, uuid.UUID]]:
        return [(topic, envelope.id) for topic, envelope in self.store.outbox]


class PostgresRules:
    """Each unit of work in a transaction of its own, with the history cache the service
    keeps between batches (cleared when a batch fails, as the service clears it)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._cache = HistoryCache()

    async def run(self, work: Callable[[RulesUnitOfWork], Awaitable[T]]) -> T:
        try:
            async with self._connection.transaction():
                return await work(PostgresRulesUnitOfWork(self._connection, self._cache))
        except BaseException:
            self._cache.clear()
            raise

    async def outbox(self) -> list[tuple[str, uuid.UUID]]:
        rows = await self._connection.fetch("SELECT topic, event_id FROM outbox")
        return [(row["topic"], row["event_id"]) for row in rows]


@pytest.fixture
async def rules(database: str | None) -> AsyncIterator[RulesStorage]:
    """The rules service's storage, once per implementation."""
    if database is None:
        yield InMemoryRules()
        return
    connection = await asyncpg.connect(database)
    try:
        yield PostgresRules(connection)
    finally:
        await connection.close()


# -- facts ---------------------------------------------------------------------------------


def enrolment(subject: str = SUBJECT) -> Envelope:
    return wrap(fact({"enrol": {}}, subject), source="/test/site")


def haemoglobin(value: float, day: float = 1, subject: str = SUBJECT) -> Envelope:
    # a message of its own: two results of one day are two events
    lab = {"loinc": "718-7", "value": value, "unit": "g/dL", "at": day, "msg": str(uuid.uuid4())}
    spec = {"lab": lab}
    return wrap(fact(spec, subject), source="/test/site")


def append(
    envelopes: Sequence[Envelope], expected: dict[str, int] | None = None
) -> Callable[[RulesUnitOfWork], Awaitable[None]]:
    async def work(uow: RulesUnitOfWork) -> None:
        await uow.append(envelopes, expected_versions=expected or {}, recorded_at=RECORDED)

    return work


async def stored(rules: RulesStorage, *envelopes: Envelope) -> set[uuid.UUID]:
    async def work(uow: RulesUnitOfWork) -> set[uuid.UUID]:
        return (await uow.stored([e.id for e in envelopes]))[1]

    return await rules.run(work)


async def history(rules: RulesStorage, subject: str = SUBJECT) -> SubjectHistory:
    async def work(uow: RulesUnitOfWork) -> SubjectHistory:
        return (await uow.histories([(STUDY, subject)]))[(STUDY, subject)]

    return await rules.run(work)


def folded(subject: SubjectHistory) -> dict[str, Any]:
    """What a history says, as far as the contract goes."""
    return {
        "version": subject.version,
        "enrolled": subject.enrolment is not None,
        "labs": sorted(
            (e.stream_version, e.result.value, e.recorded_at) for e in subject.labs.values()
        ),
    }


# -- the contract --------------------------------------------------------------------------


async def test_an_event_is_stored_once_appended(rules: RulesStorage) -> None:
    event = haemoglobin(8.6)
    assert await stored(rules, event) == set()

    await rules.run(append([event]))

    assert await stored(rules, event, haemoglobin(9.0)) == {event.id}


async def test_the_recording_time_is_aware_and_never_goes_back(rules: RulesStorage) -> None:
    async def now(uow: RulesUnitOfWork) -> datetime:
        return (await uow.stored([]))[0]

    first = await rules.run(now)
    second = await rules.run(now)

    assert first.utcoffset() is not None
    assert second >= first


async def test_a_subject_with_no_events_has_an_empty_history(rules: RulesStorage) -> None:
    subject = await history(rules)

    assert (subject.study_id, subject.subject_id) == (STUDY, SUBJECT)
    assert folded(subject) == {"version": 0, "enrolled": False, "labs": []}


async def test_appended_events_fold_into_their_subjects_history(rules: RulesStorage) -> None:
    await rules.run(append([enrolment(), haemoglobin(8.6)], {STREAM: 0}))
    await rules.run(append([enrolment(OTHER_SUBJECT)]))

    subject = await history(rules)

    assert folded(subject) == {
        "version": 2,
        "enrolled": True,
        "labs": [(2, Decimal("8.6"), RECORDED)],
    }
    assert folded(await history(rules, OTHER_SUBJECT))["version"] == 1


async def test_histories_read_what_later_units_of_work_appended(rules: RulesStorage) -> None:
    await rules.run(append([enrolment()], {STREAM: 0}))
    assert folded(await history(rules))["version"] == 1

    later = RECORDED + timedelta(minutes=5)

    async def work(uow: RulesUnitOfWork) -> None:
        await uow.append([haemoglobin(8.6)], expected_versions={STREAM: 1}, recorded_at=later)

    await rules.run(work)

    assert folded(await history(rules)) == {
        "version": 2,
        "enrolled": True,
        "labs": [(2, Decimal("8.6"), later)],
    }


async def test_histories_of_several_subjects_come_in_one_call(rules: RulesStorage) -> None:
    await rules.run(append([enrolment(), enrolment(OTHER_SUBJECT), haemoglobin(9.5)]))
    keys = [(STUDY, OTHER_SUBJECT), (STUDY, SUBJECT), (STUDY, "01-999")]

    async def work(uow: RulesUnitOfWork) -> dict[tuple[str, str], int]:
        return {key: subject.version for key, subject in (await uow.histories(keys)).items()}

    assert await rules.run(work) == {keys[0]: 1, keys[1]: 2, keys[2]: 0}


async def test_appending_a_stored_event_again_changes_nothing(rules: RulesStorage) -> None:
    event = haemoglobin(8.6)
    await rules.run(append([enrolment(), event]))

    await rules.run(append([event], {STREAM: 2}))

    assert folded(await history(rules))["version"] == 2


async def test_an_event_twice_in_one_batch_is_stored_once(rules: RulesStorage) -> None:
    event = haemoglobin(8.6)

    await rules.run(append([event, event]))

    assert folded(await history(rules))["version"] == 1


async def test_a_stale_expected_version_refuses_the_whole_batch(rules: RulesStorage) -> None:
    await rules.run(append([enrolment()]))
    late = haemoglobin(8.6)

    with pytest.raises(StreamVersionConflict) as raised:
        await rules.run(append([late, enrolment(OTHER_SUBJECT)], {STREAM: 0}))

    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == (STREAM, 0, 1)
    assert await stored(rules, late) == set()
    assert folded(await history(rules, OTHER_SUBJECT))["version"] == 0


async def test_a_stream_that_does_not_exist_is_at_version_zero(rules: RulesStorage) -> None:
    with pytest.raises(StreamVersionConflict, match=r"is at version 0, expected 1"):
        await rules.run(append([haemoglobin(8.6)], {STREAM: 1}))


async def test_an_event_id_with_other_content_is_refused(rules: RulesStorage) -> None:
    event = haemoglobin(8.6)
    await rules.run(append([event]))
    impostor = haemoglobin(12.0).model_copy(update={"id": event.id})
    bystander = enrolment(OTHER_SUBJECT)

    with pytest.raises(EventIdConflict, match=str(event.id)):
        await rules.run(append([bystander, impostor]))

    assert await stored(rules, bystander) == set()
    assert folded(await history(rules))["labs"] == [(1, Decimal("8.6"), RECORDED)]


async def test_one_id_with_two_contents_in_one_batch_is_refused(rules: RulesStorage) -> None:
    event = haemoglobin(8.6)
    impostor = haemoglobin(12.0).model_copy(update={"id": event.id})

    with pytest.raises(EventIdConflict, match="earlier in the same batch"):
        await rules.run(append([event, impostor]))

    assert await stored(rules, event) == set()


async def test_enqueued_events_are_in_the_outbox_once(rules: RulesStorage) -> None:
    first, second = haemoglobin(8.6), haemoglobin(8.0, day=2)

    async def work(uow: RulesUnitOfWork) -> None:
        await uow.append([first, second], expected_versions={}, recorded_at=RECORDED)
        await uow.enqueue([(first, "vigil.signals"), (second, "vigil.data-quality")])
        await uow.enqueue([(first, "vigil.signals")])

    await rules.run(work)

    assert sorted(await rules.outbox()) == sorted(
        [("vigil.signals", first.id), ("vigil.data-quality", second.id)]
    )


async def test_a_unit_of_work_that_fails_after_appending_leaves_nothing(
    rules: RulesStorage,
) -> None:
    event = haemoglobin(8.6)

    async def work(uow: RulesUnitOfWork) -> None:
        await uow.append([event], expected_versions={}, recorded_at=RECORDED)
        await uow.enqueue([(event, "vigil.signals")])
        raise RuntimeError("the batch failed after its append")

    with pytest.raises(RuntimeError, match="after its append"):
        await rules.run(work)

    assert await stored(rules, event) == set()
    assert await rules.outbox() == []
    assert folded(await history(rules))["version"] == 0
