"""HL7 v2 over MLLP against the running services: ACK AA only once stored and published."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from services.notifier.domain.roster import SITE_ALERT_ROLES
from tests.e2e.test_haemoglobin_alert import ROSTER, about
from tests.support.mail import MailCatcher
from tests.support.mllp import exchange
from tests.support.results import stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def adt(subject: str, control: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|EDC|PKUPH|VIGIL|SPONSOR|20261120083000||ADT^A04^ADT_A01|{control}|P|2.5.1",
            f"PID|1||MRN-{subject}^^^PKUPH^MR~{subject}^^^NCT05262686^SS||~||19850412|F",
            "PV1|1|O|RHEUM^^^PKUPH-02",
        ]
    )


def oru(subject: str, control: str, *obx: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|{control}|P|2.5.1",
            f"PID|1||{subject}^^^NCT05262686^SS",
            "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20261120080000+0800",
            *obx,
        ]
    )


async def test_low_haemoglobin_over_mllp_is_acknowledged_and_alerts_once(
    services: RunningServices, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = f"H-{uuid.uuid4().hex[:8]}"
    ack = await exchange(services.mllp_port, adt(subject, f"A{subject}"))
    assert str(ack.segment("MSA")[1]) == "AA"
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 1 FROM events WHERE subject_id = $1 AND type LIKE '%enrolled%'",
            subject,
        ),
        what="registration stored",
    )
    message = oru(
        subject,
        f"R{subject}",
        "OBX|1|NM|718-7^Hemoglobin^LN||84|g/L|120-160|L|||F",
        "OBX|2|NM|1742-6^ALT^LN||22|U/L|0-40|N|||F",
    )

    first = await exchange(services.mllp_port, message)
    again = await exchange(services.mllp_port, message)  # the LIS resends

    for ack in (first, again):
        assert str(ack.segment("MSA")[1]) == "AA"
        assert (str(ack.segment("MSH")[5]), str(ack.segment("MSH")[6])) == ("LIS", "PKUPH-LAB")
        assert str(ack.segment("MSA")[2]) == f"R{subject}"
    site = next(s for s in ROSTER.sites if s.id == "PKUPH-02")
    expected = {str(p.email) for p in site.people if p.role in SITE_ALERT_ROLES}
    mails = mailbox.wait_for(about(subject), count=len(expected))
    assert "84 g/L" in mails[0].body
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM events WHERE subject_id = $1 AND type LIKE '%lab_result%'",
            subject,
        ),
        what="both results stored once",
    )
    receipts = await db.fetch(
        "SELECT channel, outcome FROM received_messages WHERE raw = $1", message.encode()
    )
    assert [(r["channel"], r["outcome"]) for r in receipts] == [("mllp", "accepted")] * 2


async def test_an_unreadable_result_gets_aa_with_a_warning_err_and_is_kept(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    control, subject = f"BAD{uuid.uuid4().hex[:8]}", f"H-{uuid.uuid4().hex[:8]}"
    message = oru(subject, control, "OBX|1|NM|718-7^Hemoglobin^LN||eight|g/dL|12-16|L|||F")

    ack = await exchange(services.mllp_port, message)

    assert str(ack.segment("MSA")[1]) == "AA"
    assert str(ack.segment("MSA")[2]) == control
    err = ack.segment("ERR")
    assert str(err[2]) == "OBX^1^5"
    assert str(err[3]).startswith("102^")
    assert str(err[4]) == "W"
    assert "eight" not in str(ack)
    row = await db.fetchrow(
        "SELECT outcome FROM received_messages WHERE raw = $1", message.encode()
    )
    assert row["outcome"] == "accepted"
    (kept,) = await eventually(
        lambda: stored_payloads(db, subject, "org.vigil.lab_result.unreadable.v1"),
        timeout=60,
        what="the unreadable result kept",
    )
    assert json.loads(kept)["field"] == "OBX-5"


async def test_unsupported_message_type_gets_ar(services: RunningServices) -> None:
    message = oru("H-y", "ORM1").replace("ORU^R01^ORU_R01", "ORM^O01^ORM_O01")
    ack = await exchange(services.mllp_port, message)
    assert str(ack.segment("MSA")[1]) == "AR"
    assert str(ack.segment("ERR")[3]).startswith("200^")


async def test_local_code_from_the_study_code_map_alerts(
    services: RunningServices, mailbox: MailCatcher
) -> None:
    subject = f"L-{uuid.uuid4().hex[:8]}"
    message = oru(subject, f"L{subject}", "OBX|1|NM|HGB^Haemoglobin^L||7.2|g/dL|12-16|LL|||F")
    ack = await exchange(services.mllp_port, message)
    assert str(ack.segment("MSA")[1]) == "AA"
    # the subject is not enrolled: the medical monitor hears of the signal and of the
    # unknown subject
    mails = mailbox.wait_for(about(subject), count=2)
    signal = [m for m in mails if "does not know" not in m.body]
    assert len(signal) == 1
    assert "7.2 g/dL" in signal[0].body


async def test_corrected_result_supersedes_the_earlier_one(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject = f"C-{uuid.uuid4().hex[:8]}"
    first = oru(subject, f"F{subject}", "OBX|1|NM|718-7^Hemoglobin^LN||8.1|g/dL|12-16|L|||F")
    fixed = oru(subject, f"C{subject}", "OBX|1|NM|718-7^Hemoglobin^LN||12.1|g/dL|12-16|N|||C")
    for message in (first, fixed):
        ack = await exchange(services.mllp_port, message)
        assert str(ack.segment("MSA")[1]) == "AA"
    reason = await eventually(
        lambda: db.fetchval(
            "SELECT payload->>'reason' FROM events WHERE subject_id = $1 "
            "AND type = 'org.vigil.lab_result.superseded.v1'",
            subject,
        ),
        what="the correction recorded as superseding the first report",
    )
    assert reason == "corrected"
