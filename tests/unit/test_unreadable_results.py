"""A result the laboratory sent and Vigil could not read: one data-quality issue, in words."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain.unreadable import unreadable_problem
from services.safety_rules.handlers.facts import handle_batch
from shared.events import DataQualityIssueRaised, LabResultReported, LabResultUnreadable
from tests.support.rules_harness import STUDY, T0, InMemoryRulesStore, fact, run_batches
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")[STUDY]
TEXT = "Hb for Quentin Marrowfield"  # sender text: reaches no derived event


def unreadable(subject: str = "01-007", **changes: Any) -> LabResultUnreadable:
    fields: dict[str, Any] = {
        "study_id": STUDY,
        "subject_id": subject,
        "source_message_id": "MSG-U1",
        "segment": "OBX[3]",
        "field": "OBX-5",
        "problem": "the value is not a number, although OBX-2 says NM",
        "error_code": "102",
        "loinc_code": "718-7",
        "analyte_text": TEXT,
        "result_status": "F",
        "collected_at": T0 + timedelta(days=1),
        "abnormal_flags": ("L",),
    }
    return LabResultUnreadable.model_validate({**fields, **changes})


@pytest.mark.parametrize(
    ("flags", "issue"),
    [
        (("L",), "abnormal-result-unreadable"),
        (("POS",), "abnormal-result-unreadable"),
        (("N",), "result-unreadable"),
        ((), "result-unreadable"),
    ],
)
def test_the_issue_follows_the_sender_s_flags(flags: tuple[str, ...], issue: str) -> None:
    problem = unreadable_problem(uuid.uuid4(), unreadable(abnormal_flags=flags))

    assert problem.issue == issue


def test_the_detail_names_analyte_place_and_problem_never_sender_text() -> None:
    event_id = uuid.uuid4()

    problem = unreadable_problem(event_id, unreadable())

    assert problem.related_event_id == event_id
    assert problem.detail.startswith("a result of haemoglobin (LOINC 718-7) could not be read")
    assert "OBX[3], field OBX-5: the value is not a number, although OBX-2 says NM" in (
        problem.detail
    )
    assert "flagged it abnormal" in problem.detail
    assert "Marrowfield" not in problem.detail


@pytest.mark.parametrize(
    ("local_code", "named"),
    [("HGB", "the laboratory's code HGB"), (TEXT, "an analyte the laboratory did not code")],
)
def test_a_sender_s_code_is_named_only_when_it_looks_like_a_code(
    local_code: str, named: str
) -> None:
    result = unreadable(loinc_code=None, local_code=local_code, local_system="L")

    assert named in unreadable_problem(uuid.uuid4(), result).detail


async def test_one_issue_per_unreadable_result_whatever_is_redelivered_or_restarted() -> None:
    store = InMemoryRulesStore()
    outcomes = await run_batches(store, [[fact({"enrol": {}}, "01-007"), unreadable()]], PACK)
    (issue,) = [e.payload() for e in outcomes[0].data_quality]
    stored = [e for e in store.stream(STUDY, "01-007") if e.type == unreadable().event_type]

    again = await handle_batch(stored, store.unit_of_work(), {STUDY: PACK})
    store.histories.clear()  # a new process reads the subject back from the log
    hb = LabResultReported(
        study_id=STUDY,
        subject_id="01-007",
        loinc_code="718-7",
        value=Decimal("13.1"),
        unit="g/dL",
        collected_at=T0 + timedelta(days=2),
        source_message_id="MSG-2",
    )
    later = await run_batches(store, [[hb]], PACK)

    assert isinstance(issue, DataQualityIssueRaised)
    assert (issue.issue, issue.related_event_id) == ("abnormal-result-unreadable", stored[0].id)
    assert outcomes[0].data_quality[0].causation_id == stored[0].id
    assert (again.stored, again.data_quality) == (0, [])
    assert later[0].data_quality == []
    assert later[0].signals == []


async def test_a_subject_nobody_enrolled_gets_both_issues_and_nothing_breaks() -> None:
    store = InMemoryRulesStore()

    (outcome,) = await run_batches(store, [[unreadable("99-001", abnormal_flags=())]], PACK)

    issues = sorted(e.payload().issue for e in outcome.data_quality)  # type: ignore[union-attr]
    assert issues == ["result-unreadable", "unknown-subject"]
    assert outcome.signals == []
