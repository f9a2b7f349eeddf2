"""Found by the outside tester (i17), in a real browser against the seeded workspace stack.

1. Sign-in's ``next`` leaves the workspace. The README says the browser goes back to the
   page it asked for, "only ever a ``/workspace/...`` path". ``next=/workspace/%2e%2e/...``
   is sent back verbatim as the redirect's Location, and a browser resolves ``%2e%2e`` as
   ``..`` (WHATWG URL): the person lands on ``/readyz``, ``/metrics`` or any other page of
   the notifier's origin outside ``/workspace`` that a crafted sign-in link names.
   Expected: after sign-in the browser is on a ``/workspace/`` page (the asked-for one when
   it is a workspace page, else ``/workspace/``).

2. The data-quality queue shows a raw UTC timestamp. The detail of a reference-range-missing
   issue reads "collected 2026-11-25T01:30:00+00:00": an ISO string in UTC, while every
   other time in the workspace is in the site's zone, to the minute, with the zone named
   ("2026-11-25 09:30 CST (Asia/Shanghai)"). Expected: no raw ISO/UTC timestamp in what the
   data manager reads; the collection time in the site's zone, named.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.e2e.workspace.steps import open_signed_in
from tests.support.api_keys import issue_api_key
from tests.support.browser import sign_in
from tests.support.waiting import eventually
from tests.support.workspace_stack import DATA_MANAGER, INVESTIGATOR, WorkspaceStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ISO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


@pytest.mark.parametrize(
    "escape", ["/workspace/%2e%2e/readyz", "/workspace/.%2e/healthz", "/workspace/%2E%2E/metrics"]
)
async def test_sign_in_next_never_leads_outside_the_workspace(
    workspace: WorkspaceStack, page: Page, escape: str
) -> None:
    await page.goto(workspace.at("/workspace/sign-in?next=" + quote(escape, safe="/")))
    await sign_in(page, INVESTIGATOR.person_id, await workspace.password_of(INVESTIGATOR))
    landed = urlsplit(page.url)
    assert landed.path.startswith("/workspace/"), (
        f"next={escape} took the signed-in browser outside the workspace, to {page.url}"
    )


async def test_the_data_quality_queue_shows_collection_times_in_the_site_zone_not_raw_utc(
    workspace: WorkspaceStack, page: Page
) -> None:
    # an ALT of 01-003 (PKUPH-01, Asia/Shanghai) without a reference range, below any ULN
    collected = (datetime.now(UTC) - timedelta(days=2)).replace(
        hour=1, minute=30, second=0, microsecond=0
    )
    key = await issue_api_key(workspace.admin_dsn)
    ingest = f"http://127.0.0.1:{workspace.env['VIGIL_INGEST_PORT']}"
    async with httpx.AsyncClient(base_url=ingest, headers=key.headers, timeout=30) as client:
        answer = await client.post(
            "/v1/lab-results",
            json=[
                {
                    "study_id": "NCT05262686",
                    "subject_id": "01-003",
                    "loinc_code": "1742-6",
                    "value": "20",
                    "unit": "U/L",
                    "collected_at": collected.isoformat(),
                    "source_message_id": f"I17-NO-RANGE-{collected:%Y%m%d}",
                }
            ],
        )
    assert answer.status_code == 202, answer.text

    async def raised() -> bool:
        rows = await workspace.events(
            "type = 'org.vigil.data_quality.issue_raised.v1' AND subject_id = $1 "
            "AND payload_json::jsonb->>'issue' = 'reference-range-missing'",
            "01-003",
        )
        return bool(rows)

    await eventually(raised, timeout=60, what="the reference-range-missing issue")
    await open_signed_in(page, workspace, DATA_MANAGER, "/workspace/data-quality")
    row = (
        page.get_by_role("row").filter(has_text="Reference range missing").filter(has_text="01-003")
    )
    await expect(row).to_have_count(1)
    text = await row.inner_text()
    assert not ISO_TIMESTAMP.search(text), f"a raw UTC timestamp in the queue: {text!r}"
    site_time = (collected + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert f"{site_time} CST (Asia/Shanghai)" in text, text


async def test_a_page_that_is_not_there_is_a_workspace_page_not_raw_json(
    workspace: WorkspaceStack, page: Page
) -> None:
    """3. What a person reads at a dead end. A signed-in person who follows a stale or
    mistyped link (another site's signal, a signal id cut short by a mail client) gets the
    bare text ``{"detail":"Not found"}`` (``application/json``): no heading, no navigation,
    no way back, not the workspace's language. Expected: still 404 and the same for "not
    yours" and "not there", but an HTML page of the workspace saying the page was not found
    (or that it is not available to them), with the workspace's navigation back to the
    inbox."""
    other_site_signal = workspace.signal("02-001", "neutropenia-anc-lt-1-5")
    await open_signed_in(page, workspace, INVESTIGATOR, "/workspace/inbox")
    for path in (
        f"/workspace/signals/{other_site_signal}",
        "/workspace/signals/06337df3-7c2a-5595",
        "/workspace/studies/NCT05262686/subjects/01-999",
    ):
        answer = await page.goto(workspace.at(path))
        assert answer is not None
        assert answer.status == 404, path
        content_type = answer.headers.get("content-type", "")
        text = await page.locator("body").inner_text()
        assert content_type.startswith("text/html"), (
            f"{path}: the person reads a {content_type} body: {text!r}"
        )
        await expect(page.get_by_role("heading", level=1)).to_contain_text(
            re.compile("not found|not available", re.I)
        )
        await expect(page.get_by_role("link", name=re.compile("inbox", re.I)).first).to_be_visible()


async def test_the_hys_law_signal_page_shows_collection_times_in_the_site_zone_not_raw_utc(
    workspace: WorkspaceStack, page: Page
) -> None:
    """4. The same raw UTC on a signal page. The seeded Hy's law case of 01-002 (PKUPH-01,
    Asia/Shanghai): under "What was found, and why", the computed values read "alkaline
    phosphatase 78 U/L (ULN 120 U/L) collected 2026-...T01:30:00+00:00" (and the same for
    bilirubin and ALT), while the line above gives the clinical time as "... 09:30 CST
    (Asia/Shanghai)". Expected: every time the investigator reads is in the site's zone, to
    the minute, zone named; no ISO/UTC timestamp."""
    signal_id = workspace.signal("01-002", "hys-law")
    await open_signed_in(page, workspace, INVESTIGATOR, f"/workspace/signals/{signal_id}")
    text = await page.locator("main").inner_text()
    raw = sorted(set(ISO_TIMESTAMP.findall(text)))
    assert raw == [], f"raw UTC timestamps on the Hy's law signal page: {raw}"


def between(text: str, start: str, end: str) -> str:
    """The part of ``text`` from heading ``start`` up to heading ``end``."""
    assert start in text, f"no {start!r} on the page"
    part = text.split(start, 1)[1]
    return part.split(end, 1)[0] if end in part else part


async def test_a_corrected_signals_page_says_what_it_rests_on_now(
    workspace: WorkspaceStack, page: Page
) -> None:
    """5. Labels that do not hold what they say, on an amended signal. 01-003's Hb 8.8 g/dL
    was corrected by the lab to 7.7 g/dL; the signal was amended (grade 2 -> 3) and now
    stands on the 7.7 (the signature the page offers is bound to that result, and the
    page's header says "Grade 3", "Value now 7.7 g/dL"). Yet the section "The facts it
    rests on" lists only the superseded 8.8 g/dL result as "Inputs of the signal", and "How
    bad, and what to do" says "CTCAE v5.0 Anemia: grade 2". Expected: "The facts it rests
    on" shows the fact the signal stands on now (7.7 g/dL; a superseded one, if shown, marked
    as corrected), and "How bad" gives the grade the signal has now (3), or labels the
    older one as at raising."""
    signal_id = workspace.signal("01-003", "anaemia-hb-le-9")
    await open_signed_in(page, workspace, INVESTIGATOR, f"/workspace/signals/{signal_id}")
    text = await page.locator("main").inner_text()
    rests_on = between(text, "The facts it rests on", "What became of it since")
    assert "7.7 g/dL" in rests_on, f"'The facts it rests on' lists: {rests_on!r}"
    how_bad = between(text, "How bad, and what to do", "The facts it rests on")
    assert "grade 3" in how_bad.lower(), f"'How bad, and what to do' says: {how_bad!r}"
