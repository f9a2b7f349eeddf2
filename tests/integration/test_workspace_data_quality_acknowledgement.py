"""A data-quality issue its reader must acknowledge (a protocol analyte in a unit Vigil
cannot convert: it may hide a critical value), over a real PostgreSQL: its notification is
scoped to the subject's site, its e-mailed link opens its entry in the data-quality queue,
and marking it reviewed there, by a person allowed to acknowledge it, stops its
escalation (and cancels the escalation messages still waiting); a review by someone who
may not acknowledge it leaves the escalation running."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from services.notifier import handlers
from services.notifier.domain.roster import Roster
from shared.events.notifications import (
    DataQualityIssueAcknowledged,
    NotificationOpened,
    notification_stream,
)
from shared.events.reviews import DataQualityIssueReviewed
from tests.support.notifier import (
    DATA_MANAGER,
    ManualClock,
    context,
    in_db,
    plan,
    roster,
    stream_types,
)
from tests.support.signatures import (
    client,
    data_quality_issue,
    haemoglobin,
    signal_on_result,
    store,
    workspace_app,
)

pytestmark = pytest.mark.integration


def monitored() -> Roster:
    """The test roster with a data manager, and the safety desk as the medical monitor's
    backup (so an unacknowledged issue escalates to somebody)."""
    base = roster().model_dump(mode="json")
    monitors = [
        {"id": "mm", "name": "MM", "role": "medical_monitor", "email": "mm@x.org",
         "backup": "mm2"},
        {"id": "mm2", "name": "Desk", "role": "safety_desk", "email": "mm2@x.org"},
        DATA_MANAGER,
    ]  # fmt: skip
    return Roster.model_validate({**base, "study_contacts": monitors})


async def opened_issues(pool: asyncpg.Pool, clock: ManualClock) -> dict[str, uuid.UUID]:
    """Two unconvertible-unit issues about results of subjects enrolled at S1, and one
    about a subject nobody enrolled, each told to the medical monitor."""
    first, second = signal_on_result("S1"), signal_on_result("S1")
    stray = haemoglobin("NOT-ENROLLED-2")
    issues = {
        "first": data_quality_issue(first.subject_id, first.result),
        "second": data_quality_issue(second.subject_id, second.result),
        "stray": data_quality_issue("NOT-ENROLLED-2", stray),
    }
    await store(pool, first.enrolment, first.result, second.enrolment, second.result, stray)
    await store(pool, *issues.values())
    assert await plan(pool, context(monitored(), clock), *issues.values()) == 3
    return {name: envelope.id for name, envelope in issues.items()}


async def opening(pool: asyncpg.Pool, issue_id: uuid.UUID) -> NotificationOpened:
    async with in_db(pool) as uow:
        (opened, *_) = await uow.notification_events(issue_id)
    assert isinstance(opened, NotificationOpened)
    return opened


async def review(
    pool: asyncpg.Pool, clock: ManualClock, person_id: str, issue_id: uuid.UUID, **form: str
) -> int:
    app, _ = workspace_app(pool, context(monitored(), clock), person_id)
    async with client(app) as http:
        answer = await http.post(
            f"/workspace/data-quality/{issue_id}/review",
            data={"csrf": "test-csrf", "note": "asked the lab for SI units", **form},
        )
    return answer.status_code


async def test_the_notification_of_an_issue_names_its_subjects_site_when_the_log_knows_it(
    pool: asyncpg.Pool,
) -> None:
    issues = await opened_issues(pool, ManualClock())
    first = await opening(pool, issues["first"])
    assert first.site_id == "S1"
    assert first.message["site_id"] == "S1"  # its message is told in the site's time
    assert first.acknowledge_by is not None  # it asks for an acknowledgement
    assert (await opening(pool, issues["stray"])).site_id is None  # nobody enrolled it


async def test_an_issue_escalates_on_a_later_clock_unless_reviewed_by_whoever_may_acknowledge(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    issues = await opened_issues(pool, clock)
    first, second = issues["first"], issues["second"]
    ctx = context(monitored(), clock)
    # the medical monitor told reviews the first; the data manager (who may not
    # acknowledge a signal) reviews the second
    clock.advance(hours=1)
    assert await review(pool, clock, "mm", first) == 303
    assert await review(pool, clock, "dm", second) == 303
    async with pool.acquire() as connection:
        assert await stream_types(connection, first) == ["opened", "issue_acknowledged"]
        assert await stream_types(connection, second) == ["opened"]
    opened = await opening(pool, first)
    assert opened.acknowledge_by is not None

    clock.current = opened.acknowledge_by + timedelta(minutes=1)
    await handlers.escalate_due(in_db(pool), ctx)
    async with pool.acquire() as connection:
        assert await stream_types(connection, first) == ["opened", "issue_acknowledged"]
        assert await stream_types(connection, second) == ["opened", "escalated"]
        pending = await connection.fetch(
            "SELECT person_id, status FROM deliveries WHERE signal_id = $1 AND purpose = $2",
            second,
            "escalation-1",
        )
    assert [(r["person_id"], r["status"]) for r in pending] == [("mm2", "pending")]

    # the backup told by the escalation (the safety desk: allowed as one told) reviews it:
    # escalation stops, its message waiting to go out is cancelled, and a later clock
    # escalates neither issue (only the stray one, which nobody reviewed)
    assert await review(pool, clock, "mm2", second) == 303
    async with pool.acquire() as connection:
        assert await stream_types(connection, second) == [
            "opened",
            "escalated",
            "issue_acknowledged",
        ]
        status = await connection.fetchval(
            "SELECT status FROM deliveries WHERE signal_id = $1 AND purpose = $2",
            second,
            "escalation-1",
        )
        acknowledged = await connection.fetchval(
            "SELECT payload_json FROM events WHERE stream_id = $1 AND type = $2",
            notification_stream(second),
            DataQualityIssueAcknowledged.event_type,
        )
    assert status == "cancelled"
    assert '"person_id": "mm2"' in acknowledged or '"person_id":"mm2"' in acknowledged
    clock.advance(days=30)
    await handlers.escalate_due(in_db(pool), ctx)
    async with pool.acquire() as connection:
        assert await stream_types(connection, first) == ["opened", "issue_acknowledged"]
        assert (await stream_types(connection, second))[-1] == "issue_acknowledged"
        assert "escalated" in await stream_types(connection, issues["stray"])


async def test_the_queue_entry_an_email_links_to_offers_the_acknowledgement_and_shows_it(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    issues = await opened_issues(pool, clock)
    app, _ = workspace_app(pool, context(monitored(), clock), "mm")
    async with client(app) as http:
        before = await http.get(f"/workspace/data-quality?issue={issues['first']}")
        assert before.status_code == 200
        assert "Acknowledgement due by" in before.text
        assert "Mark reviewed and acknowledge" in before.text
        assert await review(pool, clock, "mm", issues["first"]) == 303
        after = await http.get(f"/workspace/data-quality?issue={issues['first']}")
    assert after.status_code == 200
    assert "Acknowledged by mm: escalation stopped" in after.text
    assert "Acknowledgement due by" not in after.text
    # the data manager may review it too, but their review acknowledges nothing
    app, _ = workspace_app(pool, context(monitored(), clock), "dm")
    async with client(app) as http:
        page = await http.get(f"/workspace/data-quality?issue={issues['second']}")
    assert page.status_code == 200
    assert "Acknowledgement due by" in page.text
    assert "Mark reviewed and acknowledge" not in page.text


async def test_a_review_form_with_a_repeated_field_is_a_422_naming_it_and_records_nothing(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    issues = await opened_issues(pool, clock)
    app, _ = workspace_app(pool, context(monitored(), clock), "mm")
    async with client(app) as http:
        answer = await http.post(
            f"/workspace/data-quality/{issues['first']}/review",
            content="csrf=test-csrf&note=Lab-7731&note=Lab-7732",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 422
    assert "Note:" in answer.text
    assert "Lab-773" not in answer.text  # the values are not echoed
    rows = await pool.fetch(
        "SELECT type FROM events WHERE type = ANY($1::text[])",
        [DataQualityIssueReviewed.event_type, DataQualityIssueAcknowledged.event_type],
    )
    assert rows == []
