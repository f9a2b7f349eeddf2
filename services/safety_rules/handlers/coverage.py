"""``vigil rules coverage``: what a rule pack accepts and which clinical cases exercise it.

Per analyte a rule reads: its LOINC codes, its canonical unit, the units it converts and
the spellings laboratories send for them, and the rules reading it. Per rule: the cases of
a case file (``tests/data/clinical_cases.yaml``) that exercise it: a case whose ``expect``
names the rule, or whose facts feed the rule's inputs (a lab result of a code it reads, an
adverse event, a medication). Rules no case exercises are listed as such (pure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.safety_rules.domain.rule_pack import RulePack
from shared.analytes import ANALYTES, LOINC_NAMES, UNIT_SPELLINGS, Analyte, analyte_for

#: the input a case fact feeds, by the fact's key in the case file
_FACT_INPUTS = {"ae": "adverse-event", "med": "medication"}


def case_inputs(case: Mapping[str, Any]) -> set[str]:
    """The rule inputs a case's facts feed: LOINC codes of its lab results, and
    ``adverse-event`` / ``medication`` for its reports."""
    fed: set[str] = set()
    for item in case.get("facts", ()):
        for spec in item if isinstance(item, list) else [item]:
            if not isinstance(spec, Mapping):
                continue
            if "lab" in spec and isinstance(spec["lab"], Mapping):
                fed.add(str(spec["lab"].get("loinc", "")))
            for key, name in _FACT_INPUTS.items():
                if key in spec:
                    fed.add(name)
    return fed


def _named(case: Mapping[str, Any], rule_id: str) -> bool:
    return any(rule_id in str(expected).split() for expected in case.get("expect") or ())


def cases_of(pack: RulePack, cases: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each rule's cases, by name, in file order: those naming the rule in ``expect``,
    then those that only feed its inputs."""
    fed = [case_inputs(case) for case in cases]
    found: dict[str, list[str]] = {}
    for rule in pack.rules:
        inputs = set(rule.inputs())
        naming = [str(c.get("name")) for c in cases if _named(c, rule.id)]
        feeding = [
            str(c.get("name"))
            for c, f in zip(cases, fed, strict=True)
            if inputs & f and not _named(c, rule.id)
        ]
        found[rule.id] = naming + feeding
    return found


def _units_of(analyte: Analyte) -> str:
    if analyte.scale != "Qn":
        return "(ordinal: judged by what it says)"
    units = [analyte.canonical_unit, *analyte.conversions]
    spellings = [s for s, ucum in UNIT_SPELLINGS.items() if ucum in units]
    text = f"{analyte.canonical_unit} (canonical)"
    if analyte.conversions:
        text += f"; converts {', '.join(analyte.conversions)}"
    if spellings:
        text += f"; also spelled {', '.join(spellings)}"
    if analyte.unscaled_units:
        text += f"; detection only (no universal factor) {', '.join(analyte.unscaled_units)}"
    return text


def analytes_read(pack: RulePack) -> list[tuple[Analyte, list[str]]]:
    """The catalogue's analytes the pack's rules read, each with the rules reading it."""
    read = []
    for analyte in ANALYTES:
        codes = set(analyte.loinc_codes)
        rules = [rule.id for rule in pack.rules if codes & set(rule.inputs())]
        if rules:
            read.append((analyte, rules))
    return read


def report(pack: RulePack, cases: Sequence[Mapping[str, Any]] | None) -> str:
    """The coverage report in words (``cases`` None: no case file was read)."""
    lines = [f"{pack.study_id} rule pack version {pack.version}", "", "Analytes the pack reads:"]
    read = {code for rule in pack.rules for code in rule.inputs()}
    for analyte, rules in analytes_read(pack):
        lines.append(f"  {analyte.name}")
        for code in analyte.loinc_codes:
            unread = "" if code in read else "  (no rule of this pack reads this code)"
            lines.append(f"    {code}  {LOINC_NAMES[code]}{unread}")
        lines.append(f"    units: {_units_of(analyte)}")
        lines.append(f"    rules: {', '.join(rules)}")
    unknown = sorted(_uncatalogued(pack.rules))
    if unknown:
        lines.append(f"  codes rules read that the catalogue does not know: {', '.join(unknown)}")
    lines += ["", "Rules and the clinical cases that exercise them:"]
    if cases is None:
        lines.append("  (no case file read: give --cases PATH)")
        return "\n".join(lines) + "\n"
    found = cases_of(pack, cases)
    for rule in pack.rules:
        names = found[rule.id]
        lines.append(f"  {rule.id}: {len(names)} case(s)")
        lines += [f"    - {name}" for name in names]
    uncovered = [rule.id for rule in pack.rules if not found[rule.id]]
    lines += ["", f"Rules no case exercises: {', '.join(uncovered) if uncovered else 'none'}"]
    return "\n".join(lines) + "\n"


def _uncatalogued(rules: Iterable[Any]) -> set[str]:
    return {
        code
        for rule in rules
        for code in rule.inputs()
        if code not in ("adverse-event", "medication", "enrolment") and analyte_for(code) is None
    }
