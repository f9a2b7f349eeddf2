"""Planning deliveries: who is told about a signal, on which channel, and whether now or
in their study digest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from services.notifier.domain.deliveries import PlannedDelivery, compose
from services.notifier.domain.digests import HeldLine
from services.notifier.domain.escalation import NotificationState
from services.notifier.domain.links import LinkClaims
from services.notifier.domain.messages import (
    NOTICE_KINDS,
    MessageContent,
    carries_link,
    digest_line,
)
from services.notifier.domain.planning import goes_to_digest
from services.notifier.domain.roster import Person, Roster
from services.notifier.handlers.context import NotifierContext
from services.notifier.handlers.ports import NotifierUnitOfWork


def deliveries_for(
    people: Iterable[Person],
    content: MessageContent,
    purpose: str,
    context: NotifierContext,
    *,
    item_links: Sequence[LinkClaims | None] = (),
) -> list[PlannedDelivery]:
    """One message per person on their first channel; signals carry each person's link
    (its claims: the link is made when the message is sent)."""
    now = context.clock.now()
    asks = carries_link(content)  # the same content for everyone
    planned = []
    for person in people:
        channel = person.channels[0]
        link = context.links.claims(content.signal_id, person.id, now) if asks else None
        planned.append(
            compose(
                content,
                purpose=purpose,
                person_id=person.id,
                channel=channel.kind,
                address=channel.address,
                link=link,
                item_links=item_links,
            )
        )
    return planned


async def plan_deliveries(
    uow: NotifierUnitOfWork,
    deliveries: Sequence[PlannedDelivery],
    context: NotifierContext,
) -> int:
    """Add the deliveries to the outbox; returns how many were new."""
    added = await uow.add_deliveries(
        deliveries, give_up_after_seconds=context.give_up_after_seconds
    )
    return len(added)


def people_on_roster(roster: Roster, person_ids: Iterable[str]) -> list[Person]:
    """The roster's people with these ids, in id order; ids no longer on it are skipped."""
    return [p for person_id in sorted(person_ids) if (p := roster.person(person_id)) is not None]


async def tell(
    uow: NotifierUnitOfWork,
    state: NotificationState,
    content: MessageContent,
    purpose: str,
    roster: Roster,
    context: NotifierContext,
    *,
    held_at: datetime,
    digest_people: Iterable[str] | None = None,
) -> int:
    """Tell everyone told about the signal what became of it: for a finding, the roles the
    study digests get it in their next digest (``digest_people`` narrows who), everyone
    else a message now."""
    people = people_on_roster(roster, state.told)
    digest = [p for p in people if goes_to_digest(state.opened, p, roster)]
    if digest_people is not None:
        wanted = set(digest_people)
        digest = [p for p in digest if p.id in wanted]
        now_people = [p for p in people if not goes_to_digest(state.opened, p, roster)]
    else:
        now_people = [p for p in people if p not in digest]
    if digest:
        line = digest_line(content)
        now = context.clock.now()
        lines: list[HeldLine] = [
            (
                p.id,
                line,
                None
                if content.kind in NOTICE_KINDS
                else context.links.claims(content.signal_id, p.id, now),
            )
            for p in digest
        ]
        await uow.hold_digest_items(
            state.opened.study_id, lines, content.signal_id, held_at, item=purpose
        )
    return await plan_deliveries(
        uow, deliveries_for(now_people, content, purpose, context), context
    )
