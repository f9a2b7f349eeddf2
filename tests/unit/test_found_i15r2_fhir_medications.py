"""Outside tester, issue 15 round 2: medications sent over FHIR R4 (MedicationStatement,
MedicationAdministration) that Vigil reads wrongly for a subject's safety.

Each resource is shaped as real EHRs send it (FHIR R4 examples, US Core, Chinese EMR
exports), read as ingest reads it (``medication_event``) and judged by the real batch
handler in memory (``tests.unit.test_clinical_cases._run``). The check is the signal a
safety physician expects for the taking the resource describes, as the JSON path would
raise it; where the resource cannot be read, a data-quality issue must say so (never
silence).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest

from services.ingest.domain.fhir_medications import medication_event
from tests.unit.test_clinical_cases import SUBJECT, _run

STUDY = "NCT05262686"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"

STEROID = "raised steroid-prednisone-equivalent-gt-10"
IV_ANTI_INFECTIVE = "raised serious-infection-iv-antibiotics"
IV_CYCLOPHOSPHAMIDE = "raised prohibited-iv-cyclophosphamide"

ORAL = {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}
INTRAVENOUS = {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}
DAILY = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
PREDNISONE = {
    "medicationCodeableConcept": {
        "coding": [
            {"system": RXNORM, "code": "312617", "display": "predniSONE 20 MG Oral Tablet"},
            {"system": ATC, "code": "H02AB07", "display": "prednisone"},
        ],
        "text": "prednisone",
    }
}
CEFTRIAXONE = {
    "medicationCodeableConcept": {
        "coding": [{"system": ATC, "code": "J01DD04", "display": "ceftriaxone"}],
        "text": "ceftriaxone",
    }
}


def mg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def statement(medication: dict[str, Any], dosage: dict[str, Any], **changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": "ms-1",
        "status": "active",
        "subject": {"reference": f"Patient/{SUBJECT}"},
        "effectiveDateTime": "2026-03-02T08:00:00Z",
        "dosage": [dosage],
        **medication,
    }
    resource.update(changes)
    return resource


def administration(
    medication: dict[str, Any], dosage: dict[str, Any], **changes: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": "ma-1",
        "status": "completed",
        "subject": {"reference": f"Patient/{SUBJECT}"},
        "effectivePeriod": {"start": "2026-03-02T08:00:00Z", "end": "2026-03-02T09:00:00Z"},
        "dosage": dosage,
        **medication,
    }
    resource.update(changes)
    return resource


def judged(*resources: dict[str, Any]) -> list[str]:
    """What the rules say about these resources, read as ingest reads them (a resource
    ingest refuses fails here, naming its issues)."""
    for resource in resources:
        event, issues = medication_event(resource, study_id=STUDY, zone=UTC)
        assert event is not None, f"refused: {[(i.code, i.expression) for i in issues]}"
    described, _ = _run({"facts": [{"fhir": r} for r in resources]})
    return described


# -- drugs coded as US Core sends them ---------------------------------------------------------


@pytest.mark.parametrize(
    "coding",
    [
        {"system": RXNORM, "code": "8640"},
        {"system": RXNORM, "code": "312617"},
        {"system": SNOMED, "code": "116602009"},
    ],
    ids=["rxnorm-ingredient", "rxnorm-clinical-drug", "snomed-substance"],
)
def test_a_prednisone_coded_without_display_or_text_is_judged(coding: dict[str, str]) -> None:
    """US Core MedicationStatement/MedicationRequest bind medication[x] to RxNorm
    (extensible) and make Coding.display and CodeableConcept.text optional (FHIR R4 Coding:
    display 0..1); many EHR exports send only system and code. RxNorm 8640 is the ingredient
    prednisone, 312617 'predniSONE 20 MG Oral Tablet', SNOMED CT 116602009 the substance
    prednisone. Vigil reads an ATC code alone but refuses these with 422 'the drug is
    required', so 20 mg/day of prednisone (twice the protocol limit) is never judged and,
    in a transaction, the Bundle's other entries are lost with it. Expected: the coded drug
    is read (at least for the protocol's drugs) and the steroid limit signal raised."""
    dosage = {"route": ORAL, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(20)}]}
    said = judged(statement({"medicationCodeableConcept": {"coding": [coding]}}, dosage))
    assert STEROID in said, said


