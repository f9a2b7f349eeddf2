"""Workspace page: the study's eDISH plot (peak ALT or AST against peak total bilirubin,
multiples of ULN, per subject), for the study-wide roles only (medical monitor, safety
desk); anyone else gets the same 404 as for a study that does not exist."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from services.notifier.adapters.edish_chart import edish_svg
from services.notifier.adapters.rule_pack_limits import RulePackLimits
from services.notifier.adapters.subject_records import liver_records
from services.notifier.domain.edish import QUADRANTS, EdishPoint, edish
from services.notifier.entrypoints.workspace.common import (
    Session,
    WorkspaceDeps,
    chart_limiter,
    not_found,
    render,
)
from services.notifier.entrypoints.workspace.subject_page import subject_url

PAGE = "edish"
#: the rule id the shipped packs give their Hy's law rule, when a pack cannot be read
DEFAULT_HYS_LAW_RULES = ("hys-law",)


def router(deps: WorkspaceDeps) -> APIRouter:
    """The eDISH route."""
    routes = APIRouter()
    packs = RulePackLimits(deps.settings.study_dir)

    @routes.get("/studies/{study_id}/edish", response_class=HTMLResponse)
    async def edish_page(
        study_id: str,
        session: Session = Depends(deps.session),  # noqa: B008
    ) -> HTMLResponse:
        if len(study_id) > 64 or not session.viewer.is_study_wide(study_id):
            not_found(session, PAGE, study_id=study_id[:64])
        pack = packs.of(study_id)
        rules = sorted(pack.hys_law_rules) or list(DEFAULT_HYS_LAW_RULES)
        records = await liver_records(deps.pool(), study_id, rules)
        points, left_out = edish(
            {
                subject: (
                    record.facts.enrolment.site_id if record.facts.enrolment else None,
                    list(record.facts.results),
                    list(record.facts.supersessions),
                    bool(record.hys_law_signals),
                )
                for subject, record in records.items()
            },
            fallbacks=pack.hys_law_fallbacks,
            sexes={
                subject: record.facts.enrolment.sex if record.facts.enrolment else None
                for subject, record in records.items()
            },
            window_days=pack.hys_law_window_days,
        )

        def link(point: EdishPoint) -> str:
            return subject_url(study_id, point.subject_id)

        svg = (
            await anyio.to_thread.run_sync(edish_svg, points, link, limiter=chart_limiter())
            if points
            else None
        )
        return render(
            "edish.html",
            session,
            title=f"eDISH: {study_id}",
            study_id=study_id,
            points=points,
            left_out=left_out,
            unplaced_signals=[s for s in left_out if s.hys_law_signal],
            svg=svg,
            quadrants=QUADRANTS,
            window_days=pack.hys_law_window_days,
            hys_law_rules=rules,
            subject_url=subject_url,
        )

    return routes
