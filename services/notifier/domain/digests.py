"""What a daily digest is made of: the items held for one person until their study's
digest hour (each a line and, for an item to acknowledge, the claims of its link: the
link itself is made only when the digest is sent)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.notifier.domain.links import LinkClaims

# One held item: the person it is for, their line, and the claims of their link (or None).
HeldLine = tuple[str, str, LinkClaims | None]


@dataclass(frozen=True)
class HeldItems:
    """What was held for one person of a study and not sent yet, oldest first; the tuples
    are aligned (one element per item)."""

    study_id: str
    person_id: str
    signal_ids: tuple[uuid.UUID, ...]
    items: tuple[str, ...]
    lines: tuple[str, ...]
    links: tuple[LinkClaims | None, ...]
