"""Issue 14, outside break round (HL7 v2 over MLLP): what a laboratory's interface engine
sends that Vigil still mishandles, each through a real MLLP socket to the running
services (ingest, broker, rules, PostgreSQL). Every test here failed on the code it was
written against and states what a conformant receiver must do, with the clause."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid

import asyncpg
import hl7
import pytest

from tests.support.mail import MailCatcher
from tests.support.mllp import (
    ack_code,
    exchange_bytes,
    exchange_segments,
    hl7_message,
    msh,
)
from tests.support.results import new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
LAB_RESULT = "org.vigil.lab_result.reported.v1"


def _haemoglobin_oru(control: str, subject: str, *, facility: str = "PKUPH-LAB") -> list[str]:
    """One ORU^R01 (one patient, one order) with a haemoglobin of 7.0 g/dL (flag L)."""
    return [
        msh("LIS", facility, "ORU^R01^ORU_R01", control),
        f"PID|1||MRN0042^^^HOSP^MR~{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{control}|F-{control}|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|NM|718-7^Hemoglobin^LN||7.0|g/dL|12-16|L|||F",
    ]


def _errs(ack: hl7.Message) -> list[tuple[str, str]]:
    try:
        return [(str(err[3][0][0]), str(err[8])) for err in ack.segments("ERR")]
    except KeyError:
        return []


async def _results(db: asyncpg.Connection, subject: str) -> list[dict[str, object]]:
    return [json.loads(p) for p in await stored_payloads(db, subject, LAB_RESULT)]


async def test_a_batch_of_two_oru_in_one_frame_is_read_or_refused_as_a_batch(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: one MLLP block holding an HL7 batch file, as interface engines send a
    night's results: FHS, BHS, two complete ORU^R01 (subjects A and B, each a
    haemoglobin of 7.0 g/dL), BTS|2, FTS|1.

    Came back: AR with MSA-2 empty, ERR code 207 "Application internal error" and the
    text "not an HL7 v2 message: it does not begin with an MSH segment"; neither
    result recorded.

    Should: HL7 v2.5.1 section 2.10.3 (batch protocol) defines FHS/BHS/BTS/FTS as the
    envelope of a batch of messages. A receiver either reads each message of the batch
    (both haemoglobins recorded, each subject's own result) or, if it does not take
    batches, refuses the batch in words that say so, with a table 0357 code that is
    not 207 (an application internal error tells the laboratory that Vigil failed, not
    that its batch envelope is unsupported, so nobody fixes the interface)."""
    tag = uuid.uuid4().hex[:8]
    first, second = new_subject_id(), new_subject_id()
    envelope_head = [
        f"FHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||F{tag}",
        f"BHS|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||||B{tag}",
    ]
    frame = hl7_message(
        *envelope_head,
        *_haemoglobin_oru(f"BA{tag}", first),
        *_haemoglobin_oru(f"BB{tag}", second),
        "BTS|2",
        "FTS|1",
    )
    # the answer may itself be a batch (FHS/BHS, one ACK per message): read its segments
    segments = await exchange_segments(services.mllp_port, frame)
    codes = [s[1] for s in segments if s[0] == "MSA"]
    if codes and all(code == "AA" for code in codes):
        for subject in (first, second):
            results = await eventually(
                functools.partial(_results, db, subject), timeout=60, what="each batch result"
            )
            assert [r["value"] for r in results] == [7], results
        return
    errs = [(s[3].split("^")[0], s[8] if len(s) > 8 else "") for s in segments if s[0] == "ERR"]
    assert errs, segments
    assert all(code != "207" for code, _ in errs), (
        f"a well-formed batch envelope is answered as an internal error: {errs}"
    )
    assert any("batch" in text.lower() for _, text in errs), (
        f"the refusal does not say that batches (FHS/BHS) are what is not taken: {errs}"
    )


