"""The notifier's HTTP API: acknowledging a signal with a clinical assessment.

Route functions translate between HTTP and :mod:`services.notifier.handlers`; the rules
(who may acknowledge, what a valid link is, one assessment per link) live there and in
the domain. Headers and body limits for these routes:
:mod:`services.notifier.entrypoints.http_policy`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.notifier import handlers
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.domain.links import MAX_TOKEN_LENGTH, InvalidLink
from shared.events.notifications import Assessment
from shared.http_service import JsonInputRoute

PROBLEM = "application/problem+json"


class AcknowledgementRequest(BaseModel):
    """An acknowledgement: the token from the person's link, and their assessment."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=1,
        max_length=MAX_TOKEN_LENGTH,
        description="The token from the acknowledgement link.",
    )
    assessment: Assessment
    comment: str = Field(default="", max_length=4000)
    person_id: str | None = Field(
        default=None, description="Optional; when given it must be the person the link was for."
    )


class AcknowledgementRecorded(BaseModel):
    """What the link recorded: by this request (``new``), or by its first use."""

    signal_id: uuid.UUID
    event_id: uuid.UUID
    person_id: str
    role: str
    assessment: Assessment
    comment: str
    recorded_at: datetime = Field(description="When the audit log recorded it.")
    new: bool = Field(description="False: the link was used before; nothing new recorded.")
    stands: bool = Field(
        description="False: the signal was reopened since; its reopening alert carries a new link."
    )


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type=PROBLEM,
    )


def acknowledgement_router(
    pool: Callable[[], asyncpg.Pool], context: handlers.NotifierContext
) -> APIRouter:
    """``POST /v1/signals/{signal_id}/acknowledgements``."""
    router = APIRouter(route_class=JsonInputRoute)

    @router.post(
        "/v1/signals/{signal_id}/acknowledgements",
        status_code=201,
        response_model=AcknowledgementRecorded,
        responses={
            200: {
                "description": "The link was used before: nothing new is recorded; the body "
                "is what its first use recorded, when and by whom."
            },
            401: {"description": "The link is forged, altered, expired or for another signal."},
            403: {"description": "The person is not on the roster of the signal's site."},
            404: {"description": "No notification exists for this signal."},
            409: {"description": "The signal was retracted or resolved; the reason is given."},
            413: {"description": "The request body is larger than an acknowledgement can be."},
        },
    )
    async def acknowledge(signal_id: uuid.UUID, body: AcknowledgementRequest) -> JSONResponse:
        try:
            recorded = await handlers.acknowledge(
                PostgresNotifierUnitOfWork(pool()),
                signal_id,
                token=body.token,
                assessment=body.assessment,
                comment=body.comment,
                expected_person=body.person_id,
                context=context,
            )
        except handlers.UnknownSignal as error:
            return _problem(404, "Unknown signal", str(error))
        except InvalidLink as error:
            return _problem(401, "Invalid acknowledgement link", str(error))
        except handlers.NotOnRoster as error:
            return _problem(403, "Not on the roster", str(error))
        except handlers.SignalClosed as error:
            return _problem(409, f"Signal {error.status}", str(error))
        answer = AcknowledgementRecorded(
            signal_id=signal_id,
            event_id=recorded.event_id,
            person_id=recorded.person_id,
            role=recorded.role,
            assessment=recorded.assessment,
            comment=recorded.comment,
            recorded_at=recorded.recorded_at,
            new=recorded.new,
            stands=recorded.stands,
        )
        return JSONResponse(
            answer.model_dump(mode="json"), status_code=201 if recorded.new else 200
        )

    return router
