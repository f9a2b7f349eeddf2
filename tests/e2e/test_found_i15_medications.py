"""Outside tester, issue 15 (clinical pass 2), medications over the JSON channel: what a
site's EDC or pharmacy export sends that Vigil mishandles, each over real HTTP to the
running services (ingest, broker, rules, PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.support.results import concomitant_medication, enrolment, new_subject_id, stored_payloads
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

RAISED = "org.vigil.safety_signal.raised.v1"
DATA_QUALITY = "org.vigil.data_quality.issue_raised.v1"


def marker() -> str:
    """A stand-in for a patient's name that no other text contains."""
    return f"Qx{uuid.uuid4().hex[:8]}"


async def enrol(
    client: httpx.AsyncClient, db: asyncpg.Connection, subject: str, **extra: object
) -> None:
    answer = await client.post("/v1/subjects", json={**enrolment(subject), **extra})
    assert answer.status_code == 202, answer.text
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1 AND type LIKE '%enrolled%'",
            subject,
        ),
        timeout=60,
        what="the enrolment stored",
    )


async def _said(db: asyncpg.Connection, subject: str) -> list[str]:
    """Every signal raised and data-quality issue stored for a subject."""
    return [
        *await stored_payloads(db, subject, RAISED),
        *await stored_payloads(db, subject, DATA_QUALITY),
    ]


async def test_a_routes_free_text_never_reaches_a_data_quality_event(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Issue 15 item 3: a route Vigil cannot read raises 'route-not-recognised'. A site
    types the route as free text ("as Dr <name> said"). README and docs/security.md
    promise data-quality events carry no free text copied from input: the issue names the
    field, never its value."""
    subject, name = new_subject_id(), marker()
    await enrol(client, db, subject)
    medication = concomitant_medication(subject, route=f"as Dr {name} said")
    answer = await client.post("/v1/concomitant-medications", json=medication)
    assert answer.status_code == 202, answer.text
    issues = await eventually(
        lambda: stored_payloads(db, subject, DATA_QUALITY), timeout=60, what="a data-quality issue"
    )
    assert [p for p in issues if name in p] == [], "the route's free text is in a DQ event"


async def test_a_dose_units_free_text_never_reaches_a_data_quality_event(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Issue 15 item 10: what cannot be read raises a data-quality issue that names it
    (the field). A dose unit typed as free text ("mg per Dr <name>") must not be copied
    into the event (README / docs/security.md: no free text copied from input)."""
    subject, name = new_subject_id(), marker()
    await enrol(client, db, subject)
    medication = concomitant_medication(subject, dose_unit=f"mg per Dr {name}")
    answer = await client.post("/v1/concomitant-medications", json=medication)
    assert answer.status_code == 202, answer.text
    issues = await eventually(
        lambda: stored_payloads(db, subject, DATA_QUALITY), timeout=60, what="a data-quality issue"
    )
    assert [p for p in issues if name in p] == [], "the unit's free text is in a DQ event"


async def test_a_medication_started_in_2099_does_not_alert(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Issue 15 item 11: times that cannot be right are refused with the reason, or set
    aside with a data-quality issue; never judged as if true. Rituximab 1000 mg IV
    'started' 2099-01-01 is accepted (202) and raises the prohibited-biologic signal to the
    investigator and medical monitor as a protocol deviation. Expected: a 422 naming the
    start, or no signal and a data-quality issue."""
    subject = new_subject_id()
    await enrol(client, db, subject)
    medication = concomitant_medication(
        subject,
        drug="rituximab",
        dose="1000",
        route="intravenous",
        frequency="once",
        start="2099-01-01T08:00:00+08:00",
    )
    answer = await client.post("/v1/concomitant-medications", json=medication)
    if answer.status_code == 422:
        assert "start" in answer.text
        return
    assert answer.status_code == 202, answer.text
    await eventually(lambda: _said(db, subject), timeout=60, what="a signal or DQ issue")
    await asyncio.sleep(3)
    assert await stored_payloads(db, subject, RAISED) == [], "a signal from a 2099 start"
    assert await stored_payloads(db, subject, DATA_QUALITY), "no DQ issue names the start"


@pytest.mark.parametrize(("value", "unit"), [("62", "公斤"), ("136.7", "lbs")])
async def test_a_body_weight_as_sites_spell_its_unit_counts_for_hydroxychloroquine(
    client: httpx.AsyncClient, db: asyncpg.Connection, value: str, unit: str
) -> None:
    """The hydroxychloroquine rule takes the body weight nearest in time (AAO 2016: 5 mg/kg
    of real body weight). A Chinese EMR sends a weight of 62 '公斤' (the Chinese for
    kilogram, as '毫克' is for mg, which Vigil reads in doses), a US-style export 136.7
    'lbs' (62 kg; Vigil reads '[lb_av]' and 'lb'), after an enrolment weight of 80 kg.
    Hydroxychloroquine 400 mg/day is then 6.45 mg/kg. Vigil stores only a
    'unit-not-convertible' data-quality event for the weight and judges the dose on the
    old 80 kg (5.0 mg/kg): no finding reaches the investigator. Issue 15 item 9: accept
    the unit spellings laboratories use. Expected: the per-kg finding."""
    subject = new_subject_id()
    await enrol(client, db, subject, weight_kg=80)
    weight = {
        "subject_id": subject,
        "loinc_code": "29463-7",
        "value": value,
        "unit": unit,
        "collected_at": "2026-11-17T08:30:00+08:00",
        "source_message_id": f"LAB-{uuid.uuid4().hex[:12]}",
    }
    answer = await client.post("/v1/lab-results", json=weight)
    assert answer.status_code == 202, answer.text
    medication = concomitant_medication(subject, drug="hydroxychloroquine", dose="400")
    answer = await client.post("/v1/concomitant-medications", json=medication)
    assert answer.status_code == 202, answer.text
    raised = await eventually(
        lambda: _hydroxychloroquine_per_kg(db, subject), timeout=45, what="the per-kg finding"
    )
    assert raised


async def _hydroxychloroquine_per_kg(db: asyncpg.Connection, subject: str) -> list[str]:
    return [
        p
        for p in await stored_payloads(db, subject, RAISED)
        if "hydroxychloroquine-gt-5-mg-kg" in p
    ]