async def test_a_second_msh_in_one_frame_is_not_filed_under_the_first_senders_identity(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: one MLLP block holding two messages back to back (no batch envelope): an
    ORU^R01 from PKUPH-LAB (a source of the study) for subject A, then a second
    MSH whose MSH-4 is OTHER-LAB (no source of any study) with its own PID, OBR and a
    haemoglobin of 7.0 g/dL for subject B.

    Came back: one AA for the first control id only; the second message's result was
    recorded (and judged) under subject B, authenticated as PKUPH-LAB: its MSH was read
    as an unknown segment inside the first message and its MSH-3/MSH-4 never checked.

    Should: HL7 v2.5.1 appendix C (MLLP) frames exactly one message per block, and
    MSH is the first segment of a message (section 2.5.2), never a segment inside
    ORU_R01. A second MSH either starts a second message, which must be checked
    against the connection's source like any other (OTHER-LAB is refused, README
    "Identity") and acknowledged under its own control id, or makes the block a
    malformed message that is refused. In neither case may a result sent under an
    identity no source holds be recorded."""
    tag = uuid.uuid4().hex[:8]
    trusted, smuggled = new_subject_id(), new_subject_id()
    frame = hl7_message(
        *_haemoglobin_oru(f"MA{tag}", trusted),
        *_haemoglobin_oru(f"MB{tag}", smuggled, facility="OTHER-LAB"),
    )
    ack = await exchange_bytes(services.mllp_port, frame)
    if ack_code(ack) == "AA":
        # the first message is recorded: wait for it before looking for the second
        await eventually(lambda: _results(db, trusted), timeout=60, what="the first result")
    await asyncio.sleep(3)  # the second would have been written with the first
    assert await _results(db, smuggled) == [], (
        "a result sent under MSH-4 OTHER-LAB (no source) was recorded, "
        f"acknowledged as {ack_code(ack)} for control id {ack.segment('MSA')[2]}"
    )


async def test_an_oru_without_a_message_control_id_is_refused_naming_msh_10(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: an ORU^R01 whose MSH-10 (message control id) is empty, otherwise complete
    (subject A, haemoglobin 7.0 g/dL).

    Came back: AA with MSA-2 empty, and the result recorded and judged: an
    acknowledgement the sender cannot match to anything it sent.

    Should: HL7 v2.5.1 2.14.9.10: MSH-10 is required (R), the number the receiver
    echoes in MSA-2 (2.14.8.2, also required) so that the sender can tell which message
    the acknowledgement answers, and resends be recognised. A message missing a
    required MSH field is refused in original mode (2.9.2: AR/AE, not AA), with an ERR
    at MSH^1^10 and table 0357 code 101 (required field missing); it is kept as
    rejected, not recorded."""
    subject = new_subject_id()
    segments = _haemoglobin_oru("", subject)
    assert segments[0].split("|")[9] == ""  # MSH-10 empty (MSH-1 is the separator)
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    assert ack_code(ack) in ("AR", "AE"), str(ack)
    assert any(code == "101" for code, _ in _errs(ack)), str(ack)
    assert str(ack.segment("ERR")[2]).startswith("MSH^1^10"), str(ack)
    await asyncio.sleep(3)
    assert await _results(db, subject) == []


RAISED = "org.vigil.safety_signal.raised.v1"
RETRACTED = "org.vigil.safety_signal.retracted.v1"
DATA_QUALITY = "org.vigil.data_quality.issue_raised.v1"


async def _conflict_raised(db: asyncpg.Connection, subject: str) -> bool:
    """Whether a data-quality issue other than the subject being unknown was raised."""
    issues = [json.loads(p) for p in await stored_payloads(db, subject, DATA_QUALITY)]
    return any(issue.get("issue") != "unknown-subject" for issue in issues)


def _haemoglobin_obx(set_id: int, value: str, flag: str) -> str:
    return f"OBX|{set_id}|NM|718-7^Hemoglobin^LN||{value}|g/dL|12-16|{flag}|||F"


async def test_a_final_result_is_not_replaced_by_a_later_final_without_a_correction(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: two ORU^R01, same order (OBR-2/OBR-3), same OBX-3, same collection time,
    both OBX-11 ``F``: first haemoglobin 7.0 g/dL (L), then a later message with
    13.0 g/dL (N).

    Came back: both AA; the 13.0 "updated" the 7.0 and the anaemia alert raised on the
    7.0 was retracted, with no data-quality issue: a final critical-range result was
    withdrawn by a message that does not say it corrects anything.

    Should: HL7 v2.5.1 table 0085 (OBX-11): ``F`` = "Final results; Can only be changed
    with a corrected result", and ``C`` = "Record coming over is a correction and thus
    replaces a final result". Issue 14 item 2 lists what replaces what (C and F replace
    P; C replaces F); F never replaces a different final. The first final stands (its
    alert too) and the conflicting second final is raised as a data-quality issue for
    review, or at the very least the alert is not silently retracted."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    for control, (value, flag) in ((f"FA{tag}", ("7.0", "L")), (f"FB{tag}", ("13.0", "N"))):
        segments = [
            msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", control),
            f"PID|1||{subject}^^^{STUDY}^SS",
            f"OBR|1|P-{tag}|F-{tag}|58410-2^CBC^LN|||20261120080000+0800",
            _haemoglobin_obx(1, value, flag),
        ]
        ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
        assert ack_code(ack) == "AA", str(ack)
        if value == "7.0":
            await eventually(
                lambda: stored_payloads(db, subject, RAISED), timeout=60, what="the 7.0 alert"
            )
    await eventually(lambda: _results(db, subject), timeout=60, what="both results stored")
    await asyncio.sleep(8)  # the rules judge the second final
    retracted = await stored_payloads(db, subject, RETRACTED)
    assert not retracted or await _conflict_raised(db, subject), (
        "a final 7.0 g/dL alert was retracted by a later final (not a correction) "
        "and nobody was told of the conflict"
    )


