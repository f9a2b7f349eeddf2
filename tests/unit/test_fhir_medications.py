"""FHIR R4 MedicationStatement and MedicationAdministration to MedicationRecorded.

The resources are shaped as the FHIR R4 examples are (medicationstatementexample1: a
contained Medication, a dose range "1-2 tablets", timing 1 per 1 d, SNOMED CT oral
route; medicationadministrationexample3: a contained Medication, an effectivePeriod, a
SNOMED CT "Intravenous" qualifier route, a dose in UCUM mg), with a study subject.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from services.ingest.domain.fhir_entries import JUDGED, created, read_entry, received_not_used
from services.ingest.domain.fhir_medications import (
    DOSE_NOT_READ,
    NO_UNIT,
    ROUTE_NOT_GIVEN,
    ROUTE_NOT_READ,
    TIMING_NOT_READ,
    bundle_medications,
    medication_event,
)
from services.ingest.domain.fhir_reader import ResourceReader
from services.ingest.domain.principals import Principal
from services.ingest.domain.subject_identifiers import SubjectIdentifiers
from services.ingest.entrypoints.fhir_instances import KINDS
from services.ingest.entrypoints.fhir_responses import accepted_outcome
from services.safety_rules.domain.conditions.medication_words import (
    mg_per_unit,
    per_day,
    route_of,
)
from shared.events import MedicationRecorded

STUDY = "NCT05262686"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"


def statement(**changes: Any) -> dict[str, Any]:
    """medicationstatementexample1's shape (R4), about study subject 01-003."""
    resource: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": "example001",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med0309",
                "code": {
                    "coding": [
                        {"system": SNOMED, "code": "315429007", "display": "Tylenol PM"}
                    ]
                },
            }
        ],
        "identifier": [{"use": "official", "system": "http://www.bmc.nl/portal/medstatements",
                        "value": "12345689"}],
        "status": "active",
        "category": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/medication-statement-category",
                    "code": "inpatient",
                }
            ]
        },
        "medicationReference": {"reference": "#med0309"},
        "subject": {"reference": "Patient/01-003"},
        "effectiveDateTime": "2026-03-02",
        "dateAsserted": "2026-03-02",
        "dosage": [
            {
                "sequence": 1,
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "asNeededCodeableConcept": {
                    "coding": [{"system": SNOMED, "code": "32914008", "display": "Restless Legs"}]
                },
                "route": {"coding": [{"system": SNOMED, "code": "26643006",
                                      "display": "Oral Route"}]},
                "doseAndRate": [
                    {
                        "doseRange": {
                            "low": {"value": 1, "unit": "TAB", "code": "TAB"},
                            "high": {"value": 2, "unit": "TAB", "code": "TAB"},
                        }
                    }
                ],
            }
        ],
    }  # fmt: skip
    resource.update(changes)
    return resource


def administration(**changes: Any) -> dict[str, Any]:
    """medicationadministrationexample3's shape (R4), about study subject 01-003, with a
    corticosteroid as its drug."""
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": "medadmin0303",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med0303",
                "code": {
                    "coding": [{"system": ATC, "code": "H02AB04", "display": "methylprednisolone"}],
                    "text": "Solu-Medrol 500 mg",
                },
            }
        ],
        "status": "completed",
        "medicationReference": {"reference": "#med0303"},
        "subject": {"reference": "Patient/01-003"},
        "effectivePeriod": {
            "start": "2026-03-02T09:00:00+08:00",
            "end": "2026-03-02T10:00:00+08:00",
        },
        "dosage": {
            "text": "500 mg IV over 1 hour",
            "route": {
                "coding": [{"system": SNOMED, "code": "255560000", "display": "Intravenous"}]
            },
            "dose": {"value": 500, "unit": "mg", "system": UCUM, "code": "mg"},
        },
    }
    resource.update(changes)
    return resource


def read(resource: dict[str, Any], **kwargs: Any) -> MedicationRecorded:
    event, issues = medication_event(resource, study_id=STUDY, zone=UTC, **kwargs)
    assert issues == []
    assert isinstance(event, MedicationRecorded)
    return event


def issues_of(resource: dict[str, Any]) -> list[tuple[str, str]]:
    event, issues = medication_event(resource, study_id=STUDY, zone=UTC)
    assert event is None
    return [(i.code, i.expression) for i in issues]


