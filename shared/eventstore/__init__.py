"""The audit log: an append-only, hash-chained event store on PostgreSQL."""

from shared.eventstore.store import (
    Appended,
    EventIdConflict,
    NewEvent,
    PayloadEvent,
    StoredEvent,
    StreamVersionConflict,
    append,
    head,
    read_all,
    read_payloads,
    read_stream,
    store_id,
    stored_ids,
)

__all__ = [
    "Appended",
    "EventIdConflict",
    "NewEvent",
    "PayloadEvent",
    "StoredEvent",
    "StreamVersionConflict",
    "append",
    "head",
    "read_all",
    "read_payloads",
    "read_stream",
    "store_id",
    "stored_ids",
]
