"""Daily digests of findings that no protocol rule flags (sent by the timer loop)."""

from __future__ import annotations

import asyncpg

from services.notifier.handlers import NotifierContext


async def send_due_digests(pool: asyncpg.Pool, context: NotifierContext) -> int:
    """Plan the digests that are due; returns how many were planned."""
    return 0
