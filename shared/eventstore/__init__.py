"""The audit log: an append-only, hash-chained event store on PostgreSQL.

Code that reads or writes the log goes through the :class:`EventStore` port
(:class:`PostgresEventStore`, :class:`InMemoryEventStore`); the functions of a connection
(``append``, ``read_stream``...) are the PostgreSQL store's, for callers in a transaction.
"""

from typing import TYPE_CHECKING

from shared.eventstore.memory import InMemoryEventStore
from shared.eventstore.ports import EventStore
from shared.eventstore.postgres import PostgresEventStore, store_id
from shared.eventstore.records import (
    Appended,
    Backlog,
    DueEvent,
    EventIdConflict,
    EventSelection,
    LoggedEvent,
    NewEvent,
    PayloadEvent,
    PayloadMatch,
    StoredEvent,
    StreamVersionConflict,
)
from shared.eventstore.store import (
    append,
    head,
    read_all,
    read_payloads,
    read_stream,
    stored_ids,
)

__all__ = [
    "Appended",
    "Backlog",
    "DueEvent",
    "EventIdConflict",
    "EventSelection",
    "EventStore",
    "InMemoryEventStore",
    "LoggedEvent",
    "NewEvent",
    "PayloadEvent",
    "PayloadMatch",
    "PostgresEventStore",
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

if TYPE_CHECKING:
    # mypy proves both implementations have the port's shape
    _POSTGRES: type[EventStore] = PostgresEventStore
    _IN_MEMORY: type[EventStore] = InMemoryEventStore
