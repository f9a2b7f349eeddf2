"""A subject id comes only from the study's identifier system; an MRN never becomes one."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from services.ingest.adapters.study_files import load_sources, load_subject_identifiers
from services.ingest.domain.fhir_adverse_events import adverse_event_event
from services.ingest.domain.fhir_mapping import observation_event, patient_event
from services.ingest.domain.hl7.messages import interpret
from services.ingest.domain.subject_identifiers import (
    InvalidSubjectIdentifier,
    SubjectIdentifiers,
    SubjectIdentifierSystem,
)
from shared.events import LabResultReported, SubjectEnrolled
from tests.support.services import REPO
from tests.unit.test_fhir_mapping import adverse_event, observation

STUDY = "NCT05262686"
SYSTEM = "urn:vigil:study:NCT05262686"
MRN = "MRN-88231"


def adt(pid3: str, *, version: str = "2.5.1") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|EDC|PKUPH|VIGIL|SPONSOR|20261120083000||ADT^A04^ADT_A01|ADT01|P|{version}",
            f"PID|1||{pid3}||Marrowfield^Quentin||19370611|F",
            "PV1|1|O|RHEUM^^^PKUPH-02",
        ]
    )


def oru(pid3: str) -> str:
    return "\r".join(
        [
            "MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|M1|P|2.5.1",
            f"PID|1||{pid3}",
            "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20261120080000+0800",
            "OBX|1|NM|718-7^Hemoglobin^LN||8.4|g/dL|12-16|L|||F",
        ]
    )


def shipped() -> SubjectIdentifiers:
    return load_subject_identifiers(REPO / "studies")


@pytest.mark.parametrize(
    "pid3",
    [
        f"{MRN}^^^PKUPH^MR~01-003^^^NCT05262686^SS",
        f"01-003^^^NCT05262686^SS~{MRN}^^^PKUPH^MR",
        f"{MRN}^^^PKUPH^MR~01-003^^^NCT05262686&2.16.840.1.113883.3.1&ISO^SS",
    ],
)
def test_the_pid3_repetition_from_the_study_authority_is_the_subject(pid3: str) -> None:
    for message in (adt(pid3), oru(pid3)):
        outcome = interpret(message, study_id=STUDY, zone=UTC, identifiers=shipped())
        assert outcome.ack_code == "AA", outcome.reason
        (event,) = outcome.events
        assert isinstance(event, SubjectEnrolled | LabResultReported)
        assert event.subject_id == "01-003"
        assert MRN not in event.model_dump_json()


@pytest.mark.parametrize("pid3", [f"{MRN}^^^PKUPH^MR", MRN, "01-003^^^nct05262686^SS"])
def test_an_mrn_alone_is_never_a_subject_id(pid3: str) -> None:
    for message in (adt(pid3), oru(pid3)):
        outcome = interpret(message, study_id=STUDY, zone=UTC, identifiers=shipped())
        assert outcome.ack_code == "AE"
        assert outcome.events == []
        (problem,) = outcome.problems
        assert (problem.segment, problem.field, problem.code) == ("PID", 3, "101")
        assert "no identifier from the study's assigning authority NCT05262686" in problem.text
        assert MRN not in outcome.reason
        assert "01-003" not in outcome.reason


def test_a_study_id_with_a_space_is_an_ae_on_pid3_not_a_crash() -> None:
    outcome = interpret(adt("01 003^^^NCT05262686^SS"), study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    (problem,) = outcome.problems
    assert (problem.segment, problem.field, problem.code) == ("PID", 3, "102")
    assert "letters, digits" in problem.text
    assert "01 003" not in problem.text


def test_two_different_study_ids_in_pid3_are_refused() -> None:
    pid3 = "01-003^^^NCT05262686^SS~01-004^^^NCT05262686^SS"
    outcome = interpret(oru(pid3), study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    assert [(p.field, p.code) for p in outcome.problems] == [(3, "102")]


def test_the_routed_study_s_authority_applies(tmp_path: Path) -> None:
    folder = tmp_path / "OTHER-1"
    folder.mkdir()
    (folder / "sources.yaml").write_text(
        "study_id: OTHER-1\n"
        "sources: [{id: elsewhere, hl7: [{sending_facility: ELSEWHERE}], timezone: UTC}]\n"
        "subject_identifier: {hl7_assigning_authority: OTH, fhir_system: 'urn:oid:1.2.3'}\n"
    )
    router = load_sources(tmp_path, default_study=STUDY, default_zone=UTC)
    identifiers = load_subject_identifiers(tmp_path)
    message = oru("7^^^OTH^SS~01-003^^^NCT05262686^SS").replace("PKUPH-LAB", "ELSEWHERE")
    outcome = interpret(
        message, study_id=STUDY, zone=UTC, route=router.route, identifiers=identifiers
    )
    (event,) = outcome.events
    assert (event.study_id, event.subject_id) == ("OTHER-1", "7")


def test_the_shipped_study_names_its_identifier_system() -> None:
    assert shipped().for_study(STUDY) == SubjectIdentifierSystem(
        hl7_assigning_authority="NCT05262686", fhir_system=SYSTEM
    )
    # a study without the block: its id is the authority
    assert shipped().for_study("X-9").hl7_assigning_authority == "X-9"
    assert shipped().for_study("X-9").fhir_system == "urn:vigil:study:X-9"


@pytest.mark.parametrize(
    "block",
    [
        "{hl7_assigning_authority: 'NCT^1', fhir_system: 'urn:x'}",
        "{hl7_assigning_authority: NCT1, fhir_system: 'not a uri'}",
        "{hl7_assigning_authority: NCT1}",
        "{hl7_assigning_authority: NCT1, fhir_system: 'urn:x', extra: 1}",
    ],
)
def test_an_invalid_block_is_refused_naming_the_file(tmp_path: Path, block: str) -> None:
    folder = tmp_path / "S1"
    folder.mkdir()
    (folder / "sources.yaml").write_text(f"study_id: S1\nsubject_identifier: {block}\n")
    with pytest.raises(InvalidSubjectIdentifier, match=r"S1/sources\.yaml"):
        load_subject_identifiers(tmp_path)


def patient(*identifiers: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": list(identifiers),
        "name": [{"family": "Marrowfield"}],
        "birthDate": "1937-06-11",
        "managingOrganization": {"reference": "Organization/PKUPH-02"},
    }


HOSPITAL = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": MRN}


def test_a_patient_whose_first_identifier_is_an_mrn_gets_the_study_subject_id() -> None:
    event, issues = patient_event(
        patient(HOSPITAL, {"system": SYSTEM, "value": "02-015"}), study_id=STUDY
    )
    assert issues == []
    assert isinstance(event, SubjectEnrolled)
    assert event.subject_id == "02-015"


@pytest.mark.parametrize(
    "identifiers",
    [
        [HOSPITAL],
        [{"value": "02-015"}],  # no system: not the study's
        [{"system": "urn:vigil:study:OTHER", "value": "02-015"}],
    ],
)
def test_a_patient_without_the_study_identifier_is_refused(
    identifiers: list[dict[str, str]],
) -> None:
    event, issues = patient_event(patient(*identifiers), study_id=STUDY)
    assert event is None
    (issue,) = issues
    assert (issue.code, issue.expression) == ("required", "Patient.identifier")
    assert SYSTEM in issue.diagnostics
    assert MRN not in issue.diagnostics
    assert "02-015" not in issue.diagnostics


def test_a_study_identifier_that_misfits_the_grammar_is_a_value_issue() -> None:
    event, issues = patient_event(patient({"system": SYSTEM, "value": "02 015"}), study_id=STUDY)
    assert event is None
    assert [(i.code, i.expression) for i in issues] == [("value", "Patient.identifier.value")]
    assert "02 015" not in issues[0].diagnostics


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ({"reference": "Patient/01-003"}, "01-003"),
        ({"identifier": {"system": SYSTEM, "value": "01-003"}}, "01-003"),
    ],
)
def test_an_observation_names_its_subject_by_reference_or_study_identifier(
    subject: dict[str, Any], expected: str
) -> None:
    for mapped, issues in (
        observation_event(observation(subject=subject), study_id=STUDY, zone=UTC),
        adverse_event_event(adverse_event(subject=subject), study_id=STUDY, zone=UTC),
    ):
        assert issues == []
        assert mapped is not None
        assert mapped.subject_id == expected


@pytest.mark.parametrize(
    ("subject", "expression"),
    [
        ({"identifier": HOSPITAL}, "subject.identifier.system"),
        ({"identifier": {"value": MRN}}, "subject.identifier.system"),
        ({"reference": f"Patient/{MRN} x"}, "subject.reference"),
        ({"reference": f"Group/{MRN}"}, "subject.reference"),
        ({"display": MRN}, "subject"),
    ],
)
def test_another_system_s_identifier_is_never_taken(
    subject: dict[str, Any], expression: str
) -> None:
    for kind, (mapped, issues) in (
        ("Observation", observation_event(observation(subject=subject), study_id=STUDY, zone=UTC)),
        (
            "AdverseEvent",
            adverse_event_event(adverse_event(subject=subject), study_id=STUDY, zone=UTC),
        ),
    ):
        assert mapped is None
        assert [i.expression for i in issues] == [f"{kind}.{expression}"]
        assert MRN not in issues[0].diagnostics


def test_a_fhir_system_names_its_study_configured_or_conventional() -> None:
    identifiers = shipped()
    assert identifiers.study_of_fhir_system(SYSTEM) == STUDY
    assert identifiers.study_of_fhir_system("urn:vigil:study:X-9") == "X-9"
    assert identifiers.study_of_fhir_system("http://hospital.example.org/mrn") is None
