"""Workspace page: the inbox, the signals a person may see, open ones first by deadline.

``GET /workspace/inbox`` renders the page; ``GET /workspace/inbox/updates?since=<position>``
answers (JSON) how many signals of the same scope and filters were raised or changed
after the position the page was given, with the page's results re-rendered when any
changed: ``static/inbox.js`` polls it and announces new signals in a live region. Without
JavaScript the page's refresh link does the same.

Filters are bounded and checked (services/notifier/domain/inbox_filters.py); a bad one is
answered 400 naming the field, never echoing the value. Rows come from the inbox read
model (services/notifier/adapters/signal_inbox.py), queried within the person's scope
only, and each is checked against the scope again before it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from services.notifier.adapters.signal_inbox import SignalInbox
from services.notifier.domain.inbox_filters import (
    MAX_QUERY_LENGTH,
    FilterRefused,
    InboxFilters,
    parse_filters,
    parse_since,
    scope_of,
)
from services.notifier.domain.signal_inbox import STATES, InboxRow
from services.notifier.entrypoints.workspace.common import (
    PREFIX,
    Session,
    WorkspaceDeps,
    render,
    templates,
)

#: rows shown at most; the counts say how many there are in all
MAX_ROWS = 500
#: how often the page's script asks for updates
POLL_SECONDS = 15


@dataclass(frozen=True)
class ShownRow:
    """A row as the page shows it: the signal, the zone its times are in, its links."""

    signal: InboxRow
    zone: ZoneInfo
    signal_url: str
    subject_url: str


def _query(request: Request) -> dict[str, str]:
    if len(request.url.query) > MAX_QUERY_LENGTH:
        raise FilterRefused("query", f"at most {MAX_QUERY_LENGTH} characters of filters")
    return dict(request.query_params)


def _shown(deps: WorkspaceDeps, session: Session, rows: list[InboxRow]) -> list[ShownRow]:
    shown = []
    for row in rows:
        if not session.viewer.may_see_clinical(row.study_id, row.site_id):
            continue  # the query is scoped already; a second check costs nothing
        shown.append(
            ShownRow(
                signal=row,
                zone=deps.zone(row.study_id, row.site_id),
                signal_url=f"{PREFIX}/signals/{row.signal_id}",
                subject_url=f"{PREFIX}/studies/{quote(row.study_id, safe='')}/subjects/"
                f"{quote(row.subject_id, safe='')}",
            )
        )
    return shown


def _site_choices(deps: WorkspaceDeps, session: Session) -> list[str]:
    sites: set[str] = set()
    for study in session.viewer.clinical_studies():
        own = session.viewer.sites(study)
        roster = deps.rosters.get(study)
        if own is not None:
            sites |= own
        elif roster is not None:
            sites |= {site.id for site in roster.sites}
    return sorted(sites)


def router(deps: WorkspaceDeps) -> APIRouter:
    """The inbox routes."""
    api = APIRouter()

    async def results(session: Session, filters: InboxFilters) -> dict[str, Any]:
        """What the results part of the page is rendered from."""
        inbox = SignalInbox(deps.pool())
        scope = scope_of(session.viewer, filters)
        rows = await inbox.rows(scope, filters, limit=MAX_ROWS)
        counts = await inbox.counts(scope, filters)
        total = counts[filters.state] if filters.state else sum(counts.values())
        return {
            "rows": _shown(deps, session, rows),
            "counts": counts,
            "total": total,
            "max_rows": MAX_ROWS,
            "now": deps.context.clock.now(),
            "filters": filters,
            "state_links": {
                state: f"{PREFIX}/inbox?{urlencode(filters.query(state=state))}" for state in STATES
            },
            "all_states_link": f"{PREFIX}/inbox?{urlencode(filters.query(state=None))}",
        }

    @api.get("/inbox", response_class=HTMLResponse)
    async def inbox_page(
        request: Request,
        session: Session = Depends(deps.session),  # noqa: B008 - FastAPI's way
    ) -> HTMLResponse:
        problem: FilterRefused | None = None
        try:
            filters = parse_filters(_query(request), session.viewer)
        except FilterRefused as refused:
            problem, filters = refused, InboxFilters()
        inbox = SignalInbox(deps.pool())
        # read before the rows: a change committed meanwhile is told again, never missed
        position = await inbox.position()
        values = await results(session, filters)
        query = urlencode(filters.query())
        return render(
            "inbox.html",
            session,
            status=400 if problem is not None else 200,
            title="Inbox",
            problem=problem,
            position=position,
            rules=await inbox.rules(scope_of(session.viewer, InboxFilters())),
            sites=_site_choices(deps, session),
            studies=session.viewer.clinical_studies(),
            states=STATES,
            refresh_link=f"{PREFIX}/inbox" + (f"?{query}" if query else ""),
            updates_url=f"{PREFIX}/inbox/updates" + (f"?{query}" if query else ""),
            poll_seconds=POLL_SECONDS,
            **values,
        )

    @api.get("/inbox/updates")
    async def inbox_updates(
        request: Request,
        session: Session = Depends(deps.session),  # noqa: B008 - FastAPI's way
    ) -> JSONResponse:
        try:
            params = _query(request)
            since = parse_since(params.pop("since", None))
            filters = parse_filters(params, session.viewer)
        except FilterRefused as refused:
            return JSONResponse(
                {"error": str(refused), "field": refused.field},
                status_code=400,
                headers={"Cache-Control": "no-store"},
            )
        inbox = SignalInbox(deps.pool())
        position = await inbox.position()
        raised, changed = await inbox.changes_since(
            scope_of(session.viewer, filters), filters, since
        )
        body: dict[str, Any] = {
            "position": max(position, since),
            "raised": raised,
            "changed": changed,
        }
        if changed:
            values = await results(session, filters)
            body["html"] = templates.get_template("inbox_results.html").render(
                session=session, **values
            )
        body["announcement"] = _announcement(raised, changed)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return api


def _announcement(raised: int, changed: int) -> str:
    """What the live region says: new signals first, other changes after."""
    parts = []
    if raised:
        parts.append(f"{raised} new signal" + ("s" if raised != 1 else ""))
    if changed > raised:
        others = changed - raised
        parts.append(f"{others} signal{'s' if others != 1 else ''} changed")
    return "; ".join(parts)
