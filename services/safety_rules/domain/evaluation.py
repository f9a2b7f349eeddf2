"""Evaluating a lab result against a rule pack: values in, signals out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from services.safety_rules.domain.rule_pack import AbsoluteThresholdRule, RulePack
from shared.analytes import UnitNotConvertible, analyte_for
from shared.events import LabResultReported, SafetySignalRaised
from shared.events.payloads import EVENT_ID_NAMESPACE

# Results that are not (or no longer) a valid measurement.


@dataclass(frozen=True)
class Unconvertible:
    """A result a rule needed but whose unit could not be converted: a data-quality problem."""

    rule_id: str
    reason: str


def signal_id_for(rule_id: str, input_event_id: uuid.UUID) -> uuid.UUID:
    """The same rule on the same input always gives the same signal id."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"signal:{rule_id}:{input_event_id}")


def evaluate_lab_result(
    result: LabResultReported,
    event_id: uuid.UUID,
    pack: RulePack,
    *,
    site_id: str | None,
) -> tuple[list[SafetySignalRaised], list[Unconvertible]]:
    """The signals this result raises under ``pack``, and the rules it could not be judged by."""
    if not result.result_status.is_measurement or result.value is None:
        return [], []  # qualitative results have no numeric threshold to meet
    signals: list[SafetySignalRaised] = []
    problems: list[Unconvertible] = []
    for rule in pack.rules:
        if result.loinc_code not in rule.loinc_codes:
            continue
        try:
            value = _in_rule_unit(result, rule)
        except UnitNotConvertible as error:
            problems.append(Unconvertible(rule.id, str(error)))
            continue
        if rule.holds(value, result.comparator):
            signals.append(_signal(result, event_id, pack, rule, value, site_id))
    return signals, problems


def _in_rule_unit(result: LabResultReported, rule: AbsoluteThresholdRule) -> Decimal:
    analyte = analyte_for(result.loinc_code or "")
    assert analyte is not None  # the pack validator guarantees it
    assert result.value is not None
    if result.canonical_value is not None and result.canonical_unit == analyte.canonical_unit:
        canonical = result.canonical_value
    elif result.unit is None:
        raise UnitNotConvertible(f"{analyte.name} was reported without a unit")
    else:
        canonical = analyte.to_canonical(result.value, result.unit)
    # express the canonical value in the rule's unit (the inverse of the rule unit's factor)
    return canonical / analyte.to_canonical(Decimal(1), rule.unit)


def _signal(
    result: LabResultReported,
    event_id: uuid.UUID,
    pack: RulePack,
    rule: AbsoluteThresholdRule,
    value: Decimal,
    site_id: str | None,
) -> SafetySignalRaised:
    analyte = analyte_for(result.loinc_code or "")
    converted = value.quantize(Decimal("0.01")) if value != value.to_integral_value() else value
    return SafetySignalRaised(
        study_id=result.study_id,
        subject_id=result.subject_id,
        site_id=site_id,
        signal_id=signal_id_for(rule.id, event_id),
        rule_id=rule.id,
        rule_title=rule.title,
        rule_pack_version=pack.version,
        input_event_ids=(event_id,),
        computed_values={
            "value_in_rule_unit": f"{converted.normalize():f}",
            "rule_unit": rule.unit,
            "reported_value": f"{result.value:f}",
            "reported_unit": result.unit,
            "comparison": f"{result.comparator or ''}{converted.normalize():f} {rule.describe()}",
            **(
                {"censored": f"reported as {result.comparator}{result.value:f}"}
                if result.comparator
                else {}
            ),
        },
        analyte=analyte.name if analyte else (result.loinc_code or "unknown"),
        observed_value=value if result.value is None else result.value,
        observed_unit=result.unit or rule.unit,
        threshold=rule.describe(),
        collected_at=result.collected_at,
    )
