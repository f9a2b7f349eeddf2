"""The signal page's story of one signal, read from the audit log through the event store
port (shared/eventstore/ports.py): the raising, its inputs, the signal's later events
and its notification stream, told by services/notifier/domain/signal_story.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from services.notifier.domain.signal_story import LogEntry, SignalStory, basis, tell
from shared.events import SafetySignalRaised, payload_class
from shared.events.notifications import notification_stream
from shared.eventstore import EventStore, LoggedEvent, StoredEvent


def _entry(event: StoredEvent | LoggedEvent) -> LogEntry:
    source = event.source if isinstance(event, StoredEvent) else ""
    return LogEntry(
        event.position, event.event_id, event.type, event.recorded_at, event.payload, source
    )


async def read_signal_story(
    store: EventStore,
    signal_id: uuid.UUID,
    roster_roles: Callable[[str], Mapping[str, str]],
) -> SignalStory | None:
    """The story of a safety signal; None when the log holds no signal with that id.
    ``roster_roles`` gives a study's people's roles (person id to role)."""
    found = await store.find_event(signal_id, SafetySignalRaised.event_type)
    if found is None:
        return None
    # read back, not built: the notifier is no producer of signals
    signal = payload_class(found.type).model_validate_json(found.payload_text)
    if not isinstance(signal, SafetySignalRaised):
        return None
    later = [_entry(e) for e in await store.read_signal_history(found.stream_id, signal_id)]
    # the inputs it rests on now and those it rested on before an escalation or amendment
    inputs = await store.read_events(list(basis(signal, later).ever))
    notifications = await store.read_stream(notification_stream(signal_id))
    return tell(
        signal,
        _entry(found),
        [_entry(e) for e in inputs],
        later,
        [_entry(e) for e in notifications],
        roster_roles(str(found.payload.get("study_id"))),
    )
