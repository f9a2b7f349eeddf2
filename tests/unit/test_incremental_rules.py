"""The rules fold new in-order points into the end of the record (domain/incremental.py):
on any history, in order or not, with corrections, late results and values around the
thresholds, they must store exactly what a whole walk of every rule stores, against the
study's real rule pack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.facts import handle_batch
from shared.events import Envelope, EventPayload, wrap
from tests.support.rules_harness import STUDY, InMemoryRulesStore, fact
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]
SUBJECT = "01-001"

#: analytes the pack's rules read, with values around their thresholds
ANALYTES: dict[str, tuple[str, str | None, list[float]]] = {
    "718-7": ("g/dL", None, [6.5, 7.9, 8.0, 8.5, 9.0, 9.1, 10.5, 12.0]),  # haemoglobin
    "751-8": ("10*9/L", None, [0.4, 0.9, 1.0, 1.4, 1.5, 1.6, 3.0]),  # neutrophils
    "1742-6": ("U/L", "0-40", [20, 40, 41, 119, 120, 121, 200, 900]),  # ALT
    "1920-8": ("U/L", "0-40", [20, 41, 130, 300]),  # AST
    "1975-2": ("mg/dL", "0.2-1.2", [0.5, 1.2, 1.3, 2.4, 2.5, 4.0]),  # total bilirubin
    "2160-0": ("mg/dL", "0.5-1.2", [0.7, 0.8, 1.0, 1.2, 1.3, 1.9, 2.5, 4.0]),  # creatinine
    "6690-2": ("10*9/L", None, [2.0, 6.0, 8.0]),  # white cells (a derived count's total)
    "770-8": ("%", None, [10, 20, 60]),  # neutrophils % (a derived count)
}


@st.composite
def lab(draw: st.DrawFn, at: float) -> dict[str, Any]:
    code = draw(st.sampled_from(sorted(ANALYTES)))
    unit, ref, values = ANALYTES[code]
    spec: dict[str, Any] = {"loinc": code, "value": draw(st.sampled_from(values)), "unit": unit}
    spec["at"] = at
    if ref is not None:
        spec["ref"] = ref
    return spec


@st.composite
def histories(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Batches of facts: mostly results later than every earlier one, some late, some
    at the same moment, some corrections of an earlier report, now and then an adverse
    event, a new enrolment (Day 0 moved) or a result after Vigil's clock."""
    batches: list[list[dict[str, Any]]] = [[{"enrol": {}}]]
    now = draw(st.sampled_from([-3.0, -1.0, 0.0]))
    sent: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 14))):
        batch: list[dict[str, Any]] = []
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["next"] * 8 + ["same", "late", "correct", "ae", "future"]))
            if kind == "correct" and sent:
                earlier = draw(st.sampled_from(sent))
                values = ANALYTES[earlier["loinc"]][2]
                corrected = {**earlier, "value": draw(st.sampled_from(values)), "status": "C"}
                corrected["msg"] = f"{earlier['msg']}-c{len(sent)}"
                batch.append({"lab": corrected})
                continue
            if kind == "ae":
                batch.append(
                    {"ae": {"id": f"AE{len(sent)}", "term": "headache", "onset": now, "grade": 1}}
                )
                continue
            if kind == "next":
                now += draw(st.sampled_from([0.25, 1.0, 3.0]))
                at = now
            elif kind == "same":
                at = now
            elif kind == "late":
                at = now - draw(st.sampled_from([0.5, 2.0, 5.0]))
            else:
                at = 400.0  # collected after the moment Vigil records it
            spec = draw(lab(at))
            spec["id"] = f"obs{len(sent)}"
            spec["msg"] = f"m{len(sent)}"
            sent.append(spec)
            batch.append({"lab": spec})
        if draw(st.integers(0, 19)) == 0:
            batch.append({"enrol": {"day0": draw(st.sampled_from(["2026-03-01", "2026-03-04"]))}})
        batches.append(batch)
    return batches


def _store(
    batches: Sequence[Sequence[Envelope]], *, incremental: bool = True, cold: bool = False
) -> list[tuple[Any, ...]]:
    """The subject's stream after the batches, each event without its random id."""
    return _store_counting_walks(batches, incremental=incremental, cold=cold)[0]


