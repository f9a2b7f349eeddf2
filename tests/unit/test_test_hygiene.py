"""The suite's own hygiene: every ``pytest.raises`` names the failure it expects.

A test that expects ``Exception``, or a bare ``ValueError`` that a hundred unrelated
mistakes also raise, passes when the code fails for the wrong reason. Each expectation
names the precise type the code raises, or says with ``match=`` which field and problem
the message must name.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
PYPROJECT = TESTS.parent / "pyproject.toml"

# What any failure at all is: no message makes expecting these precise.
NEVER_EXPECTED = frozenset({"BaseException", "Exception"})
# Builtins that many unrelated failures raise: the type alone proves nothing.
BROAD_BUILTINS = frozenset(
    {
        "ArithmeticError",
        "AssertionError",
        "AttributeError",
        "EnvironmentError",
        "IOError",
        "IndexError",
        "KeyError",
        "LookupError",
        "OSError",
        "RuntimeError",
        "TypeError",
        "ValueError",
    }
)


def _is_pytest_raises(call: ast.Call) -> bool:
    function = call.func
    if isinstance(function, ast.Attribute):
        owner = function.value
        return function.attr == "raises" and isinstance(owner, ast.Name) and owner.id == "pytest"
    return isinstance(function, ast.Name) and function.id == "raises"


def _expected_names(call: ast.Call) -> list[str]:
    """The builtin names among the types a ``pytest.raises`` call expects."""
    expected = call.args[0] if call.args else None
    for keyword in call.keywords:
        if keyword.arg == "expected_exception":
            expected = keyword.value
    elements = expected.elts if isinstance(expected, ast.Tuple) else [expected]
    names = []
    for element in elements:
        if isinstance(element, ast.Name):
            names.append(element.id)
        elif (
            isinstance(element, ast.Attribute)
            and isinstance(element.value, ast.Name)
            and element.value.id == "builtins"
        ):
            names.append(element.attr)
    return names


def _has_match(call: ast.Call) -> bool:
    return any(
        keyword.arg == "match"
        and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None)
        for keyword in call.keywords
    )


def broad_expectations(source: str, filename: str) -> Iterator[str]:
    """Each ``pytest.raises`` in ``source`` that does not name the failure it expects, as
    ``file:line: what is wrong``."""
    for node in ast.walk(ast.parse(source, filename)):
        if not (isinstance(node, ast.Call) and _is_pytest_raises(node)):
            continue
        for name in _expected_names(node):
            if name in NEVER_EXPECTED:
                yield (
                    f"{filename}:{node.lineno}: pytest.raises({name}) passes on any failure; "
                    "expect the exact type the code raises"
                )
            elif name in BROAD_BUILTINS and not _has_match(node):
                yield (
                    f"{filename}:{node.lineno}: pytest.raises({name}) without match=; expect "
                    "the narrower type the code raises, or match= the field and problem"
                )


@pytest.mark.parametrize(
    "source",
    [
        "with pytest.raises(Exception):\n    f()",
        "with pytest.raises(BaseException, match='x'):\n    f()",
        "with pytest.raises(ValueError):\n    f()",
        "with pytest.raises(ValueError) as caught:\n    f()",
        "with pytest.raises(ValueError, match=None):\n    f()",
        "with pytest.raises((KeyError, InvalidRulePack)):\n    f()",
        "with pytest.raises(expected_exception=RuntimeError):\n    f()",
        "with pytest.raises(builtins.OSError):\n    f()",
        "from pytest import raises\nwith raises(TypeError):\n    f()",
        "pytest.raises(AssertionError, f)",
    ],
)
def test_the_check_finds_an_expectation_that_names_no_failure(source: str) -> None:
    (problem,) = broad_expectations(source, "tests/unit/test_x.py")
    assert problem.startswith("tests/unit/test_x.py:")
    assert "pytest.raises(" in problem


@pytest.mark.parametrize(
    "source",
    [
        "with pytest.raises(InvalidRulePack):\n    f()",
        "with pytest.raises(ValueError, match='rate_per_second'):\n    f()",
        "with pytest.raises(asyncpg.InsufficientPrivilegeError):\n    f()",
        "with pytest.raises(TimeoutError):\n    f()",
        "with pytest.raises((KeyError, TypeError), match='field'):\n    f()",
        "other.raises(Exception)",
    ],
)
def test_the_check_passes_an_expectation_that_names_its_failure(source: str) -> None:
    assert list(broad_expectations(source, "tests/unit/test_x.py")) == []


def test_every_pytest_raises_in_the_suite_names_the_failure_it_expects() -> None:
    problems = [
        problem
        for path in sorted(TESTS.rglob("*.py"))
        for problem in broad_expectations(
            path.read_text(encoding="utf-8"), str(path.relative_to(TESTS.parent))
        )
    ]
    assert problems == [], "\n".join(problems)


def test_ruff_checks_pytest_raises_everywhere_in_the_suite() -> None:
    """PT011 (a broad exception without match=) and PT012 (more than one statement under
    ``pytest.raises``) come with the PT rules; nothing may switch them off for tests."""
    lint = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["ruff"]["lint"]
    assert "PT" in lint["select"]
    ignored = [*lint.get("ignore", []), *lint.get("extend-ignore", [])]
    for pattern, codes in lint.get("per-file-ignores", {}).items():
        ignored += [f"{code} ({pattern})" for code in codes]
    for rule in ("PT011", "PT012"):
        assert not [code for code in ignored if rule.startswith(code.split()[0])], rule
    silenced = [
        f"{path.relative_to(TESTS.parent)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"noqa:[^#]*PT01[12]", line)
    ]
    assert silenced == [], silenced
