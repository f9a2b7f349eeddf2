"""Workspace page: the data-quality queue.

``GET /workspace/data-quality`` lists the ``org.vigil.data_quality.issue_raised.v1``
issues a person may see (a data manager: the whole study; study-wide clinical roles: the
study; site staff: their sites' subjects), newest first, filtered by study, issue kind and
whether reviewed. Each row shows the subject, the issue in words, Vigil's detail, when it
was recorded (site time), and its source: the related event's message id and the ingest
receipt (id, channel, received time, outcome; never the raw message, which may hold
names). ``POST /workspace/data-quality/{issue_id}/review`` marks it reviewed, with an
optional note, as ``org.vigil.data_quality.issue_reviewed.v1`` (``handlers.review_issue``,
once per person); a reviewed issue moves to the "reviewed" filter. An issue whose
notification waits for an acknowledgement (it escalates like a signal; its e-mail links
here, ``?issue=<id>``) shows by when; marked reviewed by a person who may acknowledge it,
the review also acknowledges it (``org.vigil.notification.issue_acknowledged.v1``) and its
escalation stops.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import get_args
from urllib.parse import parse_qs, urlencode

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.notifier import handlers
from services.notifier.adapters import workspace_records
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.domain.escalation import NotificationState
from services.notifier.domain.site_time import local_time, local_times_in
from services.notifier.entrypoints.workspace.common import (
    MAX_FORM_BYTES,
    PREFIX,
    Session,
    WorkspaceDeps,
    not_found,
    render,
)
from services.notifier.handlers.reviews import asks_acknowledgement, may_acknowledge
from shared.events.payloads import DataQualityProblem
from shared.events.values import unstorable_text

log = structlog.get_logger(__name__)

PAGE = "data_quality"
MAX_NOTE = 1000
#: how many issues the page reads at most (newest first), before filtering by scope
MAX_LISTED = 500
KINDS: tuple[str, ...] = get_args(DataQualityProblem)
REVIEWED = {"no": "Not reviewed", "yes": "Reviewed", "all": "All"}


def _who(person_id: str, role: str) -> str:
    return f"{person_id} ({role.replace('_', ' ')})"


def kind_in_words(kind: str) -> str:
    return kind.replace("-", " ").capitalize()


@dataclass(frozen=True)
class IssueRow:
    """One issue as the page shows it."""

    issue_id: uuid.UUID
    study_id: str
    subject_id: str
    site_id: str | None
    kind: str
    detail: str
    recorded_at: str
    source_message_id: str | None
    receipt: workspace_records.Receipt | None
    received_at: str | None
    reviews: tuple[tuple[str, str, str], ...]  # who, when (site time), note
    reviewed_by_me: bool
    #: the issue's notification waits for an acknowledgement by then (site time); None: not
    acknowledge_by: str | None = None
    #: marking it reviewed acknowledges it (the viewer may), stopping its escalation
    my_review_acknowledges: bool = False
    #: who acknowledged its notification (escalation stopped)
    acknowledged_by: tuple[str, ...] = ()


class FilterProblem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _filters(study: str, kind: str, reviewed: str) -> None:
    if kind and kind not in KINDS:
        raise FilterProblem("kind", "Issue kind: choose one from the list.")
    if reviewed not in REVIEWED:
        raise FilterProblem("reviewed", "Reviewed: choose not reviewed, reviewed or all.")


def _issue_id(text: str) -> uuid.UUID | None:
    """The one issue asked for (a message's link names it); empty: none."""
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise FilterProblem("issue", "Issue: not an issue id; open the link again.") from None


def router(deps: WorkspaceDeps) -> APIRouter:
    """The data_quality routes."""
    api = APIRouter()
    signed_in = Depends(deps.session)

    def _row(
        session: Session,
        queued: workspace_records.QueuedIssue,
        state: NotificationState | None,
    ) -> IssueRow:
        issue = queued.issue
        person = session.viewer.person_id
        waiting = asks_acknowledgement(state)
        roster = deps.rosters.get(issue.study_id)
        on_roster = roster.person(person) if roster is not None else None
        zone = deps.zone(issue.study_id, queued.site_id)
        receipt = queued.receipt
        return IssueRow(
            issue_id=queued.issue_id,
            study_id=issue.study_id,
            subject_id=issue.subject_id,
            site_id=queued.site_id,
            kind=kind_in_words(issue.issue),
            detail=local_times_in(issue.detail, zone),
            recorded_at=local_time(queued.recorded_at, zone),
            source_message_id=queued.source_message_id,
            receipt=receipt,
            received_at=local_time(receipt.received_at, zone) if receipt else None,
            reviews=tuple(
                (
                    f"{r.person_id} ({r.role.replace('_', ' ')})",
                    local_time(r.reviewed_at, zone),
                    r.note,
                )
                for r in queued.reviews
            ),
            reviewed_by_me=any(r.person_id == person for r in queued.reviews),
            acknowledge_by=(
                local_time(state.acknowledge_by, zone)
                if state is not None and waiting and state.acknowledge_by is not None
                else None
            ),
            my_review_acknowledges=(
                state is not None
                and waiting
                and on_roster is not None
                and may_acknowledge(state, on_roster, deps.context)
            ),
            acknowledged_by=tuple(state.acknowledged_by) if state is not None else (),
        )

    @api.get("/data-quality", response_class=HTMLResponse)
    async def queue(
        session: Session = signed_in,
        study: str = Query("", max_length=64),
        kind: str = Query("", max_length=64),
        reviewed: str = Query("no", max_length=8),
        issue: str = Query("", max_length=64),
    ) -> HTMLResponse:
        viewer = session.viewer
        problem: FilterProblem | None = None
        try:
            _filters(study, kind, reviewed)
            one = _issue_id(issue)
        except FilterProblem as error:
            problem, kind, reviewed, one = error, "", "no", None
        studies = [s for s in viewer.studies() if not study or s == study]
        async with deps.pool().acquire() as connection:
            if one is not None:
                # the issue a message linked to, however old: it alone, whatever its state
                queued = await workspace_records.issue(connection, one)
                if queued is None or not viewer.may_see_data_quality(
                    queued.issue.study_id, queued.site_id
                ):
                    not_found(session, PAGE, issue_id=one)
                found, kind, reviewed = [queued], "", "all"
            else:
                found = await workspace_records.issues(connection, studies, limit=MAX_LISTED)
            visible = [q for q in found if viewer.may_see_data_quality(q.issue.study_id, q.site_id)]
            shown = [
                q
                for q in visible
                if (not kind or q.issue.issue == kind)
                and (reviewed == "all" or (reviewed == "yes") == bool(q.reviews))
            ]
            states = await workspace_records.notification_states(
                connection, [q.issue_id for q in shown]
            )
        counts = {
            "no": sum(1 for q in visible if not q.reviews),
            "yes": sum(1 for q in visible if q.reviews),
        }
        rows = [_row(session, q, states.get(q.issue_id)) for q in shown]
        return render(
            "data_quality.html",
            session,
            status=422 if problem else 200,
            title="Data-quality queue",
            rows=rows,
            counts=counts,
            problem=problem,
            studies=viewer.studies(),
            kinds=[(k, kind_in_words(k)) for k in KINDS],
            reviewed_choices=REVIEWED,
            chosen={"study": study, "kind": kind, "reviewed": reviewed},
            back=urlencode({"study": study, "kind": kind, "reviewed": reviewed}),
            max_note=MAX_NOTE,
            limit=MAX_LISTED,
            listed=len(found),
        )

    @api.post("/data-quality/{issue_id}/review")
    async def review(
        issue_id: uuid.UUID, request: Request, session: Session = signed_in
    ) -> Response:
        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            raise HTTPException(413, "The form is larger than any this page sends.")
        try:
            fields = parse_qs(raw.decode("utf-8"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "Unreadable form: go back and send it again.") from None
        form = {name: values[0] for name, values in fields.items() if values}
        if form.get("csrf") != session.csrf:
            raise HTTPException(403, "The form's session token is missing or stale: reload.")
        repeated = sorted(name for name, values in fields.items() if len(values) > 1)
        if repeated:
            field = FORM_FIELDS.get(repeated[0], "A field")
            return _refused(session, "Form sent twice over", f"{field}: sent more than once.")
        async with deps.pool().acquire() as connection:
            queued = await workspace_records.issue(connection, issue_id)
        if queued is None or not session.viewer.may_see_data_quality(
            queued.issue.study_id, queued.site_id
        ):
            not_found(session, PAGE, issue_id=issue_id)
        roster = deps.rosters.get(queued.issue.study_id)
        person = roster.person(session.viewer.person_id) if roster is not None else None
        if person is None:
            not_found(session, PAGE, issue_id=issue_id)
        note = form.get("note", "").replace("\r\n", "\n").strip()
        if len(note) > MAX_NOTE:
            return _refused(
                session,
                "Note too long",
                f"Note: keep it to {MAX_NOTE} characters; go back and shorten it.",
            )
        if unstorable_text(note) is not None:
            return _refused(
                session,
                "Note not kept",
                "Note: it holds a character that cannot be kept (a NUL or an invalid one); "
                "go back and type it again.",
            )
        reviewed = await handlers.review_issue(
            PostgresNotifierUnitOfWork(deps.pool()),
            issue_id,
            queued.issue,
            person=person,
            note=note,
            context=deps.context,
        )
        log.info(
            "workspace.data_quality.reviewed",
            issue_id=str(issue_id),
            person_id=person.id,
            new=reviewed.new,
            acknowledged=reviewed.acknowledged,
        )
        query = _filter_query(form.get("back", "")) or "reviewed=no"
        return RedirectResponse(f"{PREFIX}/data-quality?{query}", status_code=303)

    return api


#: the fields the review form sends, as its labels name them
FORM_FIELDS = {"csrf": "Session token", "back": "Filters", "note": "Note"}


def _refused(session: Session, title: str, message: str) -> HTMLResponse:
    """A 422 naming the field at fault (never echoing the value)."""
    return render("message.html", session, status=422, title=title, message=message)


def _filter_query(back: str) -> str:
    """The page's own filters from the form's ``back`` field, encoded again (nothing else
    goes into the redirect)."""
    try:
        parsed = parse_qs(back[:300], max_num_fields=3)
    except ValueError:
        return ""
    return urlencode(
        {k: v[0][:64] for k, v in parsed.items() if k in ("study", "kind", "reviewed") and v}
    )
