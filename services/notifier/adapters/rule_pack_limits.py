"""The few things a subject chart needs from a study's rule pack (``rules.yaml``): each lab
rule's analytes, threshold and CTCAE bands, and the ids of the Hy's law rules.

A tolerant reader, not the rules service's validator: the pack is validated where it is
used (``vigil rules check``, the rules service at start-up), and a chart must not fail
because a rule kind it does not draw gained a field. What it cannot read it leaves out.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast, get_args

import structlog
import yaml

from services.notifier.domain.protocol_limits import (
    AnalyteLimits,
    Band,
    Basis,
    FallbackUln,
    Grading,
    Operator,
    Threshold,
    ThresholdKind,
)
from shared.yaml_files import load_yaml

log = structlog.get_logger(__name__)

RULES_FILE = "rules.yaml"
_OPERATORS = get_args(Operator)
_BASES = get_args(Basis)
#: rule kinds that compare a lab value, and the analyte a kind reads when it names none
_LAB_KINDS = {
    "absolute_threshold": None,
    "reference_limit_multiple": None,
    "change_from_baseline": None,
    "creatinine_clearance": "creatinine clearance",
}


@dataclass(frozen=True)
class PackLimits:
    """A pack's drawable limits by analyte name (``shared.analytes``), and its Hy's law
    rule ids."""

    version: str
    by_analyte: Mapping[str, AnalyteLimits]
    hys_law_rules: frozenset[str]
    hys_law_window_days: int | None = None  # "close in time" for the Hy's law rule
    #: the Hy's law rule's ULNs for results sent without a range, by analyte name
    hys_law_fallbacks: Mapping[str, FallbackUln] = field(default_factory=dict)

    def of(self, analyte: str) -> AnalyteLimits:
        return self.by_analyte.get(analyte, AnalyteLimits(analyte))


EMPTY = PackLimits("", {}, frozenset())


def _decimal(raw: object) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _bands(raw: object, default_basis: Basis) -> tuple[Band, ...]:
    bands = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        bound, grade = _decimal(item.get("bound")), item.get("grade")
        operator, basis = item.get("operator"), item.get("basis", default_basis)
        if bound is None or not isinstance(grade, int) or operator not in _OPERATORS:
            continue
        if basis not in _BASES:
            continue
        bands.append(Band(grade, cast(Operator, operator), bound, cast(Basis, basis)))
    return tuple(bands)


def _grading(raw: object) -> Grading | None:
    if not isinstance(raw, dict):
        return None
    raw_basis = raw.get("basis", "value")
    basis = cast(Basis, raw_basis if raw_basis in _BASES else "value")
    bands = _bands(raw.get("bands"), basis)
    if not bands:
        return None
    label = f"{raw.get('scale', 'CTCAE v5.0')} {raw.get('term', '')}".strip()
    return Grading(label, bands, _bands(raw.get("abnormal_baseline_bands"), basis))


def _threshold(rule: dict[str, Any], parameters: Mapping[str, Any]) -> Threshold | None:
    operator = rule.get("operator")
    if operator not in _OPERATORS:
        return None
    kind: ThresholdKind
    unit = rule.get("unit") if isinstance(rule.get("unit"), str) else None
    if rule["kind"] == "reference_limit_multiple":
        kind = "lln" if rule.get("limit") == "LLN" else "uln"
        raw_amount: object = rule.get("multiple")
    elif rule["kind"] == "change_from_baseline":
        change = rule.get("change")
        if change not in ("ratio", "percent", "absolute"):
            return None
        kind, raw_amount = cast(ThresholdKind, change), rule.get("amount")
    else:
        kind, raw_amount = "value", rule.get("threshold")
        if rule["kind"] == "creatinine_clearance":
            unit = unit or "mL/min"
    if isinstance(raw_amount, dict):
        parameter = parameters.get(str(raw_amount.get("parameter")))
        raw_amount = parameter.get("value") if isinstance(parameter, dict) else None
    amount = _decimal(raw_amount)
    if amount is None:
        return None
    return Threshold(
        rule_id=str(rule.get("id")),
        title=str(rule.get("title", rule.get("id"))),
        kind=kind,
        operator=cast(Operator, operator),
        amount=amount,
        unit=unit,
        finding=rule.get("severity") == "finding",
        without_baseline_uln=rule.get("without_baseline") == "uln",
    )


def _fallback(raw: object, analyte: str, kind: ThresholdKind) -> Decimal | None:
    """The limit a rule uses when the laboratory sent none: one value, or the more
    alerting of the two by sex (the chart does not know which applies)."""
    if kind not in ("uln", "lln") or not isinstance(raw, dict):
        return None
    entry = raw.get(analyte)
    if not isinstance(entry, dict):
        return None
    if (value := _decimal(entry.get("value"))) is not None:
        return value
    by_sex = [v for v in (_decimal(entry.get("female")), _decimal(entry.get("male"))) if v]
    if not by_sex:
        return None
    return min(by_sex) if kind == "uln" else max(by_sex)


def _fallback_ulns(raw: object) -> dict[str, FallbackUln]:
    """A rule's ``fallback_limits`` as upper limits by analyte (anything unreadable left out)."""
    if not isinstance(raw, dict):
        return {}
    read = {}
    for analyte, entry in raw.items():
        if not isinstance(analyte, str) or not isinstance(entry, dict):
            continue
        unit = entry.get("unit") if isinstance(entry.get("unit"), str) else None
        fallback = FallbackUln(
            unit,
            _decimal(entry.get("value")),
            _decimal(entry.get("female")),
            _decimal(entry.get("male")),
        )
        if fallback.for_sex(None) is not None:
            read[analyte] = fallback
    return read


