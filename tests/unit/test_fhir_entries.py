"""What each entry of a batch or transaction Bundle asks, and how it is answered."""

from __future__ import annotations

from typing import Any

import pytest

from services.ingest.domain.fhir_entries import (
    EntryOutcome,
    entry_refusal,
    is_resource_type,
    location,
    read_entry,
    received_not_used,
)
from services.ingest.domain.fhir_issues import Issue
from shared.events import SubjectEvent

OBSERVATION = {"resourceType": "Observation", "id": "o1"}


def never_read(resource: Any) -> tuple[SubjectEvent | None, list[Issue]]:
    raise AssertionError("a resource Vigil does not judge was read")


def problem(resource: Any) -> tuple[SubjectEvent | None, list[Issue]]:
    return None, [Issue("required", "Observation.subject", "subject is required")]


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "GET", "HEAD"])
def test_methods_that_are_no_report_are_405_naming_the_entrys_method(method: str) -> None:
    refused = entry_refusal({"request": {"method": method, "url": "Observation/o1"}}, 3)
    assert refused is not None
    assert refused.status == "405 Method Not Allowed"
    assert [(i.code, i.expression) for i in refused.issues] == [
        ("not-supported", "Bundle.entry[3].request.method")
    ]
    assert method in refused.issues[0].diagnostics


@pytest.mark.parametrize(
    "request_",
    [
        None,
        {"method": "POST", "url": "Observation"},
        {"method": "PUT", "url": "Observation/o1"},
        {"method": "PUT", "url": "Observation?identifier=urn:oid:1.2|A1"},
    ],
)
def test_post_and_put_of_the_entrys_own_resource_are_taken(request_: Any) -> None:
    entry = {"resource": OBSERVATION, **({"request": request_} if request_ else {})}
    assert entry_refusal(entry, 0) is None


@pytest.mark.parametrize(
    ("request_", "expression"),
    [
        ({"method": "PUT", "url": "Observation/X9Z"}, "Bundle.entry[0].request.url"),
        ({"method": "POST", "url": "Patient"}, "Bundle.entry[0].request.url"),
        ({"method": "FETCH", "url": "Observation"}, "Bundle.entry[0].request.method"),
    ],
)
def test_a_url_or_method_that_does_not_fit_is_400_naming_the_field(
    request_: dict[str, str], expression: str
) -> None:
    refused = entry_refusal({"resource": OBSERVATION, "request": request_}, 0)
    assert refused is not None
    assert refused.status == "400 Bad Request"
    assert [i.expression for i in refused.issues] == [expression]
    assert "X9Z" not in refused.issues[0].diagnostics


@pytest.mark.parametrize(
    "kind",
    ["Practitioner", "PractitionerRole", "Organization", "Encounter", "Specimen",
     "DiagnosticReport", "Condition", "ServiceRequest", "Provenance", "MedicinalProduct"],
)  # fmt: skip
def test_a_resource_vigil_does_not_judge_is_kept_and_answered_200(kind: str) -> None:
    outcome = read_entry({"resource": {"resourceType": kind}}, 0, never_read)
    assert outcome == EntryOutcome(unused=kind)
    answer = received_not_used(kind)["response"]
    assert answer["status"] == "200 OK"
    assert answer["outcome"]["issue"][0]["severity"] == "information"


@pytest.mark.parametrize("kind", ["Foo", "HumanName", "DomainResource", "Resource"])
def test_a_name_that_is_no_fhir_resource_type_is_refused(kind: str) -> None:
    assert not is_resource_type(kind)
    outcome = read_entry({"resource": {"resourceType": kind}}, 2, never_read)
    assert outcome.refusal is not None
    assert [i.expression for i in outcome.refusal.issues] == [
        "Bundle.entry[2].resource.resourceType"
    ]


def test_a_resource_problem_names_the_entry() -> None:
    outcome = read_entry({"resource": OBSERVATION}, 4, problem)
    assert outcome.refusal is not None
    assert outcome.refusal.status == "422 Unprocessable Entity"
    assert [i.expression for i in outcome.refusal.issues] == [
        "Bundle.entry[4].resource.Observation.subject"
    ]


def test_an_entry_without_a_resource_is_refused_as_required() -> None:
    outcome = read_entry({"request": {"method": "POST", "url": "Observation"}}, 1, never_read)
    assert outcome.refusal is not None
    assert outcome.refusal.issues[0].expression == "Bundle.entry[1].resource"


def test_the_location_names_the_resource_type_as_sent_and_its_version() -> None:
    assert location("Observation", "e1") == "Observation/e1/_history/1"


def test_a_diagnostic_reports_answer_says_its_status_is_not_its_results() -> None:
    answer = received_not_used("DiagnosticReport")["response"]["outcome"]["issue"][0]
    assert "each Observation's own status" in answer["diagnostics"]
    assert (
        "own status"
        not in received_not_used("Encounter")["response"]["outcome"]["issue"][0]["diagnostics"]
    )


@pytest.mark.parametrize(
    "patient",
    [
        {"resourceType": "Patient", "birthDate": "1980-01-01"},
        {"resourceType": "Patient", "managingOrganization": {"reference": "Organization/S1"}},
    ],
)
def test_a_bundle_patient_that_cannot_enrol_is_kept_and_its_results_read(
    patient: dict[str, Any],
) -> None:
    """A laboratory's transaction carries a Patient to name whose results they are:
    without a site or a birth date (both 0..1 in R4 and US Core) it enrols nobody, and the
    answer says so, instead of a 422 that loses the Bundle's results."""
    outcome = read_entry({"resource": patient}, 0, never_read)
    assert outcome.unused is not None
    answer = received_not_used(outcome.unused)["response"]
    assert answer["status"] == "200 OK"
    assert "not used to enrol" in answer["outcome"]["issue"][0]["diagnostics"]


def test_a_bundle_patient_with_site_and_birth_date_is_an_enrolment() -> None:
    patient = {
        "resourceType": "Patient",
        "birthDate": "1980-01-01",
        "managingOrganization": {"reference": "Organization/S1"},
    }
    assert read_entry({"resource": patient}, 0, problem).refusal is not None  # it was read
