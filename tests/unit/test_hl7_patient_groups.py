"""HL7 v2 messages with several patients: each OBX is filed under the PID of its own
PATIENT_RESULT group, and a patient that cannot be told fails the whole message."""

from __future__ import annotations

import uuid
from datetime import UTC

from services.ingest.domain.authorization import Refusal
from services.ingest.domain.hl7.messages import interpret
from services.ingest.domain.hl7.refusals import refusal_problems
from services.ingest.domain.json_events import events_for
from shared.events import LabResultReported

STUDY = "NCT05262686"
MSH = "MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|MSG7|P|2.5.1"
OBR = "OBR|{n}|ORD{n}|FIL{n}|58410-2^CBC^LN|||20261120080000+0800"
HB = "OBX|1|NM|718-7^Hemoglobin^LN||{value}|g/dL|12-16||||F"
PLT = "OBX|2|NM|777-3^Platelets^LN||{value}|10*9/L|150-400||||F"


def message(*segments: str) -> str:
    return "\r".join([MSH, *segments]) + "\r"


def pid(n: int, subject: str) -> str:
    return f"PID|{n}||MRN{n}^^^HOSP^MR~{subject}^^^{STUDY}^SS"


def filed(text: str) -> list[tuple[str, str, str]]:
    outcome = interpret(text, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AA", outcome.reason
    return [
        (event.subject_id, str(event.loinc_code), str(event.value))
        for event in outcome.events
        if isinstance(event, LabResultReported)
    ]


def test_each_patients_results_are_filed_under_its_own_pid() -> None:
    text = message(
        pid(1, "01-001"),
        "PV1|1|O|RHEUM^^^PKUPH-02",
        OBR.format(n=1),
        HB.format(value="13.5"),
        PLT.format(value="250"),
        pid(2, "01-002"),
        OBR.format(n=2),
        HB.format(value="6.1"),
        OBR.format(n=3),
        PLT.format(value="40"),
    )
    assert filed(text) == [
        ("01-001", "718-7", "13.5"),
        ("01-001", "777-3", "250"),
        ("01-002", "718-7", "6.1"),
        ("01-002", "777-3", "40"),
    ]


def test_results_of_different_patients_have_different_ids_and_keys() -> None:
    text = message(
        pid(1, "01-001"), OBR.format(n=1), HB.format(value="13.5"),
        pid(2, "01-002"), OBR.format(n=2), HB.format(value="6.1"),
    )  # fmt: skip
    outcome = interpret(text, study_id=STUDY, zone=UTC)
    results = [e for e in outcome.events if isinstance(e, LabResultReported)]
    assert len({r.source_message_id for r in results}) == 2
    assert len({r.identity for r in results}) == 2


def test_a_patient_without_the_study_identifier_fails_the_whole_message() -> None:
    """The original-mode ACK answers the whole message: AE with nothing stored, the ERR
    naming the second PID, rather than the first patient's results accepted and the
    second's silently dropped."""
    text = message(
        pid(1, "01-001"), OBR.format(n=1), HB.format(value="13.5"),
        "PID|2||MRN2^^^HOSP^MR", OBR.format(n=2), HB.format(value="6.1"),
    )  # fmt: skip
    outcome = interpret(text, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    assert outcome.events == []
    assert [(p.segment, p.sequence, p.field, p.code) for p in outcome.problems] == [
        ("PID", 2, 3, "101")
    ]


def test_an_order_before_any_patient_is_refused() -> None:
    text = message(OBR.format(n=1), HB.format(value="6.1"), pid(1, "01-001"))
    outcome = interpret(text, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    assert outcome.events == []
    # the OBX is in its order (the standard's place for it); the order has no patient
    assert [(p.segment, p.sequence) for p in outcome.problems] == [("OBR", 1)]


def test_a_result_before_any_patient_is_refused_not_dropped() -> None:
    """An OBX before the first PID belongs to no patient: the whole message is refused
    with the ERR naming that OBX, never acknowledged with the OBX silently left out."""
    text = message(
        HB.format(value="6.0"), pid(1, "01-001"), OBR.format(n=1), PLT.format(value="250")
    )
    outcome = interpret(text, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    assert outcome.events == []
    assert [(p.segment, p.sequence, p.code) for p in outcome.problems] == [("OBX", 1, "101")]
    assert "before any PID" in outcome.problems[0].text


def test_a_result_before_its_patients_order_is_refused() -> None:
    """An OBX after a PID but before any OBR of that patient has no order (nor OBR-7
    collection time) of its own: refused, never filed under the previous patient's OBR."""
    for segments in (
        (pid(1, "01-001"), HB.format(value="6.0"), OBR.format(n=1), PLT.format(value="250")),
        (
            pid(1, "01-001"), OBR.format(n=1), PLT.format(value="250"),
            pid(2, "01-002"), HB.format(value="6.0"),
        ),
    ):  # fmt: skip
        outcome = interpret(message(*segments), study_id=STUDY, zone=UTC)
        assert outcome.ack_code == "AE"
        assert outcome.events == []
        (problem,) = outcome.problems
        assert (problem.segment, problem.code) == ("OBX", "101")
        assert "before any OBR" in problem.text
        assert "01-00" not in problem.text


def test_an_adt_with_two_patients_is_refused_not_half_read() -> None:
    text = "\r".join(
        [
            "MSH|^~\\&|EDC|SITE|VIGIL|SPONSOR|20261120083000||ADT^A04^ADT_A01|ADT01|P|2.4",
            "PID|1||01-021^^^NCT05262686^SS||~||19790203|M",
            "PV1|1|O|RHEUM^^^PKUPH-02",
            "PID|2||01-022^^^NCT05262686^SS||~||19790203|M",
        ]
    )
    outcome = interpret(text, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    assert outcome.events == []
    assert [(p.segment, p.sequence) for p in outcome.problems] == [("PID", 2)]


def test_a_refused_subject_is_pointed_at_in_its_own_pid() -> None:
    text = message(
        pid(1, "01-001"), OBR.format(n=1), HB.format(value="13.5"),
        pid(2, "01-002"), OBR.format(n=2), HB.format(value="6.1"),
    )  # fmt: skip
    outcome = interpret(text, study_id=STUDY, zone=UTC)
    envelopes = [
        events_for(e, source="/test", correlation_id=uuid.uuid4(), now=None)[0]
        for e in outcome.events
    ]
    second = next(e for e in envelopes if e.subject == f"{STUDY}/01-002")
    refusal = Refusal(second.id, "forbidden-site", "subject_id", "another site")
    (problem,) = refusal_problems([refusal], envelopes, text)
    assert (problem.segment, problem.sequence, problem.field) == ("PID", 2, 3)
