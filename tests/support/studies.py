"""Study folders for tests: the shipped one, copied, with the MLLP sources a test needs.

Ingest in production settings accepts plain MLLP only from the networks listed in
``sources.yaml`` (with VIGIL_MLLP_ALLOW_PLAIN=true), and the shipped file lists none. The
services the tests start therefore read a copy whose sources connect from 127.0.0.1/32:
the tests' clients are then the shipped senders, authenticated the production way.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from shared.yaml_files import load_yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "studies"
STUDY = "NCT05262686"
LOOPBACK = "127.0.0.1/32"

Sources = list[dict[str, Any]]


def copy_studies(
    destination: Path, change_sources: Callable[[Sources], Sources] | None = None
) -> Path:
    """The shipped study folder copied to ``destination``; ``change_sources`` rewrites the
    ``sources`` list of the study's sources.yaml (every other key is kept as shipped)."""
    shutil.copytree(SHIPPED, destination)
    if change_sources is not None:
        path = destination / STUDY / "sources.yaml"
        document = load_yaml(path.read_text())
        document["sources"] = change_sources(list(document.get("sources") or []))
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    return destination


def from_loopback(sources: Sources) -> Sources:
    """Every source also connects from 127.0.0.1."""
    return [{**s, "networks": [*s.get("networks", []), LOOPBACK]} for s in sources]


@functools.cache
def loopback_studies() -> Path:
    """One copy per test process in which every shipped source connects from loopback."""
    folder = Path(tempfile.mkdtemp(prefix="vigil-test-studies-"))
    atexit.register(shutil.rmtree, folder, True)
    return copy_studies(folder / "studies", from_loopback)