def limits_from_data(raw: object) -> PackLimits:
    """A pack's limits from its YAML document as read (anything unreadable left out)."""
    if not isinstance(raw, dict):
        return EMPTY
    parameters = raw.get("parameters") if isinstance(raw.get("parameters"), dict) else {}
    thresholds: dict[str, list[Threshold]] = {}
    gradings: dict[str, list[tuple[bool, Grading]]] = {}
    hys_law: set[str] = set()
    window: int | None = None
    hys_law_fallbacks: dict[str, FallbackUln] = {}
    for rule in raw.get("rules") or []:
        if not isinstance(rule, dict) or not isinstance(rule.get("id"), str):
            continue
        if rule.get("kind") == "hys_law":
            hys_law.add(rule["id"])
            if isinstance(rule.get("window_days"), int):
                window = rule["window_days"]
            hys_law_fallbacks.update(_fallback_ulns(rule.get("fallback_limits")))
        if rule.get("kind") not in _LAB_KINDS:
            continue
        analytes = rule.get("analytes") or [_LAB_KINDS[rule["kind"]]]
        threshold = _threshold(rule, parameters or {})
        grading = _grading(rule.get("grading"))
        for analyte in analytes:
            if not isinstance(analyte, str):
                continue
            if threshold is not None:
                fallback = _fallback(rule.get("fallback_limits"), analyte, threshold.kind)
                thresholds.setdefault(analyte, []).append(replace(threshold, fallback=fallback))
            if grading is not None:
                gradings.setdefault(analyte, []).append(
                    (threshold is None or threshold.finding, grading)
                )
    by_analyte = {}
    for analyte in sorted(set(thresholds) | set(gradings)):
        # the protocol threshold's grading when there is one, else a finding's
        ranked = sorted(gradings.get(analyte, []), key=lambda pair: pair[0])
        by_analyte[analyte] = AnalyteLimits(
            analyte,
            tuple(sorted(thresholds.get(analyte, []), key=lambda t: (t.finding, t.rule_id))),
            ranked[0][1] if ranked else None,
        )
    return PackLimits(
        str(raw.get("version", "")), by_analyte, frozenset(hys_law), window, hys_law_fallbacks
    )


class RulePackLimits:
    """Reads ``<study_dir>/<study_id>/rules.yaml`` once per change of the file."""

    def __init__(self, study_dir: Path) -> None:
        self._study_dir = study_dir
        self._cache: dict[str, tuple[float, PackLimits]] = {}
        self._lock = threading.Lock()

    def of(self, study_id: str) -> PackLimits:
        """The study's pack limits; empty when it has no readable pack (logged)."""
        path = self._study_dir / study_id / RULES_FILE
        try:
            modified = path.stat().st_mtime
        except OSError:
            return EMPTY
        with self._lock:
            cached = self._cache.get(study_id)
            if cached is not None and cached[0] == modified:
                return cached[1]
        try:
            limits = limits_from_data(load_yaml(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as error:
            log.warning(
                "workspace.rule_pack_unreadable", study_id=study_id, error=type(error).__name__
            )
            return EMPTY
        with self._lock:
            self._cache[study_id] = (modified, limits)
        return limits
