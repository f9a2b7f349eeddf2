"""The workspace signal page over a real PostgreSQL: the explanation in the site's time,
each input with its audit-log position, what became of the signal, who was told when
(never an address), signed assessments, the way to assess, and the same 404 for a signal
outside the person's scope as for one that does not exist."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from shared.db.pool import create_pool
from shared.events import (
    Envelope,
    LabResultReported,
    ResultStatus,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalResolved,
    wrap,
)
from shared.events.notifications import (
    AssessmentSigned,
    DeliveryAttempted,
    DeliveryFailed,
    DeliverySucceeded,
    NotificationEscalated,
    Recipient,
)
from tests.support.components import as_service_role
from tests.support.notifier import STUDY, T0, lifecycle, raised, signal_of
from tests.support.workspace_inbox import Workspace, notice, opened, signal_url

pytestmark = pytest.mark.integration
SUBJECT = "SP-001"


@pytest.fixture
async def workspace(fresh_dsn: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Workspace]:
    pool = await create_pool(as_service_role(fresh_dsn))
    try:
        yield Workspace(pool)
    finally:
        await pool.close()


def haemoglobin() -> Envelope:
    result = LabResultReported(
        study_id=STUDY, subject_id=SUBJECT, loinc_code="718-7", value=Decimal("5.0"),
        unit="mmol/L", canonical_value=Decimal("8.06"), canonical_unit="g/dL",
        collected_at=T0, source_message_id="LAB-1",
    )  # fmt: skip
    return wrap(result, source="/ingest/hl7", time=T0)


def the_signal(lab: Envelope, site: str = "S1") -> Envelope:
    computed = {
        "comparison": "8.06 <= 9",
        "reported_value": "5.0",
        "reported_unit": "mmol/L",
        "value_in_rule_unit": "8.06",
        "rule_unit": "g/dL",
        "baseline": "12.1",
    }
    signal = raised(
        site, subject_id=SUBJECT, input_event_ids=(lab.id,), computed_values=computed,
        grade=2, grading="CTCAE v5.0 Anemia", observed_value=Decimal("8.06"),
        rule_source="Registry NCT05262686, exclusion criteria",
    )  # fmt: skip
    # the rules service raises a signal under its own id
    return signal.model_copy(update={"id": signal_of(signal).signal_id})


def delivery(
    kind: type[DeliverySucceeded] | type[DeliveryFailed],
    signal: Envelope,
    person: str,
    **more: object,
) -> DeliverySucceeded | DeliveryFailed:
    return kind(
        **notice(signal), delivery_id=uuid.uuid5(uuid.NAMESPACE_URL, person), person_id=person,
        channel="email", purpose="alert", attempt=1, **more,
    )  # fmt: skip


async def test_the_page_says_what_was_found_why_on_which_facts_and_what_followed(
    workspace: Workspace,
) -> None:
    lab = haemoglobin()
    signal = the_signal(lab)
    worse = SafetySignalEscalated(
        **lifecycle(signal_of(signal)), previous_grade=2, grade=3, input_event_ids=(lab.id,),
        computed_values={
            "comparison": "7.4 <= 9", "reported_value": "7.4", "reported_unit": "g/dL",
            "value_in_rule_unit": "7.4", "rule_unit": "g/dL", "baseline": "12.1",
        },
        observed_value=Decimal("7.4"), observed_unit="g/dL",
        collected_at=T0 + timedelta(days=1),
    )  # fmt: skip
    positions = await workspace.record(lab, signal)
    later = await workspace.record(wrap(worse, source="/vigil/rules", time=T0))

    async with workspace.client("pi1") as client:
        answer = await client.get(signal_url(signal))

    assert answer.status_code == 200
    page = answer.text
    # the explanation of what it rests on now (the escalation), the specimen's time in the
    # site's zone (S1: Shanghai); the words it was raised with kept, marked superseded
    assert "Haemoglobin was 7.4 g/dL in the specimen collected 2026-06-02 17:00 CST " in page
    assert "The rule fires on &lt;= 9 g/dL: 7.4 &lt;= 9." in page
    assert "<p>CTCAE v5.0 Anemia: grade 3.</p>" in page
    assert "<del>CTCAE v5.0 Anemia: grade 2.</del>" in page
    assert "Haemoglobin was 5.0 mmol/L in the specimen collected 2026-06-01 17:00 CST " in page
    assert "(Asia/Shanghai), which is 8.06 g/dL." in page
    assert "The rule fires on &lt;= 9 g/dL: 8.06 &lt;= 9." in page
    assert "CTCAE v5.0 Anemia: grade 2." in page
    assert "Registry NCT05262686, exclusion criteria" in page
    assert "baseline" in page  # a computed value the sentences do not tell
    # each input with its audit-log position, and the subject's audit trail
    assert f'#position-{positions[0].position}">{positions[0].position}</a>' in page
    assert (
        "lab result 718-7 = 5 mmol/L, status F, collected 2026-06-01 17:00 CST (Asia/Shanghai)"
        in page
    )
    assert f"/workspace/studies/{STUDY}/subjects/{SUBJECT}/audit" in page
    assert f'/workspace/studies/{STUDY}/subjects/{SUBJECT}"' in page
    # what became of it since
    assert f'<th scope="row">{later[0].position}</th>' in page
    assert "escalated from grade 2 to 3" in page
    assert "7.4 g/dL" in page


async def test_the_page_says_who_was_told_when_and_never_where(workspace: Workspace) -> None:
    lab = haemoglobin()
    signal = the_signal(lab)
    await workspace.record(lab, signal)
    await workspace.record(
        opened(signal),
        DeliveryAttempted(**notice(signal), delivery_id=uuid.uuid4(), person_id="pi1",
                          channel="email", purpose="alert", attempt=1, message_id="<m1@vigil>"),
        delivery(DeliverySucceeded, signal, "pi1"),
        delivery(DeliveryFailed, signal, "sub1", error="550 <sub1@x.org>: no such user",
                 retry_at=None),
        NotificationEscalated(**notice(signal), level=1, overdue_since=T0 + timedelta(hours=24),
                              recipients=(Recipient(person_id="mm", role="medical_monitor"),),
                              acknowledge_by=None),
    )  # fmt: skip

    async with workspace.client("pi1") as client:
        page = (await client.get(signal_url(signal))).text

    assert "first told" in page
    assert "pi1 (investigator)" in page
    assert "sent (attempt 1)" in page
    assert "failed (attempt 1); given up on this channel" in page
    assert "sub_investigator" not in page  # roles in words
    assert "sub investigator" in page  # sub1's role, from the roster
    assert "nobody acknowledged in time: escalated" in page
    assert "mm (medical monitor)" in page
    assert "@" not in page  # no address, not even inside a channel's error
    assert "attempt 1 begun" in page  # an attempt without an outcome is shown as such
    assert "Escalation level 1." in page


async def test_a_signed_assessment_shows_the_printed_name_time_and_meaning(
    workspace: Workspace,
) -> None:
    lab = haemoglobin()
    signal = the_signal(lab)
    signed_at = datetime.fromisoformat("2026-06-02T01:30:00+00:00")
    signed = AssessmentSigned(
        **notice(signal), person_id="pi1", role="investigator", printed_name="PI 1",
        meaning="clinically-significant", signed_at=signed_at, confirmed_by="password+totp",
        comment="Repeat Hb in 48 h. <b>not markup</b>",
        episode_event_id=signal.id, raised_event_id=signal.id, raised_position=2,
        latest_signal_event_id=signal.id, latest_signal_position=2,
        input_event_ids=(lab.id,), facts_digest="sha256:" + "0" * 64,
    )  # fmt: skip
    await workspace.record(lab, signal, opened(signal))
    async with workspace.client("pi1") as client:
        before = (await client.get(signal_url(signal))).text
    await workspace.record(signed)
    async with workspace.client("pi1") as client:
        after = (await client.get(signal_url(signal))).text

    assert "Nobody has signed an assessment of this signal yet." in before
    assert "Assess and sign" in before
    # the signer is told they signed, not offered to sign again; no "just signed" notice
    # on a plain visit
    assert "Assess and sign" not in after
    assert "You signed an assessment of this signal" in after
    assert "Your signature is recorded" not in after
    # the manifestation, as the assessment page shows it (_signatures.html)
    assert "<dt>Signed by</dt><dd>PI 1 (pi1, investigator)</dd>" in after
    assert "<dt>Date and time signed</dt><dd>2026-06-02 09:30 CST (Asia/Shanghai)</dd>" in after
    assert "<dt>Meaning of the signature</dt><dd>Clinically significant</dd>" in after
    assert "State: <strong>acknowledged</strong>" in after
    # the signer's own words are part of the record, escaped
    assert "Repeat Hb in 48 h. &lt;b&gt;not markup&lt;/b&gt;" in after
    assert "<b>not markup</b>" not in after


async def test_the_assess_link_is_offered_to_who_may_assess_an_open_signal(
    workspace: Workspace,
) -> None:
    lab = haemoglobin()
    open_signal, resolved_signal = the_signal(lab), the_signal(lab)
    resolution = SafetySignalResolved(
        **lifecycle(signal_of(resolved_signal)), reason="haemoglobin 10.2 g/dL: back in range",
        input_event_ids=(), collected_at=T0 + timedelta(days=3),
    )  # fmt: skip
    await workspace.record(lab, open_signal, resolved_signal, wrap(resolution, source="/r"))

    async with workspace.client("pi1") as client:
        open_page = (await client.get(signal_url(open_signal))).text
        resolved_page = (await client.get(signal_url(resolved_signal))).text
    async with workspace.client("mm") as client:
        monitors = (await client.get(signal_url(open_signal))).text

    assess = f'href="{signal_url(open_signal)}/assess">Assess and sign</a>'
    assert assess in open_page
    assert assess in monitors
    assert "Assess and sign" not in resolved_page
    assert "This signal is resolved: there is nothing to assess." in resolved_page
    assert "haemoglobin 10.2 g/dL: back in range" in resolved_page


async def test_another_sites_signal_is_answered_as_if_it_did_not_exist(
    workspace: Workspace,
) -> None:
    lab = haemoglobin()
    elsewhere = the_signal(lab, site="S2")
    await workspace.record(lab, elsewhere)

    async with workspace.client("pi1") as client:
        foreign = await client.get(signal_url(elsewhere))
        unknown = await client.get(f"/workspace/signals/{uuid.uuid4()}")
        malformed = await client.get("/workspace/signals/not-a-uuid<script>")
    async with workspace.client("pi2") as client:
        own = await client.get(signal_url(elsewhere))
    async with workspace.client("dm") as client:
        data_manager = await client.get(signal_url(elsewhere))

    assert own.status_code == 200
    for answer in (foreign, unknown, malformed, data_manager):
        assert answer.status_code == 404
        assert SUBJECT not in answer.text
        assert "script" not in answer.text
    assert foreign.text == unknown.text


def _section(page: str, start: str, end: str) -> str:
    return page.split(start, 1)[1].split(end, 1)[0]


async def test_an_amended_signal_says_what_it_rests_on_now_and_marks_the_rest_superseded(
    workspace: Workspace,
) -> None:
    lab = haemoglobin()
    signal = the_signal(lab)
    corrected = LabResultReported(
        study_id=STUDY, subject_id=SUBJECT, loinc_code="718-7", value=Decimal("4.5"),
        unit="mmol/L", canonical_value=Decimal("7.25"), canonical_unit="g/dL",
        collected_at=T0, source_message_id="LAB-1", result_status=ResultStatus.CORRECTED,
    )  # fmt: skip
    correction = wrap(corrected, source="/ingest/hl7", time=T0)
    amended = SafetySignalAmended(
        **lifecycle(signal_of(signal)), reason="a source result was corrected",
        previous_grade=2, grade=3, input_event_ids=(correction.id,),
        superseded_event_ids=(lab.id,),
        computed_values={
            "comparison": "7.25 <= 9", "reported_value": "4.5", "reported_unit": "mmol/L",
            "value_in_rule_unit": "7.25", "rule_unit": "g/dL",
        },
        observed_value=Decimal("7.25"), observed_unit="g/dL", collected_at=T0,
    )  # fmt: skip
    first = await workspace.record(lab, signal)
    second = await workspace.record(correction, wrap(amended, source="/vigil/rules", time=T0))

    async with workspace.client("pi1") as client:
        page = (await client.get(signal_url(signal))).text

    why = _section(page, "What was found, and why", "How bad, and what to do")
    assert "Haemoglobin was 4.5 mmol/L in the specimen collected" in why
    assert "The rule fires on &lt;= 9 g/dL: 7.25 &lt;= 9." in why
    assert f"since audit-log position {second[1].position}" in why
    # the words it was raised with, kept and marked as superseded
    assert "<del>Haemoglobin was 5.0 mmol/L" in why
    how = _section(page, "How bad, and what to do", "The facts it rests on")
    assert "<p>CTCAE v5.0 Anemia: grade 3.</p>" in how
    assert "<del>CTCAE v5.0 Anemia: grade 2.</del>" in how
    rests_on = _section(page, "The facts it rests on", "What became of it since")
    now, before = rests_on.split("Superseded: facts the signal rested on before", 1)
    # what it rests on now: the corrected result, with its audit-log position
    assert f'#position-{second[0].position}">{second[0].position}</a>' in now
    assert "lab result 718-7 = 4.5 mmol/L, status C" in now
    assert "= 5 mmol/L" not in now
    # the superseded one, with its own position, marked
    assert f'#position-{first[0].position}">{first[0].position}</a>' in before
    assert "<del>lab result 718-7 = 5 mmol/L, status F" in before
    assert "(superseded)" in before
