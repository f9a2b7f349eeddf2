"""The shared batch consumer keeps each service's log events as they were named before
it was shared: ``rules.undecodable_record`` and ``notifier.invalid_signal``, which
operators' log queries look for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from services.notifier.entrypoints.signal_consumer import SignalConsumer
from services.safety_rules.entrypoints.records import parse_records
from shared import batch_consumer
from shared.batch_consumer import Record
from shared.events import Envelope
from shared.events.topics import LAB_RESULTS, SAFETY_SIGNALS
from tests.support.notifier import context, roster


def test_a_record_the_rules_cannot_decode_is_logged_as_the_rules_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(raw: bytes | str) -> Envelope:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(Envelope, "from_json", staticmethod(broken))
    with capture_logs() as logs:
        parse_records([Record(LAB_RESULTS, 0, 7, b"[[[]]]")])
    assert [entry["event"] for entry in logs] == ["rules.undecodable_record"]


@dataclass
class _ConsumerRecord:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class _Message:
    raw_message: tuple[_ConsumerRecord, ...]


async def test_a_record_on_the_signals_topic_that_is_no_event_is_logged_as_an_invalid_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead_lettered: list[Any] = []

    async def keep(*args: Any, **kwargs: Any) -> None:
        dead_lettered.append(args[2])

    async def handled(envelopes: list[Envelope]) -> int:
        return 0

    monkeypatch.setattr(batch_consumer, "dead_letter", keep)
    consumer = SignalConsumer(
        None,  # pool and broker: never reached, the dead letters are faked
        None,  # type: ignore[arg-type]
        context(roster()),
        group_id="vigil-notifier",
        on_planned=lambda: None,
    )
    monkeypatch.setattr(consumer, "_handle", handled)
    garbage = _ConsumerRecord(SAFETY_SIGNALS, 0, 42, b'{"type": "not.a.vigil.event"}')
    with capture_logs() as logs:
        await consumer(_Message((garbage,)))  # type: ignore[arg-type]
    invalid = [entry for entry in logs if entry["log_level"] == "error"]
    assert [entry["event"] for entry in invalid] == ["notifier.invalid_signal"]
    assert invalid[0]["offset"] == 42
    assert len(dead_lettered[0]) == 1
