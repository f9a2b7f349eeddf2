"""The per-source token bucket behind HTTP 429 and MLLP's "try later"."""

from __future__ import annotations

import pytest

from services.ingest.domain.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_source_may_send_its_burst_at_once_then_waits_for_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=2, burst=3, clock=clock)
    assert [limiter.try_acquire("lab") for _ in range(3)] == [None, None, None]
    assert limiter.try_acquire("lab") == 1.0
    clock.now = 0.5  # one token flowed in
    assert limiter.try_acquire("lab") is None
    assert limiter.try_acquire("lab") == 1.0


def test_one_source_exhausting_its_bucket_does_not_slow_another() -> None:
    limiter = RateLimiter(rate_per_second=1, burst=1, clock=Clock())
    assert limiter.try_acquire("noisy") is None
    assert limiter.try_acquire("noisy") == 1.0
    assert limiter.try_acquire("quiet") is None


def test_the_wait_is_whole_seconds_until_enough_tokens_for_the_cost() -> None:
    limiter = RateLimiter(rate_per_second=0.25, burst=2, clock=Clock())
    assert limiter.try_acquire("lab", cost=2) is None
    assert limiter.try_acquire("lab") == 4.0


def test_many_distinct_keys_do_not_grow_the_table_without_bound() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=1, burst=1, clock=clock, max_keys=10)
    for n in range(100):
        clock.now += 0.001
        limiter.try_acquire(f"10.0.0.{n}")
    assert len(limiter._buckets) <= 10


def test_a_limit_that_would_refuse_everything_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_per_second"):
        RateLimiter(rate_per_second=0, burst=1)
