"""Background loops that drain a queue of work: woken when work arrives, polling as a net."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from shared.supervision import Progress

log = structlog.get_logger(__name__)


class DrainLoop:
    """Calls ``step`` until it reports no work, then sleeps until woken or ``poll_seconds``.

    ``step(progress)`` returns how many items it handled; a step isolates its items
    itself (one bad item is marked failed, reported to ``progress``, and the step goes
    on). Errors of the ``retryable`` kinds (a component away) fail the whole step:
    logged, reported, and retried with exponential back-off. Anything else is a bug in
    the step: it propagates, and the supervisor that runs the loop logs it with its
    traceback and restarts the loop with back-off.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[Progress], Awaitable[int]],
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

    async def run(self, progress: Progress) -> None:
        """Drain until cancelled, reporting each step to ``progress``."""
        delay = self._poll_seconds
        while True:
            progress.working()
            try:
                handled = await self._step(progress)
            except self._retryable as error:
                progress.step_failed(error)
                delay = min(delay * 2, self._max_backoff)
                log.warning(f"{self._name}.step_failed", error=repr(error), retry_in_seconds=delay)
                handled = 0
            else:
                delay = self._poll_seconds
                progress.done(more=handled > 0)
            if handled:
                continue  # there may be more
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