def test_the_r4_statement_example_is_recorded_with_its_range_left_unread() -> None:
    event = read(statement())
    assert (event.subject_id, event.drug, event.drug_code) == ("01-003", "Tylenol PM", None)
    assert event.medication_id == "http://www.bmc.nl/portal/medstatements|12345689"
    assert event.source_message_id.startswith("fhir:MedicationStatement/")
    assert route_of(event.route) == "oral"
    assert per_day(event.frequency) == 1
    # "1-2 tablets": no one dose to sum, so a summing rule raises dose-not-convertible
    assert (event.dose, event.dose_unit) == (Decimal(1), DOSE_NOT_READ)
    assert mg_per_unit(event.dose_unit) is None
    assert (event.start, event.stop) == (datetime(2026, 3, 2, tzinfo=UTC), None)


def test_the_r4_administration_example_is_one_dose_counted_for_a_day() -> None:
    event = read(administration())
    assert (event.drug, event.drug_code) == ("Solu-Medrol 500 mg", "H02AB04")
    assert (event.dose, event.dose_unit, event.frequency) == (Decimal(500), "mg", "once")
    assert route_of(event.route) == "intravenous"  # the SNOMED CT qualifier's display
    assert event.medication_id == "medadmin0303"
    assert event.stop is not None
    assert event.stop - event.start == timedelta(days=1)


def test_an_administration_longer_than_a_day_is_counted_to_its_end() -> None:
    period = {"start": "2026-03-02T09:00:00Z", "end": "2026-03-05T09:00:00Z"}
    event = read(administration(effectivePeriod=period))
    assert event.stop == datetime(2026, 3, 5, 9, tzinfo=UTC)


def test_a_bundled_medication_names_the_drug_by_its_full_url() -> None:
    medication = {
        "resourceType": "Medication",
        "code": {"coding": [{"system": ATC, "code": "L01FA01", "display": "rituximab"}]},
    }
    entries = [
        {"fullUrl": "urn:uuid:6f1b", "resource": medication},
        {"fullUrl": "urn:uuid:7a2c", "resource": statement()},
    ]
    resource = statement(medicationReference={"reference": "urn:uuid:6f1b"}, contained=[])
    event = read(resource, medications=bundle_medications(entries))
    assert (event.drug, event.drug_code) == ("rituximab", "L01FA01")


def test_two_bundled_medications_answering_to_one_reference_name_neither() -> None:
    one = {"resourceType": "Medication", "id": "m", "code": {"text": "prednisone"}}
    other = {"resourceType": "Medication", "id": "m", "code": {"text": "rituximab"}}
    found = bundle_medications([{"resource": one}, {"resource": other}])
    assert "Medication/m" not in found
    resource = statement(medicationReference={"reference": "Medication/m"}, contained=[])
    event, issues = medication_event(resource, study_id=STUDY, zone=UTC, medications=found)
    assert event is None
    assert [i.expression for i in issues] == ["MedicationStatement.medication[x]"]


def test_a_reference_display_names_the_drug_when_nothing_resolves() -> None:
    resource = statement(
        medicationReference={"reference": "Medication/elsewhere", "display": "prednisone"},
        contained=[],
    )
    assert read(resource).drug == "prednisone"


def test_a_coded_drug_without_text_is_named_by_its_atc_code() -> None:
    concept = {"coding": [{"system": ATC, "code": "H02AB07"}]}
    event = read(administration(medicationCodeableConcept=concept, medicationReference=None))
    assert (event.drug, event.drug_code) == ("H02AB07", "H02AB07")


def test_no_drug_is_refused_naming_the_element() -> None:
    resource = statement(medicationReference=None, medicationCodeableConcept={"coding": []})
    assert ("required", "MedicationStatement.medication[x]") in issues_of(resource)


def test_no_time_and_no_identity_are_refused_naming_the_elements() -> None:
    resource = statement(effectiveDateTime=None, dateAsserted=None, identifier=None, id=None)
    assert issues_of(resource) == [
        ("required", "MedicationStatement.effective[x]"),
        ("required", "MedicationStatement.identifier"),
    ]


def test_a_statement_without_effective_is_taken_as_of_its_assertion() -> None:
    event = read(statement(effectiveDateTime=None, dateAsserted="2026-03-04"))
    assert event.start == datetime(2026, 3, 4, tzinfo=UTC)


def test_a_record_with_neither_identifier_nor_id_is_named_by_a_digest_of_its_content() -> None:
    first = read(statement(identifier=None, id=None))
    again = read(statement(identifier=None, id=None))
    later = read(statement(identifier=None, id=None, effectiveDateTime="2026-03-09"))
    assert first.medication_id == again.medication_id != later.medication_id
    assert first.medication_id.startswith("sha256:")
    assert "Tylenol" not in first.medication_id


def test_an_unknown_status_is_refused_naming_it() -> None:
    assert issues_of(administration(status="draft")) == [
        ("value", "MedicationAdministration.status")
    ]


