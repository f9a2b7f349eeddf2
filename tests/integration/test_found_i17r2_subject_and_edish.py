"""Found in the second outside test round of the workspace (issue 17): what the subject page
and the eDISH plot show, judged against ../shared/DOMAIN.md with inputs real laboratories
send (results near midnight in another zone, an analyte with no rule in two units, results
without a reference range). Over a real PostgreSQL, events appended through the event
store, pages read through the real workspace app."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.notifier.domain.roster import Roster
from services.notifier.entrypoints.workspace import install_workspace
from services.notifier.entrypoints.workspace.common import WorkspaceDeps
from services.safety_rules.domain.history import SubjectHistory
from services.settings import VigilSettings
from shared import eventstore
from shared.events import Envelope, EventPayload, LabResultReported, SubjectEnrolled, wrap
from shared.eventstore import NewEvent
from tests.support.notifier import context, raised
from tests.support.services import REPO
from tests.support.workspace import FixedAuthenticator

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
DAY0 = date(2026, 6, 1)
ALT, BILIRUBIN = "1742-6", "1975-2"
CRP = "1988-5"  # C reactive protein: no analyte of Vigil's catalogue, no rule of the pack


def roster() -> Roster:
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
                }
            ],
        }
    )


def event(payload: EventPayload) -> Envelope:
    return wrap(payload, source="/tests/found-i17r2")


def enrolled(subject: str) -> Envelope:
    return event(
        SubjectEnrolled(
            study_id=STUDY,
            subject_id=subject,
            site_id="S1",
            sex="F",
            birth_date=date(1980, 1, 1),
            day0=DAY0,
        )
    )


def lab(subject: str, at: datetime, value: str, unit: str, code: str, **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "study_id": STUDY,
        "subject_id": subject,
        "loinc_code": code,
        "value": Decimal(value),
        "unit": unit,
        "collected_at": at,
        "source_message_id": f"M-{subject}-{code}-{at.isoformat()}-{value}",
    }
    return event(LabResultReported(**{**fields, **changes}))


def alt(subject: str, at: datetime, value: str, **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "canonical_value": Decimal(value),
        "canonical_unit": "U/L",
        "reference_low": Decimal(7),
        "reference_high": Decimal(40),
    }
    return lab(subject, at, value, "U/L", ALT, **{**fields, **changes})


def bilirubin(subject: str, at: datetime, value: str) -> Envelope:
    return lab(
        subject,
        at,
        value,
        "mg/dL",
        BILIRUBIN,
        canonical_value=Decimal(value),
        canonical_unit="mg/dL",
        reference_low=Decimal("0.2"),
        reference_high=Decimal("1.2"),
    )


async def append(pool: asyncpg.Pool, *envelopes: Envelope) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await eventstore.append(connection, [NewEvent(e) for e in envelopes])


def client(pool: asyncpg.Pool, person_id: str) -> httpx.AsyncClient:
    people = roster()
    app = FastAPI()
    install_workspace(
        app,
        WorkspaceDeps(
            pool=lambda: pool,
            context=context(people),
            settings=VigilSettings(study_dir=REPO / "studies"),
            authenticator=FixedAuthenticator({STUDY: people}, person_id),
        ),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def table_rows(page: str, anchor: str) -> list[list[str]]:
    """The cells of each result row of one analyte's table, tags stripped."""
    start = page.index(f'id="{anchor}"')
    end = page.find('<section class="subject-analyte"', start + 1)
    part = page[start : end if end > 0 else len(page)]
    rows = re.findall(r'<tr class="standing-\w+">(.*?)</tr>', part, re.DOTALL)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row)]
        for row in rows
    ]


