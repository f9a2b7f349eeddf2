"""Background loops that drain a queue of work: woken when work arrives, polling as a net."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


class DrainLoop:
    """Calls ``step`` until it reports no work, then sleeps until woken or ``poll_seconds``.

    ``step`` returns how many items it handled. Errors of the ``retryable`` kinds are
    logged and retried with exponential back-off; anything else ends the loop loudly.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[int]],
        *,
        retryable: tuple[type[BaseException], ...],
        poll_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._name = name
        self._step = step
        self._retryable = retryable
        self._poll_seconds = poll_seconds
        self._max_backoff = max_backoff_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New work was committed: run a step now."""
        self._wake.set()

    async def run(self) -> None:
        """Drain until cancelled."""
        delay = self._poll_seconds
        while True:
            try:
                handled = await self._step()
                delay = self._poll_seconds
            except self._retryable as error:
                log.warning(f"{self._name}.step_failed", error=repr(error), retry_in_seconds=delay)
                handled = 0
                delay = min(delay * 2, self._max_backoff)
            if handled:
                continue  # there may be more
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