def test_a_subject_named_by_a_hospital_mrn_is_refused() -> None:
    subject = {"identifier": {"system": "urn:hospital:mrn", "value": "MRN-1"}}
    expressions = [e for _, e in issues_of(statement(subject=subject))]
    assert expressions == ["MedicationStatement.subject.identifier.system"]


@pytest.mark.parametrize(
    ("timing", "frequency", "daily"),
    [
        ({"code": {"coding": [{"code": "BID"}]}}, "BID", Fraction(2)),
        ({"code": {"coding": [{"code": "QD"}]}}, "QD", Fraction(1)),
        ({"code": {"coding": [{"code": "AM"}]}}, "QAM", Fraction(1)),
        ({"code": {"coding": [{"code": "Q4H"}]}}, "Q4H", Fraction(6)),
        ({"code": {"coding": [{"code": "QOD"}]}}, "QOD", Fraction(1, 2)),
        ({"code": {"coding": [{"code": "WK"}]}}, "QW", Fraction(1, 7)),
        ({"code": {"text": "每日两次"}}, "每日两次", Fraction(2)),
        ({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, "2/day", Fraction(2)),
        ({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}, "3/day", Fraction(3)),
        ({"repeat": {"frequency": 1, "period": 5, "periodUnit": "h"}}, "q5h", Fraction(24, 5)),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}, "QW", Fraction(1, 7)),
        ({"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}}, "QOD", Fraction(1, 2)),
        ({"repeat": {"frequency": 3, "period": 1, "periodUnit": "wk"}}, TIMING_NOT_READ, None),
        ({"repeat": {"frequency": 1, "frequencyMax": 2, "period": 1, "periodUnit": "d"}},
         TIMING_NOT_READ, None),
        ({"repeat": {"when": ["MORN"]}}, TIMING_NOT_READ, None),
        ({"event": ["2026-03-02T08:00:00Z"]}, TIMING_NOT_READ, None),
        ({"code": {"text": "x" * 65}}, TIMING_NOT_READ, None),
        ({"repeat": {"frequency": 2147483647, "period": 1e-60, "periodUnit": "s"}},
         TIMING_NOT_READ, None),
    ],
)  # fmt: skip
def test_timing_is_a_frequency_the_rules_read(
    timing: dict[str, Any], frequency: str, daily: Fraction | None
) -> None:
    resource = statement()
    resource["dosage"][0]["timing"] = timing
    event = read(resource)
    assert event.frequency == frequency
    assert per_day(event.frequency) == daily


def test_no_timing_is_no_frequency_as_the_json_api_reads_none() -> None:
    """Issue 15 (outside tests): no frequency is not taken as once a day (7.5 mg may be
    twice a day): a summing rule raises dose-not-convertible, on every channel."""
    resource = statement()
    del resource["dosage"][0]["timing"]
    event = read(resource)
    assert event.frequency is None
    assert per_day(event.frequency) is None


@pytest.mark.parametrize(
    ("dose_and_rate", "dose", "unit"),
    [
        ([{"doseQuantity": {"value": 20, "unit": "milligram", "system": UCUM, "code": "mg"}}],
         Decimal(20), "mg"),
        ([{"doseQuantity": {"value": 250, "unit": "µg"}}], Decimal(250), "µg"),
        ([{"doseQuantity": {"value": 2}}], Decimal(2), NO_UNIT),
        ([{"doseQuantity": {"value": 0, "unit": "mg"}}], Decimal(1), DOSE_NOT_READ),
        ([{"rateQuantity": {"value": 5, "unit": "mg/h"}}], Decimal(1), DOSE_NOT_READ),
        ([], Decimal(1), DOSE_NOT_READ),
        ([{"doseQuantity": {"value": 20, "unit": "u" * 33}}], Decimal(20), NO_UNIT),
    ],
)  # fmt: skip
def test_the_dose_is_one_quantity_or_not_read(
    dose_and_rate: list[dict[str, Any]], dose: Decimal, unit: str
) -> None:
    resource = statement()
    resource["dosage"][0]["doseAndRate"] = dose_and_rate
    event = read(resource)
    assert (event.dose, event.dose_unit) == (dose, unit)


def test_several_dosage_lines_are_no_one_dose() -> None:
    resource = statement()
    second = copy.deepcopy(resource["dosage"][0])
    second["doseAndRate"] = [{"doseQuantity": {"value": 10, "unit": "mg"}}]
    resource["dosage"][0]["doseAndRate"] = [{"doseQuantity": {"value": 20, "unit": "mg"}}]
    resource["dosage"].append(second)
    event = read(resource)
    assert (event.dose, event.dose_unit) == (Decimal(1), DOSE_NOT_READ)
    assert route_of(event.route) == "oral"  # the first line's route is kept


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (None, ROUTE_NOT_GIVEN),
        ({"coding": [{"system": SNOMED, "code": "47625008"}]}, "47625008"),
        ({"text": "ivgtt"}, "ivgtt"),
        ({"text": "r" * 65}, ROUTE_NOT_READ),
        ({"text": "line one\nline two"}, ROUTE_NOT_READ),
    ],
)
def test_the_route(route: dict[str, Any] | None, expected: str) -> None:
    event = read(administration(dosage={"route": route, "dose": {"value": 1, "unit": "mg"}}))
    assert event.route == expected


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (statement, "entered-in-error"),
        (statement, "not-taken"),
        (statement, "intended"),
        (administration, "not-done"),
        (administration, "entered-in-error"),
    ],
)
def test_what_is_not_a_taking_replaces_the_record_with_one_of_no_length(
    make: Any, status: str
) -> None:
    taken, withdrawn = read(make()), read(make(status=status))
    assert withdrawn.medication_id == taken.medication_id
    assert withdrawn.stop == withdrawn.start == taken.start


