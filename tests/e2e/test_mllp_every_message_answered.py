"""Never silent over MLLP: every message gets AA, AE or AR and is kept, including one whose
events cannot be built and one whose frame lacks its final 0x0D; log lines carry no value
from the message."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.support.mllp import (
    END,
    MllpClient,
    ack_code,
    hl7_message,
    msh,
    oru,
)
from tests.support.services import RunningServices

pytestmark = pytest.mark.integration


def control() -> str:
    return f"S{uuid.uuid4().hex[:12].upper()}"


def adt(subject_field: str, birth_date: str, control_id: str) -> bytes:
    return hl7_message(
        msh("EDC", "PKUPH", "ADT^A04^ADT_A01", control_id),
        f"PID|1||{subject_field}||~||{birth_date}|F",
        "PV1|1|O|RHEUM^^^PKUPH-02",
    )


def ingest_log(services: RunningServices) -> str:
    return (services.log_dir / "ingest.log").read_text(errors="replace")


async def test_an_adt_a04_whose_subject_id_has_a_space_is_answered_and_kept(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    control_id = control()
    message = adt("01 003^^^NCT05262686^SS", "19850412", control_id)
    client = await MllpClient.connect(services.mllp_port)
    try:
        ack = await client.exchange(message)
        follow_up = await client.exchange(oru("LIS", "PKUPH-LAB", control(), "SP-1"))
    finally:
        await client.close()

    assert ack_code(ack) in ("AE", "AR")
    assert str(ack.segment("MSA")[2]) == control_id
    assert ack.segment("ERR")
    assert ack_code(follow_up) == "AA"  # the connection lives on
    row = await db.fetchrow("SELECT outcome, reason FROM received_messages WHERE raw = $1", message)
    assert row["outcome"] == "rejected"
    assert "19850412" not in ingest_log(services)


async def test_a_birth_date_that_fails_validation_never_reaches_the_log(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    message = adt(f"BD-{uuid.uuid4().hex[:6]}^^^NCT05262686^SS", "19851341", control())
    client = await MllpClient.connect(services.mllp_port)
    try:
        ack = await client.exchange(message)
    finally:
        await client.close()

    assert ack_code(ack) == "AE"
    assert str(ack.segment("ERR")[2]) == "PID^1^7"
    row = await db.fetchrow("SELECT outcome FROM received_messages WHERE raw = $1", message)
    assert row["outcome"] == "rejected"
    log = ingest_log(services)
    assert "mllp.rejected" in log
    assert "19851341" not in log


async def test_a_frame_without_its_final_cr_is_answered_and_logged(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    message = oru("LIS", "PKUPH-LAB", control(), f"CR-{uuid.uuid4().hex[:6]}")
    client = await MllpClient.connect(services.mllp_port)
    try:
        await client.send(message, end=END[:1])  # 0x1C, and no 0x0D
        ack = await client.answer(timeout=30)
        peer = "{}:{}".format(*client.writer.get_extra_info("sockname")[:2])
    finally:
        await client.close()

    assert ack_code(ack) == "AA"
    row = await db.fetchrow("SELECT outcome FROM received_messages WHERE raw = $1", message)
    assert row["outcome"] == "accepted"
    assert '"mllp.frame_without_final_cr"' in ingest_log(services)
    assert peer in ingest_log(services)