# -- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "medication", "dose", "expected"),
    [
        (
            {"coding": [{"system": SNOMED, "code": "255560000"}]},
            CEFTRIAXONE,
            {"value": 2, "unit": "g", "system": UCUM, "code": "g"},
            IV_ANTI_INFECTIVE,
        ),
        (
            {"coding": [{"system": SNOMED, "code": "47625008",
                         "display": "Intravenous route (qualifier value)"}]},
            {"medicationCodeableConcept": {"coding": [{"system": ATC, "code": "L01AA01"}],
                                           "text": "cyclophosphamide"}},
            mg(500),
            IV_CYCLOPHOSPHAMIDE,
        ),
        (
            {"coding": [{"system": V3_ROUTE, "code": "IVINJ"}]},
            CEFTRIAXONE,
            {"value": 2, "unit": "g", "system": UCUM, "code": "g"},
            IV_ANTI_INFECTIVE,
        ),
    ],
    ids=["snomed-255560000-no-display", "snomed-fsn-display", "v3-IVINJ-no-display"],
)  # fmt: skip
def test_coded_intravenous_routes_are_read(
    route: dict[str, Any], medication: dict[str, Any], dose: dict[str, Any], expected: str
) -> None:
    """Issue 15 item 3: normalise SNOMED CT / HL7 route codes. SNOMED CT 255560000
    'Intravenous' is the route of FHIR R4's own medicationadministrationexample3; a
    terminology server's display for 47625008 is its fully specified name 'Intravenous
    route (qualifier value)'; HL7 v3 RouteOfAdministration IVINJ is 'Injection,
    intravenous'. Vigil recognises 47625008 without a display and 'Intravenous' as a
    display, but these raise only route-not-recognised for the data manager: 2 g of IV
    ceftriaxone (serious infection) and 500 mg of IV cyclophosphamide (a prohibited
    medication) reach no medical monitor. Expected: the route is read as intravenous (the
    code wins over a display Vigil does not know) and the rule fires."""
    said = judged(administration(medication, {"route": route, "dose": dose}))
    assert expected in said, said


def test_an_oral_route_with_the_v3_display_is_read() -> None:
    """HL7 v3 RouteOfAdministration PO, display 'Swallow, oral' (the code system's own
    print name), is how C-CDA-derived FHIR exports code oral use. Prednisone 20 mg once a
    day by this route raises only route-not-recognised, not the steroid limit signal.
    Expected: PO is oral and 20 mg/day > 10 mg/day alerts."""
    route = {"coding": [{"system": V3_ROUTE, "code": "PO", "display": "Swallow, oral"}]}
    dosage = {"route": route, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(20)}]}
    said = judged(statement(PREDNISONE, dosage))
    assert STEROID in said, said


# -- doses given as volumes or tablets of a known strength -------------------------------------


def test_a_volume_of_a_medication_of_known_strength_is_a_dose_in_mg() -> None:
    """A methylprednisolone sodium succinate 40 mg/mL injection given as 12.5 mL is a 500 mg
    pulse (625 mg prednisone equivalent). FHIR R4 puts the strength where the drug is
    described, Medication.ingredient.strength (a Ratio: 40 mg per 1 mL), and the dose as
    given in the administration's dosage.dose (12.5 mL): this is what pharmacy and
    infusion-pump systems send. Vigil raises only dose-not-convertible (a data-quality
    event) and the medical monitor hears nothing of a steroid pulse 60 times the limit.
    Expected: dose x strength = 500 mg, and the steroid limit signal."""
    medication = {
        "resourceType": "Medication",
        "id": "mp40",
        "code": {
            "coding": [{"system": ATC, "code": "H02AB04", "display": "methylprednisolone"}],
            "text": "methylprednisolone sodium succinate 40 mg/mL",
        },
        "ingredient": [
            {
                "itemCodeableConcept": {"coding": [{"system": ATC, "code": "H02AB04"}]},
                "isActive": True,
                "strength": {
                    "numerator": mg(40),
                    "denominator": {"value": 1, "unit": "mL", "system": UCUM, "code": "mL"},
                },
            }
        ],
    }
    resource = administration(
        {"contained": [medication], "medicationReference": {"reference": "#mp40"}},
        {"route": INTRAVENOUS,
         "dose": {"value": 12.5, "unit": "mL", "system": UCUM, "code": "mL"}},
    )  # fmt: skip
    said = judged(resource)
    assert STEROID in said, said


