"""OWASP API2:2023 broken authentication: acknowledgement tokens, through a real notifier
process, a real PostgreSQL and a real SMTP server.

An acknowledgement token is the credential with which a system (a webhook receiver)
records a clinical assessment as a person; a person signs in the workspace, and no
e-mail carries a token. These tests try what someone holding a leaked key, an old token
or a used one would try, and check that live tokens are stored nowhere and mailed to
nobody.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.domain.links import LinkClaims
from services.notifier.handlers.digests import send_due_digests
from shared.events import SafetySignalReopened, SafetySignalResolved, SafetySignalRetracted
from tests.support.acknowledgement_stack import (
    ACTIVE_KEY,
    INVESTIGATOR,
    REMOVED_KEY,
    RETIRED_KEY,
    SUB_INVESTIGATOR,
    AcknowledgementStack,
    acknowledgement_types,
    api_acknowledge,
    follow_up,
    links_in,
    now,
    plan,
    raised_now,
    tokens_sent,
)
from tests.support.notifier import ManualClock, mint, signal_of
from tests.support.services import METRICS_TOKEN, REPO
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
PI, PI_MAIL = INVESTIGATOR


async def test_a_forged_far_future_expiry_is_refused_even_with_the_signing_key(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    signal_id = signal_of(envelope).signal_id
    forged = mint(signal_id, PI, key=ACTIVE_KEY, issued_at=now(), valid_for=timedelta(days=3650))
    async with notifier.client() as client:
        answer = await api_acknowledge(client, envelope, forged, "not-clinically-significant")
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "longer validity" in answer.json()["detail"]
    assert await acknowledgement_types(notifier_db, envelope) == []


async def test_a_token_issued_in_the_future_is_refused(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    ahead = mint(
        signal_of(envelope).signal_id, PI, key=ACTIVE_KEY, issued_at=now() + timedelta(hours=1)
    )
    async with notifier.client() as client:
        answer = await api_acknowledge(client, envelope, ahead, "clinically-significant")
    assert answer.status_code == 401, answer.text
    assert "future" in answer.json()["detail"]
    assert await acknowledgement_types(notifier_db, envelope) == []


async def test_a_retired_but_listed_key_still_verifies_and_a_removed_key_is_refused(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope, other = raised_now(), raised_now()
    await plan(notifier_db, notifier, envelope, other)
    before_rotation = mint(signal_of(envelope).signal_id, PI, key=RETIRED_KEY, issued_at=now())
    removed = mint(signal_of(other).signal_id, PI, key=REMOVED_KEY, issued_at=now())
    async with notifier.client() as client:
        recorded = await api_acknowledge(client, envelope, before_rotation, "sae-confirmed")
        refused = await api_acknowledge(client, other, removed, "sae-confirmed")
    assert recorded.status_code == 201, recorded.text
    assert refused.status_code == 401
    assert "does not hold" in refused.json()["detail"]
    assert await acknowledgement_types(notifier_db, envelope) == ["sae-confirmed"]
    assert await acknowledgement_types(notifier_db, other) == []


async def test_a_second_use_with_another_assessment_records_nothing_and_shows_the_first_by_whom(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    (token,) = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL)
    async with notifier.client() as client:
        first = await api_acknowledge(
            client, envelope, token, "clinically-significant", "repeat Hb"
        )
        second = await api_acknowledge(client, envelope, token, "not-clinically-significant")
        by_api = await api_acknowledge(client, envelope, token, "sae-confirmed", "changed")

    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    for again in (second, by_api):
        assert again.status_code == 200, again.text
        record = again.json()
        assert record["new"] is False
        assert (record["assessment"], record["comment"]) == ("clinically-significant", "repeat Hb")
        assert (record["person_id"], record["role"]) == (PI, "investigator")  # by whom
        assert record["recorded_at"] == first.json()["recorded_at"]  # when
        assert record["stands"] is True
    assert await acknowledgement_types(notifier_db, envelope) == ["clinically-significant"]


async def test_two_uses_at_once_record_one_assessment_and_both_answers_show_it(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    (token,) = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL)
    async with notifier.client() as client:
        answers = await asyncio.gather(
            api_acknowledge(client, envelope, token, "clinically-significant"),
            api_acknowledge(client, envelope, token, "not-clinically-significant"),
        )
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    recorded = await acknowledgement_types(notifier_db, envelope)
    assert len(recorded) == 1
    assert {a.json()["assessment"] for a in answers} == set(recorded)


@pytest.mark.parametrize(
    ("event_class", "fields", "status"),
    [
        (
            SafetySignalRetracted,
            {"reason": "the haemoglobin result was entered in error"},
            "retracted",
        ),
        (
            SafetySignalResolved,
            {"reason": "haemoglobin 10.4 g/dL: back in range", "input_event_ids": (uuid.uuid4(),)},
            "resolved",
        ),
    ],
)  # fmt: skip
async def test_acknowledging_a_retracted_or_resolved_signal_is_refused_with_the_reason(
    notifier: AcknowledgementStack,
    notifier_db: asyncpg.Pool,
    event_class: type[SafetySignalRetracted | SafetySignalResolved],
    fields: dict[str, object],
    status: str,
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    (token,) = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL)
    if event_class is SafetySignalResolved:
        fields = {**fields, "collected_at": now()}
    await plan(notifier_db, notifier, follow_up(envelope, event_class, **fields))
    reason = str(fields["reason"])
    async with notifier.client() as client:
        answer = await api_acknowledge(client, envelope, token, "clinically-significant")
    assert answer.status_code == 409, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["title"] == f"Signal {status}"
    assert reason in answer.json()["detail"]
    assert await acknowledgement_types(notifier_db, envelope) == []


async def test_a_reopened_signal_is_acknowledged_again_with_the_fresh_token_of_its_alert(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    (first,) = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL)
    async with notifier.client() as client:
        assert (
            await api_acknowledge(client, envelope, first, "clinically-significant")
        ).status_code == 201
        await plan(
            notifier_db,
            notifier,
            follow_up(
                envelope,
                SafetySignalResolved,
                reason="haemoglobin 10.4 g/dL: back in range",
                input_event_ids=(uuid.uuid4(),),
                collected_at=now(),
            ),
        )
        await plan(
            notifier_db,
            notifier,
            follow_up(envelope, SafetySignalReopened, reason="the 10.4 g/dL result was withdrawn"),
        )
        old, fresh = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL, count=2)
        assert old == first
        assert fresh != first  # the reopening message was issued a new token
        again = await api_acknowledge(client, envelope, first, "not-clinically-significant")
        renewed = await api_acknowledge(client, envelope, fresh, "not-clinically-significant")
    assert again.status_code == 200  # the old link recorded its one assessment
    assert again.json()["stands"] is False  # ... which the reopening set aside
    assert renewed.status_code == 201, renewed.text
    assert await acknowledgement_types(notifier_db, envelope) == [
        "clinically-significant",
        "not-clinically-significant",
    ]  # fmt: skip


async def test_no_live_token_is_mailed_or_stored_anywhere_in_the_database_after_sending(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    alert, finding = raised_now(), raised_now(severity="finding", grade=1)
    await plan(
        notifier_db, notifier, alert, finding
    )  # the finding waits for the sub-investigator's digest
    tomorrow = ManualClock(now() + timedelta(days=1))
    assert (
        await send_due_digests(
            PostgresNotifierUnitOfWork(notifier_db),
            dataclasses.replace(notifier.context, clock=tomorrow),
        )
        >= 1
    )
    subject = signal_of(finding).subject_id
    digest = notifier.mailbox.wait_for(
        lambda m: m.envelope_to == [SUB_INVESTIGATOR[1]] and "DIGEST" in str(m.message["Subject"])
        and subject in m.body,
        timeout=60,
    )[0]  # fmt: skip
    # the digest's item leads to the finding's page in the workspace
    assert links_in(digest, signal_of(finding).signal_id)
    (token,) = await tokens_sent(notifier, notifier_db, alert, PI_MAIL)
    async with notifier.client() as client:
        assert (
            await api_acknowledge(client, alert, token, "clinically-significant")
        ).status_code == 201
    await eventually(
        lambda: notifier_db.fetchval(
            "SELECT count(*) = 0 FROM deliveries WHERE status = 'pending'"
        ),
        timeout=60,
        what="every planned message sent",
    )

    # every token issued with a message (its claims are in the outbox and the digest items)
    claims = [
        row["claims"]
        for row in await notifier_db.fetch(
            "SELECT link_claims::text AS claims FROM deliveries WHERE link_claims IS NOT NULL "
            "UNION ALL SELECT jsonb_array_elements(item_link_claims)::text FROM deliveries "
            "WHERE item_link_claims IS NOT NULL"
        )
        if row["claims"] != "null"
    ]
    tokens = {notifier.context.links.token(LinkClaims.model_validate_json(c)) for c in claims}
    assert len(tokens) >= 4  # the alerts, the digest item, and the other tests' tokens
    mailed = "".join(mail.everything for mail in notifier.mailbox.matching(lambda m: True))
    assert mailed  # the scan reads what was sent
    assert not [t for t in tokens if t in mailed or t.rsplit(".", 1)[1] in mailed]
    assert "token=" not in mailed
    needles = sorted(tokens | {t.rsplit(".", 1)[1] for t in tokens})  # and each signature
    columns = await notifier_db.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = 'public'
             AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',
                               'bytea', 'ARRAY')"""
    )
    scanned = {(c["table_name"], c["column_name"]) for c in columns}
    assert {
        ("deliveries", "content"),
        ("digest_items", "line"),
        ("events", "payload_json"),
    } <= scanned

    async def hits(needles: list[str]) -> dict[str, int]:
        found = {}
        for column in columns:
            table, name = f'"{column["table_name"]}"', f'"{column["column_name"]}"'
            text = (
                f"encode({name}, 'escape')" if column["data_type"] == "bytea" else f"{name}::text"
            )
            count = await notifier_db.fetchval(
                f"SELECT count(*) FROM {table} WHERE EXISTS "
                f"(SELECT 1 FROM unnest($1::text[]) AS n WHERE strpos({text}, n) > 0)",
                needles,
            )
            if count:
                found[f"{column['table_name']}.{column['column_name']}"] = count
        return found

    assert await hits([subject]), "the scan finds what is there (the subject id)"
    assert await hits(needles) == {}


def test_the_notifier_refuses_to_start_in_production_without_a_link_key(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env = {
        **base,
        "VIGIL_STUDY_DIR": str(REPO / "studies"),
        "PYTHONPATH": str(REPO),
        "VIGIL_METRICS_TOKEN": METRICS_TOKEN,  # so that the link key is what is refused
    }

    def start(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vigil", "notifier"],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    for refused in (
        start(),  # production is the default
        start(
            VIGIL_ENVIRONMENT="production", VIGIL_NOTIFIER_LINK_SECRET="change-me-development-only"
        ),
        start(VIGIL_NOTIFIER_LINK_KEYS="k1:short-secret"),
    ):
        assert refused.returncode == 2, refused.stderr
        assert "VIGIL_NOTIFIER_LINK_KEYS" in refused.stderr
        assert "short-secret" not in refused.stderr
    assert "shorter than 32 bytes" in refused.stderr  # the last: a key too short
