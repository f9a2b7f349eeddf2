"""docs/events.md is the event catalogue the code renders, and its producers and consumers
are the ones the services' code shows."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from shared.events import payload_class, topics
from shared.events.catalogue import (
    FLOWS,
    PARTY_CODE,
    CatalogueEntry,
    Party,
    entries,
    registered_payloads,
    render_catalogue,
    stream_pattern,
)
from shared.events.notifications import NotificationOpened
from shared.events.payloads import LabResultReported
from tests.support.services import REPO

_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.MULTILINE)
_TOPIC_NAMES = {  # vigil.lab-results.v1: LAB_RESULTS
    value: name for name, value in vars(topics).items() if value in topics.ALL_TOPICS
}


def test_docs_events_md_is_the_rendered_catalogue() -> None:
    doc = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    assert doc == render_catalogue(), "run: python -m shared.events.catalogue > docs/events.md"


def test_every_registered_event_type_is_catalogued_once() -> None:
    types = [entry.event_type for entry in entries()]
    assert len(types) == len(set(types)) == len(FLOWS)
    for event_type in types:
        assert payload_class(event_type) in FLOWS
    assert set(FLOWS) == set(registered_payloads())


def test_a_stream_is_the_payloads_own_stream_id_with_its_fields_named() -> None:
    assert stream_pattern(LabResultReported) == "subject-{study_id}/{subject_id}"
    assert stream_pattern(NotificationOpened) == "notification-{signal_id}"


def _module_file(module: str) -> Path | None:
    """The repository file of a dotted module name, when it is one of Vigil's."""
    base = REPO / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _sources(party: Party) -> tuple[Path, ...]:
    """The party's own files and the Vigil modules they import (one level: a use case
    that builds its events in an adapter or a shared module still counts); the event
    definitions themselves (shared/events/) name every type, so they do not count."""
    own = sorted((REPO / PARTY_CODE[party]).rglob("*.py"))
    imported = set()
    for path in own:
        for match in _IMPORT.finditer(path.read_text(encoding="utf-8")):
            found = _module_file(match.group(1) or match.group(2))
            if found is not None and "shared/events" not in found.as_posix():
                imported.add(found)
    return tuple(own) + tuple(sorted(imported - set(own)))


def _mentions(party: Party, words: set[str]) -> bool:
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b")
    return any(pattern.search(path.read_text(encoding="utf-8")) for path in _sources(party))


def _evidence(entry: CatalogueEntry) -> set[str]:
    """The names that show a party handles the type: its class, or its topic's constant."""
    words = {entry.payload.__name__}
    if entry.topic is not None:
        words.add(_TOPIC_NAMES[entry.topic])
    return words


@pytest.mark.parametrize("entry", entries(), ids=lambda entry: entry.event_type)
def test_every_producer_and_consumer_named_handles_the_type_in_its_code(
    entry: CatalogueEntry,
) -> None:
    for party in {*entry.flow.producers, *entry.flow.consumers}:
        if party is Party.PARTNER:
            assert entry.topic is not None, "a partner only publishes onto Kafka"
            continue
        assert _mentions(party, _evidence(entry)), f"{party} never names {_evidence(entry)}"


def _constructing_files() -> dict[str, set[Path]]:
    """For each payload class, the files outside shared/events/ that build one."""
    names = {entry.payload.__name__ for entry in entries()}
    pattern = re.compile(r"\b(" + "|".join(names) + r")(?:\(|\.model_validate)")
    built: dict[str, set[Path]] = {}
    for folder in ("services", "shared", "vigil"):
        for path in (REPO / folder).rglob("*.py"):
            if "shared/events" in path.as_posix():
                continue
            for name in pattern.findall(path.read_text(encoding="utf-8")):
                built.setdefault(name, set()).add(path)
    return built


def test_whoever_builds_an_event_is_among_its_producers() -> None:
    built = _constructing_files()
    missing = []
    for entry in entries():
        producers = [p for p in entry.flow.producers if p in PARTY_CODE]
        for path in built.get(entry.payload.__name__, ()):
            if not any(path in _sources(party) for party in producers):
                missing.append(f"{entry.event_type} is built in {path.relative_to(REPO)}")
    assert not missing, "add the producer to FLOWS:\n" + "\n".join(missing)


def test_every_event_type_the_readme_names_exists() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\borg\.vigil\.[a-z_]+\.[a-z_]+\.v\d+\b", readme))
    known = {entry.event_type for entry in entries()}
    assert named, "the README names event types"
    assert named - known == set()
