"""The page behind each message's acknowledgement link: the signal, and a form for the
clinical assessment (clinically significant / not / SAE confirmed) and a comment.

The form posts back to the same address; the token in it is what authenticates the person,
and the same rules as the JSON API apply (``handlers.acknowledge``). No names are shown:
subject id, analyte, value, grade, rule and deadline only.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qs

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.notifier import handlers
from services.notifier.domain.links import InvalidLink
from services.notifier.domain.messages import MessageContent
from shared.events.notifications import Assessment

ASSESSMENTS: dict[str, str] = {
    "clinically-significant": "Clinically significant",
    "not-clinically-significant": "Not clinically significant",
    "sae-confirmed": "Serious adverse event confirmed",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} - Vigil</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>{html.escape(title)}</h1>
{body}
</body></html>""",
        status_code=status,
    )


def _facts(content: MessageContent | None, signal_id: uuid.UUID) -> str:
    if content is None:
        return f"<p>Signal {signal_id}</p>"
    rows = [
        ("Study", content.study_id),
        ("Subject", content.subject_id),
        ("Site", content.site_id or "not enrolled"),
        ("Finding", f"{content.analyte} {content.value}".strip()),
        ("Rule", f"{content.rule_id}: {content.rule_title}"),
        ("Condition", content.threshold),
        ("Grade", f"{content.grading or ''} grade {content.grade}" if content.grade else "-"),
        ("Required", content.deadline or "review and acknowledge"),
        ("Signal", str(signal_id)),
    ]
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def acknowledgement_page_router(
    pool: Callable[[], asyncpg.Pool], context: handlers.NotifierContext
) -> APIRouter:
    """``GET`` and ``POST /signals/{signal_id}/acknowledge``."""
    router = APIRouter()

    async def content_of(signal_id: uuid.UUID) -> MessageContent | None:
        async with pool().acquire() as connection:
            state = await handlers.notification_state(connection, signal_id)
        return state.content() if state is not None else None

    @router.get("/signals/{signal_id}/acknowledge", response_class=HTMLResponse)
    async def form(signal_id: uuid.UUID, token: str = "") -> HTMLResponse:
        try:
            claims = context.links.verify(token, signal_id, context.clock.now())
        except InvalidLink as error:
            return _page("This link cannot be used", f"<p>{html.escape(str(error))}</p>", 401)
        content = await content_of(signal_id)
        if content is None:
            return _page("Unknown signal", "<p>No notification exists for it.</p>", 404)
        choices = "".join(
            f"<p><label><input type='radio' name='assessment' value='{value}' required> "
            f"{html.escape(label)}</label></p>"
            for value, label in ASSESSMENTS.items()
        )
        body = f"""{_facts(content, signal_id)}
<form method="post">
<input type="hidden" name="token" value="{html.escape(token)}">
<p>Acknowledging as <strong>{html.escape(claims.person_id)}</strong>.</p>
{choices}
<p><label>Comment<br><textarea name="comment" rows="4" cols="60"></textarea></label></p>
<p><button type="submit">Record my assessment</button></p>
</form>"""
        return _page("Review and acknowledge a safety signal", body)

    @router.post("/signals/{signal_id}/acknowledge", response_class=HTMLResponse)
    async def submit(signal_id: uuid.UUID, request: Request) -> HTMLResponse:
        fields = parse_qs((await request.body()).decode(errors="replace"))
        token = fields.get("token", [""])[0]
        assessment = fields.get("assessment", [""])[0]
        comment = fields.get("comment", [""])[0][:4000]
        if assessment not in ASSESSMENTS:
            return _page("Choose an assessment", "<p>Go back and choose one.</p>", 422)
        try:
            async with pool().acquire() as connection, connection.transaction():
                recorded = await handlers.acknowledge(
                    connection,
                    signal_id,
                    token=token,
                    assessment=cast(Assessment, assessment),
                    comment=comment,
                    expected_person=None,
                    context=context,
                )
        except handlers.UnknownSignal as error:
            return _page("Unknown signal", f"<p>{html.escape(str(error))}</p>", 404)
        except InvalidLink as error:
            return _page("This link cannot be used", f"<p>{html.escape(str(error))}</p>", 401)
        except handlers.NotOnRoster as error:
            return _page("Not on the roster", f"<p>{html.escape(str(error))}</p>", 403)
        said = "Recorded" if recorded.new else "Already recorded"
        return _page(
            f"{said}: {ASSESSMENTS[assessment]}",
            f"{_facts(await content_of(signal_id), signal_id)}"
            f"<p>Acknowledged by {html.escape(recorded.person_id)} (audit event "
            f"{recorded.event_id}). Escalation of this signal has stopped.</p>",
            201 if recorded.new else 200,
        )

    return router