async def test_two_finals_of_one_test_in_one_order_without_sub_ids_are_both_heard(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: one ORU^R01, one OBR, two OBX with the same OBX-3 (718-7), no OBX-4, no
    OBX-14 (so one collection time, OBR-7), both status F: 7.0 g/dL (L) then 13.0 g/dL
    (N), as a laboratory that reports a repeat measurement on the same sample writes it.

    Came back: AA; both stored with one observation_key, the 13.0 "updated" the 7.0
    within the same message, no anaemia alert and no data-quality issue: the 7.0 was
    never heard.

    Should: HL7 v2.5.1 7.4.2.4: OBX-4 is what distinguishes OBX segments with the same
    observation id under one OBR; without it the two are two reports sent together,
    and neither is a correction of the other (table 0085: only a ``C`` replaces a
    final). A receiver either keeps both as results (the 7.0 judged: anaemia alert) or
    raises the ambiguity as a data-quality issue for review; it never drops one
    silently (issue 14 item 4: one OBX never loses its neighbours)."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    segments = [
        msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", f"FS{tag}"),
        f"PID|1||{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{tag}|F-{tag}|58410-2^CBC^LN|||20261120080000+0800",
        _haemoglobin_obx(1, "7.0", "L"),
        _haemoglobin_obx(2, "13.0", "N"),
    ]
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    assert ack_code(ack) == "AA", str(ack)

    async def heard() -> bool | None:
        alerts = await stored_payloads(db, subject, RAISED)
        return bool(alerts) or await _conflict_raised(db, subject) or None

    await eventually(heard, timeout=45, what="the 7.0 judged or the conflict raised")


async def test_a_greater_than_result_is_not_judged_as_the_number_it_exceeds(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: an ORU^R01 with haemoglobin OBX-2 ``SN``, OBX-5 ``>^7.0`` (greater than
    7.0 g/dL, as analysers report a result beyond a dilution limit), no abnormal flag.

    Came back: AA, stored as value 7 with the comparator, and the anaemia rule
    "Haemoglobin at or below 9 g/dL" raised: the investigator's e-mail says
    "Value: 7 g/dL", "CTCAE v5.0 Anemia grade 2". The same happens for an ANC of
    ``>^0.5`` (neutropenia alert) and a FHIR valueQuantity with comparator ``>``.

    Should: HL7 v2.5.1 2.A.72 (SN): the comparator qualifies the number; ``>^7.0``
    says the value is above 7.0, not that it is 7.0. A result known only to be above
    7 does not meet "at or below 9": a receiver judges it as what it says (no
    threshold alert, or a data-quality issue asking for the exact value), never
    reports a value of 7 and a CTCAE grade to the investigator."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    segments = [
        msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", f"GT{tag}"),
        f"PID|1||{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{tag}|F-{tag}|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|SN|718-7^Hemoglobin^LN||>^7.0|g/dL|12-16||||F",
    ]
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    assert ack_code(ack) == "AA", str(ack)
    await eventually(lambda: _results(db, subject), timeout=60, what="the result stored")
    await asyncio.sleep(8)  # the rules judge it
    raised = [json.loads(p) for p in await stored_payloads(db, subject, RAISED)]
    assert raised == [], f"a '> 7.0 g/dL' haemoglobin raised {[r.get('rule_id') for r in raised]}"


