"""Finding of the round-2 outside review: an HL7 v2 message is read in the character set
its MSH-18 declares (HL7 table 0211). Vigil promises that every lab result keeps its
value, unit and coding as reported and is judged, and that a message it cannot read is
answered AE/AR naming MSH-18 and kept, never decoded with replacement characters."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from tests.support.mllp import ack_code, err_location, exchange_bytes, hl7_message, msh
from tests.support.results import new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
LAB_RESULT = "org.vigil.lab_result.reported.v1"
RAISED = "org.vigil.safety_signal.raised.v1"


def bilirubin_oru(control: str, subject: str, charset: str | None, unit: bytes) -> bytes:
    """A total bilirubin of 300 umol/L (17.5 mg/dL: grade 4 against the pack's fallback
    ULN), sent without a reference range; MSH-18 is ``charset`` (absent when None)."""
    header = msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", control)
    if charset is not None:
        header += f"||||||{charset}"  # MSH-13 to MSH-17 empty
    return (
        hl7_message(
            header,
            f"PID|1||{subject}^^^{STUDY}^SS",
            f"OBR|1|P-{control}|F-{control}|24325-3^Hepatic panel^LN|||20261120080000+0800",
        )
        + b"\rOBX|1|NM|1975-2^Bilirubin total^LN||300|"
        + unit
        + b"||H|||F"
    )


async def test_an_oru_declaring_its_character_set_in_msh_18_keeps_its_unit_and_alerts(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: two ORU^R01 messages with a total bilirubin of 300 umol/L (grade 4 against
    the pack's fallback ULN): one in UTF-8 (MSH-18 ``UNICODE UTF-8``), one from a
    laboratory whose system sends ISO 8859-1 and says so in MSH-18 (``8859/1``), where
    the micro sign is the byte 0xB5. Promised: every lab result keeps its value, unit
    and coding as reported, and is judged; a message Vigil cannot read is answered AE/AR,
    not accepted. Was: MSH-18 was ignored and every frame decoded as UTF-8 with
    replacement, so the Latin-1 unit became ``\\ufffdmol/L``, the message got AA, and the
    grade 4 bilirubin raised no alert."""
    utf8_subject, latin_subject = new_subject_id(), new_subject_id()
    tag = uuid.uuid4().hex[:8]
    ack = await exchange_bytes(
        services.mllp_port,
        bilirubin_oru(f"U8{tag}", utf8_subject, "UNICODE UTF-8", "µmol/L".encode()),
    )
    assert ack_code(ack) == "AA", str(ack)
    await eventually(
        lambda: stored_payloads(db, utf8_subject, RAISED),
        timeout=60,
        what="the UTF-8 control alert",
    )

    ack = await exchange_bytes(
        services.mllp_port,
        bilirubin_oru(f"L1{tag}", latin_subject, "8859/1", "µmol/L".encode("latin-1")),
    )
    if ack_code(ack) != "AA":
        return  # refusing a message it cannot read is also what was promised
    results = await eventually(
        lambda: stored_payloads(db, latin_subject, LAB_RESULT), timeout=60, what="the result stored"
    )
    units = [json.loads(p)["unit"] for p in results]
    assert units == ["µmol/L"], f"the unit as reported was not kept: {units!r}"
    await eventually(
        lambda: stored_payloads(db, latin_subject, RAISED), timeout=60, what="the bilirubin alert"
    )


@pytest.mark.parametrize(
    ("charset", "expected"),
    [(None, "AE"), ("UNICODE UTF-8", "AE"), ("KLINGON-1", "AR")],
)
async def test_a_message_vigil_cannot_read_is_refused_naming_msh_18_and_kept(
    services: RunningServices, db: asyncpg.Connection, charset: str | None, expected: str
) -> None:
    """Sent: the Latin-1 bilirubin without MSH-18 (so UTF-8 is expected), declaring
    UTF-8, and declaring a character set not in table 0211. Promised: AE (bytes not valid
    in the character set) or AR (an unknown MSH-18), an ERR at MSH-18, the message kept
    as rejected, and no result stored from mangled text."""
    subject, control = new_subject_id(), f"CS{uuid.uuid4().hex[:10]}"
    message = bilirubin_oru(control, subject, charset, "µmol/L".encode("latin-1"))
    ack = await exchange_bytes(services.mllp_port, message)

    assert ack_code(ack) == expected, str(ack)
    assert str(ack.segment("MSA")[2]) == control
    assert err_location(ack) == "MSH^1^18"
    row = await db.fetchrow("SELECT outcome, reason FROM received_messages WHERE raw = $1", message)
    assert row is not None
    assert row["outcome"] == "rejected"
    assert "MSH-18" in row["reason"]
    assert await stored_payloads(db, subject, LAB_RESULT) == []


async def test_a_utf_8_byte_order_mark_before_msh_is_skipped(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: a UTF-8 ORU^R01 preceded by a byte-order mark, as some Windows interface
    engines write it. Promised: read as the message it is, unit kept."""
    subject = new_subject_id()
    message = b"\xef\xbb\xbf" + bilirubin_oru(
        f"BM{uuid.uuid4().hex[:8]}", subject, None, "µmol/L".encode()
    )
    ack = await exchange_bytes(services.mllp_port, message)
    assert ack_code(ack) == "AA", str(ack)
    results = await eventually(
        lambda: stored_payloads(db, subject, LAB_RESULT), timeout=60, what="the result stored"
    )
    assert [json.loads(p)["unit"] for p in results] == ["µmol/L"]
