"""The development source: who sends on a ``vigil dev`` stack (VIGIL_ENVIRONMENT=development).

``vigil dev`` issues an API key for this source, and ingest takes MLLP senders on such a
stack as this source, so a laboratory's messages can be tried at once. It may write
every study in the study folder and amend what any source sent: it is one developer's
machine. Production never uses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from services.ingest.domain.principals import Principal

DEVELOPMENT_SOURCE = "dev"


def study_ids(study_dir: Path, default_study: str) -> tuple[str, ...]:
    """Every study with a folder in ``study_dir``, and the default study."""
    found = (
        {path.name for path in study_dir.iterdir() if path.is_dir()}
        if study_dir.is_dir()
        else set()
    )
    return tuple(sorted(found | {default_study}))


def development_principal(studies: Iterable[str]) -> Principal:
    """The principal of loopback MLLP senders on a development stack: the same source as
    the development API key, so either channel may correct what the other sent."""
    return Principal(
        source=DEVELOPMENT_SOURCE,
        credential="dev-loopback",
        studies=frozenset(studies),
        sites=None,
        may_amend_others=True,
    )
