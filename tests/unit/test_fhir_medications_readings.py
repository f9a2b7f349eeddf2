"""How FHIR ingest and the rules read what the round-2 findings on FHIR medications left
unread, at the edges the fixes chose: coded drugs, coded routes, doses by strength, times
a day listed by Timing, courses bounded by Timing, and a statement updated to a new dose.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.ingest.domain.fhir_medications import TIMING_NOT_READ, medication_event
from services.safety_rules.domain.conditions.drug_names import coded_drug, identify
from services.safety_rules.domain.conditions.medication_words import per_day, route_of
from shared.events import MedicationRecorded
from tests.unit.test_clinical_cases import SUBJECT, _run

STUDY = "NCT05262686"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
STEROID = "steroid-prednisone-equivalent-gt-10"
PREDNISONE = {"coding": [{"system": ATC, "code": "H02AB07"}], "text": "prednisone"}
ORAL = {"coding": [{"system": SNOMED, "code": "26643006"}]}
DAILY = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}


def mg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def statement(dosage: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": "ms-1",
        "status": "active",
        "subject": {"reference": f"Patient/{SUBJECT}"},
        "effectiveDateTime": "2026-03-02T08:00:00Z",
        "medicationCodeableConcept": PREDNISONE,
        "dosage": [
            dosage or {"route": ORAL, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(20)}]}
        ],
    }
    resource.update(changes)
    return {k: v for k, v in resource.items() if v is not None}


def read(resource: dict[str, Any]) -> MedicationRecorded:
    event, issues = medication_event(resource, study_id=STUDY, zone=UTC)
    assert issues == []
    assert isinstance(event, MedicationRecorded)
    return event


# -- coded drugs -------------------------------------------------------------------------------


def test_a_drug_coded_with_a_code_vigil_does_not_know_is_kept_with_the_code_as_its_drug() -> None:
    """A coded drug is a drug: never a 422 (which would lose a transaction's other
    entries). Its code is the drug, which no rule counts (as an unknown name)."""
    concept = {"coding": [{"system": RXNORM, "code": "999999999"}]}
    event = read(statement(medicationCodeableConcept=concept))
    assert (event.drug, event.drug_code) == (f"{RXNORM}|999999999", None)
    assert identify(event.drug, event.drug_code).names == ()


def test_rxnorm_is_read_before_snomed_and_the_table_names_the_drug() -> None:
    concept = {
        "coding": [{"system": SNOMED, "code": "116593003"}, {"system": RXNORM, "code": "6902"}]
    }
    event = read(statement(medicationCodeableConcept=concept))
    assert event.drug == f"{RXNORM}|6902"
    assert coded_drug(event.drug) == "methylprednisolone"
    assert coded_drug(f"{SNOMED}|116593003") == "methylprednisolone"
    assert coded_drug("urn:local|6902") is None  # a code is read with its system only


# -- coded routes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "recorded", "canonical"),
    [
        ({"coding": [{"system": SNOMED, "code": "47625008", "display": "Oral"}]},
         "47625008|Oral", "intravenous"),  # the code wins over a display that contradicts it
        ({"coding": [{"system": SNOMED, "code": "1234567", "display": "Intravenous"}]},
         "1234567|Intravenous", "intravenous"),  # an unknown code: its display is read
        ({"coding": [{"system": V3_ROUTE, "code": "SQ"}]}, "SQ", "subcutaneous"),
        ({"coding": [{"system": V3_ROUTE, "code": "SCINJ"}]}, "SCINJ", None),  # subconjunctival
        ({"coding": [{"system": "urn:local", "code": "X1"}], "text": "ivgtt"}, "X1|ivgtt",
         "intravenous"),
    ],
)  # fmt: skip
def test_a_coded_route_is_read_by_its_code_then_its_display_then_the_text(
    route: dict[str, Any], recorded: str, canonical: str | None
) -> None:
    dosage = {"route": route, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(20)}]}
    event = read(statement(dosage))
    assert event.route == recorded
    assert route_of(event.route) == canonical


def test_a_snomed_fully_specified_name_is_read_without_its_semantic_tag() -> None:
    assert route_of("Intravenous route (qualifier value)") == "intravenous"
    assert route_of("Oral route (qualifier value)") == "oral"
    assert route_of("Swallow, oral") == "oral"
    assert route_of("(qualifier value)") is None


# -- doses by strength -------------------------------------------------------------------------


def _with_medication(ingredients: list[dict[str, Any]], dose: dict[str, Any]) -> dict[str, Any]:
    medication = {"resourceType": "Medication", "id": "m", "code": PREDNISONE,
                  "ingredient": ingredients}  # fmt: skip
    dosage = {"route": ORAL, "timing": DAILY, "doseAndRate": [{"doseQuantity": dose}]}
    return statement(
        dosage,
        medicationCodeableConcept=None,
        contained=[medication],
        medicationReference={"reference": "#m"},
    )


def _ingredient(numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, Any]:
    return {"itemCodeableConcept": PREDNISONE,
            "strength": {"numerator": numerator, "denominator": denominator}}  # fmt: skip


TABLET = {"value": 1, "unit": "tablet", "system": SNOMED, "code": "732936001"}
TWO_ML = {"value": 2, "unit": "mL", "system": UCUM, "code": "mL"}


@pytest.mark.parametrize(
    ("ingredients", "dose", "expected"),
    [
        ([_ingredient(mg(5), TABLET)], {"value": 3, "unit": "tablets"}, (Decimal(15), "mg")),
        ([_ingredient(mg(40), TWO_ML)], {"value": 5, "unit": "mL", "system": UCUM, "code": "mL"},
         (Decimal(100), "mg")),  # 40 mg per 2 mL
        # a capsule is not a tablet: the dose stays as sent, and a summing rule says so
        ([_ingredient(mg(5), TABLET)], {"value": 3, "unit": "capsule"}, (Decimal(3), "capsule")),
        # two active ingredients: which one would the dose be?
        ([_ingredient(mg(5), TABLET), _ingredient(mg(2), TABLET)],
         {"value": 3, "unit": "tablet"}, (Decimal(3), "tablet")),
        ([_ingredient(mg(5), TABLET)], mg(20), (Decimal(20), "mg")),  # already a mass
    ],
)  # fmt: skip
def test_a_dose_counted_in_the_strengths_denominator_is_its_ingredients_amount(
    ingredients: list[dict[str, Any]], dose: dict[str, Any], expected: tuple[Decimal, str]
) -> None:
    event = read(_with_medication(ingredients, dose))
    assert (event.dose, event.dose_unit) == expected


# -- times a day listed by Timing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("repeat", "frequency"),
    [
        ({"timeOfDay": ["08:00:00", "14:00:00", "20:00:00"]}, "3/day"),
        ({"frequency": 2, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"]},
         "2/day"),
        ({"frequency": 3, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"]},
         TIMING_NOT_READ),  # the two say different counts: no single rate
        ({"frequency": 1, "period": 1, "periodUnit": "d", "when": ["ACM", "ACV"]}, "2/day"),
        ({"frequency": 1, "period": 1, "periodUnit": "d", "when": ["C", "HS"]}, TIMING_NOT_READ),
        ({"when": ["MORN", "EVE"]}, TIMING_NOT_READ),  # no period: when alone is no rate
        ({"timeOfDay": ["08:00:00", "20:00:00"], "dayOfWeek": ["mon"]}, TIMING_NOT_READ),
        ({"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN"]}, "1/day"),
    ],
)  # fmt: skip
def test_times_a_day_listed_by_the_timing_are_counted(
    repeat: dict[str, Any], frequency: str
) -> None:
    dosage = {"route": ORAL, "timing": {"repeat": repeat}, "doseAndRate": [{"doseQuantity": mg(5)}]}
    event = read(statement(dosage))
    assert event.frequency == frequency
    assert per_day(event.frequency) == (None if frequency == TIMING_NOT_READ else int(frequency[0]))


# -- courses with an end -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "stop"),
    [
        # FHIR R4 Period.end includes the day it names
        ({"effectiveDateTime": None,
          "effectivePeriod": {"start": "2026-03-02", "end": "2026-03-02"}},
         datetime(2026, 3, 3, tzinfo=UTC)),
        ({"effectiveDateTime": None, "effectivePeriod": {"start": "2026-03-02", "end": "2026-03"}},
         datetime(2026, 4, 1, tzinfo=UTC)),
        ({"effectiveDateTime": None,
          "effectivePeriod": {"start": "2026-03-02", "end": "2026-03-02T10:00:00Z"}},
         datetime(2026, 3, 2, 10, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_an_effective_period_end_takes_in_the_time_it_names(
    changes: dict[str, Any], stop: datetime
) -> None:
    assert read(statement(**changes)).stop == stop


def test_a_bounds_range_ends_at_its_longest_and_an_earlier_end_bound_wins() -> None:
    ranged = {"boundsRange": {"high": {"value": 2, "unit": "wk", "system": UCUM, "code": "wk"}}}
    dosage = {"route": ORAL, "timing": {"repeat": {**ranged, **DAILY["repeat"]}},
              "doseAndRate": [{"doseQuantity": mg(5)}]}  # fmt: skip
    event = read(statement(dosage))
    assert event.stop == event.start + timedelta(weeks=2)
    bounded = {"boundsPeriod": {"end": "2026-03-04"}, **DAILY["repeat"]}
    dosage = {
        "route": ORAL,
        "timing": {"repeat": bounded},
        "doseAndRate": [{"doseQuantity": mg(5)}],
    }
    period = {"start": "2026-03-02", "end": "2026-03-20"}
    event = read(statement(dosage, effectiveDateTime=None, effectivePeriod=period))
    assert event.stop == datetime(2026, 3, 5, tzinfo=UTC)


# -- a statement updated -----------------------------------------------------------------------


def _version(dose: float, start: str, **changes: Any) -> dict[str, Any]:
    dosage = {"route": ORAL, "timing": DAILY, "doseAndRate": [{"doseQuantity": mg(dose)}]}
    return statement(dosage, effectiveDateTime=None, effectivePeriod={"start": start}, **changes)


def said(*resources: dict[str, Any]) -> list[str]:
    return _run({"facts": [{"fhir": r} for r in resources]})[0]


def test_a_statement_updated_to_a_lower_dose_resolves_where_the_new_dose_starts() -> None:
    described, emitted = _run(
        {"facts": [{"fhir": _version(20, "2026-03-02")}, {"fhir": _version(5, "2026-03-05")}]}
    )
    assert described == [f"raised {STEROID}", f"resolved {STEROID}"]
    assert emitted[-1].collected_at == datetime(2026, 3, 5, tzinfo=UTC)


def test_a_statement_whose_start_alone_moved_later_is_a_corrected_date() -> None:
    """The same regimen from a later start corrects when it began: the signal moves."""
    described, emitted = _run(
        {"facts": [{"fhir": _version(20, "2026-03-02")}, {"fhir": _version(20, "2026-03-05")}]}
    )
    assert described == [f"raised {STEROID}", f"amended {STEROID}"]
    assert emitted[-1].collected_at == datetime(2026, 3, 5, tzinfo=UTC)


def test_entered_in_error_after_a_dose_change_withdraws_every_earlier_dose() -> None:
    withdrawn = _version(5, "2026-03-05", status="entered-in-error")
    assert said(_version(20, "2026-03-02"), _version(15, "2026-03-05"), withdrawn) == [
        f"raised {STEROID}",
        f"retracted {STEROID}",
    ]


def test_a_json_record_resent_with_a_later_start_still_replaces_it() -> None:
    """The JSON API's medication_id names one record a site corrects: unchanged."""
    first = {"med": {"id": "M1", "drug": "prednisone", "dose": 20, "start": 1}}
    later = {"med": {"id": "M1", "drug": "prednisone", "dose": 5, "start": 4}}
    assert _run({"facts": [first, later]})[0] == [f"raised {STEROID}", f"retracted {STEROID}"]