async def test_the_baseline_is_the_rules_baseline_and_the_page_says_which_date_it_was_judged_on(
    pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md: Day 0 is the baseline visit; the baseline is the last value on or before
    Day 0. The tester's scenario: a Day-0 sample at 10:00 Beijing (35 U/L), and one
    collected 2026-06-01 17:00 UTC (130 U/L), drawn 2026-06-02 01:00 in Beijing, on study
    day 1 at the site. The tester asked for the Beijing date to decide.

    The chart explains the signals, so its baseline is the one the rules service takes
    (``services/safety_rules/domain/history.py``: ``entry.at.date() <= day0``, the date the
    result's timestamp carries as the laboratory sent it, here UTC): the 130 U/L sample,
    dated 2026-06-01 by the laboratory. Judging it by the site date instead is a domain
    change for the rules service (every baseline-relative rule, CTCAE grading against an
    abnormal baseline, and the signals already raised would move with it); it is a
    follow-up for the rules service, not something the chart may decide alone, or the
    chart would draw bands that disagree with the signals it is meant to explain.

    What the page must not do is contradict itself: the study-day column numbers days at
    the site (the baseline row reads day 1), so the baseline row says the date it was judged
    on, and the legend says the convention in words."""
    day0_sample = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # 10:00 CST, Day 0
    after_midnight = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)  # 01:00 CST on 2 June, day 1
    envelopes = (
        enrolled("S1-001"),
        alt("S1-001", day0_sample, "35"),
        alt("S1-001", after_midnight, "130"),
    )
    await append(pool, *envelopes)
    rules = SubjectHistory(STUDY, "S1-001")  # the rules service's view of the same events
    for version, envelope in enumerate(envelopes, start=1):
        rules.apply(envelope.type, envelope.data, envelope.id, envelope.time, version)
    async with client(pool, "pi1") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-001")

    rules_baseline = rules.baseline(ALT)
    assert rules_baseline is not None
    assert rules_baseline.result.value == Decimal(130)
    assert response.status_code == 200
    rows = table_rows(response.text, "chart-alt")
    assert [row[2] for row in rows if "baseline" in row[1]] == ["130"]
    assert [(row[0], row[1]) for row in rows] == [
        ("2026-06-01 10:00 CST (Asia/Shanghai)", "0"),
        (
            "2026-06-02 01:00 CST (Asia/Shanghai)",
            "1 (baseline: dated 2026-06-01 (UTC+00:00) by the laboratory, on or before Day 0)",
        ),
    ]
    legend = re.sub(r"\s+", " ", response.text)
    assert "by the date its timestamp carries as the laboratory sent it" in legend
    assert "not by the date at the site" in legend


async def test_a_value_of_an_analyte_without_rule_is_listed_with_its_own_unit(
    pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md (Lab analytes): a value means nothing without its unit, and a result in a
    unit Vigil cannot convert is kept and shown, never misread. An analyte with no rule and
    no catalogue entry (CRP) is charted in the unit of its first result (mg/L); a later
    result sent in mg/dL (1.2 mg/dL = 12 mg/L) is rightly left off the chart.

    Now: its table row reads value "1.2" in the Unit column "mg/L": ten times lower than
    what the laboratory reported. The row must name the unit the value is in (mg/dL), or
    show it converted (12 mg/L); never 1.2 next to mg/L."""
    await append(
        pool,
        enrolled("S1-001"),
        lab("S1-001", datetime(2026, 6, 1, 2, 0, tzinfo=UTC), "12", "mg/L", CRP),
        lab("S1-001", datetime(2026, 6, 15, 2, 0, tzinfo=UTC), "1.2", "mg/dL", CRP),
    )
    async with client(pool, "pi1") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-001")

    assert response.status_code == 200
    anchor = re.search(r'<section class="subject-analyte" id="([^"]+)"', response.text)
    assert anchor is not None
    rows = table_rows(response.text, anchor.group(1))
    assert len(rows) == 2
    value, unit = rows[1][2], rows[1][3]
    assert (value, unit) in (("1.2", "mg/dL"), ("12", "mg/L")), (value, unit)


async def test_edish_does_not_hide_a_peak_alt_sent_without_a_reference_range(
    pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md: liver injury is ALT or AST > 3 x ULN; the eDISH plot is the peak ALT/ULN
    per subject. The study's rule pack (liver-alt-ast-gt-3-uln, hys-law) judges a result
    sent without a range against its fallback ULN (ALT 25 U/L for a woman), so an ALT of
    900 U/L without a range is 36 x ULN and raises a liver signal.

    Now: eDISH skips that result because it has no laboratory ULN and plots the subject at
    her other ALT, 50 U/L with ULN 40 (1.25 x ULN), in the "Normal range" quadrant, with no
    word that a higher result was left out. The subject must not be shown as normal: either
    placed with the pack's fallback ULN (as the rules judge it, > 3 x ULN, Temple's
    corollary), or set aside saying a result had no ULN."""
    await append(
        pool,
        enrolled("S1-001"),
        alt("S1-001", datetime(2026, 6, 1, 2, 0, tzinfo=UTC), "50"),
        alt(
            "S1-001",
            datetime(2026, 6, 15, 2, 0, tzinfo=UTC),
            "900",
            reference_low=None,
            reference_high=None,
        ),
        bilirubin("S1-001", datetime(2026, 6, 15, 2, 0, tzinfo=UTC), "0.6"),
    )
    async with client(pool, "mm") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/edish")

    assert response.status_code == 200
    row = re.search(
        r'<tr[^>]*>\s*<th scope="row"><a[^>]*>S1-001</a></th>(.*?)</tr>', response.text, re.DOTALL
    )
    assert row is not None
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row.group(1))]
    if len(cells) >= 4:  # placed on the plot
        assert cells[3] != "Normal range", cells
        assert Decimal(cells[1].split()[0]) > 3, cells
    else:  # set aside: the reason names the result without a ULN
        assert "ULN" in cells[-1], cells


async def test_a_bilirubin_sent_in_umol_per_litre_reads_at_a_sane_precision(
    pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md: total bilirubin is drawn in mg/dL, umol/L / 17.1. A laboratory reporting
    60 umol/L (range 3.4-20.5 umol/L) gives 3.51 mg/dL, range 0.199-1.20 mg/dL: numbers
    a reader can compare with the laboratory's report and with the ULN.

    Now: the table prints the converted laboratory range to 28 significant digits
    ("0.1988304093567251461988304094 to 1.198830409356725146198830409") and the value to
    15 ("3.50877192982456"): a false precision that the laboratory never measured, and a
    row no one can read against the report. Each number should keep about the precision
    it was measured with (a few significant digits), and no more than 6."""
    canonical = (Decimal(60) / Decimal("17.1")).quantize(Decimal("1e-14"))  # 15 digits
    await append(
        pool,
        enrolled("S1-001"),
        lab(
            "S1-001",
            datetime(2026, 6, 15, 2, 0, tzinfo=UTC),
            "60",
            "umol/L",
            BILIRUBIN,
            canonical_value=canonical,
            canonical_unit="mg/dL",
            reference_low=Decimal("3.4"),
            reference_high=Decimal("20.5"),
        ),
    )
    async with client(pool, "pi1") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-001")

    assert response.status_code == 200
    anchor = re.search(r'<section class="subject-analyte" id="([^"]+)"', response.text)
    assert anchor is not None
    (row,) = table_rows(response.text, anchor.group(1))
    value, unit, laboratory_range = row[2], row[3], row[4]
    assert unit == "mg/dL"
    numbers = re.findall(r"\d+(?:\.\d+)?", f"{value} {laboratory_range}")
    too_precise = [n for n in numbers if len(n.replace(".", "").lstrip("0")) > 6]
    assert not too_precise, (value, laboratory_range)


async def test_edish_does_not_highlight_peaks_months_apart_as_a_hys_law_case(
    pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md (Hy's law): ALT or AST > 3 x ULN together with total bilirubin > 2 x ULN
    in samples close in time; the study's pack reads "close" as within 30 days (hys-law,
    window_days). A subject whose ALT peaked at 5 x ULN on study day 14 and whose bilirubin
    peaked at 3 x ULN on day 213, each normal when the other peaked, is not a potential
    Hy's law case, and the rules raised none. eDISH may place her peaks in the upper right
    quadrant (peaks are taken independently), but must not mark her as a Hy's law case.

    Now: the row gets class "hys-law" and the plot draws her as a red "Hy's law case
    (quadrant or signal)" diamond, although the same row says "199 day(s) apart: not
    concurrent" and the Hy's law signal column says "no"."""
    day = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    await append(
        pool,
        enrolled("S1-001"),
        alt("S1-001", day.replace(day=15), "200"),
        bilirubin("S1-001", day.replace(day=15), "0.6"),
        alt("S1-001", datetime(2026, 12, 31, 2, 0, tzinfo=UTC), "30"),
        bilirubin("S1-001", datetime(2026, 12, 31, 2, 0, tzinfo=UTC), "3.6"),
    )
    async with client(pool, "mm") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/edish")

    assert response.status_code == 200
    row = re.search(
        r'<tr([^>]*)>\s*<th scope="row"><a[^>]*>S1-001</a></th>(.*?)</tr>',
        response.text,
        re.DOTALL,
    )
    assert row is not None
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row.group(2))]
    assert "not concurrent" in cells[4], cells
    assert cells[5] == "no", cells
    assert "hys-law" not in row.group(1), (row.group(1), cells)
    assert 'id="edish-hys-law' not in response.text


async def test_edish_flags_a_hys_law_signal_of_a_subject_it_cannot_place(
    pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md: a potential Hy's law case is reported to the sponsor urgently; the eDISH
    page highlights Hy's law cases "(quadrant or signal)". The rules judged this subject's
    ALT 900 U/L and bilirubin 4.0 mg/dL, both sent without a reference range, against the
    pack's fallback ULNs (25 U/L, 1.2 mg/dL) and raised a Hy's law signal (hys-law).

    Now: eDISH sets her aside under "Not plottable" for want of the laboratory's ULN, and
    that row says nothing of the standing Hy's law signal: the one subject the medical
    monitor must see first is listed as a data gap. The set-aside row (or a placed,
    highlighted point) must say a Hy's law signal stands for her."""
    at = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)
    await append(
        pool,
        enrolled("S1-001"),
        alt("S1-001", at, "900", reference_low=None, reference_high=None),
        lab(
            "S1-001",
            at,
            "4.0",
            "mg/dL",
            BILIRUBIN,
            canonical_value=Decimal("4.0"),
            canonical_unit="mg/dL",
        ),
        raised(site_id="S1", study_id=STUDY, subject_id="S1-001", rule_id="hys-law"),
    )
    async with client(pool, "mm") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/edish")

    assert response.status_code == 200
    row = re.search(
        r'<tr([^>]*)>\s*<th scope="row"><a[^>]*>S1-001</a></th>(.*?)</tr>',
        response.text,
        re.DOTALL,
    )
    assert row is not None
    text = re.sub(r"<[^>]+>", " ", row.group(2)).replace("&#39;", "'")
    placed_and_highlighted = "hys-law" in row.group(1)
    assert placed_and_highlighted or "hy's law" in text.lower(), text


async def test_a_haemoglobin_in_mmol_per_litre_is_tabled_as_it_is_drawn(
    pool: asyncpg.Pool,
) -> None:
    """DOMAIN.md: haemoglobin's canonical unit is g/dL, mmol/L / 0.6206; the rules service
    converts a result that arrives without a canonical value (partners publish straight to
    Kafka). 4.5 mmol/L is 7.25 g/dL: CTCAE grade 3 anaemia (< 8.0 g/dL), and the chart
    rightly draws it at 7.25 in the grade-3 band.

    Now: the table under the chart reads value "4.5", unit "g/dL": a haemoglobin that
    would be incompatible with the grade the same row gives, and not what the chart shows.
    The row must read the value as drawn (7.25 g/dL, to a sane precision) or name the unit
    it was reported in (4.5 mmol/L)."""
    await append(
        pool,
        enrolled("S1-001"),
        lab(
            "S1-001",
            datetime(2026, 6, 8, 2, 0, tzinfo=UTC),
            "4.5",
            "mmol/L",
            "718-7",
            reference_low=Decimal("7.1"),
            reference_high=Decimal("9.3"),
        ),
    )
    async with client(pool, "pi1") as http:
        response = await http.get(f"/workspace/studies/{STUDY}/subjects/S1-001")

    assert response.status_code == 200
    anchor = re.search(r'<section class="subject-analyte" id="([^"]+)"', response.text)
    assert anchor is not None
    (row,) = table_rows(response.text, anchor.group(1))
    value, unit, grade = row[2], row[3], row[5]
    assert grade == "grade 3"
    if unit == "g/dL":
        assert Decimal(value).quantize(Decimal("0.01")) == Decimal("7.25"), (value, unit)
    else:
        assert (value, unit) == ("4.5", "mmol/L"), (value, unit)
