"""NYHA classes as sites write them: one reading for the adverse event's class field, its
term, and the assessment rule's patterns (LOINC 88020-3), which must agree."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.ingest.domain.json_requests import AdverseEventIn
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain.rule_kinds import CodedResultRule
from shared.adverse_event_labels import adverse_event_label
from shared.events import AdverseEventReported
from shared.nyha import nyha_class_of_field, nyha_classes_in_text
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]
ASSESSMENT = next(r for r in PACK.rules if r.id == "heart-failure-nyha-3-4-assessment")

# what a field holding only the class says, as sites write it
FIELDS = [
    ("III", "III"),
    ("IIIb", "III"),
    ("IIIa", "III"),
    ("iiib", "III"),
    ("3", "III"),
    ("3b", "III"),
    ("class 3b", "III"),
    ("Class IIIb", "III"),
    ("NYHA class IV", "IV"),
    ("Ⅲ", "III"),
    ("Ⅳ", "IV"),
    ("ⅲ", "III"),
    ("III-IV", "IV"),
    ("II-III", "III"),
    ("II\u2013III", "III"),
    ("NYHA class II or III", "III"),
    ("心功能III级", "III"),
    ("心功能Ⅳ级", "IV"),
    ("心功能三级", "III"),
    ("NYHA分级IV级", "IV"),
    ("III级", "III"),
    ("II", "II"),
    ("Class II", "II"),
    ("class I", "I"),
    ("I-II", "II"),
    ("IIb", "II"),
    ("30", None),
    ("IIIc", None),
    ("V", None),
    ("not assessed", None),
]


@pytest.mark.parametrize(("sent", "read"), FIELDS)
def test_a_class_field_is_read_as_its_nyha_class(sent: str, read: str | None) -> None:
    assert nyha_class_of_field(sent) == read


@pytest.mark.parametrize(("sent", "read"), FIELDS)
def test_the_assessment_rule_fires_exactly_on_class_iii_or_iv(sent: str, read: str | None) -> None:
    assert isinstance(ASSESSMENT, CodedResultRule)
    fires = any(re.search(p, sent, re.IGNORECASE) for p in ASSESSMENT.patterns)
    assert fires == (read in ("III", "IV"))


@pytest.mark.parametrize(
    ("term", "classes"),
    [
        ("Cardiac failure, NYHA class IIIb", {"III"}),
        ("Heart failure NYHA II-III", {"III"}),
        ("New York Heart Association functional class IV", {"IV"}),
        ("Cardiac failure (class III)", {"III"}),
        ("心力衰竭\uff08心功能Ⅳ级\uff09", {"IV"}),
        ("心衰III级", {"III"}),
        ("Cardiac failure NYHA class II", {"II"}),
        # a class next to no NYHA word is no NYHA class
        ("Lupus nephritis class III", set()),
        ("Heart failure, lupus nephritis class IV", set()),
        ("Heart failure 3 days after the infusion", set()),
        ("心衰3天", set()),
        ("NYHA 30", set()),
    ],
)
def test_a_term_names_an_nyha_class_only_next_to_an_nyha_word(term: str, classes: set[str]) -> None:
    assert nyha_classes_in_text(term) == classes


def _report(nyha: str) -> AdverseEventReported:
    return AdverseEventReported(
        study_id="NCT05262686",
        subject_id="01-001",
        ae_id="AE1",
        term="Cardiac failure",
        onset=datetime(2026, 3, 2, tzinfo=UTC),
        serious=False,
        nyha_class=nyha,  # type: ignore[arg-type]
        source_message_id="M1",
    )


def test_a_reported_sub_class_is_stored_as_its_class_and_labelled_so() -> None:
    report = _report("IIIb")

    assert report.nyha_class == "III"
    assert adverse_event_label(serious=False, nyha_class=report.nyha_class) == (
        "adverse event, NYHA class III"
    )


def test_a_class_field_that_names_no_class_is_refused() -> None:
    with pytest.raises(ValidationError, match="nyha_class"):
        _report("moderate")


def test_the_json_endpoint_takes_a_sub_class_as_its_class() -> None:
    body = {
        "subject_id": "01-001",
        "ae_id": "AE1",
        "term": "Cardiac failure",
        "onset": "2026-03-02T00:00:00+08:00",
        "serious": False,
        "nyha_class": "心功能Ⅲb级",
        "source_message_id": "M1",
    }

    assert AdverseEventIn.model_validate(body).nyha_class == "III"
