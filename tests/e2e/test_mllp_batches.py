"""HL7 batches (FHS/BHS ... BTS/FTS) in one MLLP block, and blocks that hold more than one
message without one, through a real MLLP socket to the running services."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from tests.support.mllp import (
    ack_code,
    err_location,
    exchange_bytes,
    exchange_segments,
    msh,
)
from tests.support.results import new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
LAB_RESULT = "org.vigil.lab_result.reported.v1"


def oru(control: str, subject: str, facility: str = "PKUPH-LAB") -> list[str]:
    return [
        msh("LIS", facility, "ORU^R01^ORU_R01", control),
        f"PID|1||{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{control}|F-{control}|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|NM|718-7^Hemoglobin^LN||7.0|g/dL|12-16|L|||F",
    ]


def raw(segments: list[str], end: str = "\r") -> bytes:
    return (end.join(segments) + end).encode()


async def results(db: asyncpg.Connection, subject: str) -> list[dict[str, object]]:
    return [json.loads(p) for p in await stored_payloads(db, subject, LAB_RESULT)]


async def receipt(db: asyncpg.Connection, message: bytes) -> asyncpg.Record:
    row = await db.fetchrow("SELECT outcome, reason FROM received_messages WHERE raw = $1", message)
    assert row is not None, "the message was not kept"
    return row


async def test_each_message_of_a_batch_is_checked_kept_and_answered_in_a_batch_ack(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    trusted, smuggled = new_subject_id(), new_subject_id()
    first, second = oru(f"BA{tag}", trusted), oru(f"BB{tag}", smuggled, facility="OTHER-LAB")
    block = raw(
        [
            f"FHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||F{tag}",
            f"BHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||B{tag}",
            *first,
            *second,
            "BTS|2",
            "FTS|1",
        ]
    )
    segments = await exchange_segments(services.mllp_port, block)
    names = [s[0] for s in segments]
    assert names[:2] == ["FHS", "BHS"]
    assert names[-2:] == ["BTS", "FTS"]
    assert segments[0][11] == f"F{tag}"  # FHS-12, BHS-12: what they answer
    assert segments[1][11] == f"B{tag}"
    assert segments[-2][1] == "2"
    msas = [(s[1], s[2]) for s in segments if s[0] == "MSA"]
    # the second message names a sender the connection's source does not hold
    assert msas == [("AA", f"BA{tag}"), ("AR", f"BB{tag}")]
    errs = [s for s in segments if s[0] == "ERR"]
    assert [e[2] for e in errs] == ["MSH^1^4"]

    # each message kept as it was sent, before the answer
    assert (await receipt(db, raw(first)))["outcome"] == "accepted"
    refused = await receipt(db, raw(second))
    assert refused["outcome"] == "rejected"
    assert "MSH-4/MSH-3 is not an identity" in refused["reason"]
    await eventually(lambda: results(db, trusted), timeout=60, what="the first result")
    await asyncio.sleep(2)
    assert await results(db, smuggled) == []


async def test_a_batch_that_lost_a_message_is_refused_whole_and_kept(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    subject = new_subject_id()
    block = raw(
        [f"BHS|^~\\&|LIS|PKUPH-LAB|||20261120083000||||B{tag}", *oru(f"BC{tag}", subject), "BTS|2"]
    )
    ack = await exchange_bytes(services.mllp_port, block)
    assert ack_code(ack) == "AR"
    assert err_location(ack) == "BTS^1^1"
    assert str(ack.segment("ERR")[3][0][0]) == "100"
    assert (await receipt(db, block))["outcome"] == "rejected"
    await asyncio.sleep(2)
    assert await results(db, subject) == []


async def test_a_second_msh_after_blank_lines_with_lf_ends_is_refused_and_kept(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    trusted, smuggled = new_subject_id(), new_subject_id()
    hidden = oru(f"MD{tag}", smuggled, facility="OTHER-LAB")
    block = raw([*oru(f"MC{tag}", trusted), "", "  ", " " + hidden[0].lower(), *hidden[1:]], "\n")
    ack = await exchange_bytes(services.mllp_port, block)
    assert ack_code(ack) == "AR"
    assert err_location(ack) == "MSH^2^"
    assert (await receipt(db, block))["outcome"] == "rejected"
    await asyncio.sleep(2)
    assert await results(db, trusted) == []
    assert await results(db, smuggled) == []