def _store_counting_walks(
    batches: Sequence[Sequence[Envelope]], *, incremental: bool = True, cold: bool = False
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """What the batches store, and the id of each rule that walked the whole history,
    once per walk; ``cold``: every batch handled by a new process (no history kept)."""
    store = InMemoryRulesStore()
    walks: list[str] = []
    for batch in batches:
        if cold:
            store.histories.clear()
        with store.transaction():
            outcome = asyncio.run(
                handle_batch(
                    list(batch), store.unit_of_work(), {STUDY: PACK}, incremental=incremental
                )
            )
        walks += outcome.walked
    stream = [
        (
            e.type,
            json.dumps(e.payload().model_dump(mode="json"), sort_keys=True),
            e.causation_id,
            e.correlation_id,
        )
        for e in store.stream(STUDY, SUBJECT)
    ]
    return stream, walks


def _envelopes(batches: list[list[dict[str, Any]]]) -> list[list[Envelope]]:
    """The facts as the service reads them: envelopes parsed from their JSON (a number is a
    JSON number there, so 4.0 reads back as 4, as from the audit log)."""
    payloads: list[list[EventPayload]] = [[fact(spec, SUBJECT) for spec in b] for b in batches]
    return [
        [Envelope.from_json(wrap(p, source="/test/site").to_json()) for p in batch]
        for batch in payloads
    ]


def _whole(batches: Sequence[Sequence[Envelope]]) -> list[tuple[Any, ...]]:
    return _store(batches, incremental=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_folding_new_points_stores_what_a_whole_walk_stores(
    batches: list[list[dict[str, Any]]],
) -> None:
    envelopes = _envelopes(batches)
    assert _store(envelopes) == _whole(envelopes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_process_that_kept_no_history_stores_what_one_that_kept_it_stores(
    batches: list[list[dict[str, Any]]],
) -> None:
    """A restart between any two batches (the history read from the log again, every rule
    walked once) changes nothing in what is stored."""
    envelopes = _envelopes(batches)
    assert _store(envelopes, cold=True) == _store(envelopes)


def test_a_long_in_order_history_is_folded_not_walked() -> None:
    """After the first walk, an abnormal result later than every earlier one (and the
    normal one that resolves it) is folded into the end of the record: no rule reading it
    walks the whole history again, and the events are those of a whole walk."""
    batches: list[list[dict[str, Any]]] = [[{"enrol": {}}]]
    for n in range(1, 41):  # after Day 0 (a result on or before it may be a new baseline)
        value = 8.5 if n % 7 == 3 else 11.0
        batches.append([{"lab": {"loinc": "718-7", "value": value, "unit": "g/dL", "at": n}}])
    envelopes = _envelopes(batches)
    folded, walks = _store_counting_walks(envelopes)
    assert "anaemia-hb-le-9" in walks  # the first sight of the subject walks every rule
    assert walks.count("anaemia-hb-le-9") == 1
    whole, reference_walks = _store_counting_walks(envelopes, incremental=False)
    assert folded == whole
    assert reference_walks.count("anaemia-hb-le-9") == 41  # the reference walks every batch
    assert sum(1 for row in folded if row[0].endswith(".raised.v1")) == 6


def test_a_late_result_walks_the_whole_history() -> None:
    """A result collected before the latest one may split or join earlier episodes: the
    rule walks the whole history for it, and stores what a whole walk stores."""
    specs = [(1, 8.5), (3, 11.0), (5, 8.0), (2, 8.5), (6, 12.0)]
    batches: list[list[dict[str, Any]]] = [[{"enrol": {}}]]
    batches += [
        [{"lab": {"loinc": "718-7", "value": value, "unit": "g/dL", "at": at}}]
        for at, value in specs
    ]
    envelopes = _envelopes(batches)
    folded, walks = _store_counting_walks(envelopes)
    assert walks.count("anaemia-hb-le-9") == 2  # the first sight, and the late result
    assert folded == _whole(envelopes)


def test_a_screening_creatinine_sent_after_later_results_is_their_baseline() -> None:
    """Found by the property test: a result before Day 0 has no point of its own, so a
    batch holding only it looked as if it had nothing to say, and the rule was not walked;
    yet it is the baseline of every later creatinine, and the one on Day 10, not above the
    ULN, is 1.71 x this baseline: a signal."""
    creatinine = {"loinc": "2160-0", "unit": "mg/dL", "ref": "0.5-1.2"}
    batches: list[list[dict[str, Any]]] = [
        [{"enrol": {}}],
        [{"lab": {**creatinine, "value": 1.2, "at": 10.0, "id": "obs0", "msg": "m0"}}],
        [{"lab": {**creatinine, "value": 0.7, "at": -0.75, "id": "obs1", "msg": "m1"}}],
    ]
    envelopes = _envelopes(batches)
    stored = _store(envelopes)
    assert stored == _whole(envelopes)
    raised = [json.loads(row[1]) for row in stored if row[0].endswith(".raised.v1")]
    assert [(s["rule_id"], s["analyte"]) for s in raised] == [
        ("creatinine-gt-1-5x-baseline", "creatinine")
    ]
