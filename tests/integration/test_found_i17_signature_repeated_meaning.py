"""Found by the outside tester (i17): a signature form carrying two meanings.

The meaning of an electronic signature (21 CFR 11.50(a)(3)) must be exactly what the
signer chose. A form body with ``meaning`` twice (a tampered or replayed-and-edited form,
a careless client: ``meaning=sae-confirmed&meaning=not-clinically-significant``) is signed
with the first value taken silently: the record says "reported as a serious adverse event"
although the request also said "not clinically significant".

Expected: an ambiguous signature is refused, 422 naming the meaning, nothing recorded.
"""

from __future__ import annotations

from urllib.parse import urlencode

import asyncpg
import pytest

from tests.integration.test_workspace_assessment import (
    PASSWORD,
    raised_and_planned,
    signatures,
)
from tests.support.notifier import ManualClock
from tests.support.signatures import client, workspace_app

pytestmark = pytest.mark.integration


async def test_a_signature_with_two_meanings_is_refused(pool: asyncpg.Pool) -> None:
    facts, ctx = await raised_and_planned(pool, ManualClock())
    app, _ = workspace_app(pool, ctx, "pi1")
    body = urlencode(
        [
            ("csrf", "test-csrf"),
            ("meaning", "sae-confirmed"),
            ("meaning", "not-clinically-significant"),
            ("comment", ""),
            ("password", PASSWORD),
        ]
    )
    async with client(app) as http:
        answer = await http.post(
            f"/workspace/signals/{facts.signal_id}/assess",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    recorded = await signatures(pool, facts.signal_id)
    assert answer.status_code == 422, (
        f"two meanings answered {answer.status_code}; recorded: "
        f"{[signature['meaning'] for signature in recorded]}"
    )
    assert "Meaning" in answer.text
    assert recorded == []
