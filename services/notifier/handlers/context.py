"""What every notifier handler is given and reads first: its dependencies, and what the
signal's notification stream says now."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from services.notifier.domain.escalation import NotificationState, fold
from services.notifier.domain.links import LinkIssuer
from services.notifier.domain.planning import AckDeadlines
from services.notifier.domain.roster import Roster
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.clock import Clock


@dataclass(frozen=True)
class NotifierContext:
    """What the handlers need besides the database: passed in, so tests swap the clock."""

    rosters: Mapping[str, Roster]
    deadlines: AckDeadlines
    links: LinkIssuer
    clock: Clock
    give_up_after_seconds: float


async def notification_state(
    uow: NotifierUnitOfWork, signal_id: uuid.UUID
) -> NotificationState | None:
    """What the signal's notification stream says now (None: nothing was opened)."""
    return fold(await uow.notification_events(signal_id))
