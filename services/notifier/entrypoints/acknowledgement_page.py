"""The old address of each message's link, ``/signals/{signal_id}/acknowledge?token=``,
kept so that links in messages sent before the workspace still lead somewhere.

A person now assesses and signs in the workspace (``/workspace/signals/{signal_id}``,
signing in first): a bearer token in a mailbox is no electronic signature. So ``GET``
answers 303 to the signal's workspace page, dropping the token, whoever holds it and
whatever the signal; ``POST`` records nothing and answers 410 with a page saying where to
go. Systems (webhook receivers) still acknowledge with a token through the JSON API
(:mod:`services.notifier.entrypoints.acknowledgement_api`).

The page has no script and one stylesheet, allowed by its hash in the
Content-Security-Policy that :mod:`services.notifier.entrypoints.http_policy` sends.
"""

from __future__ import annotations

import base64
import hashlib
import html
import uuid

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from services.notifier import handlers
from shared.http_service import JsonInputRoute

# The largest body these paths take (the JSON API's acknowledgement: a token, an
# assessment and a 4,000-character comment, up to 12 bytes per character encoded).
MAX_FORM_BYTES = 64 * 1024

STYLESHEET = (
    "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
    "th{text-align:left;padding-right:1em}"
)
# The one style the page may apply: no inline script or style runs, even if injected.
STYLE_SOURCE = (
    "'sha256-" + base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode() + "'"
)


def _page(title: str, body: str, status: int) -> HTMLResponse:
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


def acknowledgement_page_router(context: handlers.NotifierContext) -> APIRouter:
    """``GET`` (303 to the workspace) and ``POST`` (410) ``/signals/{signal_id}/acknowledge``."""
    router = APIRouter(route_class=JsonInputRoute)

    @router.get("/signals/{signal_id}/acknowledge", response_class=RedirectResponse)
    async def moved(signal_id: uuid.UUID) -> RedirectResponse:
        # the query (the token) is not carried on: the workspace signs people in instead
        return RedirectResponse(context.links.workspace_url(signal_id), status_code=303)

    @router.post("/signals/{signal_id}/acknowledge", response_class=HTMLResponse)
    async def gone(signal_id: uuid.UUID) -> HTMLResponse:
        where = context.links.workspace_url(signal_id)
        return _page(
            "Assessments are signed in the workspace now",
            "<p>Nothing was recorded: a link in an e-mail no longer records an assessment. "
            "Open the signal in the Vigil workspace, sign in, and sign your assessment "
            "there:</p>"
            f'<p><a href="{html.escape(where, quote=True)}">{html.escape(where)}</a></p>',
            410,
        )

    return router
