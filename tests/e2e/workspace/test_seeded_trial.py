"""The workspace stack the flows run on: the trial went through the real pipeline (ingest,
the broker, the rules service) into an intact audit log, the notifier planned and mailed
its signals, and its pages load in the browser without anything leaving loopback."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page

from shared.db.pool import create_pool
from shared.events.notifications import notification_stream
from shared.eventstore.audit import audit_verify
from tests.e2e.workspace.conftest import Shot
from tests.support.browser import LoopbackGuard
from tests.support.waiting import eventually
from tests.support.workspace_stack import WorkspaceStack, missing_from_audit_log
from tests.support.workspace_trial import (
    ANAEMIA,
    EXPECTED,
    HYS_LAW,
    NEUTROPENIA,
    SITE_1,
    SITE_2,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]
LINK = re.compile(r"https?://\S+")


async def test_the_trial_produces_every_kind_of_signal_and_issue_in_the_audit_log(
    workspace: WorkspaceStack,
) -> None:
    assert await missing_from_audit_log(workspace, EXPECTED) == []


@pytest.mark.parametrize(
    ("subject", "rule"), [("01-002", HYS_LAW), ("01-003", ANAEMIA), ("02-001", NEUTROPENIA)]
)
async def test_the_signals_the_flows_assess_are_still_open(
    workspace: WorkspaceStack, subject: str, rule: str
) -> None:
    closing = await workspace.events(
        "type IN ('org.vigil.safety_signal.resolved.v1', 'org.vigil.safety_signal.retracted.v1')"
        " AND payload->>'signal_id' = $1",
        str(workspace.signal(subject, rule)),
    )
    assert closing == []


async def test_the_signals_are_raised_at_the_subjects_sites(workspace: WorkspaceStack) -> None:
    sites = {
        row["subject_id"]: row["payload"]["site_id"]
        for row in await workspace.events("type = 'org.vigil.safety_signal.raised.v1'")
    }
    assert sites["01-002"] == SITE_1
    assert sites["02-001"] == SITE_2


async def test_the_seeded_audit_log_verifies(workspace: WorkspaceStack) -> None:
    pool = await create_pool(workspace.admin_dsn)
    try:
        result = await audit_verify(pool, workspace.log_dir / "verify-anchors.jsonl")
    finally:
        await pool.close()
    assert result.ok, result.lines()


async def test_the_investigator_is_mailed_a_link_to_this_notifier(
    workspace: WorkspaceStack, page: Page, guard: LoopbackGuard, shot: Shot
) -> None:
    signal_id = str(workspace.signal("01-002", HYS_LAW))
    mails = await asyncio.to_thread(
        workspace.mailbox.wait_for,
        lambda m: m.envelope_to == ["pi.site01@vigil.example.org"] and signal_id in m.body,
        timeout=60,
    )
    links = [link for link in LINK.findall(mails[0].body) if signal_id in link]
    assert links, mails[0].body
    assert links[0].startswith(workspace.url + "/")
    opened = await page.goto(links[0])
    assert opened is not None
    assert opened.ok, opened.status
    await shot(page, "alert-link")
    assert guard.requested
    assert guard.left_loopback == []


async def test_the_notifier_recorded_what_it_did_about_each_open_signal(
    workspace: WorkspaceStack,
) -> None:
    stream = notification_stream(workspace.signal("01-002", HYS_LAW))

    async def recorded() -> set[str]:
        types = {row["type"] for row in await workspace.events("stream_id = $1", stream)}
        return types if "org.vigil.notification.delivery_succeeded.v1" in types else set()

    types = await eventually(recorded, timeout=60, what="a delivery of the Hy's law signal")
    assert "org.vigil.notification.opened.v1" in types
