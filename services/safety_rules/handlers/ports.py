"""The ports the rules service's handlers work on; their implementations are in
``services/safety_rules/adapters/``: ``RulesUnitOfWork`` by ``PostgresRulesUnitOfWork``
(services/safety_rules/adapters/postgres.py) in production and ``InMemoryUnitOfWork``
(services/safety_rules/adapters/in_memory.py) in unit tests, both passing one contract
suite (tests/contract/test_rules_unit_of_work_contract.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from services.safety_rules.domain.history import SubjectHistory
from shared.events import Envelope


class RulesUnitOfWork(Protocol):
    """The storage one batch needs; everything it does commits or rolls back together.

    Reads come first and take no lock; ``append`` takes the append lock, which lasts until
    the commit, so the rules are judged before it and several instances judge at once.
    """

    async def stored(self, event_ids: Sequence[uuid.UUID]) -> tuple[datetime, set[uuid.UUID]]:
        """The time the batch is recorded at, and which of these events are stored already."""
        ...

    async def histories(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], SubjectHistory]: ...

    async def append(
        self,
        envelopes: Sequence[Envelope],
        *,
        expected_versions: Mapping[str, int],
        recorded_at: datetime,
    ) -> None: ...

    async def enqueue(self, items: Sequence[tuple[Envelope, str]]) -> None: ...
