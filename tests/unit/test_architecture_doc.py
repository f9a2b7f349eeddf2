"""docs/architecture.md names only paths that exist, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.services import REPO

DOC = REPO / "docs" / "architecture.md"
SERVICES = ("ingest", "safety_rules", "notifier")
LAYERS = ("domain/", "handlers/", "adapters/", "entrypoints/", "main.py")
_EXTENSIONS = (".py", ".md", ".yaml", ".yml", ".json", ".sh")


def named_paths(text: str) -> set[str]:
    """Every word of a code span that reads as a repository path (with a folder, or a
    file name), and every relative link target; the pictures (fenced blocks) are not
    read."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    words = {w for span in re.findall(r"`([^`]+)`", text) for w in span.split()}
    paths = {
        w
        for w in words
        if ("/" in w or w.endswith(_EXTENSIONS)) and not w.startswith("/") and "://" not in w
    }
    links = {target for target in re.findall(r"\]\(([^)#]+)\)", text) if "://" not in target}
    return paths | {f"docs/{target}" for target in links}


def candidates(path: str) -> list[Path]:
    """Where a named path must be: a service's layer is in every service."""
    if path in LAYERS:
        return [REPO / "services" / service / path for service in SERVICES]
    if "<svc>" in path:
        return [REPO / path.replace("<svc>", service) for service in SERVICES]
    return [REPO / path]


def test_every_path_the_architecture_doc_names_exists() -> None:
    named = named_paths(DOC.read_text(encoding="utf-8"))
    assert "services/ingest/handlers/intake.py" in named
    missing = [
        str(place.relative_to(REPO))
        for path in sorted(named)
        for place in candidates(path)
        if not place.exists()
    ]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_service_has_the_layers_the_doc_describes() -> None:
    for service in SERVICES:
        for layer in LAYERS:
            assert (REPO / "services" / service / layer).exists(), f"{service}: {layer}"


def test_the_doc_names_every_port_its_in_memory_adapters_and_every_contract_suite() -> None:
    named = named_paths(DOC.read_text(encoding="utf-8"))
    wanted = {
        "shared/eventstore/ports.py",
        "services/settings.py",
        "shared/settings.py",
        *(
            f"services/{service}/{part}"
            for service in SERVICES
            for part in ("handlers/ports.py", "adapters/in_memory.py", "settings.py", "metrics.py")
        ),
        *(
            str(p.relative_to(REPO))
            for p in (REPO / "tests" / "contract").glob("test_*_contract.py")
        ),
    }
    assert not wanted - named, f"docs/architecture.md does not name {sorted(wanted - named)}"


def test_the_readme_links_the_architecture_and_the_event_catalogue() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/architecture.md)" in readme
    assert "(docs/events.md)" in readme
