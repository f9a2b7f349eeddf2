"""A result the laboratory sent and Vigil could not read reaches the study's medical
monitor: from the rules service's issue in the audit log, through the notifier's catch-up,
to a real SMTP server. Flagged abnormal: an alert to acknowledge; otherwise a notice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.notifier.entrypoints.catch_up import SignalCatchUp
from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.facts import handle_batch
from shared.events import LabResultUnreadable, wrap
from tests.integration.test_notifier_escalation import app_client
from tests.support.mail import MailCatcher
from tests.support.notifier import (
    context,
    email_worker,
    link_planned_for,
    plan,
    roster,
    stream_types,
)
from tests.support.services import REPO

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"
PACKS = load_rule_packs(REPO / "studies")
TEXT = "Hb for Quentin Marrowfield"  # the analyte as sent: reaches no message
PROBLEM = "the value is not a number, although OBX-2 says NM"


def unreadable(subject: str, flags: tuple[str, ...]) -> LabResultUnreadable:
    return LabResultUnreadable(
        study_id=STUDY,
        subject_id=subject,
        source_message_id=f"MSG-{subject}",
        segment="OBX[3]",
        field="OBX-5",
        problem=PROBLEM,
        error_code="102",
        loinc_code="718-7",
        analyte_text=TEXT,
        result_status="F",
        collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
        abnormal_flags=flags,
    )


async def test_unreadable_results_reach_the_medical_monitor_once(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    ctx = context(roster().model_copy(update={"study_id": STUDY}))
    abnormal, plain = unreadable("01-007", ("H",)), unreadable("01-008", ())
    batch = [wrap(abnormal, source="/test"), wrap(plain, source="/test")]
    async with pool.acquire() as connection, connection.transaction():
        outcome = await handle_batch(batch, PostgresRulesUnitOfWork(connection), PACKS)
    catch_up = SignalCatchUp(pool, ctx, grace_seconds=0, poll_seconds=1.0)
    while await catch_up.step(None):
        pass  # Kafka never brought the issues: the audit log is enough

    await email_worker(pool, port, ctx).send_due()

    def mail_about(prefix: str, subject: str) -> Any:
        (mail,) = mailbox.wait_for(
            lambda m: str(m.message["Subject"]) == f"[Vigil] {prefix}: {STUDY} subject {subject}"
        )
        return mail

    alert = mail_about("UNREADABLE ABNORMAL RESULT", "01-007")
    notice = mail_about("UNREADABLE RESULT", "01-008")
    for mail in (alert, notice):
        assert mail.envelope_to == ["mm@x.org"]
        assert "haemoglobin (LOINC 718-7) could not be read: OBX[3], field OBX-5: " in " ".join(
            mail.body.split()
        )
        assert PROBLEM in " ".join(mail.body.split())
        assert "Marrowfield" not in mail.everything
    assert "flagged it abnormal or positive" in alert.body
    assert "obtain the result from the laboratory and review it" in alert.body
    # the monitor acknowledges having chased it, in the issue's data-quality queue entry
    assert "/workspace/data-quality?issue=" in alert.body
    assert "/workspace/signals/" not in alert.body
    assert "ask the laboratory to send the result again" in notice.body
    assert "/workspace/signals/" not in notice.body
    # the issues again, by Kafka after the catch-up: nothing new is planned or sent
    assert await plan(pool, ctx, *outcome.data_quality) == 0
    assert await email_worker(pool, port, ctx).send_due() == 0
    told = await pool.fetch("SELECT signal_id, person_id FROM deliveries ORDER BY 1")
    unreadable_ids = {
        e.id
        for e in outcome.data_quality
        if e.payload().issue.endswith("result-unreadable")  # type: ignore[union-attr]
    }
    assert {(r["signal_id"], r["person_id"]) for r in told if r["signal_id"] in unreadable_ids} == {
        (i, "mm") for i in unreadable_ids
    }
    assert all(isinstance(i, uuid.UUID) for i in unreadable_ids)


async def test_the_monitor_s_token_acknowledges_having_chased_the_result(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(roster().model_copy(update={"study_id": STUDY}))
    batch = [wrap(unreadable("01-009", ("POS",)), source="/test")]
    async with pool.acquire() as connection, connection.transaction():
        outcome = await handle_batch(batch, PostgresRulesUnitOfWork(connection), PACKS)
    (issue,) = [
        e
        for e in outcome.data_quality
        if e.payload().issue != "unknown-subject"  # type: ignore[union-attr]
    ]
    assert await plan(pool, ctx, *outcome.data_quality) == 2  # this issue, and unknown-subject

    # the monitor's e-mail leads to the workspace (above); a system holding the message's
    # token acknowledges having chased the result through the API
    link = await link_planned_for(pool, ctx, "mm")
    assert f"/signals/{issue.id}/" in link
    token = link.split("token=", 1)[1]
    async with await app_client(pool, ctx) as client:
        done = await client.post(
            f"/v1/signals/{issue.id}/acknowledgements",
            json={"token": token, "assessment": "clinically-significant"},
        )
        assert done.status_code == 201, done.text
    async with pool.acquire() as connection:
        assert "acknowledged" in await stream_types(connection, issue.id)
