"""Workspace page: one subject's lab results over study time, a chart per analyte with the
protocol thresholds, the laboratory's limits and the CTCAE bands, and the doses,
medications and adverse events on the same axis; every chart has its table.

Seen by whoever may see the subject's site (``Viewer.may_see_clinical``); a subject whose
site is unknown (never enrolled) only by the study-wide roles. Anything else, and a subject
the log knows nothing of, is the same 404.
"""

from __future__ import annotations

from collections import OrderedDict
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from services.notifier.adapters.rule_pack_limits import RulePackLimits
from services.notifier.adapters.subject_charts import chart_id, lab_chart_svg, timeline_svg
from services.notifier.adapters.subject_records import subject_facts
from services.notifier.domain.subject_chart import SubjectChart, subject_chart
from services.notifier.entrypoints.workspace.common import (
    PREFIX,
    Session,
    WorkspaceDeps,
    chart_limiter,
    not_found,
    render,
)
from shared.events.payloads import is_subject_id

PAGE = "subject"


def subject_url(study_id: str, subject_id: str) -> str:
    """The subject page's address (what other pages link to)."""
    return f"{PREFIX}/studies/{quote(study_id, safe='')}/subjects/{quote(subject_id, safe='')}"


Charts = tuple[list[str], str | None]
#: subjects whose drawn charts are kept (about 50 kB of SVG per analyte)
CACHED_SUBJECTS = 32


def _charts(chart: SubjectChart) -> Charts:
    return [lab_chart_svg(series, chart) for series in chart.series], timeline_svg(chart)


class ChartCache:
    """The charts last drawn for a few subjects. Drawing costs about a quarter of a second
    per analyte; the charts show nothing of who looks at them, and change only with a new
    event of the subject (its last log position), a new rule pack or another time zone."""

    def __init__(self, size: int = CACHED_SUBJECTS) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[str, ...], Charts] = OrderedDict()

    async def charts(self, key: tuple[str, ...], chart: SubjectChart) -> Charts:
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        drawn = await anyio.to_thread.run_sync(_charts, chart, limiter=chart_limiter())
        self._kept[key] = drawn
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return drawn


def router(deps: WorkspaceDeps) -> APIRouter:
    """The subject page's route."""
    routes = APIRouter()
    packs = RulePackLimits(deps.settings.study_dir)
    cache = ChartCache()

    @routes.get("/studies/{study_id}/subjects/{subject_id}", response_class=HTMLResponse)
    async def subject_page(
        study_id: str,
        subject_id: str,
        session: Session = Depends(deps.session),  # noqa: B008
    ) -> HTMLResponse:
        viewer = session.viewer
        if not (is_subject_id(study_id) and is_subject_id(subject_id)):
            not_found(session, PAGE, study_id="(malformed)")
        if study_id not in viewer.clinical_studies():
            not_found(session, PAGE, study_id=study_id, subject_id=subject_id)
        found = await subject_facts(deps.pool(), study_id, subject_id)
        if found is None:
            not_found(session, PAGE, study_id=study_id, subject_id=subject_id)
        facts, last_position = found
        site_id = facts.enrolment.site_id if facts.enrolment else None
        if not viewer.may_see_clinical(study_id, site_id):
            not_found(session, PAGE, study_id=study_id, subject_id=subject_id, site_id=site_id)
        zone = deps.zone(study_id, site_id)
        pack = packs.of(study_id)
        chart = subject_chart(facts, pack.of, zone)
        key = (study_id, subject_id, str(last_position), pack.version, zone.key)
        svgs, timeline = await cache.charts(key, chart)
        return render(
            "subject.html",
            session,
            title=f"Subject {subject_id}",
            study_id=study_id,
            subject_id=subject_id,
            site_id=site_id,
            enrolment=facts.enrolment,
            chart=chart,
            zone=zone,
            panels=[
                (series, chart_id(series.analyte), svg)
                for series, svg in zip(chart.series, svgs, strict=True)
            ],
            timeline=timeline,
        )

    return routes
