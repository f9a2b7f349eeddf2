"""Reading the qualitative answers laboratories send (shared/qualitative.py)."""

from __future__ import annotations

import pytest

from shared.qualitative import qualitative_answer


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        ("1+", "positive"),
        ("+++", "positive"),
        ("\uff0b\uff0b", "positive"),  # full-width plus, twice
        ("阳性\uff08\uff0b\uff09", "positive"),  # full-width brackets and plus
        ("Negative (-)", "negative"),
        ("弱阳性(±)", "indeterminate"),  # the laboratory's own hesitation
        ("LA11885-3", "indeterminate"),  # LOINC answer Equivocal
        ("419984006", "indeterminate"),  # SNOMED CT Inconclusive
        ("LA15255-5", "positive"),  # LOINC answer Reactive
        ("Target not detected", "negative"),
    ],
)
def test_an_answer_is_read_as_laboratories_write_it(sent: str, answer: str) -> None:
    assert qualitative_answer(sent) == answer


@pytest.mark.parametrize(
    "sent", ["Positive (-)", "阴性(+)", "5+", "+ see comment", "Positive (Negative)", "(+)"]
)
def test_an_answer_that_contradicts_itself_or_says_more_is_not_guessed(sent: str) -> None:
    assert qualitative_answer(sent) is None


def test_the_code_is_read_before_the_text() -> None:
    assert qualitative_answer("LA6577-6", "阳性") == "negative"
