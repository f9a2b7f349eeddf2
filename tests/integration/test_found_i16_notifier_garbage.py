"""Found while breaking issue 16's shared decoding consumer from outside: records on the
notifier's topics that it cannot act on. The brief of the reshaping: what the notifier
cannot handle goes to the dead-letter topic with a reason that names the problem and no
value, the notifier stays ready, and the good records around it are handled. Checked
with the real notifier process, broker, database and SMTP server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events import CONTENT_TYPE, LabResultReported, wrap
from shared.events.topics import DATA_QUALITY, DEAD_LETTERS, SAFETY_SIGNALS
from tests.support import components
from tests.support.mail import MailCatcher, running_smtp_server
from tests.support.notifier import implausible, raised
from tests.support.services import METRICS_TOKEN, service_env, start_service
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"
KEY = b"one-partition"
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@dataclass
class Notifier:
    url: str
    bootstrap: str
    mail: MailCatcher


@pytest.fixture
async def notifier(fresh_dsn: str, tmp_path: Path) -> AsyncIterator[Notifier]:
    port = free_port()
    with components.tansu() as broker, running_smtp_server() as (smtp_port, mail):
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_port,
            VIGIL_NOTIFIER_PORT=str(port),
        )
        process = start_service("notifier", "notifier", port, env, tmp_path)
        try:
            yield Notifier(f"http://127.0.0.1:{port}", broker.bootstrap, mail)
        finally:
            process.stop()


def good_signal(subject: str) -> bytes:
    return raised("PKUPH-01", study_id=STUDY, subject_id=subject).to_json()


async def publish(bootstrap: str, records: list[tuple[str, bytes, bytes | None]]) -> list[str]:
    """Publish (topic, key, value) in order; returns each record's origin as a dead letter
    names it (topic/partition@offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        origins = []
        for topic, key, value in records:
            sent = await producer.send_and_wait(
                topic, value, key=key, headers=[("content-type", CONTENT_TYPE.encode())]
            )
            origins.append(f"{sent.topic}/{sent.partition}@{sent.offset}")
        return origins
    finally:
        await producer.stop()


async def dead_letters(
    bootstrap: str, expect: Collection[str], *, settle: float = 30.0
) -> dict[str, str]:
    """The dead letters on the topic (origin: reason), read until those of ``expect`` are
    all there or ``settle`` seconds have passed."""
    consumer = AIOKafkaConsumer(
        DEAD_LETTERS,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, str] = {}
    try:
        deadline = asyncio.get_running_loop().time() + settle
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                headers = {k: v.decode(errors="replace") for k, v in record.headers}
                found[headers.get("vigil-origin", "?")] = headers.get("vigil-reason", "")
            if set(expect) <= set(found):
                break
    finally:
        await consumer.stop()
    return found


async def still_serving(notifier: Notifier) -> None:
    async with httpx.AsyncClient(base_url=notifier.url, timeout=30) as client:
        assert (await client.get("/readyz")).status_code == 200
        tasks = (await client.get("/tasks", headers=OPERATOR)).json()["tasks"]
    consumer = next(task for task in tasks if task["task"] == "signal-consumer")
    assert consumer["state"] == "running"


async def wait_for_mail(notifier: Notifier, subject: str) -> None:
    await asyncio.to_thread(
        notifier.mail.wait_for,
        lambda m: f"subject {subject}:" in str(m.message["Subject"]),
        timeout=90,
    )


async def test_undecodable_records_on_both_topics_are_dead_lettered_and_the_next_is_sent(
    notifier: Notifier,
) -> None:
    marker = f"Jane-Doe-{uuid.uuid4().hex[:6]}"
    nested: Any = marker
    for _ in range(500):
        nested = [nested]
    garbage: list[tuple[str, bytes | None]] = [
        (SAFETY_SIGNALS, None),  # a tombstone
        (SAFETY_SIGNALS, b"\xff\xfe\x00" + marker.encode()),
        (SAFETY_SIGNALS, json.dumps({"type": marker, "data": nested}).encode()),
        (DATA_QUALITY, b""),
        (DATA_QUALITY, marker.encode()),
    ]
    subject = f"T-{uuid.uuid4().hex[:8]}"
    records = [
        (topic, KEY, value) for topic, value in [*garbage, (SAFETY_SIGNALS, good_signal(subject))]
    ]
    origins = await publish(notifier.bootstrap, records)

    await wait_for_mail(notifier, subject)
    found = await dead_letters(notifier.bootstrap, origins[:-1])
    assert set(origins[:-1]) <= set(found), found
    for origin in origins[:-1]:
        assert found[origin].startswith("not a valid Vigil event"), found[origin]
        assert marker not in found[origin]
    await still_serving(notifier)


async def test_a_valid_event_the_notifier_cannot_act_on_is_dead_lettered_not_dropped(
    notifier: Notifier,
) -> None:
    # A lab result is a valid Vigil event, but no signal: on the signals topic it is a
    # producer's mistake. A signal of a study the notifier has no roster for reaches
    # nobody. Either is dropped today with a log line at most; an operator learns of it
    # only from the dead-letter topic (and its alert), so each must be dead-lettered,
    # with a reason that names the problem.
    lab = wrap(
        LabResultReported(
            study_id=STUDY, subject_id="01-003", loinc_code="718-7", value=Decimal("8.0"),
            unit="g/dL", collected_at=datetime(2026, 11, 20, 8, 30, tzinfo=UTC),
            source_message_id=f"LAB-{uuid.uuid4().hex[:8]}",
        ),
        source="/tests/found",
    ).to_json()  # fmt: skip
    no_roster = raised("PKUPH-01", study_id="NCT00000000", subject_id="01-001").to_json()
    subject = f"T-{uuid.uuid4().hex[:8]}"
    origins = await publish(
        notifier.bootstrap,
        [(SAFETY_SIGNALS, KEY, value) for value in (lab, no_roster, good_signal(subject))],
    )

    await wait_for_mail(notifier, subject)
    found = await dead_letters(notifier.bootstrap, origins[:2])
    missing = [origin for origin in origins[:2] if origin not in found]
    assert missing == [], f"not dead-lettered: {missing} (dead letters: {found})"
    await still_serving(notifier)


async def test_an_event_off_its_topic_is_dead_lettered_naming_the_type_and_the_topic(
    notifier: Notifier,
) -> None:
    # a signal belongs on the signals topic and a data-quality issue on its own: either on
    # the other topic is a producer's mistake or a forgery, refused as the rules service
    # refuses a signal on its input topics, never acted on
    signal_on_quality = raised("PKUPH-01", study_id=STUDY, subject_id="01-004").to_json()
    quality_on_signals = implausible("01-005").to_json()
    subject = f"T-{uuid.uuid4().hex[:8]}"
    origins = await publish(
        notifier.bootstrap,
        [
            (DATA_QUALITY, KEY, signal_on_quality),
            (SAFETY_SIGNALS, KEY, quality_on_signals),
            (SAFETY_SIGNALS, KEY, good_signal(subject)),
        ],
    )

    await wait_for_mail(notifier, subject)
    found = await dead_letters(notifier.bootstrap, origins[:2])
    assert found.get(origins[0]) == (
        "not an input of the notifier: org.vigil.safety_signal.raised.v1 does not travel on "
        f"{DATA_QUALITY}"
    ), found
    assert found.get(origins[1], "").startswith("not an input of the notifier: "), found
    assert found[origins[1]].endswith(f"does not travel on {SAFETY_SIGNALS}")
    assert not any("01-004" in mail.message["Subject"] for mail in notifier.mail.received)
    await still_serving(notifier)
