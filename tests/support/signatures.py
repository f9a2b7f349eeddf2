"""Signals as the rules service records them, on a real result, for the tests of signed
assessments, the data-quality queue and the audit trail: the result, the signal raised on
it (its event id is its signal id, as the rules service records it), and the events
appended through the real event store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from services.notifier.entrypoints.http_policy import AcknowledgementHttpPolicy
from services.notifier.entrypoints.workspace import install_workspace
from services.notifier.entrypoints.workspace.common import WorkspaceDeps
from services.notifier.handlers import NotifierContext
from services.settings import VigilSettings
from shared.events import (
    DataQualityIssueRaised,
    Envelope,
    LabResultReported,
    SafetySignalRaised,
    Sex,
    SubjectEnrolled,
    wrap,
)
from shared.eventstore import NewEvent, append
from tests.support.notifier import STUDY, T0, raised
from tests.support.workspace import FixedAuthenticator


def haemoglobin(subject: str, value: str = "8.0", message: str | None = None) -> Envelope:
    """A haemoglobin result of ``subject`` as ingest records it."""
    payload = LabResultReported(
        study_id=STUDY,
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        canonical_value=Decimal(value),
        canonical_unit="g/dL",
        collected_at=T0,
        source_message_id=message or f"LAB-{uuid.uuid4().hex[:8]}",
    )
    return wrap(payload, source="/vigil/ingest", time=T0)


def enrolled(subject: str, site: str) -> Envelope:
    payload = SubjectEnrolled(
        study_id=STUDY,
        subject_id=subject,
        site_id=site,
        sex=Sex.FEMALE,
        birth_date=date(1980, 1, 1),
    )
    return wrap(payload, source="/vigil/ingest", time=T0)


@dataclass(frozen=True)
class SignalOnResult:
    """A subject's enrolment, a low haemoglobin and the signal raised on it."""

    enrolment: Envelope
    result: Envelope
    signal: Envelope

    @property
    def signal_id(self) -> uuid.UUID:
        payload = self.signal.payload()
        assert isinstance(payload, SafetySignalRaised)
        return payload.signal_id

    @property
    def subject_id(self) -> str:
        payload = self.signal.payload()
        assert isinstance(payload, SafetySignalRaised)
        return payload.subject_id

    @property
    def envelopes(self) -> tuple[Envelope, ...]:
        return (self.enrolment, self.result, self.signal)


def signal_on_result(site: str = "S1", **changes: object) -> SignalOnResult:
    """A signal raised on one result, with the event ids the rules service gives them."""
    template = raised(site, **changes).payload()
    assert isinstance(template, SafetySignalRaised)
    result = haemoglobin(template.subject_id)
    payload = template.model_copy(update={"input_event_ids": (result.id,)})
    signal = wrap(payload, source="/vigil/safety_rules", event_id=payload.signal_id, time=T0)
    return SignalOnResult(enrolled(template.subject_id, site), result, signal)


def data_quality_issue(
    subject: str, related: Envelope, issue: str = "unit-not-convertible"
) -> Envelope:
    """A data-quality issue about ``related`` (its receipt is found through it)."""
    payload = DataQualityIssueRaised.model_validate(
        {
            "study_id": STUDY,
            "subject_id": subject,
            "issue": issue,
            "detail": "haemoglobin (LOINC 718-7): unit 'g/dl%' cannot be converted",
            "related_event_id": related.id,
        }
    )
    return wrap(payload, source="/vigil/safety_rules", time=T0)


async def store(pool: asyncpg.Pool, *envelopes: Envelope) -> None:
    """Append to the audit log through the real event store, in one transaction."""
    async with pool.acquire() as connection, connection.transaction():
        await append(connection, [NewEvent(envelope) for envelope in envelopes])


def workspace_app(
    pool: asyncpg.Pool, context: NotifierContext, person_id: str | None, **authenticator: Any
) -> tuple[FastAPI, FixedAuthenticator]:
    """The workspace (with the notifier's HTTP policy) over the test's database, every
    request signed in as ``person_id``."""
    signer = FixedAuthenticator(dict(context.rosters), person_id, **authenticator)
    app = FastAPI()
    app.add_middleware(AcknowledgementHttpPolicy)
    settings = VigilSettings.model_construct()
    install_workspace(app, WorkspaceDeps(lambda: pool, context, settings, signer))
    return app, signer


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