def test_tablets_of_a_medication_of_known_strength_are_a_dose_in_mg() -> None:
    """Four prednisone 5 mg tablets a day ({tbl} is UCUM's annotation for tablets, as
    US Core and IPS dosage examples write it) is 20 mg/day. The contained Medication states
    its strength (5 mg per 1 tablet, FHIR R4 Medication.ingredient.strength). Vigil raises
    only dose-not-convertible. Expected: 4 x 5 mg = 20 mg/day, the steroid limit signal."""
    medication = {
        "resourceType": "Medication",
        "id": "pred5",
        "code": {"coding": [{"system": ATC, "code": "H02AB07"}], "text": "prednisone 5 mg tablet"},
        "ingredient": [
            {
                "itemCodeableConcept": {"coding": [{"system": ATC, "code": "H02AB07"}]},
                "strength": {
                    "numerator": mg(5),
                    "denominator": {"value": 1, "unit": "tablet", "system": UCUM,
                                    "code": "{tbl}"},
                },
            }
        ],
    }  # fmt: skip
    dosage = {
        "route": ORAL,
        "timing": DAILY,
        "doseAndRate": [
            {"doseQuantity": {"value": 4, "unit": "tablet", "system": UCUM, "code": "{tbl}"}}
        ],
    }
    resource = statement(
        {"contained": [medication], "medicationReference": {"reference": "#pred5"}}, dosage
    )
    said = judged(resource)
    assert STEROID in said, said


# -- timing that says twice a day --------------------------------------------------------------


@pytest.mark.parametrize(
    "repeat",
    [
        {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN", "EVE"]},
        {"frequency": 1, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"]},
    ],
    ids=["when-MORN-EVE", "timeOfDay-two"],
)
def test_two_daily_times_are_not_silently_read_as_once_a_day(repeat: dict[str, Any]) -> None:
    """Prednisone 7.5 mg 'in the morning and in the evening' (Timing.repeat.when MORN and
    EVE; or timeOfDay 08:00 and 20:00) is 15 mg/day. FHIR R4 Timing.repeat.when: 'When more
    than one event is listed, the event is tied to the union of the specified events'; a
    Chinese EMR writes 早晚各一次 this way. Vigil reads the frequency 1 per day, ignores
    when/timeOfDay, and says nothing: 7.5 mg/day, no signal, no data-quality issue, no
    warning. (when alone is read as '(timing not read)'.) Expected: twice a day and the
    steroid limit signal, or at least dose-not-convertible saying the timing was not read;
    never a silent once a day."""
    dosage = {
        "route": ORAL,
        "timing": {"repeat": repeat},
        "doseAndRate": [{"doseQuantity": mg(7.5)}],
    }
    said = judged(statement(PREDNISONE, dosage))
    assert STEROID in said or "dq dose-not-convertible" in said, said


# -- updates -----------------------------------------------------------------------------------


def test_a_statement_updated_to_a_lower_dose_resolves_rather_than_retracts() -> None:
    """A site's EHR records prednisone 20 mg/day from 2 March, then updates the same
    MedicationStatement (PUT, same id, status still active, not entered-in-error) when the
    dose is tapered to 5 mg/day from 5 March. Three days of 20 mg/day were taken: the
    signal was true, and a tapered dose ends it (resolved, or amended). FHIR R4 says a
    record made in error is marked status entered-in-error; an active record updated is
    not a withdrawal. Vigil retracts the signal, erasing from the safety record that the
    subject was ever above the limit. Expected: the signal is resolved (or amended), not
    retracted."""
    before = statement(
        PREDNISONE,
        {"route": ORAL, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(20)}]},
        effectiveDateTime=None,
        effectivePeriod={"start": "2026-03-02T08:00:00Z"},
    )
    after = statement(
        PREDNISONE,
        {"route": ORAL, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(5)}]},
        effectiveDateTime=None,
        effectivePeriod={"start": "2026-03-05T08:00:00Z"},
    )
    said = judged(before, after)
    assert STEROID in said, said
    assert "retracted steroid-prednisone-equivalent-gt-10" not in said, said


