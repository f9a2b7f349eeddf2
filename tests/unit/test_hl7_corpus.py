"""The pure HL7 v2 reader on the corpus of tests/data/hl7 (expected.yaml says what each
message must become; tests/e2e/test_hl7_corpus.py replays the same files over MLLP)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import hl7
import pytest

from services.ingest.domain.hl7.ack import build_ack
from services.ingest.domain.hl7.charset import decode
from services.ingest.domain.hl7.messages import Interpretation, interpret
from shared.events import LabResultReported, LabResultUnreadable
from tests.support.hl7_corpus import INTERNALS, Case, cases, check_keys, unmatched

ACK_TIME = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # when an ACK is written

STUDY = "NCT05262686"
CASES = cases()


def read(message: bytes) -> Interpretation:
    decoded = decode(message)
    assert decoded.text is not None, decoded.problem
    outcome = interpret(decoded.text, study_id=STUDY, zone=ZoneInfo("Asia/Shanghai"))
    outcome.charset = decoded.charset
    return outcome


def of_subject(outcomes: list[Interpretation], kind: type, subject: str) -> list[dict[str, Any]]:
    return [
        event.model_dump(mode="json")
        for outcome in outcomes
        for event in outcome.events
        if isinstance(event, kind) and event.subject_id == subject
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_corpus_message_is_read_as_expected(case: Case) -> None:
    outcomes = [read(message) for message in case.messages()]
    assert [o.ack_code for o in outcomes] == case.acks, [o.reason for o in outcomes]
    last = outcomes[-1]
    assert [
        (f"{p.segment}^{p.sequence}^{p.field or ''}", p.code, p.severity) for p in last.problems
    ] == [(e["location"], e["code"], e["severity"]) for e in case.err]
    for placeholder, subject in case.subjects.items():
        results = of_subject(outcomes, LabResultReported, subject)
        assert unmatched(results, case.results.get(placeholder, [])) == [], case.name
        unreadable = of_subject(outcomes, LabResultUnreadable, subject)
        assert unmatched(unreadable, case.unreadable.get(placeholder, [])) == [], case.name
        if results:
            check_keys(case, placeholder, results)
    ack = hl7.parse(build_ack(last, sending_application="V", sending_facility="V",
                              ack_control_id="A1", now=ACK_TIME))  # fmt: skip
    texts = (
        [str(ack.segment("MSA")[3])] + [ack.unescape(str(err[8])) for err in ack.segments("ERR")]
        if case.err
        else [str(ack.segment("MSA")[3])]
    )
    for text in texts:
        assert not any(mark in text for mark in INTERNALS), text
        assert not any(subject in text for subject in case.subjects.values()), text
        assert "MRN0042" not in text, text
        assert "19850412" not in text, text
    for err, expected in zip(ack.segments("ERR") if case.err else [], case.err, strict=True):
        assert str(err[4]) == expected["severity"]
        if "legacy" in expected:
            assert ack.unescape(str(err[1])) == expected["legacy"]
