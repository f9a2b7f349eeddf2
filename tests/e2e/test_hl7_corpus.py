"""Issue 14, HL7 v2 as real senders write it: every message of tests/data/hl7 replayed
through a real MLLP socket to the running services (ingest, broker, rules, PostgreSQL).

For each, expected.yaml says the ACK (its code, each ERR's location, 0357 code and
severity) and what is stored: each subject's lab results and unreadable results in the
audit log, or the receipt's outcome. ACK texts must name fields and problems, never a
value, a patient identifier, an internal error or a pattern."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import asyncpg
import hl7
import pytest

from tests.support.hl7_corpus import (
    INTERNALS,
    LAB_RESULT,
    UNREADABLE,
    Case,
    cases,
    check_keys,
    unmatched,
)
from tests.support.mllp import ack_code, exchange_bytes
from tests.support.results import stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
CASES = cases()


def _texts(ack: hl7.Message) -> list[str]:
    texts = [ack.unescape(str(ack.segment("MSA")[3]))]
    with contextlib.suppress(KeyError):  # no ERR segment
        texts += [ack.unescape(str(err[8])) for err in ack.segments("ERR")]
    return texts


def _errs(ack: hl7.Message) -> list[tuple[str, str, str]]:
    try:
        segments = ack.segments("ERR")
    except KeyError:
        return []
    return [(str(err[2]), str(err[3][0][0]), str(err[4])) for err in segments]


async def _stored(
    db: asyncpg.Connection, subject: str, kind: str, count: int
) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        found = [json.loads(p) for p in await stored_payloads(db, subject, kind)]
        return found if len(found) >= count else None

    return await eventually(probe, timeout=60, what=f"{count} {kind} of one subject stored")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_each_corpus_message_is_answered_and_stored_as_expected(
    services: RunningServices, db: asyncpg.Connection, case: Case
) -> None:
    messages = case.messages()
    acks = [await exchange_bytes(services.mllp_port, message) for message in messages]
    assert [ack_code(ack) for ack in acks] == case.acks, [str(a) for a in acks]
    assert _errs(acks[-1]) == [(e["location"], e["code"], e["severity"]) for e in case.err]
    for ack in acks:
        for text in _texts(ack):
            assert not any(mark in text for mark in INTERNALS), text
            assert not any(subject in text for subject in case.subjects.values()), text
            assert "MRN0042" not in text, text
            assert "19850412" not in text, text
    if case.receipt is not None:
        row = await db.fetchrow(
            "SELECT outcome, reason, event_ids FROM received_messages WHERE raw = $1",
            messages[-1],
        )
        assert row is not None
        assert row["outcome"] == case.receipt
        for err in case.err:  # the receipt says what its ACK warned about, or refused
            segment, sequence, field = err["location"].split("^")
            assert f"{segment}[{sequence}]-{field}" in (row["reason"] or ""), row["reason"]
        if case.receipt == "accepted" and not (case.results or case.unreadable):
            assert not row["event_ids"]  # kept, with nothing to judge
    for placeholder, subject in case.subjects.items():
        want = case.results.get(placeholder, [])
        if want:
            results = await _stored(db, subject, LAB_RESULT, len(want))
            assert unmatched(results, want) == [], case.name
            check_keys(case, placeholder, results)
        unreadable = case.unreadable.get(placeholder, [])
        if unreadable:
            stored = await _stored(db, subject, UNREADABLE, len(unreadable))
            assert unmatched(stored, unreadable) == [], case.name
