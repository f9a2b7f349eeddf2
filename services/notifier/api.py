"""The notifier's HTTP API: acknowledging a signal with a clinical assessment.

Route functions translate between HTTP and :mod:`services.notifier.handlers`; the rules
(who may acknowledge, what a valid link is) live there and in the domain.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.notifier import handlers
from services.notifier.domain.links import InvalidLink
from shared.events.notifications import Assessment

PROBLEM = "application/problem+json"


class AcknowledgementRequest(BaseModel):
    """An acknowledgement: the token from the person's link, and their assessment."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, description="The token from the acknowledgement link.")
    assessment: Assessment
    comment: str = Field(default="", max_length=4000)
    person_id: str | None = Field(
        default=None, description="Optional; when given it must be the person the link was for."
    )


class AcknowledgementRecorded(BaseModel):
    signal_id: uuid.UUID
    event_id: uuid.UUID
    person_id: str
    assessment: Assessment
    new: bool


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
    router = APIRouter()

    @router.post(
        "/v1/signals/{signal_id}/acknowledgements",
        status_code=201,
        response_model=AcknowledgementRecorded,
        responses={
            200: {"description": "The same acknowledgement was recorded before."},
            401: {"description": "The link is forged, altered, expired or for another signal."},
            403: {"description": "The person is not on the roster of the signal's site."},
            404: {"description": "No notification exists for this signal."},
        },
    )
    async def acknowledge(signal_id: uuid.UUID, body: AcknowledgementRequest) -> JSONResponse:
        try:
            async with pool().acquire() as connection, connection.transaction():
                recorded = await handlers.acknowledge(
                    connection,
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
        answer = AcknowledgementRecorded(
            signal_id=signal_id,
            event_id=recorded.event_id,
            person_id=recorded.person_id,
            assessment=body.assessment,
            new=recorded.new,
        )
        return JSONResponse(
            answer.model_dump(mode="json"), status_code=201 if recorded.new else 200
        )

    return router
