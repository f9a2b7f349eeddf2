"""The workspace inbox over a real PostgreSQL: open signals first by deadline, filters and
counts, each person's scope (site staff never see another site's rows or counts), the
live updates, and bad filters refused naming the field."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.db.pool import create_pool
from shared.events import Envelope
from shared.events.notifications import SignalAcknowledged
from tests.support.components import as_service_role
from tests.support.notifier import raised, signal_of
from tests.support.workspace_inbox import Workspace, notice, opened, signal_url

pytestmark = pytest.mark.integration


@pytest.fixture
async def workspace(fresh_dsn: str) -> AsyncIterator[Workspace]:
    pool = await create_pool(as_service_role(fresh_dsn))
    try:
        yield Workspace(pool)
    finally:
        await pool.close()


def acknowledged(signal: Envelope) -> SignalAcknowledged:
    return SignalAcknowledged(
        **notice(signal), person_id="pi1", role="investigator",
        assessment="not-clinically-significant", token_id="t",
    )  # fmt: skip


def order_of(page: str, *signals: Envelope) -> list[int]:
    """Where each signal's link is on the page (its row), in the order given."""
    return [page.index(signal_url(signal)) for signal in signals]


def count(page: str, state: str) -> int:
    found = re.search(rf'class="count-{state}">(\d+)<', page)
    assert found is not None, f"no count of {state}"
    return int(found.group(1))


async def test_open_signals_come_first_the_soonest_deadline_first(workspace: Workspace) -> None:
    later, sooner, overdue = raised("S1"), raised("S1"), raised("S1")
    no_deadline, done = raised("S1"), raised("S1")
    await workspace.record(later, sooner, overdue, no_deadline, done)
    await workspace.record(
        opened(later, timedelta(hours=30)), opened(sooner, timedelta(hours=2)),
        opened(overdue, timedelta(hours=-3)), opened(done, timedelta(hours=-5)),
        acknowledged(done),
    )  # fmt: skip

    async with workspace.client("pi1") as client:
        answer = await client.get("/workspace/inbox")

    assert answer.status_code == 200
    page = answer.text
    positions = order_of(page, overdue, sooner, later, no_deadline, done)
    assert positions == sorted(positions)
    assert "overdue by 3 h 0 min" in page
    assert "2 h 0 min left" in page
    # times in the site's zone, named: S1 is in Shanghai (T0 + 2 h = 11:00 UTC)
    assert "due 2026-06-01 19:00 CST (Asia/Shanghai)" in page
    assert (
        f"/workspace/studies/{signal_of(later).study_id}/subjects/{signal_of(later).subject_id}"
        in page
    )
    assert (count(page, "open"), count(page, "acknowledged")) == (4, 1)


async def test_site_staff_never_see_another_sites_rows_or_counts(workspace: Workspace) -> None:
    own, other, unknown_site = raised("S1"), raised("S2"), raised(None)
    await workspace.record(own, other, unknown_site, acknowledged(other))

    async with workspace.client("pi1") as client:
        mine = (await client.get("/workspace/inbox")).text
        asked_for_s2 = (await client.get("/workspace/inbox?site=S2")).text
    async with workspace.client("mm") as client:
        monitors = (await client.get("/workspace/inbox")).text

    assert signal_url(own) in mine
    assert signal_url(other) not in mine
    assert signal_of(other).subject_id not in mine
    assert signal_url(unknown_site) not in mine
    assert (count(mine, "open"), count(mine, "acknowledged")) == (1, 0)
    assert signal_url(other) not in asked_for_s2
    assert count(asked_for_s2, "acknowledged") == 0
    assert all(signal_url(s) in monitors for s in (own, other, unknown_site))
    assert (count(monitors, "open"), count(monitors, "acknowledged")) == (2, 1)


