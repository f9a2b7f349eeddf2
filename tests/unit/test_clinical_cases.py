"""The clinical case set: each case names every signal and data-quality event it expects."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain import engine
from shared.events import DataQualityIssueRaised, SafetySignalRaised, SignalEvent
from shared.yaml_files import load_yaml
from tests.support.rules_harness import InMemoryRulesStore, fact, run_batches
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]
CASES: list[dict[str, Any]] = load_yaml(
    (REPO / "tests" / "data" / "clinical_cases.yaml").read_text()
)
SUBJECT = "01-001"


def _describe(payload: object) -> str:
    if isinstance(payload, DataQualityIssueRaised):
        return f"dq {payload.issue}"
    assert isinstance(payload, SignalEvent)
    verb = type(payload).__name__.removeprefix("SafetySignal").lower()
    grade = getattr(payload, "grade", None) if verb in ("raised", "escalated", "amended") else None
    return f"{verb} {payload.rule_id}" + (f" g{grade}" if grade else "")


def _run(case: dict[str, Any]) -> tuple[list[str], list[Any]]:
    batches = []
    enrol = case.get("enrol", {})
    if enrol is not False:
        batches.append([fact({"enrol": enrol}, SUBJECT)])
    for item in case["facts"]:
        items = item if isinstance(item, list) else [item]
        batches.append([fact(spec, SUBJECT) for spec in items])
    store = InMemoryRulesStore()
    outcomes = asyncio.run(run_batches(store, batches, PACK))
    emitted = [e.payload() for o in outcomes for e in (*o.signals, *o.data_quality)]
    # the order the events were stored in, which is the order the handler produced them
    order = {e.id: i for i, e in enumerate(store.stream("NCT05262686", SUBJECT))}
    envelopes = sorted(
        (e for o in outcomes for e in (*o.signals, *o.data_quality)), key=lambda e: order[e.id]
    )
    emitted = [e.payload() for e in envelopes]
    return [_describe(p) for p in emitted], emitted


def test_the_case_set_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("walk", ["new-facts-only", "whole-history"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_clinical_case(case: dict[str, Any], walk: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if walk == "whole-history":
        # the engine's shortcut for new facts off: every rule walks the whole history, and
        # must say exactly the same
        monkeypatch.setattr(engine, "entrywise", lambda *_: False)
    described, emitted = _run(case)
    assert described == case["expect"]
    for rule_id, expected in case.get("computed", {}).items():
        raised = next(
            p for p in emitted if isinstance(p, SafetySignalRaised) and p.rule_id == rule_id
        )
        for key, value in expected.items():
            assert raised.computed_values[key] == value, key
    for rule_id, hours in case.get("deadline_hours", {}).items():
        raised = next(
            p for p in emitted if isinstance(p, SafetySignalRaised) and p.rule_id == rule_id
        )
        assert raised.reporting_deadline is not None
        assert raised.required_action
        learned = raised.reporting_deadline - timedelta(hours=hours)
        assert learned.year == 2026  # counted from when Vigil learned of it


def test_a_new_pack_walks_every_subject_whole_once() -> None:
    """Under a new pack version the first new fact of a subject makes every rule walk the
    whole history, so what the new pack finds in earlier facts is raised (by clinical time),
    whatever the new fact is."""
    store = InMemoryRulesStore()
    amended_rules = tuple(
        rule.model_copy(update={"threshold": Decimal(10)}) if rule.id == "anaemia-hb-le-9" else rule
        for rule in PACK.rules
    )
    amended = PACK.model_copy(update={"version": "amended", "rules": amended_rules})
    first = [
        [fact({"enrol": {}}, SUBJECT)],
        [fact({"lab": {"loinc": "718-7", "value": 9.5, "unit": "g/dL", "at": 1}}, SUBJECT)],
    ]
    later = [[fact({"lab": {"loinc": "718-7", "value": 11, "unit": "g/dL", "at": 8}}, SUBJECT)]]
    before = asyncio.run(run_batches(store, first, PACK))
    assert not any(outcome.signals for outcome in before)

    after = asyncio.run(run_batches(store, later, amended))

    assert [_describe(e.payload()) for o in after for e in o.signals] == [
        "raised anaemia-hb-le-9 g2",
        "resolved anaemia-hb-le-9",
    ]
