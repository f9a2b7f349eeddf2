"""What a service's lifespan started, for its routes and its readiness check.

A composition root builds its routes before anything runs; the pool, the broker and the
objects over them exist only once the lifespan has started. Each service keeps them in
one typed value of its own (a small frozen dataclass), held by a :class:`Started` that is
empty until then: readiness says ``starting``, and a route asked to work before then
gets :class:`ServiceStarting`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from shared.supervision import ReadinessCheck

Parts = TypeVar("Parts")
STARTING = "starting"


class ServiceStarting(RuntimeError):
    """The service was asked to work before its lifespan started it."""


class Started(Generic[Parts]):
    """The ``Parts`` a lifespan started: empty until :meth:`fill`."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._parts: Parts | None = None

    def fill(self, parts: Parts) -> None:
        """The lifespan started ``parts``: routes and readiness may use them."""
        self._parts = parts

    @property
    def parts(self) -> Parts | None:
        """The started parts, or None while the service is starting."""
        return self._parts

    def get(self) -> Parts:
        """The started parts; ServiceStarting before the lifespan filled them."""
        if self._parts is None:
            raise ServiceStarting(f"the {self._service} service has not started yet")
        return self._parts

    def readiness(self, check: Callable[[Parts], Awaitable[str | None]]) -> ReadinessCheck:
        """``check`` of the started parts; ``starting`` until they exist."""

        async def ready() -> str | None:
            parts = self._parts
            return STARTING if parts is None else await check(parts)

        return ready