# -- a course with an end --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bounds",
    [
        {"boundsPeriod": {"start": "2026-03-02", "end": "2026-03-06"}},
        {"boundsDuration": {"value": 5, "unit": "days", "system": UCUM, "code": "d"}},
    ],
    ids=["boundsPeriod-end", "boundsDuration-5d"],
)
def test_a_course_that_ended_is_not_summed_with_a_later_one(bounds: dict[str, Any]) -> None:
    """Prednisone 7.5 mg once a day for a five-day course (FHIR R4 Timing.repeat.bounds[x]:
    'either a duration for the length of the timing schedule, a range of possible length,
    or outer bounds for start and/or end limits of the timing schedule'; the R4 Dosage
    examples write a course this way), then, from 10 March, methylprednisolone 4 mg a day
    (5 mg prednisone equivalent). The subject never took more than 7.5 mg/day. Vigil
    ignores the bounds, keeps the first course open for ever and sums 7.5 + 5 = 12.5 mg/day
    from 10 March: a false steroid alarm to the investigators (the same course sent with
    effectivePeriod.end raises nothing). Expected: the course stops at its bound; no
    signal."""
    course = statement(
        PREDNISONE,
        {
            "route": ORAL,
            "timing": {"repeat": {**bounds, "frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": mg(7.5)}],
        },
        id="course-1",
        effectiveDateTime="2026-03-02",
    )
    later = statement(
        {
            "medicationCodeableConcept": {
                "coding": [{"system": ATC, "code": "H02AB04"}],
                "text": "methylprednisolone",
            }
        },
        {"route": ORAL, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(4)}]},
        id="course-2",
        effectiveDateTime="2026-03-10",
    )
    said = judged(course, later)
    assert STEROID not in said, said


def test_hydroxychloroquine_tablets_of_known_strength_are_judged() -> None:
    """Hydroxychloroquine 200 mg tablets, two tablets twice a day (800 mg/day; the protocol's
    limit is 400 mg/day, and > 5 mg/kg/day of real body weight risks retinopathy per the
    AAO 2016 guidance the issue cites). The contained Medication states 200 mg per tablet
    (FHIR R4 Medication.ingredient.strength) and the dose is 2 {tbl}, as Chinese and US
    EHR pharmacy modules record oral solids. Vigil raises only dose-not-convertible.
    Expected: 2 x 200 mg x 2 = 800 mg/day and the hydroxychloroquine signal."""
    medication = {
        "resourceType": "Medication",
        "id": "hcq200",
        "code": {"coding": [{"system": ATC, "code": "P01BA02"}], "text": "hydroxychloroquine"},
        "ingredient": [
            {
                "itemCodeableConcept": {"coding": [{"system": ATC, "code": "P01BA02"}]},
                "strength": {
                    "numerator": mg(200),
                    "denominator": {"value": 1, "unit": "tablet", "system": UCUM, "code": "{tbl}"},
                },
            }
        ],
    }
    dosage = {
        "route": ORAL,
        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [
            {"doseQuantity": {"value": 2, "unit": "tablet", "system": UCUM, "code": "{tbl}"}}
        ],
    }
    resource = statement(
        {"contained": [medication], "medicationReference": {"reference": "#hcq200"}}, dosage
    )
    said = judged(resource)
    assert "raised hydroxychloroquine-gt-400" in said, said
