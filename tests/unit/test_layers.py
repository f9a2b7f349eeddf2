"""The layers of docs/architecture.md hold, read from the imports themselves: a service
never imports another service and ``shared/`` imports none; ``domain/`` is pure (no other
layer, no I/O library, no PostgreSQL); ``handlers/`` talk to ports only (no adapter,
entrypoint, composition root, I/O library or PostgreSQL); ``adapters/`` never reach up to
the entrypoints or the composition root. A break names the file, the line and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import REPO

SERVICES = tuple(
    sorted(p.parent.name for p in (REPO / "services").glob("*/__init__.py") if p.parent.is_dir())
)
LAYERS = ("domain", "handlers", "adapters", "entrypoints")
#: libraries that talk to the network, the disk's file formats or a server
IO_LIBRARIES = frozenset(
    {
        "asyncpg",
        "aiokafka",
        "faststream",
        "fastapi",
        "starlette",
        "httpx",
        "aiosmtplib",
        "yaml",
        "uvicorn",
        "ssl",
        "socket",
    }
)
#: the PostgreSQL side of shared/: the database plumbing and the event store's recorder
POSTGRES_MODULES = (
    "shared.db",
    "shared.eventstore.postgres",
    "shared.eventstore.postgres_append",
    "shared.eventstore.store",
)


def _within(target: str, prefixes: tuple[str, ...] | frozenset[str]) -> bool:
    """Whether ``target`` is one of ``prefixes`` or inside one (``a.b`` is inside ``a``)."""
    return any(target == p or target.startswith(f"{p}.") for p in prefixes)


def _postgres_names() -> tuple[str, ...]:
    """``shared.eventstore``'s names that are its PostgreSQL recorder's (the store class
    and the functions of a connection): importing one is importing PostgreSQL."""
    tree = ast.parse((REPO / "shared" / "eventstore" / "__init__.py").read_text())
    return tuple(
        f"shared.eventstore.{alias.asname or alias.name}"
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and _within(node.module or "", POSTGRES_MODULES)
        for alias in node.names
    )


POSTGRES = POSTGRES_MODULES + _postgres_names()


def imported(source: str, module: str) -> Iterator[tuple[int, str]]:
    """Each name an import of ``source`` (the text of dotted ``module``) reaches, made
    absolute: ``import a.b`` reaches ``a.b``, ``from a import b`` reaches ``a.b`` (a
    module or a name of ``a``), ``from . import c`` reaches ``c`` in its package."""
    package = module.split(".")[:-1]  # a package's own module is "<package>.__init__"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node.lineno, f"{origin}.{alias.name}" if alias.name != "*" else origin


def forbidden(relative: str) -> list[tuple[tuple[str, ...] | frozenset[str], str]]:
    """What a module at ``relative`` (a path under the repository) must not import: pairs
    of the imports (prefixes) and why."""
    parts = Path(relative).parts
    if parts[0] == "shared":
        return [(("services",), "shared/ must not depend on any service")]
    if parts[0] != "services" or len(parts) < 3 or parts[1] not in SERVICES:
        return []
    service = parts[1]
    own = f"services.{service}"
    rules: list[tuple[tuple[str, ...] | frozenset[str], str]] = [
        (
            tuple(f"services.{other}" for other in SERVICES if other != service),
            "a service never imports another service",
        )
    ]
    layer = parts[2] if len(parts) > 3 else None
    if layer == "domain":
        rules += [
            (
                tuple(f"{own}.{up}" for up in ("handlers", "adapters", "entrypoints", "main")),
                "domain/ is pure: it imports no other layer",
            ),
            (IO_LIBRARIES, "domain/ is pure: no I/O library"),
            (POSTGRES, "domain/ is pure: no PostgreSQL"),
        ]
    elif layer == "handlers":
        rules += [
            (
                tuple(f"{own}.{up}" for up in ("adapters", "entrypoints", "main")),
                "handlers/ talk to ports only (handlers/ports.py): no adapter, entrypoint or main",
            ),
            (IO_LIBRARIES, "handlers/ talk to ports only: no I/O library"),
            (POSTGRES, "handlers/ talk to ports only: no PostgreSQL"),
        ]
    elif layer == "adapters":
        rules += [
            (
                (f"{own}.entrypoints", f"{own}.main"),
                "adapters/ never reach up to the entrypoints or the composition root",
            )
        ]
    return rules


def breaks(relative: str, source: str) -> list[str]:
    """Each import of ``source`` (the module at ``relative``) that crosses the layers."""
    module = ".".join(Path(relative).with_suffix("").parts)
    rules = forbidden(relative)
    found = []
    for line, target in imported(source, module):
        for prefixes, why in rules:
            if _within(target, prefixes):
                found.append(f"{relative}:{line} imports {target}: {why}")
    return found


def scanned() -> list[Path]:
    return sorted(
        path
        for folder in ("services", "shared")
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_every_layer_of_every_service_is_scanned() -> None:
    files = {str(path.relative_to(REPO)) for path in scanned()}
    assert set(SERVICES) == {"ingest", "notifier", "safety_rules"}
    for service in SERVICES:
        for layer in LAYERS:
            assert any(f.startswith(f"services/{service}/{layer}/") for f in files), layer
    assert "shared/eventstore/ports.py" in files


def test_no_module_imports_across_the_layers() -> None:
    found = [
        crossing
        for path in scanned()
        for crossing in breaks(str(path.relative_to(REPO)), path.read_text(encoding="utf-8"))
    ]
    assert not found, "imports that cross the layers (move the code to its layer):\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        (
            "services/notifier/handlers/signals.py",
            "from services.notifier.adapters.signal_log import ANSWERED_ISSUES\n",
            "services/notifier/handlers/signals.py:1 imports "
            "services.notifier.adapters.signal_log.ANSWERED_ISSUES: handlers/ talk to ports only",
        ),
        (
            "services/safety_rules/handlers/explain_signal.py",
            "from __future__ import annotations\nimport asyncpg\n",
            ":2 imports asyncpg: handlers/ talk to ports only: no I/O library",
        ),
        (
            "services/safety_rules/handlers/facts.py",
            "from ..entrypoints import records\n",
            "imports services.safety_rules.entrypoints.records: handlers/",
        ),
        (
            "services/safety_rules/handlers/simulate.py",
            "from shared.eventstore import PostgresEventStore\n",
            "imports shared.eventstore.PostgresEventStore: handlers/ talk to ports only: no "
            "PostgreSQL",
        ),
        (
            "services/notifier/domain/planning.py",
            "def f():\n    from services.notifier import main\n",
            ":2 imports services.notifier.main: domain/ is pure",
        ),
        (
            "services/ingest/domain/hl7/ack.py",
            "import yaml.loader\n",
            "imports yaml.loader: domain/ is pure: no I/O library",
        ),
        (
            "services/ingest/domain/code_map.py",
            "from shared.db.receipts import ReceiptRow\n",
            "imports shared.db.receipts.ReceiptRow: domain/ is pure: no PostgreSQL",
        ),
        (
            "services/ingest/adapters/receipts.py",
            "from services.ingest.entrypoints.problems import problem\n",
            "adapters/ never reach up",
        ),
        (
            "services/notifier/main.py",
            "from services.safety_rules.domain.rule_pack import RulePack\n",
            "a service never imports another service",
        ),
        (
            "services/ingest/entrypoints/__init__.py",
            "from ...notifier import settings\n",
            "imports services.notifier.settings: a service never imports another service",
        ),
        (
            "shared/settings.py",
            "import services.settings\n",
            "shared/ must not depend on any service",
        ),
    ],
)
def test_the_scan_names_each_kind_of_crossing(relative: str, source: str, expected: str) -> None:
    found = breaks(relative, source)

    assert len(found) == 1, found
    assert expected in found[0]


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        (
            "services/safety_rules/handlers/watchdog.py",
            "from services.safety_rules.handlers.ports import WatchdogLog\n"
            "from services.safety_rules.domain.undelivered import WatchdogReport\n"
            "from shared.eventstore import EventStore, NewEvent\n",
        ),
        (
            "services/notifier/adapters/signal_log.py",
            "import asyncpg\nfrom services.notifier.domain.planning import ANSWERED_ISSUES\n"
            "from services.notifier.handlers.ports import NotifierUnitOfWork\n",
        ),
        ("services/ingest/main.py", "from services.ingest.adapters import receipts\n"),
        ("services/settings.py", "from services.notifier.settings import NotifierSettings\n"),
        ("services/notifier/domain/messages.py", "from shared.events import Envelope\n"),
        ("services/ingest/domain/hl7/ack.py", "from .fields import split\n"),
    ],
)
def test_imports_along_the_layers_pass_the_scan(relative: str, source: str) -> None:
    assert breaks(relative, source) == []
