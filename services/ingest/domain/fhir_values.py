"""An Observation's value[x] as Vigil reads it, and what an Observation without one is
(pure).

FHIR R4 Observation.value[x] may be any of eleven types and may be absent (obs-6: a
``dataAbsentReason`` says why; obs-7 and the vital-signs and US Core profiles: a panel
groups its results by ``hasMember``, a blood pressure carries its parts as
``component``). Nothing valid is refused for its form, and nothing Vigil cannot judge
is dropped:

- Quantity, integer: the number (with its UCUM code, else its unit; integer has none).
- string: the number when the text is just one (``7.0``, ``<0.5``: as HL7's ST is read,
  shared/text_numbers), the text kept beside it; else a qualitative answer or the text.
- CodeableConcept: the qualitative answer and its text.
- dateTime, time: kept as the text sent (as HL7's DT and TM are).
- Ratio (a titre), Range, SampledData, Period, boolean: kept *unreadable*
  (LabResultUnreadable), so its data-quality issue is raised, and raised to the medical
  monitor when the sender's interpretation flags it.
- absent with a dataAbsentReason, or with no reason at all: kept unreadable too (HL7's
  empty OBX-5). A cancelled or entered-in-error Observation's value is not read.
- absent in a grouping (a panel's ``hasMember``, a blood pressure's ``component``s) or
  in a registered Observation (no result yet): received, kept with its receipt, answered
  "not used", as any resource Vigil does not judge; a panel's members are read as their
  own entries. A grouping coded as an analyte Vigil judges, or with a component that is
  one, is kept unreadable instead, asking for each result as its own Observation, so a
  result for a protocol analyte is never left unused without a data-quality issue. A
  cancelled or entered-in-error grouping is read: it withdraws what it reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.observation import Observation

from shared.analytes import analyte_for
from shared.qualitative import qualitative_answer
from shared.text_numbers import text_result

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

#: what a registered Observation without a value is, as an entry kept but not used
PENDING = "Observation (registered)"
#: what a panel or a multi-part observation without a value of its own is
GROUPING = "Observation (grouping)"

#: value[x] types Vigil keeps but does not judge, by the name the sender used
_NOT_JUDGED = {
    "valueRatio": "a Ratio",
    "valueRange": "a Range",
    "valueSampledData": "SampledData",
    "valuePeriod": "a Period",
    "valueBoolean": "a boolean",
}
_AS_TEXT = ("valueDateTime", "valueTime")
# http://terminology.hl7.org/CodeSystem/data-absent-reason: said back, anything else is not
_ABSENT_REASONS = frozenset(
    {
        "unknown", "asked-unknown", "temp-unknown", "not-asked", "asked-declined", "masked",
        "not-applicable", "unsupported", "as-text", "error", "not-a-number",
        "negative-infinity", "positive-infinity", "not-performed", "not-permitted",
    }
)  # fmt: skip
_NO_VALUE_STATUSES = frozenset({"cancelled", "entered-in-error"})


@dataclass(frozen=True)
class NotRead:
    """A value[x] Vigil keeps but cannot judge; ``problem`` says why, never the value."""

    problem: str


def _has_value(resource: dict[str, Any]) -> bool:
    return any(key.startswith("value") for key in resource)


def _judged(element: Any) -> bool:
    """Whether an element's ``code`` names, in LOINC, an analyte Vigil judges."""
    code = element.get("code") if isinstance(element, dict) else None
    codings = code.get("coding") if isinstance(code, dict) else None
    return any(
        isinstance(coding, dict)
        and coding.get("system") == LOINC
        and isinstance(coding.get("code"), str)
        and analyte_for(coding["code"]) is not None
        for coding in (codings if isinstance(codings, list) else [])
    )


def _status(resource: dict[str, Any]) -> str | None:
    """The resource's status when it is a code; any other JSON there (a list, an object)
    is no status, and its validation names the field, not this lookup's TypeError."""
    status = resource.get("status")
    return status if isinstance(status, str) else None


def _judged_components(resource: dict[str, Any]) -> bool:
    components = resource.get("component")
    return isinstance(components, list) and any(_judged(c) for c in components)


def unused_observation(resource: Any) -> str | None:
    """What an Observation kept but not used is, or None when it is read: PENDING when
    registered without a result yet (R4 "no result yet available", HL7's OBX-11 I),
    GROUPING for a panel or multi-part observation without a value of its own nor a
    reason for its absence, which is no analyte Vigil judges and has none as a
    component."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        return None
    if _has_value(resource):
        return None
    status = _status(resource)
    if status == "registered":
        return PENDING
    if (
        status not in _NO_VALUE_STATUSES
        and (resource.get("hasMember") or resource.get("component"))
        and "dataAbsentReason" not in resource
        and not _judged(resource)
        and not _judged_components(resource)
    ):
        return GROUPING
    return None


def value_fields(observation: Observation, resource: dict[str, Any]) -> dict[str, Any] | NotRead:
    """The LabResultReported fields of the Observation's value[x], or why it is kept
    unread (unused_observation has taken the groupings Vigil does not judge). A cancelled or
    entered-in-error Observation's value is not read: it is no result (the resource as
    sent stays with its receipt)."""
    if _status(resource) in _NO_VALUE_STATUSES:
        return {}
    if observation.valueQuantity is not None:
        quantity = observation.valueQuantity
        if quantity.value is None:
            return NotRead("valueQuantity carries no value")
        unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit
        return {"value": quantity.value, "comparator": quantity.comparator, "unit": unit}
    if observation.valueCodeableConcept is not None:
        concept = observation.valueCodeableConcept
        codes = [c.code for c in concept.coding or []]
        displays = [c.display for c in concept.coding or []]
        return {
            "qualitative": qualitative_answer(*codes, *displays, concept.text),
            "value_text": concept.text
            or next((d for d in displays if d), None)
            or next((c for c in codes if c), None),
        }
    if observation.valueString is not None:
        return text_result(observation.valueString)
    if observation.valueInteger is not None:
        return {"value": Decimal(observation.valueInteger)}
    for key in _AS_TEXT:
        if isinstance(resource.get(key), str):
            return {"value_text": resource[key]}
    for key, kind in _NOT_JUDGED.items():
        if key in resource:
            return NotRead(f"value[x] is {kind}, which Vigil does not judge; kept for review")
    return _absent(observation, resource)


def _absent(observation: Observation, resource: dict[str, Any]) -> NotRead:
    """Why an Observation without value[x] is kept unread."""
    reason = observation.dataAbsentReason
    if reason is not None:
        codes = [c.code for c in reason.coding or [] if c.code in _ABSENT_REASONS]
        said = f" ({codes[0]})" if codes else ""
        return NotRead(f"value[x] is absent: the sender gives a dataAbsentReason{said}")
    if _judged_components(resource):
        return NotRead(
            "component carries a result Vigil judges, which is not read from a component: "
            "send it as its own Observation"
        )
    if resource.get("hasMember") or resource.get("component"):
        return NotRead(
            "value[x] is absent: a grouping coded as a result Vigil judges; send the "
            "result as value[x]"
        )
    return NotRead("value[x] is absent and no dataAbsentReason says why")
