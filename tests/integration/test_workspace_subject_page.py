"""The subject page and the eDISH plot over a real PostgreSQL, with the events appended
through the real event store: charts with thresholds, bands, Day 0 and their tables; a
correction and a retraction shown as such; scope by site and by role."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.notifier.domain.roster import Roster
from services.notifier.entrypoints.workspace import install_workspace
from services.notifier.entrypoints.workspace.common import WorkspaceDeps
from services.settings import VigilSettings
from shared import eventstore
from shared.events import (
    AdverseEventReported,
    Envelope,
    EventPayload,
    LabResultReported,
    LabResultSuperseded,
    MedicationRecorded,
    ResultStatus,
    SubjectEnrolled,
    wrap,
)
from shared.eventstore import NewEvent
from tests.support.notifier import context, raised
from tests.support.services import REPO
from tests.support.workspace import FixedAuthenticator

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
DAY0 = date(2026, 6, 1)
# 02:00 UTC is 10:00 in Beijing: the same calendar day at the site
MORNING = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
ALT, BILIRUBIN, HAEMOGLOBIN, NEUTROPHILS = "1742-6", "1975-2", "718-7", "751-8"


def workspace_roster() -> Roster:
    return Roster.model_validate(
        {
            "study_id": STUDY,
            "timezone": "Asia/Shanghai",
            "study_contacts": [
                {"id": "mm", "name": "M Monitor", "role": "medical_monitor", "email": "mm@x.org"}
            ],
            "sites": [
                {
                    "id": "S1",
                    "timezone": "Asia/Shanghai",
                    "people": [
                        {
                            "id": "pi1",
                            "name": "PI One",
                            "role": "investigator",
                            "email": "pi1@x.org",
                        }
                    ],
                },
                {
                    "id": "S2",
                    "people": [
                        {
                            "id": "pi2",
                            "name": "PI Two",
                            "role": "investigator",
                            "email": "pi2@x.org",
                        }
                    ],
                },
            ],
        }
    )


def event(payload: EventPayload) -> Envelope:
    return wrap(payload, source="/tests/workspace")


def enrolled(subject: str, site: str) -> Envelope:
    return event(
        SubjectEnrolled(
            study_id=STUDY,
            subject_id=subject,
            site_id=site,
            sex="F",  # type: ignore[arg-type]
            birth_date=date(1980, 1, 1),
            day0=DAY0,
        )
    )


def result(subject: str, day: int, value: str, code: str = ALT, **changes: Any) -> Envelope:
    unit, low, high = {
        ALT: ("U/L", "7", "40"),
        BILIRUBIN: ("mg/dL", "0.2", "1.2"),
        HAEMOGLOBIN: ("g/dL", "12", "16"),
        NEUTROPHILS: ("10*9/L", "1.8", "7.7"),
    }[code]
    fields: dict[str, Any] = {
        "study_id": STUDY,
        "subject_id": subject,
        "loinc_code": code,
        "value": Decimal(value),
        "unit": unit,
        "canonical_value": Decimal(value),
        "canonical_unit": unit,
        "reference_low": Decimal(low),
        "reference_high": Decimal(high),
        "collected_at": MORNING + timedelta(days=day),
        "source_message_id": f"M-{subject}-{code}-{day}-{value}",
    }
    return event(LabResultReported(**{**fields, **changes}))


def supersession(old: Envelope, new: Envelope, reason: str) -> Envelope:
    return event(
        LabResultSuperseded(
            study_id=STUDY,
            subject_id=old.subject.split("/")[1] if old.subject else "",
            observation_key=f"key-{old.id}",
            superseded_event_id=old.id,
            superseding_event_id=new.id,
            reason=reason,  # type: ignore[arg-type]
        )
    )


def dose(subject: str, day: int) -> Envelope:
    return event(
        MedicationRecorded(
            study_id=STUDY,
            subject_id=subject,
            category="study-drug",
            medication_id=f"dose-{day}",
            drug="belimumab",
            dose=Decimal(10),
            dose_unit="mg/kg",
            route="intravenous",
            start=MORNING + timedelta(days=day),
            source_message_id=f"D-{subject}-{day}",
        )
    )


def concomitant(subject: str, day: int) -> Envelope:
    return event(
        MedicationRecorded(
            study_id=STUDY,
            subject_id=subject,
            category="concomitant",
            medication_id="CM-1",
            drug="prednisone",
            dose=Decimal(5),
            dose_unit="mg",
            route="oral",
            start=MORNING + timedelta(days=day),
            source_message_id=f"CM-{subject}-{day}",
        )
    )


def adverse_event(subject: str, day: int) -> Envelope:
    return event(
        AdverseEventReported(
            study_id=STUDY,
            subject_id=subject,
            ae_id="AE-1",
            term="Nausea",
            onset=MORNING + timedelta(days=day),
            serious=False,
            ctcae_grade=1,
            source_message_id=f"AE-{subject}-{day}",
        )
    )


async def append(pool: asyncpg.Pool, *envelopes: Envelope) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await eventstore.append(connection, [NewEvent(e) for e in envelopes])


def client(pool: asyncpg.Pool, person_id: str) -> httpx.AsyncClient:
    roster = workspace_roster()
    app = FastAPI()
    install_workspace(
        app,
        WorkspaceDeps(
            pool=lambda: pool,
            context=context(roster),
            settings=VigilSettings(study_dir=REPO / "studies"),
            authenticator=FixedAuthenticator({STUDY: roster}, person_id),
        ),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def subject_record(pool: asyncpg.Pool) -> asyncpg.Pool:
    """S1-001 at site S1: ALT over six weeks with a correction and a retraction, a
    bilirubin rise (a potential Hy's law case), doses and an AE; S2-001 at site S2:
    normal liver values and a Hy's law signal; S2-002: ALT without the laboratory's ULN
    (judged, as the rules judge it, against the Hy's law rule's fallback ULN)."""
    first_day14 = result("S1-001", 14, "150")
    corrected_day14 = result(
        "S1-001", 14, "160", result_status=ResultStatus.CORRECTED, source_message_id="M-corr"
    )
    wrong_day28 = result("S1-001", 28, "900")
    withdrawn_day28 = result(
        "S1-001", 28, "900", result_status=ResultStatus.DELETED, source_message_id="M-del"
    )
    await append(
        pool,
        enrolled("S1-001", "S1"),
        result("S1-001", -7, "30"),
        result("S1-001", 0, "35"),
        first_day14,
        corrected_day14,
        supersession(first_day14, corrected_day14, "corrected"),
        wrong_day28,
        withdrawn_day28,
        supersession(wrong_day28, withdrawn_day28, "retracted"),
        result("S1-001", 42, "60"),
        result("S1-001", 14, "3.0", BILIRUBIN),
        result("S1-001", 0, "13.1", HAEMOGLOBIN),
        result("S1-001", 14, "8.6", HAEMOGLOBIN),
        result("S1-001", 0, "3.2", NEUTROPHILS),
        result("S1-001", 21, "0.5", NEUTROPHILS, comparator="<"),
        dose("S1-001", 0),
        dose("S1-001", 28),
        adverse_event("S1-001", 20),
        concomitant("S1-001", -3),
        enrolled("S2-001", "S2"),
        result("S2-001", 3, "20"),
        result("S2-001", 3, "0.5", BILIRUBIN),
        raised(site_id="S2", study_id=STUDY, subject_id="S2-001", rule_id="hys-law"),
        enrolled("S2-002", "S2"),
        result("S2-002", 3, "200", reference_high=None),
        result("S2-002", 3, "0.5", BILIRUBIN),
    )
    return pool


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    end = page.find('<section class="subject-analyte"', start + 1)
    return page[start : end if end > 0 else len(page)]


async def test_the_subject_page_draws_thresholds_bands_day0_and_doses_with_a_table(
    subject_record: asyncpg.Pool,
) -> None:
    async with client(subject_record, "pi1") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-001")

    assert response.status_code == 200
    alt = section(response.text, "chart-alt")
    assert 'id="chart-alt-threshold-liver-alt-ast-gt-3-uln"' in alt
    assert 'id="chart-alt-band-grade-2"' in alt
    assert 'id="chart-alt-day0"' in alt
    assert 'id="chart-alt-doses"' in alt
    assert 'id="chart-alt-baseline"' in alt
    assert "style=" not in response.text
    ids = re.findall(r'\sid="([^"]+)"', response.text)
    assert len(ids) == len(set(ids)), "every id of the page is its own"
    rows = re.findall(r"<tr class=\"standing-(\w+)\">(.*?)</tr>", alt, re.DOTALL)
    assert [standing for standing, _ in rows] == [
        "current",
        "current",
        "corrected",
        "current",
        "retracted",
        "retraction",
        "current",
    ]
    day14_correction = rows[3][1]
    assert "2026-06-15 10:00 CST (Asia/Shanghai)" in day14_correction
    assert "<td>14</td>" in day14_correction
    assert "grade 2" in day14_correction  # 160 U/L: 4 x ULN 40
    assert "7 to 40" in day14_correction
    assert "0 (baseline: dated " in rows[1][1]
    timeline = response.text[response.text.index('id="timeline"') :]
    assert "Nausea" in timeline
    assert "belimumab 10 mg/kg intravenous" in timeline
    prednisone = next(row for row in timeline.split("<tr") if "prednisone 5 mg oral" in row)
    assert "<td>-3</td>" in prednisone
    assert "ongoing" in prednisone
    assert "<svg" in timeline


async def test_the_chart_marks_superseded_results_hollow_and_retracted_ones_crossed(
    subject_record: asyncpg.Pool,
) -> None:
    async with client(subject_record, "mm") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-001")

    alt = section(response.text, "chart-alt")
    assert 'id="chart-alt-corrected"' in alt
    assert 'id="chart-alt-retracted"' in alt
    assert "superseded by a correction (hollow)" in alt
    assert "retracted (cross)" in alt
    neutrophils = section(response.text, "chart-neutrophils")
    assert 'id="chart-neutrophils-current-censored"' in neutrophils
    censored = next(row for row in neutrophils.split("<tr") if "<td>&lt;0.5</td>" in row)
    assert "grade 4" in censored  # every value below 0.5 is grade 4
    haemoglobin = section(response.text, "chart-haemoglobin")
    assert 'id="chart-haemoglobin-threshold-anaemia-hb-le-9"' in haemoglobin
    assert 'id="chart-haemoglobin-band-grade-2"' in haemoglobin


async def test_another_sites_subject_and_an_unknown_one_are_the_same_404(
    subject_record: asyncpg.Pool,
) -> None:
    async with client(subject_record, "pi1") as http:
        other_site = await http.get(f"/workspace/studies/{STUDY}/subjects/S2-001")
        unknown = await http.get(f"/workspace/studies/{STUDY}/subjects/NOBODY")
        malformed = await http.get(f"/workspace/studies/{STUDY}/subjects/%3Cscript%3E")

    assert other_site.status_code == unknown.status_code == malformed.status_code == 404
    assert other_site.text == unknown.text
    assert "S2-001" not in other_site.text


async def test_edish_places_each_subject_links_it_and_highlights_hys_law_cases(
    subject_record: asyncpg.Pool,
) -> None:
    async with client(subject_record, "mm") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/edish")

    assert response.status_code == 200
    page = response.text
    assert 'id="edish-line-3xuln"' in page
    assert 'id="edish-line-2xuln"' in page
    hys_law = page[page.index('id="edish-hys-law"') :]
    assert f'xlink:href="/workspace/studies/{STUDY}/subjects/S1-001"' in hys_law
    assert f'xlink:href="/workspace/studies/{STUDY}/subjects/S2-001"' in hys_law  # its signal
    rows = dict(re.findall(r'subjects/([\w-]+)">[\w-]+</a></th>(.*?)</tr>', page, re.DOTALL))
    assert "Potential Hy&#39;s law" in rows["S1-001"]  # ALT 160/40 = 4, bilirubin 3.0/1.2 = 2.5
    assert "4.00 (ALT)" in rows["S1-001"]
    assert "Normal range" in rows["S2-001"]
    assert "<td>yes</td>" in rows["S2-001"]
    # 200 U/L without a range, a woman: the pack's fallback ULN 25 U/L, as the rules read it
    assert "8.00 (ALT, pack's fallback ULN: the laboratory sent none)" in rows["S2-002"]
    assert "Temple&#39;s corollary" in rows["S2-002"]
    for quadrant in ("Normal range", "Hyperbilirubinemia", "Temple&#39;s corollary"):
        assert quadrant in page
    assert "style=" not in page


async def test_edish_says_at_the_top_a_hys_law_signal_of_a_subject_it_cannot_place(
    pool: asyncpg.Pool,
) -> None:
    """A subject with a standing Hy's law signal whose bilirubin eDISH has not received is
    set aside, flagged in her row and counted above the plot, never left as a data gap."""
    await append(
        pool,
        enrolled("S2-003", "S2"),
        result("S2-003", 3, "900"),
        raised(site_id="S2", study_id=STUDY, subject_id="S2-003", rule_id="hys-law"),
        enrolled("S2-004", "S2"),
        result("S2-004", 3, "30"),
    )
    async with client(pool, "mm") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/edish")

    assert response.status_code == 200
    page = response.text
    banner = page[page.index('class="notice edish-unplaced-signals"') :]
    assert "1 subject(s) with a standing Hy&#39;s law signal cannot be placed" in banner.replace(
        "'", "&#39;"
    )
    rows = re.findall(r'<tr([^>]*)><th scope="row"><a[^>]*>([\w-]+)</a></th>', page)
    assert rows == [(' class="hys-law"', "S2-003"), ("", "S2-004")]  # the signal first
    assert "<strong>Hy's law signal stands.</strong> no total bilirubin result" in page


async def test_edish_is_refused_to_an_investigator_as_a_404(subject_record: asyncpg.Pool) -> None:
    async with client(subject_record, "pi1") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/edish")

    assert response.status_code == 404


async def test_a_subject_page_of_six_analytes_with_fifty_results_each_is_drawn_and_kept(
    pool: asyncpg.Pool,
) -> None:
    codes = [ALT, BILIRUBIN, HAEMOGLOBIN, "1920-8", "777-3", "751-8"]
    units = {"1920-8": "U/L", "777-3": "10*9/L", "751-8": "10*9/L"}
    envelopes = [enrolled("S1-BIG", "S1")]
    for code in codes:
        for n in range(50):
            if code in units:
                envelopes.append(
                    event(
                        LabResultReported(
                            study_id=STUDY,
                            subject_id="S1-BIG",
                            loinc_code=code,
                            value=Decimal(10 + n % 7),
                            unit=units[code],
                            canonical_value=Decimal(10 + n % 7),
                            canonical_unit=units[code],
                            reference_low=Decimal(5),
                            reference_high=Decimal(40),
                            collected_at=MORNING + timedelta(days=3 * n - 14),
                            source_message_id=f"BIG-{code}-{n}",
                        )
                    )
                )
            else:
                value = {ALT: 30 + n, BILIRUBIN: 1 + n / 50, HAEMOGLOBIN: 9 + n / 10}[code]
                envelopes.append(result("S1-BIG", 3 * n - 14, f"{value:.2f}", code))
    await append(pool, *envelopes)

    # how long it takes is `make bench-workspace`'s to say, not a test's
    async with client(pool, "pi1") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-BIG")
        cached = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-BIG")

    assert response.status_code == 200
    assert response.text.count('<section class="subject-analyte"') == 6
    assert cached.text == response.text
    assert response.text.count("<svg") >= 6


async def test_a_new_event_of_the_subject_draws_its_charts_anew(pool: asyncpg.Pool) -> None:
    await append(pool, enrolled("S1-NEW", "S1"), result("S1-NEW", 1, "30"))
    async with client(pool, "pi1") as http:
        before = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-NEW")
        await append(pool, result("S1-NEW", 2, "300"))
        after = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-NEW")

    assert 'id="chart-alt-band-grade-3"' not in before.text
    assert 'id="chart-alt-band-grade-3"' in after.text  # 300 U/L: above 5 x ULN 40


async def test_a_subject_never_enrolled_is_seen_by_study_wide_roles_only(
    pool: asyncpg.Pool,
) -> None:
    await append(pool, result("UNENROLLED-1", 3, "50"))

    async with client(pool, "pi1") as http:
        investigator = await http.get(f"/workspace/studies/{STUDY}/subjects/UNENROLLED-1")
    async with client(pool, "mm") as http:
        monitor = await http.get(f"/workspace/studies/{STUDY}/subjects/UNENROLLED-1")

    assert investigator.status_code == 404
    assert monitor.status_code == 200
    assert "not known (the subject&#39;s enrolment has not arrived)" in monitor.text
    assert "Days from the first record" in monitor.text
