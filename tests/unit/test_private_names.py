"""A leading underscore means "this module's own": no module of the services or of shared
imports another module's private name (a name used across modules is a public seam and
says so by its name and docstring)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tests.support.services import REPO

SCANNED = ("services", "shared")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(source: str) -> Iterator[tuple[int, str]]:
    """Each import of another module's private name in ``source``: (line, what it imports)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, f"from {module} import {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(_private(part) for part in alias.name.split(".")):
                    yield node.lineno, f"import {alias.name}"


def test_the_scan_finds_a_private_name_imported_from_another_module() -> None:
    source = (
        "from __future__ import annotations\n"
        "from a.b import _hidden, shown\n"
        "from . import _sibling\n"
        "import a._private\n"
        "from a import __version__\n"
    )

    assert list(private_imports(source)) == [
        (2, "from a.b import _hidden"),
        (3, "from . import _sibling"),
        (4, "import a._private"),
    ]


def test_no_module_imports_another_modules_private_name() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for root in SCANNED
        for path in sorted((REPO / root).rglob("*.py"))
        for line, what in private_imports(path.read_text())
    ]

    assert not found, "private names imported across modules (make them public seams):\n" + (
        "\n".join(found)
    )


def test_the_scan_reads_folders_that_exist() -> None:
    # a renamed folder would otherwise make the scan pass on nothing
    assert all((REPO / root).is_dir() for root in SCANNED)