async def test_filters_narrow_the_rows_and_the_counts_ignore_only_the_state(
    workspace: Workspace,
) -> None:
    grade3 = raised("S1", grade=3, rule_id="neutropenia", rule_title="Neutrophils low")
    grade2, other_acked = raised("S1", grade=2), raised("S1", grade=3)
    await workspace.record(grade3, grade2, other_acked, acknowledged(other_acked))

    async with workspace.client("mm") as client:
        by_grade = (await client.get("/workspace/inbox", params={"grade": "3"})).text
        by_rule = (await client.get("/workspace/inbox", params={"rule": "neutropenia"})).text
        acked = (await client.get("/workspace/inbox", params={"state": "acknowledged"})).text
        by_site = (await client.get("/workspace/inbox", params={"site": "S2"})).text

    assert signal_url(grade3) in by_grade
    assert signal_url(other_acked) in by_grade
    assert signal_url(grade2) not in by_grade
    assert (count(by_grade, "open"), count(by_grade, "acknowledged")) == (1, 1)
    assert signal_url(grade3) in by_rule
    assert signal_url(grade2) not in by_rule
    assert [signal_url(s) in acked for s in (grade3, grade2, other_acked)] == [False, False, True]
    assert (count(acked, "open"), count(acked, "acknowledged")) == (2, 1)
    assert count(by_site, "open") == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"grade": "9"}, "grade"),
        ({"grade": "<b>x</b>"}, "grade"),
        ({"state": "closed-ish"}, "state"),
        ({"site": "S1'; DROP TABLE events; --"}, "site"),
        ({"study": "NCT-NOT-MINE"}, "study"),
        ({"rule": "r" * 300}, "rule"),
    ],
)
async def test_a_bad_filter_is_refused_naming_the_field_without_echoing_it(
    workspace: Workspace, query: dict[str, str], field: str
) -> None:
    async with workspace.client("pi1") as client:
        page = await client.get("/workspace/inbox", params=query)
        updates = await client.get("/workspace/inbox/updates", params={**query, "since": "0"})

    assert page.status_code == 400
    assert f"<strong>{field}</strong>" in page.text
    value = next(iter(query.values()))
    assert value not in page.text
    assert value not in updates.text
    assert updates.status_code == 400
    assert updates.json()["field"] == field


async def test_the_updates_say_a_new_signal_arrived_and_bring_its_row(workspace: Workspace) -> None:
    await workspace.record(raised("S1"))
    async with workspace.client("pi1") as client:
        page = (await client.get("/workspace/inbox")).text
        position = re.search(r'data-position="(\d+)"', page)
        assert position is not None
        since = position.group(1)
        quiet = (await client.get("/workspace/inbox/updates", params={"since": since})).json()
        new, elsewhere = raised("S1"), raised("S2")
        await workspace.record(new, elsewhere)
        update = (await client.get("/workspace/inbox/updates", params={"since": since})).json()
        bad = await client.get("/workspace/inbox/updates", params={"since": "-1"})

    assert (quiet["raised"], quiet["changed"], quiet["announcement"]) == (0, 0, "")
    assert "html" not in quiet
    assert (update["raised"], update["changed"]) == (1, 1)  # S2's signal is not pi1's
    assert update["announcement"] == "1 new signal"
    assert signal_url(new) in update["html"]
    assert signal_url(elsewhere) not in update["html"]
    assert update["position"] > int(since)
    assert bad.status_code == 400
    assert bad.json()["field"] == "since"


async def test_the_page_works_without_javascript_and_loads_its_script_from_a_file(
    workspace: Workspace,
) -> None:
    async with workspace.client("pi1") as client:
        page = (await client.get("/workspace/inbox")).text
        script = await client.get("/workspace/static/inbox.js")

    assert 'href="/workspace/inbox">Refresh the inbox</a>' in page
    assert 'aria-live="polite"' in page
    assert '<script src="/workspace/static/inbox.js" defer></script>' in page
    assert "<script>" not in page
    assert " onclick=" not in page
    assert " style=" not in page
    assert script.status_code == 200
    assert "inbox/updates" not in script.text
    assert "data-updates-url" in page


async def test_nobody_signed_in_is_sent_to_sign_in(workspace: Workspace) -> None:
    async with workspace.client(None) as client:
        answer = await client.get("/workspace/inbox?state=open")

    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/workspace/sign-in?next=%2Fworkspace%2Finbox")


async def test_a_data_manager_sees_no_clinical_signal(workspace: Workspace) -> None:
    signal = raised("S1")
    await workspace.record(signal)

    async with workspace.client("dm") as client:
        page = (await client.get("/workspace/inbox")).text

    assert signal_url(signal) not in page
    assert signal_of(signal).subject_id not in page
    assert count(page, "open") == 0
