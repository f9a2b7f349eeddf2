"""What the notifier does on each due timer: escalate what nobody acknowledged in time,
and keep the overdue gauge current."""

from __future__ import annotations

from datetime import datetime

import structlog

from services.notifier import metrics
from services.notifier.domain.escalation import escalate, escalation_event_id, fold
from services.notifier.handlers.context import NotifierContext
from services.notifier.handlers.deliveries import deliveries_for, plan_deliveries
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.events import EventPayload
from shared.eventstore import EventIdConflict
from shared.supervision import Progress, isolated

log = structlog.get_logger(__name__)


async def sample_overdue(uow: NotifierUnitOfWork, context: NotifierContext) -> None:
    """Set the gauge of signals past their acknowledgement deadline: neither acknowledged
    nor withdrawn, and due now or escalated already."""
    now = context.clock.now()
    async with uow:
        timers = await uow.open_timers()
    states = [state for events in timers if (state := fold(events)) is not None]
    metrics.ACKNOWLEDGEMENTS_OVERDUE.set(
        sum(1 for state in states if not state.closed and (state.level > 0 or state.due(now)))
    )


async def escalate_due(
    uow: NotifierUnitOfWork, context: NotifierContext, progress: Progress | None = None
) -> int:
    """Tell the next level about every notification whose deadline passed; one
    transaction per signal, and one that cannot be escalated fails alone (reported,
    tried again next round). Returns how many escalations this call recorded."""
    now = context.clock.now()
    async with uow:
        timers = await uow.open_timers()
    recorded = 0
    for events in timers:
        signal_id = getattr(events[0], "signal_id", None) if events else None
        with isolated(f"escalation of signal {signal_id}", progress):
            recorded += await _escalate(uow, context, events, now)
    return recorded


async def _escalate(
    uow: NotifierUnitOfWork, context: NotifierContext, events: list[EventPayload], now: datetime
) -> int:
    """Escalate one notification if its deadline passed; returns 1 if this call did."""
    state = fold(events)
    if state is None or not state.due(now):
        return 0
    roster = context.rosters.get(state.opened.study_id)
    if roster is None:
        return 0
    event, people = escalate(state, roster)
    try:
        async with uow:
            (appended,) = await uow.record(
                [event],
                event_ids=[escalation_event_id(event.signal_id, event.level)],
            )
            if not appended.new:
                return 0  # another instance recorded this level first
            content = state.content().with_kind(
                "escalation", level=event.level, acknowledge_by=event.acknowledge_by
            )
            purpose = f"escalation-{event.level}"
            await plan_deliveries(uow, deliveries_for(people, content, purpose, context), context)
    except EventIdConflict:
        log.warning("notifier.escalation_conflict", signal_id=str(event.signal_id))
        return 0
    log.info(
        "notifier.escalated",
        signal_id=str(event.signal_id),
        level=event.level,
        recipients=[r.role for r in event.recipients],
    )
    return 1
