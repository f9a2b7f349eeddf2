"""Issue 14, second outside break round (HL7 v2 over MLLP): what a laboratory's interface
engine sends that Vigil still mishandles, each through a real MLLP socket to the running
services (ingest, broker, rules, PostgreSQL, notifier). Every test here failed on the code
it was written against and states what a conformant receiver must do, with the clause."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from tests.support.mllp import exchange_bytes, exchange_segments, hl7_message, msh
from tests.support.results import new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
LAB_RESULT = "org.vigil.lab_result.reported.v1"
RAISED = "org.vigil.safety_signal.raised.v1"
RETRACTED = "org.vigil.safety_signal.retracted.v1"
DATA_QUALITY = "org.vigil.data_quality.issue_raised.v1"


def _oru(
    control: str,
    subject: str,
    *obx: str,
    obr_time: str = "20261120080000+0800",
    version: str = "2.5.1",
    tag: str | None = None,
    after: tuple[str, ...] = (),
) -> list[str]:
    tag = tag or control
    head = msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", control)
    head = head.replace("|P|2.5.1", f"|P|{version}")
    return [
        head,
        f"PID|1||MRN0042^^^HOSP^MR~{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{tag}|F-{tag}|58410-2^CBC^LN|||{obr_time}",
        *obx,
        *after,
    ]


async def _send(services: RunningServices, segments: list[str]) -> str:
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    return str(ack)


async def _payloads(db: asyncpg.Connection, subject: str, kind: str) -> list[dict[str, object]]:
    return [json.loads(p) for p in await stored_payloads(db, subject, kind)]


async def _batch(services: RunningServices, frame: bytes) -> list[list[str]]:
    return await exchange_segments(services.mllp_port, frame)


def _hb(value: str, flag: str = "L", status: str = "F", set_id: int = 1) -> str:
    return f"OBX|{set_id}|NM|718-7^Hemoglobin^LN||{value}|g/dL|12-16|{flag}|||{status}"


async def test_a_batch_file_holding_two_batches_is_read(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: one MLLP block holding an HL7 batch file with two batches, as the batch
    grammar allows: FHS, BHS, ORU (subject A, Hb 7.0), BTS|1, BHS, ORU (subject B,
    Hb 7.0), BTS|1, FTS|2.

    Should: HL7 v2.5.1 2.10.3.1: a file is ``[FHS] { [BHS] { [MSH ...] } [BTS] } [FTS]``:
    the batch is repeatable inside a file, and FTS-1 (file batch count) counts the
    batches. A well-formed file of two batches is read: each message answered AA and
    each haemoglobin recorded under its own subject."""
    tag = uuid.uuid4().hex[:8]
    first, second = new_subject_id(), new_subject_id()
    frame = hl7_message(
        f"FHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||F{tag}",
        f"BHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||B1{tag}",
        *_oru(f"TA{tag}", first, _hb("7.0")),
        "BTS|1",
        f"BHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||B2{tag}",
        *_oru(f"TB{tag}", second, _hb("7.0")),
        "BTS|1",
        "FTS|2",
    )
    segments = await _batch(services, frame)
    codes = [s[1] for s in segments if s[0] == "MSA"]
    assert codes == ["AA", "AA"], segments
    for subject in (first, second):
        await eventually(
            lambda s=subject: _payloads(db, s, LAB_RESULT), timeout=60, what="each batch's result"
        )


@pytest.mark.parametrize("value", ["7,0", "7.0 g/dL"])
async def test_a_haemoglobin_written_as_text_is_judged_or_raised(
    services: RunningServices, db: asyncpg.Connection, value: str
) -> None:
    """Sent: haemoglobin OBX-2 ``ST`` with OBX-5 as laboratories write it by hand or from
    a European analyser: ``7,0`` (decimal comma) or ``7.0 g/dL`` (unit in the value),
    OBX-6 g/dL, OBX-7 12-16, flag L, status F.

    Came back: AA with no ERR; stored as a LabResultReported with value None,
    value_text "7,0" / "7.0 g/dL", flags [L], no canonical value; no alert and no
    data-quality issue: a haemoglobin of 7 flagged low reaches nobody. (The same
    ``7,0`` sent as OBX-2 NM is kept unreadable and raised, and `` 7.0 `` / ``+7.0`` as
    ST are read as 7.0: only these forms fall through.)

    Should: issue 14 item 3/4 and HL7 2.A.75 (ST): Vigil either reads the number (the
    anaemia rule raises) or keeps the OBX as unreadable and raises it (flags say L:
    abnormal-result-unreadable to the medical monitor); a haemoglobin of 7 with flag L
    is never stored as mere text with nobody told."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    ack = await _send(
        services,
        _oru(f"ST{tag}", subject, f"OBX|1|ST|718-7^Hemoglobin^LN||{value}|g/dL|12-16|L|||F"),
    )
    assert "MSA|AA" in ack, ack

    async def heard() -> bool | None:
        raised = await _payloads(db, subject, RAISED)
        issues = [
            i
            for i in await _payloads(db, subject, DATA_QUALITY)
            if i.get("issue") != "unknown-subject"
        ]
        return bool(raised or issues) or None

    try:
        await eventually(heard, timeout=45, what="the value judged or raised")
    except AssertionError as error:
        stored = await _payloads(db, subject, LAB_RESULT)
        raise AssertionError(f"{error}; stored: {stored}") from None
