"""The inbox and signal page tests' world: a roster with two sites in two time zones, the
workspace on a real migrated PostgreSQL, events appended through the real event store and
the inbox projection caught up, a client signed in as one person of the roster."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from services.notifier.adapters.signal_inbox import SignalInboxProjection
from services.notifier.domain.roster import Roster
from services.notifier.entrypoints.workspace import install_workspace
from services.notifier.entrypoints.workspace.common import WorkspaceDeps
from services.settings import VigilSettings
from shared.events import Envelope, EventPayload, wrap
from shared.events.notifications import NotificationOpened, Recipient
from shared.eventstore import Appended, NewEvent, append
from shared.projections import ProjectionRunner
from tests.support.notifier import DATA_MANAGER, T0, ManualClock, context, roster, signal_of
from tests.support.workspace import FixedAuthenticator

SHANGHAI = "Asia/Shanghai"


def zoned_roster() -> Roster:
    """The notifier tests' roster (S1: pi1, sub1; S2: pi2; study: mm and the data manager
    dm), S1 in Shanghai."""
    data = roster().model_dump(mode="json")
    data["sites"][0]["timezone"] = SHANGHAI
    data["study_contacts"].append(DATA_MANAGER)
    return Roster.model_validate(data)


def notice(signal: Envelope) -> dict[str, Any]:
    """The fields every notification event of ``signal`` repeats."""
    payload = signal_of(signal)
    return {
        "study_id": payload.study_id,
        "subject_id": payload.subject_id,
        "signal_id": payload.signal_id,
    }


def opened(
    signal: Envelope, acknowledge_by: timedelta | None = timedelta(hours=24)
) -> NotificationOpened:
    """The notifier took on ``signal``: pi1 told, acknowledgement due ``acknowledge_by``
    after T0 (None: nothing to acknowledge)."""
    return NotificationOpened(
        **notice(signal), site_id=signal_of(signal).site_id, severity="protocol-threshold",
        serious=False, grade=signal_of(signal).grade, raised_at=T0,
        recipients=(Recipient(person_id="pi1", role="investigator"),),
        acknowledge_by=None if acknowledge_by is None else T0 + acknowledge_by,
    )  # fmt: skip


class Workspace:
    """The app, its database and its clock; ``client(person)`` signs requests in."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.roster = zoned_roster()
        self.clock = ManualClock()
        self.authenticator = FixedAuthenticator({self.roster.study_id: self.roster}, None)
        self.app = FastAPI()
        install_workspace(
            self.app,
            WorkspaceDeps(
                pool=lambda: pool,
                context=context(self.roster, self.clock),
                settings=VigilSettings(),
                authenticator=self.authenticator,
            ),
        )
        self.inbox = ProjectionRunner(pool, SignalInboxProjection())

    async def record(self, *events: Envelope | EventPayload) -> list[Appended]:
        """Append to the audit log (in one transaction) and bring the inbox up to date."""
        envelopes = [
            e if isinstance(e, Envelope) else wrap(e, source="/vigil/notifier", time=T0)
            for e in events
        ]
        async with self.pool.acquire() as connection, connection.transaction():
            appended = await append(connection, [NewEvent(envelope) for envelope in envelopes])
        await self.inbox.catch_up()
        return appended

    @asynccontextmanager
    async def client(self, person_id: str | None) -> AsyncIterator[httpx.AsyncClient]:
        self.authenticator.person_id = person_id
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://workspace") as client:
            yield client


def signal_url(signal: Envelope) -> str:
    return f"/workspace/signals/{signal_of(signal).signal_id}"


def ids(signal: Envelope) -> uuid.UUID:
    return signal_of(signal).signal_id
