"""The HL7 v2 corpus of tests/data/hl7: its messages with fresh ids, and what each must
become (expected.yaml), for the e2e replay and the pure reader's unit test alike."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared.yaml_files import load_yaml
from tests.support.results import new_subject_id

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hl7"
LAB_RESULT = "org.vigil.lab_result.reported.v1"
UNREADABLE = "org.vigil.lab_result.unreadable.v1"
_NUMBERS = frozenset({"value", "reference_low", "reference_high"})
# what an ACK text must never show: internals, patterns, exception names
INTERNALS = ("Traceback", "Error(", "pattern", "regex", "^\\d", "\\d", "pydantic",
             "string_", "validation error", "Exception", "index out of range")  # fmt: skip


@dataclass
class Case:
    name: str
    files: list[str]
    acks: list[str]
    err: list[dict[str, str]] = field(default_factory=list)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unreadable: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    receipt: str | None = None
    subjects: dict[str, str] = field(default_factory=dict)
    control: str = ""
    order: str = ""

    def messages(self) -> list[bytes]:
        """Each file as sent: LF as CR, placeholders replaced (the same ids for all the
        case's files, so a correction names its original's patient)."""
        out = []
        for name in self.files:
            raw = (CORPUS / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r")
            for placeholder, value in {**self.subjects, "C": self.control, "O": self.order}.items():
                raw = raw.replace(f"{{{placeholder}}}".encode(), value.encode())
            out.append(raw)
        return out


def cases() -> list[Case]:
    """Every case of expected.yaml, each with fresh subject and control ids."""
    expected = load_yaml((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
    out = []
    for name, spec in expected.items():
        out.append(
            Case(
                name=name,
                files=spec["send"],
                acks=spec["acks"],
                err=spec.get("err", []),
                results=spec.get("results", {}),
                unreadable=spec.get("unreadable", {}),
                keys=spec.get("keys", {}),
                receipt=spec.get("receipt"),
                subjects={"S1": new_subject_id("HL"), "S2": new_subject_id("HL")},
                control=f"C{uuid.uuid4().hex[:12].upper()}",
                order=uuid.uuid4().hex[:10].upper(),
            )
        )
    return out


def _same(key: str, actual: Any, expected: Any) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    if key in _NUMBERS:
        return Decimal(str(actual)) == Decimal(str(expected))
    if key == "collected_at":
        return datetime.fromisoformat(str(actual)) == datetime.fromisoformat(str(expected))
    if isinstance(expected, list):
        return list(actual) == expected
    return str(actual) == str(expected)


def unmatched(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> list[Any]:
    """The expected items no actual item matches (each actual item matches once), and
    the actual items left over; empty when they are the same."""
    left = list(actual)
    missing = []
    for want in expected:
        found = next(
            (got for got in left if all(_same(k, got.get(k), v) for k, v in want.items())),
            None,
        )
        if found is None:
            missing.append(want)
        else:
            left.remove(found)
    return missing + left


def check_keys(case: Case, subject: str, results: list[dict[str, Any]]) -> None:
    keys = [result["observation_key"] for result in results]
    rule = case.keys.get(subject)
    assert all(keys), f"{case.name}: a result without an observation key: {keys}"
    assert not any(case.control in key for key in keys), f"{case.name}: MSH-10 in a key"
    if rule == "one":
        assert len(set(keys)) == 1, f"{case.name}: a correction lost its original: {keys}"
    elif rule == "distinct":
        assert len(set(keys)) == len(keys), f"{case.name}: two results made one: {keys}"
