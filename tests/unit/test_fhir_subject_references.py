"""A FHIR subject reference gives a subject id only through the study's identifier system:
a hospital's own Patient reference next to the study identifier is never read, and a
reference to a Patient the request carries (contained, or a Bundle entry) is resolved to
that Patient's study identifier."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest

from services.ingest.domain.fhir_adverse_events import adverse_event_event
from services.ingest.domain.fhir_issues import Issue
from services.ingest.domain.fhir_mapping import observation_event
from services.ingest.domain.fhir_subjects import bundle_patients, contained_patients
from services.ingest.domain.subject_identifiers import SubjectIdentifierSystem
from shared.events import SubjectEvent
from tests.unit.test_fhir_mapping import adverse_event, observation

STUDY = "NCT05262686"
SYSTEM = "urn:vigil:study:NCT05262686"
MRN = "MRN88231"
STUDY_ID = {"system": SYSTEM, "value": "01-003"}
HOSPITAL = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": MRN}


def hospital_patient(*identifiers: dict[str, str], id: str = MRN) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "identifier": list(identifiers)}


def mapped(
    resource: dict[str, Any], patients: dict[str, Any] | None = None
) -> list[tuple[str, SubjectEvent | None, list[Issue]]]:
    """The resource as an Observation and as an AdverseEvent (both name a subject)."""
    system = SubjectIdentifierSystem.conventional(STUDY)
    args: dict[str, Any] = {"study_id": STUDY, "zone": UTC, "identifiers": system}
    return [
        ("Observation", *observation_event(observation(**resource), patients=patients, **args)),
        (
            "AdverseEvent",
            *adverse_event_event(adverse_event(**resource), patients=patients, **args),
        ),
    ]


def subject_of(resource: dict[str, Any], patients: dict[str, Any] | None = None) -> set[str]:
    """The subject both resources are filed under; fails on any issue."""
    subjects = set()
    for _, event, issues in mapped(resource, patients):
        assert issues == []
        assert event is not None
        subjects.add(event.subject_id)
    return subjects


@pytest.mark.parametrize(
    "reference",
    [f"Patient/{MRN}", f"https://fhir.hospital.example.org/Patient/{MRN}", "urn:uuid:x"],
)
def test_the_hospitals_reference_next_to_the_study_identifier_is_never_the_subject(
    reference: str,
) -> None:
    assert subject_of({"subject": {"reference": reference, "identifier": STUDY_ID}}) == {"01-003"}


def test_the_hospitals_reference_with_another_systems_identifier_is_refused() -> None:
    subject = {"reference": f"Patient/{MRN}", "identifier": HOSPITAL}
    for kind, event, issues in mapped({"subject": subject}):
        assert event is None
        assert [i.expression for i in issues] == [f"{kind}.subject.identifier.system"]
        assert MRN not in issues[0].diagnostics


def test_a_contained_patient_gives_its_study_identifier() -> None:
    resource = {
        "contained": [hospital_patient(HOSPITAL, STUDY_ID, id="p1")],
        "subject": {"reference": "#p1"},
    }
    assert subject_of(resource) == {"01-003"}


def test_a_contained_patient_without_the_study_identifier_is_refused() -> None:
    resource = {"contained": [hospital_patient(HOSPITAL, id="p1")], "subject": {"reference": "#p1"}}
    for kind, event, issues in mapped(resource):
        assert event is None
        assert [(i.code, i.expression) for i in issues] == [
            ("required", f"{kind}.subject.resolve().identifier")
        ]
        assert MRN not in issues[0].diagnostics


@pytest.mark.parametrize(
    "reference",
    [
        "urn:uuid:5b1f7c2e-0000-4000-8000-000000000001",
        f"Patient/{MRN}",
        f"Patient/{MRN}/_history/3",
    ],
)
def test_a_bundle_patient_is_found_by_full_url_or_logical_id(reference: str) -> None:
    entries = [
        {
            "fullUrl": "urn:uuid:5b1f7c2e-0000-4000-8000-000000000001",
            "resource": hospital_patient(HOSPITAL, STUDY_ID),
        }
    ]
    patients = bundle_patients(entries)
    assert subject_of({"subject": {"reference": reference}}, patients) == {"01-003"}


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/01-003",
        "https://ehr.example/fhir/Patient/01-003",
        "http://ehr.example:8080/base/r4/Patient/01-003",
        "Patient/01-003/_history/1",
        "https://ehr.example/fhir/Patient/01-003/_history/7",
    ],
)
def test_relative_absolute_and_versioned_references_name_the_same_subject(
    reference: str,
) -> None:
    assert subject_of({"subject": {"reference": reference}}) == {"01-003"}


def test_a_reference_two_bundle_patients_answer_to_names_neither() -> None:
    entries = [
        {"resource": hospital_patient(STUDY_ID)},
        {"resource": hospital_patient({"system": SYSTEM, "value": "01-004"})},
    ]
    assert f"Patient/{MRN}" not in bundle_patients(entries)


@pytest.mark.parametrize(
    "reference",
    [
        "urn:uuid:5b1f7c2e-0000-4000-8000-000000000009",
        "https://h.example.org/Observation/1",
        "Patient/01-003/_history",
        "Patient/01-003/Observation/1",
    ],
)
def test_a_reference_vigil_cannot_resolve_is_refused(reference: str) -> None:
    for kind, event, issues in mapped({"subject": {"reference": reference}}):
        assert event is None
        assert [(i.code, i.expression) for i in issues] == [("value", f"{kind}.subject.reference")]


def test_a_reference_and_an_identifier_naming_different_subjects_are_refused() -> None:
    resource = {
        "contained": [hospital_patient({"system": SYSTEM, "value": "01-004"}, id="p1")],
        "subject": {"reference": "#p1", "identifier": STUDY_ID},
    }
    for kind, event, issues in mapped(resource):
        assert event is None
        assert [(i.code, i.expression) for i in issues] == [("value", f"{kind}.subject")]
        assert "01-00" not in issues[0].diagnostics


def test_a_reference_two_contained_patients_answer_to_is_refused() -> None:
    """Two contained Patients sharing the id ``p`` (study subjects 01-003 and 01-004):
    ``#p`` names neither, so the resource is refused naming the reference, never filed
    under whichever Patient came last."""
    resource = {
        "contained": [
            hospital_patient(STUDY_ID, id="p"),
            hospital_patient({"system": SYSTEM, "value": "01-004"}, id="p"),
        ],
        "subject": {"reference": "#p"},
    }
    for kind, event, issues in mapped(resource):
        assert event is None
        assert [(i.code, i.expression) for i in issues] == [("value", f"{kind}.subject.reference")]
        assert not any("01-00" in i.diagnostics for i in issues)


def test_a_contained_id_another_contained_resource_shares_names_neither() -> None:
    """FHIR requires contained ids unique; a Patient sharing its id with any other
    contained resource is not one ``#id`` could name."""
    other = {"resourceType": "Practitioner", "id": "p"}
    assert contained_patients({"contained": [hospital_patient(STUDY_ID, id="p"), other]}) == {}
    alone = hospital_patient(STUDY_ID, id="p")
    assert contained_patients({"contained": [alone]}) == {"#p": alone}
