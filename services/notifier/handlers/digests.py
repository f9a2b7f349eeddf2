"""Daily digests of findings that no protocol rule flags (sent by the timer loop).

A finding held for a person before the study's digest hour goes into that day's digest;
the digest's id derives from study, person and day, so a restart sends it once.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.notifier.domain.digests import HeldItems
from services.notifier.domain.messages import MessageContent
from services.notifier.domain.roster import Roster
from services.notifier.handlers import NotifierContext, deliveries_for
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.events.notifications import DigestSent
from shared.events.payloads import EVENT_ID_NAMESPACE
from shared.supervision import Progress, isolated

# Digest deliveries are about no single subject; their delivery events carry this instead.
DIGEST_SUBJECT = "_digest"


def last_digest_time(roster: Roster, now: datetime) -> datetime:
    """The most recent digest hour of the study at or before ``now``."""
    cutoff = now.replace(hour=roster.digest.hour_utc, minute=0, second=0, microsecond=0)
    return cutoff if cutoff <= now else cutoff - timedelta(days=1)


async def send_due_digests(
    uow: NotifierUnitOfWork, context: NotifierContext, progress: Progress | None = None
) -> int:
    """Plan every digest that is due, each in its own transaction: one that cannot be
    planned fails alone (reported, tried again next round). Returns how many were
    planned."""
    now = context.clock.now()
    planned = 0
    for roster in context.rosters.values():
        if not roster.digest.roles:
            continue
        cutoff = last_digest_time(roster, now)
        async with uow:
            waiting = await uow.held_before(roster.study_id, cutoff)
        for held in waiting:
            item = f"digest {roster.study_id}/{held.person_id}/{cutoff.date()}"
            with isolated(item, progress):
                async with uow:
                    planned += await _plan_digest(uow, roster, held, cutoff, context)
    return planned


async def _plan_digest(
    uow: NotifierUnitOfWork,
    roster: Roster,
    held: HeldItems,
    cutoff: datetime,
    context: NotifierContext,
) -> int:
    """Plan one person's digest of what was held for them; returns 1 if planned."""
    person = roster.person(held.person_id)
    if person is None:
        return 0
    day = cutoff.date()
    digest_id = uuid.uuid5(EVENT_ID_NAMESPACE, f"digest:{roster.study_id}:{person.id}:{day}")
    content = MessageContent(
        kind="digest",
        study_id=roster.study_id,
        subject_id=DIGEST_SUBJECT,
        signal_id=digest_id,
        items=held.lines,
    )
    (delivery,) = deliveries_for([person], content, f"digest-{day}", context, item_links=held.links)
    await uow.add_deliveries([delivery], give_up_after_seconds=context.give_up_after_seconds)
    sent = DigestSent(
        study_id=roster.study_id,
        person_id=person.id,
        day=day,
        delivery_id=delivery.delivery_id,
        signal_ids=tuple(dict.fromkeys(held.signal_ids)),
    )
    await uow.record([sent])
    await uow.mark_digest_sent(held, day)
    return 1