@pytest.mark.parametrize("status", ["active", "completed", "stopped", "on-hold", "unknown"])
def test_statement_statuses_that_are_a_taking(status: str) -> None:
    event = read(statement(status=status))
    assert event.stop is None


def test_an_overlong_drug_text_is_refused_without_quoting_it() -> None:
    marker = "Qx-patient-name-" + "y" * 200
    resource = statement(medicationCodeableConcept={"text": marker}, medicationReference=None)
    event, issues = medication_event(resource, study_id=STUDY, zone=UTC)
    assert event is None
    assert [i.expression for i in issues] == ["MedicationStatement.medication[x]"]
    assert all("Qx-patient" not in i.diagnostics for i in issues)


def test_a_stop_before_the_start_is_refused_naming_effective() -> None:
    period = {"start": "2026-03-05", "end": "2026-03-02"}
    resource = statement(effectiveDateTime=None, effectivePeriod=period)
    assert [e for _, e in issues_of(resource)] == ["MedicationStatement"]


def test_the_reader_dispatches_both_resources_in_the_keys_study() -> None:
    reader = ResourceReader(SubjectIdentifiers(), UTC, STUDY)
    principal = Principal("ehr", "api-key:k1", frozenset({STUDY}))
    for resource in (statement(), administration()):
        event, issues = reader.event_of(resource, principal)
        assert issues == []
        assert isinstance(event, MedicationRecorded)
        assert event.study_id == STUDY


def test_bundle_entries_are_judged_and_a_medication_is_kept_as_read_through_them() -> None:
    assert {"MedicationStatement", "MedicationAdministration"} <= JUDGED
    medication = {"resourceType": "Medication", "code": {"text": "prednisone"}}
    kept = read_entry({"resource": medication}, 0, lambda _: (None, []))
    assert kept.unused == "Medication"
    diagnostics = received_not_used("Medication")["response"]["outcome"]["issue"][0]
    assert "medicationReference" in diagnostics["diagnostics"]
    read_one = read_entry(
        {"resource": administration()},
        1,
        lambda r: medication_event(r, study_id=STUDY, zone=UTC),
    )
    assert isinstance(read_one.event, MedicationRecorded)


def test_the_capability_statement_lists_the_medication_resources() -> None:
    assert {"MedicationStatement", "MedicationAdministration"} <= set(KINDS)


def test_what_is_kept_as_not_read_is_said_to_the_sender_by_element() -> None:
    resource = statement(dosage=[{"doseAndRate": [{"doseRange": {"high": {"value": 2}}}]}])
    event = read(resource)
    answer = created("MedicationStatement", uuid.uuid4(), event)["response"]
    assert answer["status"] == "201 Created"
    issues = answer["outcome"]["issue"]
    assert [(i["severity"], i["expression"]) for i in issues] == [
        ("warning", ["MedicationStatement.dosage"]),
        ("warning", ["MedicationStatement.dosage.route"]),
    ]
    assert "dose-not-convertible" in issues[0]["diagnostics"]
    single = accepted_outcome(uuid.uuid4(), event, "MedicationStatement")
    assert [i["severity"] for i in single["issue"]] == ["information", "warning", "warning"]
    readable = read(administration())
    assert "outcome" not in created("MedicationAdministration", uuid.uuid4(), readable)["response"]


def test_a_dose_past_the_clinical_bounds_is_refused_naming_the_dosage() -> None:
    resource = statement()
    resource["dosage"][0]["doseAndRate"] = [{"doseQuantity": {"value": 1e20, "unit": "mg"}}]
    assert issues_of(resource) == [("invalid", "MedicationStatement.dosage")]
