"""The page behind each message's acknowledgement link: the signal, and a form for the
clinical assessment (clinically significant / not / SAE confirmed) and a comment.

``GET`` only shows: the form, or what the link recorded already, or why the signal cannot
be acknowledged (retracted, resolved). Only ``POST`` records, under the same rules as the
JSON API (``handlers.acknowledge``): the token in the form is what authenticates the
person, and each link records one assessment. No names are shown: subject id, analyte,
value, grade, rule and deadline only. The page has no script and one stylesheet, allowed
by its hash in the Content-Security-Policy that
:mod:`services.notifier.entrypoints.http_policy` sends.
"""

from __future__ import annotations

import base64
import hashlib
import html
import uuid
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qs

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.notifier import handlers
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.domain.links import InvalidLink
from services.notifier.domain.messages import MessageContent
from shared.events.notifications import Assessment
from shared.http_service import JsonInputRoute

ASSESSMENTS: dict[str, str] = {
    "clinically-significant": "Clinically significant",
    "not-clinically-significant": "Not clinically significant",
    "sae-confirmed": "Serious adverse event confirmed",
}
MAX_COMMENT = 4000
# The largest form this page takes: a token, an assessment and a 4,000-character comment,
# percent-encoded (up to 12 bytes per character).
MAX_FORM_BYTES = 64 * 1024

STYLESHEET = (
    "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
    "th{text-align:left;padding-right:1em}"
)
# The one style the page may apply: no inline script or style runs, even if injected.
STYLE_SOURCE = (
    "'sha256-" + base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode() + "'"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} - Vigil</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<style>{STYLESHEET}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>""",
        status_code=status,
    )


def _problem_page(title: str, detail: str, status: int) -> HTMLResponse:
    return _page(title, f"<p>{html.escape(detail)}</p>", status)


def _facts(content: MessageContent, signal_id: uuid.UUID) -> str:
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
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _recorded(recorded: handlers.Acknowledgement) -> str:
    """What a link recorded, when and by whom."""
    rows = [
        ("Assessment", ASSESSMENTS.get(recorded.assessment, recorded.assessment)),
        ("Comment", recorded.comment or "-"),
        ("Recorded at", recorded.recorded_at.isoformat()),
        ("Recorded by", f"{recorded.person_id} ({recorded.role})"),
        ("Audit event", str(recorded.event_id)),
    ]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    later = (
        ""
        if recorded.stands
        else "<p>The signal was reopened after this assessment: acknowledge it through the "
        "link in the reopening message.</p>"
    )
    return f"<table>{cells}</table>{later}"


def _form(seen: handlers.LinkReview, token: str) -> str:
    choices = "".join(
        f'<p><label><input type="radio" name="assessment" value="{value}" required> '
        f"{html.escape(label)}</label></p>"
        for value, label in ASSESSMENTS.items()
    )
    # "acknowledge" resolves to this page's address without its query: the token goes in
    # the body only, never again in a URL
    return f"""<form method="post" action="acknowledge" autocomplete="off">
<input type="hidden" name="token" value="{html.escape(token)}">
<p>Acknowledging as <strong>{html.escape(seen.person.id)}</strong>
({html.escape(seen.person.role.value)}). This link records one assessment.</p>
{choices}
<p><label>Comment<br><textarea name="comment" rows="4" cols="60"
maxlength="{MAX_COMMENT}"></textarea></label></p>
<p><button type="submit">Record my assessment</button></p>
</form>"""


def _closed(error: handlers.SignalClosed) -> HTMLResponse:
    return _problem_page(f"This signal was {error.status}", str(error), 409)


def _field(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name, [""])
    return values[0] if len(values) == 1 else ""


def acknowledgement_page_router(
    pool: Callable[[], asyncpg.Pool], context: handlers.NotifierContext
) -> APIRouter:
    """``GET`` and ``POST /signals/{signal_id}/acknowledge``."""
    router = APIRouter(route_class=JsonInputRoute)

    @router.get("/signals/{signal_id}/acknowledge", response_class=HTMLResponse)
    async def form(signal_id: uuid.UUID, token: str = "") -> HTMLResponse:
        try:
            uow = PostgresNotifierUnitOfWork(pool())
            seen = await handlers.review(uow, signal_id, token=token, context=context)
        except handlers.UnknownSignal as error:
            return _problem_page("Unknown signal", str(error), 404)
        except InvalidLink as error:
            return _problem_page("This link cannot be used", str(error), 401)
        except handlers.NotOnRoster as error:
            return _problem_page("Not on the roster", str(error), 403)
        facts = _facts(seen.state.content(), signal_id)
        if seen.recorded is not None:
            return _page(
                "This link was used already",
                f"{facts}<p>It recorded this assessment; it records no other.</p>"
                f"{_recorded(seen.recorded)}",
            )
        if (closed := seen.closed) is not None:
            return _closed(closed)
        return _page("Review and acknowledge a safety signal", facts + _form(seen, token))

    @router.post("/signals/{signal_id}/acknowledge", response_class=HTMLResponse)
    async def submit(signal_id: uuid.UUID, request: Request) -> HTMLResponse:
        raw = await request.body()  # bounded by http_policy before it gets here
        if len(raw) > MAX_FORM_BYTES:
            return _problem_page("Too large", "The form is larger than any this page sends.", 413)
        try:
            fields = parse_qs(raw.decode("utf-8"), max_num_fields=8, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            return _problem_page("Unreadable form", "Go back and send the form again.", 400)
        token, assessment = _field(fields, "token"), _field(fields, "assessment")
        comment = _field(fields, "comment")
        if assessment not in ASSESSMENTS:
            return _problem_page("Choose an assessment", "Go back and choose one.", 422)
        if len(comment) > MAX_COMMENT:
            return _problem_page(
                "Comment too long", f"Go back and keep it to {MAX_COMMENT} characters.", 422
            )
        try:
            async with (uow := PostgresNotifierUnitOfWork(pool())):
                recorded = await handlers.acknowledge(
                    uow,
                    signal_id,
                    token=token,
                    assessment=cast(Assessment, assessment),
                    comment=comment,
                    expected_person=None,
                    context=context,
                )
                state = await handlers.notification_state(uow, signal_id)
        except handlers.UnknownSignal as error:
            return _problem_page("Unknown signal", str(error), 404)
        except InvalidLink as error:
            return _problem_page("This link cannot be used", str(error), 401)
        except handlers.NotOnRoster as error:
            return _problem_page("Not on the roster", str(error), 403)
        except handlers.SignalClosed as error:
            return _closed(error)
        facts = _facts(state.content(), signal_id) if state is not None else ""
        if recorded.new:
            return _page(
                f"Recorded: {ASSESSMENTS[recorded.assessment]}",
                f"{facts}{_recorded(recorded)}<p>Escalation of this signal has stopped.</p>",
                201,
            )
        return _page(
            "This link was used already: nothing new was recorded",
            f"{facts}<p>It recorded this assessment; it records no other.</p>{_recorded(recorded)}",
        )

    return router
