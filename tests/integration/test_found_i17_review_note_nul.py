"""Found by the outside tester (i17): a data-quality review note holding a NUL character.

"Mark reviewed" takes an optional free-text note. One holding U+0000 passes the form's
checks (CSRF, length) and then makes the app raise while building the
``DataQualityIssueReviewed`` event (NUL is unstorable): the data manager gets
"Internal Server Error" and no idea what was wrong.

Expected: like the too-long note, a 422 that names the note ("Note: ..."), nothing
recorded.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from shared.events.reviews import DataQualityIssueReviewed
from tests.integration.test_workspace_data_quality import issues_at_sites, with_data_manager
from tests.support.notifier import ManualClock, context
from tests.support.signatures import workspace_app

pytestmark = pytest.mark.integration


async def test_a_review_note_with_a_nul_character_is_a_422_naming_the_note(
    pool: asyncpg.Pool,
) -> None:
    found = await issues_at_sites(pool)
    ctx = context(with_data_manager(), ManualClock())
    issue = found["S1"]
    app, _ = workspace_app(pool, ctx, "dm")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.post(
            f"/workspace/data-quality/{issue.id}/review",
            data={"csrf": "test-csrf", "note": "Lab asked\x00 to resend"},
        )
    assert answer.status_code == 422, (
        f"a NUL in the note answered {answer.status_code}, not a 422 naming the note"
    )
    assert "Note:" in answer.text
    rows = await pool.fetch(
        "SELECT 1 FROM events WHERE type = $1", DataQualityIssueReviewed.event_type
    )
    assert rows == []
