"""A per-source rate limit, shared by every ingest channel (HTTP 429, MLLP AE "try later").

A token bucket per key (a source's name, or a peer address before it has authenticated):
``rate_per_second`` tokens flow in, at most ``burst`` are kept. A message costs one token;
when none is left the caller learns how long until there is one, which becomes HTTP's
``Retry-After``. The buckets live in the process: with several ingest instances each
enforces its own share, which bounds a source's load per instance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by source; ``try_acquire`` is O(1) and never blocks."""

    def __init__(
        self,
        rate_per_second: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate_per_second > 0 and burst >= 1")
        self._rate = rate_per_second
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def try_acquire(self, key: str, cost: float = 1.0) -> float | None:
        """Take ``cost`` tokens from ``key``'s bucket: None when allowed, else the seconds
        to wait before it would be (rounded up to a whole second, as Retry-After wants)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_full_buckets(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return None
        return float(max(1, math.ceil((cost - bucket.tokens) / self._rate)))

    def _forget_full_buckets(self, now: float) -> None:
        """Drop buckets that have refilled (their keys are idle), so many distinct keys
        (peer addresses) cannot grow the table without bound."""
        idle = self._burst / self._rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= idle]:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()  # under a flood of fresh keys: start every bucket full again