async def test_the_alert_e_mail_states_a_less_than_result_as_the_laboratory_sent_it(
    services: RunningServices, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    """Sent: an ORU^R01 with an absolute neutrophil count OBX-2 ``SN``, OBX-5
    ``<^0.5`` (below 0.5 x10^9/L, the analyser's lower limit), flag LL.

    Came back: AA, the neutropenia alert graded correctly (CTCAE grade 4, which needs
    the comparator), but the investigator's e-mail says "Value: 0.5 10*9/L": a value
    the laboratory did not report, and one that by itself is grade 3, not 4.

    Should: HL7 v2.5.1 2.A.72 (SN): the comparator is part of the value. README:
    every lab result "keeps its value, unit and coding as reported"; what a person
    reads must be what the laboratory said: "< 0.5" (the same holds for a FHIR
    Quantity.comparator)."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    segments = [
        msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", f"LT{tag}"),
        f"PID|1||{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{tag}|F-{tag}|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|SN|751-8^Neutrophils^LN||<^0.5|10*9/L|2.0-7.5|LL|||F",
    ]
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    assert ack_code(ack) == "AA", str(ack)
    mails = await asyncio.to_thread(
        mailbox.wait_for,
        lambda m: subject in m.body and "neutropenia" in m.body,
        timeout=60,
    )
    values = [
        line for mail in mails for line in mail.body.splitlines() if line.startswith("Value:")
    ]
    assert values, [m.body for m in mails]
    assert all("<" in line for line in values), values


@pytest.mark.parametrize("processing_id", ["T", "D"])
async def test_a_training_or_debugging_message_is_not_recorded_as_a_patients_result(
    services: RunningServices, db: asyncpg.Connection, processing_id: str
) -> None:
    """Sent: an ORU^R01 whose MSH-11 (processing id) is ``T`` (training) or ``D``
    (debugging), as a laboratory's test system sends while an interface is being
    built or retrained, with a haemoglobin of 7.0 g/dL.

    Came back: AA (its own MSH-11 ``P``), the result recorded in the audit log as the
    subject's result, and the anaemia alert raised and e-mailed to investigators.

    Should: HL7 v2.5.1 2.9.2.1 (original acknowledgment rules): the receiver
    validates that "the value in MSH-11-processing ID is appropriate for the
    application process handling the message"; if not, it rejects the message (AR in
    MSA-1). Table 0103: P production, T training, D debugging. A production safety
    service must answer AR with an ERR at MSH^1^11 (0357 code 202, unsupported
    processing id) and record nothing: no result, no alert for a test message."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    segments = _haemoglobin_oru(f"PI{processing_id}{tag}", subject)
    segments[0] = segments[0].replace("|P|2.5.1", f"|{processing_id}|2.5.1")
    assert segments[0].split("|")[10] == processing_id  # MSH-11
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    await asyncio.sleep(6)
    recorded = await _results(db, subject)
    raised = await stored_payloads(db, subject, RAISED)
    assert recorded == [], f"MSH-11 {processing_id}: recorded, ACK {ack_code(ack)}"
    assert raised == []
    assert ack_code(ack) == "AR", str(ack)
    assert str(ack.segment("ERR")[2]).startswith("MSH^1^11"), str(ack)


async def test_a_status_u_result_that_carries_its_value_is_not_dropped_without_a_word(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: an ORU^R01 whose haemoglobin OBX has OBX-11 ``U`` and its value, 7.0 g/dL
    (flag L), with no earlier preliminary for it that Vigil holds (a laboratory that
    sends its finals as status changes, or whose preliminary went elsewhere).

    Came back: AA with no ERR, nothing stored for the OBX, no alert, no data-quality
    issue: a 7.0 haemoglobin acknowledged and thrown away.

    Should: HL7 v2.5.1 table 0085: ``U`` = "Results status change to final without
    retransmitting results already sent as preliminary": the observation is now final.
    A receiver reads the value it carries as the final result (judged: anaemia alert),
    or, if it holds no preliminary to make final, keeps the OBX as unreadable with an
    ERR of severity W and raises it (issue 14 item 4: nothing dropped without a word)."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    segments = _haemoglobin_oru(f"SU{tag}", subject)
    segments[-1] = segments[-1].replace("|L|||F", "|L|||U")
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    assert ack_code(ack) == "AA", str(ack)

    async def heard() -> bool | None:
        alerts = await stored_payloads(db, subject, RAISED)
        return bool(alerts) or await _conflict_raised(db, subject) or None

    await eventually(heard, timeout=45, what="the U result judged or raised for review")


async def test_an_order_detail_obx_status_o_is_not_called_outside_table_0085(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: an ORU^R01 whose order carries an OBX with OBX-11 ``O`` and no value (an
    order detail, as laboratories send the ordered test's description) beside a
    readable red cell count.

    Came back: AA with an ERR W at OBX^1^11, 103 "OBX-11 result status is not one of
    F, C, P, R, S, X, D, W (HL7 table 0085)", and the OBX kept as an unreadable result
    with a data-quality issue sent to the medical monitor.

    Should: HL7 v2.5.1 table 0085 contains ``O`` ("Order detail description only (no
    result)"); the ACK text is wrong, and an OBX that by its status holds no result is
    nothing to review: no ERR claiming the code is outside the table, no data-quality
    issue (as Vigil already does for ``N``, "not asked")."""
    subject = new_subject_id()
    tag = uuid.uuid4().hex[:8]
    segments = _haemoglobin_oru(f"SO{tag}", subject)
    segments[-1] = "OBX|1|NM|718-7^Hemoglobin^LN|||g/dL|||||O"
    segments.append("OBX|2|NM|789-8^Erythrocytes^LN||4.5|10*12/L|4-5.5|N|||F")
    ack = await exchange_bytes(services.mllp_port, hl7_message(*segments))
    assert ack_code(ack) == "AA", str(ack)
    assert not [e for e in _errs(ack) if "table 0085" in e[1]], _errs(ack)
    await eventually(lambda: _results(db, subject), timeout=60, what="the RBC stored")
    await asyncio.sleep(5)
    assert not await _conflict_raised(db, subject)
