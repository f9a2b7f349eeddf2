"""Found by the outside tester (i17): a signature comment holding a NUL character.

A comment is free text a person types or pastes into the assessment form. One holding
U+0000 (pasted from another program, or sent by a careless client) passes the form's
checks and the password check, then fails when the event is built: the app raises
(``AssessmentSigned`` refuses NUL as unstorable), so the person gets a 500 / a dropped
connection after having entered their password, and is not told which field is wrong.

Expected: the same answer as every other field the form refuses: 422 naming the comment
field, the form shown again, nothing recorded.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.integration.test_workspace_assessment import (
    PASSWORD,
    form,
    raised_and_planned,
    signatures,
)
from tests.support.notifier import ManualClock
from tests.support.signatures import workspace_app

pytestmark = pytest.mark.integration


async def test_a_comment_with_a_nul_character_is_refused_as_a_422_naming_the_comment(
    pool: asyncpg.Pool,
) -> None:
    facts, ctx = await raised_and_planned(pool, ManualClock())
    app, _ = workspace_app(pool, ctx, "pi1")
    url = f"/workspace/signals/{facts.signal_id}/assess"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.post(
            url, data=form(comment="Repeat Hb\x00 in 48 h.", password=PASSWORD)
        )
    assert answer.status_code == 422, (
        f"a NUL in the comment answered {answer.status_code}, not a 422 naming the comment"
    )
    assert "Comment" in answer.text
    assert await signatures(pool, facts.signal_id) == []
