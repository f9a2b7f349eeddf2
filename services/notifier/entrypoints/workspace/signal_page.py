"""Workspace page: one signal, ``GET /workspace/signals/{signal_id}`` (the e-mailed link
lands here).

What was found and why (the words of `vigil rules explain`, from
shared/signal_explanation.py, with times in the site's zone), each input with its
audit-log position and a link to the subject's audit trail, what became of the signal
since, who was told when (person ids and roles, never addresses), the acknowledgements
and signed assessments (``_signatures.html``, as on the assessment page), and the way to
assess it. After an escalation or amendment the page tells what the signal rests on now
(its latest grade, value and inputs), with what it rested on before marked superseded.
A signal that does not exist and one outside the person's scope get the same 404
(``not_found``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.domain.signal_story import SignalStory
from services.notifier.domain.site_time import local_time, local_times_in
from services.notifier.entrypoints.workspace.assessment import manifestations, signatures_of
from services.notifier.entrypoints.workspace.common import (
    PREFIX,
    Session,
    WorkspaceDeps,
    not_found,
    render,
)
from services.notifier.handlers.signal_story import read_signal_story
from shared.events.notifications import AssessmentSigned
from shared.eventstore import PostgresEventStore
from shared.signal_explanation import (
    computed_values,
    how_bad,
    input_summary,
    later_summary,
    why_it_fired,
)

PAGE = "signal"
#: a signal id is a UUID: its text is at most this long (braces and hyphens included)
MAX_ID_LENGTH = 40


def _parse(raw: str) -> uuid.UUID | None:
    if len(raw) > MAX_ID_LENGTH:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def _writer(zone: ZoneInfo) -> Callable[[datetime], str]:
    return lambda moment: local_time(moment, zone)


def _text_writer(zone: ZoneInfo) -> Callable[[str], str]:
    """Writes an ISO 8601 time of a payload in the site's zone (as sent when unreadable)."""

    def write(raw: str) -> str:
        try:
            return local_time(datetime.fromisoformat(raw), zone)
        except ValueError:
            return raw

    return write


def _roster_roles(deps: WorkspaceDeps, study_id: str) -> dict[str, str]:
    roster = deps.rosters.get(study_id)
    return {} if roster is None else {p.id: str(p.role) for p in roster.everyone()}


def router(deps: WorkspaceDeps) -> APIRouter:
    """The signal page's route."""
    api = APIRouter()

    @api.get("/signals/{signal_id}", response_class=HTMLResponse)
    async def signal_page(
        signal_id: str,
        request: Request,
        session: Session = Depends(deps.session),  # noqa: B008 - FastAPI's way
    ) -> HTMLResponse:
        parsed = _parse(signal_id)
        if parsed is None:
            not_found(session, PAGE, signal_id="not-a-signal-id")
        async with deps.pool().acquire() as connection:
            store = PostgresEventStore(connection)
            story = await read_signal_story(store, parsed, lambda study: _roster_roles(deps, study))
        if story is None or not session.viewer.may_see_clinical(
            story.signal.study_id, story.site_id
        ):
            not_found(session, PAGE, signal_id=parsed)
        signed = await signatures_of(PostgresNotifierUnitOfWork(deps.pool()), parsed)
        signed_by_viewer = any(
            signature.person_id == session.viewer.person_id and stands
            for signature, stands in signed
        )
        just_signed = signed_by_viewer and request.query_params.get("signed") in ("new", "again")
        return _page(
            deps,
            session,
            story,
            signed,
            just_signed=just_signed,
            signed_by_viewer=signed_by_viewer,
        )

    return api


def _page(
    deps: WorkspaceDeps,
    session: Session,
    story: SignalStory,
    signed: list[tuple[AssessmentSigned, bool]],
    *,
    just_signed: bool,
    signed_by_viewer: bool,
) -> HTMLResponse:
    # what the signal rests on now (after any escalation or amendment); the raising's
    # own words are shown as superseded when they differ
    signal = story.now
    raised = story.signal
    zone = deps.zone(signal.study_id, story.site_id)
    roster = deps.rosters.get(signal.study_id)
    may_assess = (
        not story.closed
        and roster is not None
        and roster.may_acknowledge(session.viewer.person_id, story.site_id)
    )
    subject = (
        f"{PREFIX}/studies/{quote(signal.study_id, safe='')}/subjects/"
        f"{quote(signal.subject_id, safe='')}"
    )
    write_text = _text_writer(zone)
    why_now = why_it_fired(signal, _writer(zone))
    how_bad_now = how_bad(signal, _writer(zone))
    return render(
        "signal.html",
        session,
        title=f"Signal: {signal.rule_title}",
        story=story,
        signal=signal,
        row=story.row,
        zone=zone,
        now=deps.context.clock.now(),
        why=why_now,
        why_as_raised=_superseded(why_it_fired(raised, _writer(zone)), why_now, story),
        how_bad=how_bad_now,
        how_bad_as_raised=_superseded(how_bad(raised, _writer(zone)), how_bad_now, story),
        changed_by=(
            later_summary(story.changed_by.type, dict(story.changed_by.payload))
            if story.changed_by
            else None
        ),
        computed={
            key: local_times_in(str(value), zone) for key, value in computed_values(signal).items()
        },
        inputs=[
            (entry, input_summary(entry.type, dict(entry.payload), write_text))
            for entry in story.inputs
        ],
        superseded=[
            (entry, input_summary(entry.type, dict(entry.payload), write_text))
            for entry in story.superseded_inputs
        ],
        later=[(entry, later_summary(entry.type, dict(entry.payload))) for entry in story.later],
        subject_url=subject,
        audit_url=f"{subject}/audit",
        assess_url=f"{PREFIX}/signals/{signal.signal_id}/assess",
        may_assess=may_assess,
        signatures=manifestations(signed, zone),
        links=[ack for ack in story.acknowledgements if not ack.signed],
        just_signed=just_signed,
        signed_by_viewer=signed_by_viewer,
    )


def _superseded(as_raised: list[str], now: list[str], story: SignalStory) -> list[str]:
    """The sentences told of the signal as raised that no longer hold (none when nothing
    changed it since)."""
    return [line for line in as_raised if line not in now] if story.changed_by else []
