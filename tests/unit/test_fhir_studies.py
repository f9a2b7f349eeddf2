"""The study a FHIR resource is written to never depends on the order of its
identifiers: it is the one study they name that the credential may write."""

from __future__ import annotations

from services.ingest.domain.fhir_issues import Issue
from services.ingest.domain.fhir_studies import choose_study, named_studies
from services.ingest.domain.subject_identifiers import SubjectIdentifiers

OURS, OTHER = "NCT05262686", "NCT04000000"
HOSPITAL = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN88231"}


def identifier(study: str, value: str) -> dict[str, str]:
    return {"system": f"urn:vigil:study:{study}", "value": value}


def test_a_co_enrolled_patient_names_both_studies_in_any_order() -> None:
    systems = SubjectIdentifiers()
    ids = [HOSPITAL, identifier(OURS, "01-003"), identifier(OTHER, "X-1")]
    for order in (ids, ids[::-1]):
        patient = {"resourceType": "Patient", "identifier": order}
        assert named_studies(patient, {}, systems) == {OURS, OTHER}


def test_an_observation_names_the_studies_of_its_subject_and_its_referenced_patient() -> None:
    resource = {
        "resourceType": "Observation",
        "contained": [
            {"resourceType": "Patient", "id": "p", "identifier": [identifier(OTHER, "X")]}
        ],
        "subject": {"reference": "#p", "identifier": identifier(OURS, "01-003")},
    }
    assert named_studies(resource, {}, SubjectIdentifiers()) == {OURS, OTHER}


def test_the_study_is_the_one_named_that_the_credential_may_write() -> None:
    named = frozenset({OURS, OTHER})
    assert choose_study("Patient", named, frozenset({OURS}), "DEFAULT") == OURS
    assert choose_study("Patient", named, frozenset({OTHER}), "DEFAULT") == OTHER


def test_no_study_named_falls_back_to_the_credentials_study() -> None:
    assert choose_study("Observation", frozenset(), frozenset({OURS}), OURS) == OURS


def test_named_studies_the_credential_may_not_write_stay_named_to_be_refused() -> None:
    """The lowest of them, so the identifiers' order never decides which is recorded."""
    named = frozenset({"NCT09", "NCT01"})
    assert choose_study("Patient", named, frozenset({OURS}), OURS) == "NCT01"


def test_several_studies_the_credential_may_write_are_ambiguous() -> None:
    named = frozenset({OURS, OTHER})
    for kind, field in (("Patient", "Patient.identifier"), ("Observation", "Observation.subject")):
        issue = choose_study(kind, named, named, OURS)
        assert isinstance(issue, Issue)
        assert (issue.code, issue.expression) == ("value", field)
        assert "ambiguous" in issue.diagnostics
