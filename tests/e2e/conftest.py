"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.services import RunningServices


@pytest.fixture
async def client(services: RunningServices) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the session's ingest, with its API key."""
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers=services.headers, timeout=30
    ) as client:
        yield client
