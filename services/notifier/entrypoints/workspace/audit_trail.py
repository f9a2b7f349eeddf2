"""Workspace page: a subject's audit trail, and its export.

``GET /workspace/studies/{study}/subjects/{subject}/audit`` lists every event of the
subject in log position order (its own stream, the notification streams of its signals,
the reviews of its data-quality issues: every event whose hashed envelope names the
subject), each with its position, when it was recorded (in the site's zone), its type in
words, who or what recorded it, and a summary of ids and values
(:mod:`services.notifier.domain.audit_trail`). ``.../audit/export?format=jsonl|csv``
downloads the same rows in the ``vigil audit export`` format: the very function the
command line runs (:func:`shared.eventstore.export.write_export`).

Who may see the subject's trail: ``Viewer.may_see_audit_trail``; anyone else, and any
subject the log does not know, gets the same 404.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from services.notifier.adapters.workspace_records import SubjectPlace, subject_place
from services.notifier.domain.audit_trail import recorded_by, summary, type_in_words
from services.notifier.domain.site_time import local_time
from services.notifier.entrypoints.workspace.common import (
    Session,
    WorkspaceDeps,
    not_found,
    render,
)
from shared.events.payloads import is_subject_id
from shared.eventstore.export import exported_rows, write_export

PAGE = "audit_trail"
MAX_STUDY_ID = 64
_MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


@dataclass(frozen=True)
class TrailRow:
    position: int
    recorded_at: str
    event: str
    event_type: str
    recorded_by: str
    summary: str


def router(deps: WorkspaceDeps) -> APIRouter:
    """The audit_trail routes."""
    api = APIRouter()
    signed_in = Depends(deps.session)

    async def _place(session: Session, study: str, subject: str) -> SubjectPlace:
        """The subject, if this person may see its trail; 404 otherwise."""
        if len(study) > MAX_STUDY_ID or not is_subject_id(subject):
            not_found(session, PAGE, study_id=study[:MAX_STUDY_ID])
        async with deps.pool().acquire() as connection:
            place = await subject_place(connection, study, subject)
        if not place.known or not session.viewer.may_see_audit_trail(study, place.site_id):
            not_found(session, PAGE, study_id=study, subject_id=subject)
        return place

    @api.get("/studies/{study}/subjects/{subject}/audit", response_class=HTMLResponse)
    async def audit_trail(study: str, subject: str, session: Session = signed_in) -> HTMLResponse:
        place = await _place(session, study, subject)
        zone = deps.zone(study, place.site_id)
        rows: list[TrailRow] = []
        altered: list[int] = []
        async with deps.pool().acquire() as connection:
            async for record in exported_rows(connection, study=study, subject=subject):
                payload = json.loads(record["payload"])
                if not record["columns_ok"]:
                    altered.append(record["position"])
                rows.append(
                    TrailRow(
                        position=record["position"],
                        recorded_at=local_time(datetime.fromisoformat(record["recorded_at"]), zone),
                        event=type_in_words(record["type"]),
                        event_type=record["type"],
                        recorded_by=recorded_by(record["type"], record["source"], payload),
                        summary=summary(record["type"], payload),
                    )
                )
        return render(
            "audit_trail.html",
            session,
            title=f"Audit trail of subject {subject}",
            study_id=study,
            subject_id=subject,
            site_id=place.site_id,
            zone_name=zone.key,
            rows=rows,
            altered=altered,
        )

    @api.get("/studies/{study}/subjects/{subject}/audit/export")
    async def audit_export(
        study: str,
        subject: str,
        session: Session = signed_in,
        format: str = Query("jsonl", max_length=8),
    ) -> Response:
        await _place(session, study, subject)
        if format not in _MEDIA_TYPES:
            return render(
                "message.html",
                session,
                status=422,
                title="Unknown export format",
                message="format: choose jsonl or csv.",
            )
        out = io.StringIO()
        async with deps.pool().acquire() as connection:
            await write_export(
                connection,
                out,
                study=study,
                subject=subject,
                fmt="csv" if format == "csv" else "jsonl",
            )
        name = f"audit-{study}-{subject}.{format}"
        return Response(
            out.getvalue(),
            media_type=_MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return api
