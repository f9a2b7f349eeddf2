"""The ORU^R01 group tree (HL7 2.5.1 chapter 7) built over python-hl7's segments (pure)."""

from __future__ import annotations

from datetime import UTC

import hl7

from services.ingest.domain.hl7.messages import interpret
from services.ingest.domain.hl7.structure import oru_r01

MSH = "MSH|^~\\&|LIS|LAB|VIGIL|SP|20261120083000||ORU^R01^ORU_R01|C1|P|2.5.1"


def tree(*segments: str) -> list[list[list[str]]]:
    """Per PATIENT_RESULT, per ORDER_OBSERVATION, the OBX-5 of each OBX."""
    built = oru_r01(hl7.parse("\r".join([MSH, *segments])))
    return [
        [[str(at.segment[5]) for at in order.observations] for order in group.orders]
        for group in built.patient_results
    ]


def test_each_pid_opens_its_own_patient_result_group() -> None:
    assert tree(
        "PID|1||S1^^^X^SS", "PV1|1|O", "OBR|1|A|B|X^Y^LN", "OBX|1|NM|718-7^^LN||1",
        "PID|2||S2^^^X^SS", "OBR|1|C|D|X^Y^LN", "OBX|1|NM|718-7^^LN||2",
        "OBR|2|E|F|X^Y^LN", "OBX|1|NM|718-7^^LN||3",
    ) == [[["1"]], [["2"], ["3"]]]  # fmt: skip


def test_an_orc_and_its_obr_are_one_order_and_notes_z_and_specimen_segments_have_places() -> None:
    built = tree(
        "PID|1||S1^^^X^SS", "NTE|1||patient note", "ORC|RE|A", "OBR|1|A|B|X^Y^LN",
        "NTE|1||order note", "TQ1|1", "OBX|1|NM|718-7^^LN||1", "NTE|1||result note",
        "ZXY|1|custom", "OBX|2|NM|718-7^^LN||2", "SPM|1|||BLD", "OBX|3|NM|718-7^^LN||3",
        "ORC|RE|C", "OBR|2|C|D|X^Y^LN", "OBX|1|NM|718-7^^LN||4",
    )  # fmt: skip
    assert built == [[["1", "2", "3"], ["4"]]]


def test_an_order_without_observations_is_an_order() -> None:
    assert tree("PID|1||S1^^^X^SS", "ORC|NW|A", "OBR|1|A|B|X^Y^LN") == [[[]]]


def test_what_has_no_place_is_named_with_its_position() -> None:
    built = oru_r01(
        hl7.parse(
            "\r".join([MSH, "OBX|1|NM|718-7^^LN||1", "PID|1||S1^^^X^SS",
                       "OBX|2|NM|718-7^^LN||2", "OBR|1|A|B|X^Y^LN", "OBX|3|NM|718-7^^LN||3"])
        )
    )  # fmt: skip
    assert [(m.name, m.sequence) for m in built.misplaced] == [("OBX", 1), ("OBX", 2)]
    assert built.observation_count == 1
    assert "before any PID" in built.misplaced[0].problem
    assert "before any OBR" in built.misplaced[1].problem


def test_an_order_before_any_pid_is_misplaced_and_kept_apart() -> None:
    built = oru_r01(hl7.parse("\r".join([MSH, "OBR|1|A|B|X^Y^LN", "OBX|1|NM|718-7^^LN||1"])))
    assert [(m.name, m.sequence) for m in built.misplaced] == [("OBR", 1)]
    assert built.patient_results[0].pid is None


def test_an_orc_without_its_obr_holds_no_result_and_fails_nothing() -> None:
    segments = [
        MSH,
        "PID|1||01-003^^^NCT05262686^SS",
        "ORC|RE|A",
        "ORC|RE|B",
        "OBR|1|B|C|X^Y^LN|||20261120080000",
        "OBX|1|NM|718-7^^LN||13|g/dL",
    ]
    text = "\r".join(segments)
    outcome = interpret(text, study_id="NCT05262686", zone=UTC)
    assert outcome.ack_code == "AA", outcome.reason
    assert len(outcome.events) == 1
