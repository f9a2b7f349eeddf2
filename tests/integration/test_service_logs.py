"""Nothing hides a failure: FastStream's and the Kafka client's errors reach the services'
JSON logs (they used to be given no logger at all)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog

from services.settings import VigilSettings
from shared.kafka import ensure_topics, make_broker
from shared.structured_logging import configure_logging
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@contextmanager
def service_log() -> Iterator[io.StringIO]:
    """The logging a service configures, written to a buffer; put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer, stderr = io.StringIO(), sys.stderr
    sys.stderr = buffer
    try:
        configure_logging("INFO", service="test")
    finally:
        sys.stderr = stderr
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


async def test_a_handler_error_inside_faststream_reaches_the_json_log_with_its_topic(
    kafka_bootstrap: str,
) -> None:
    settings = VigilSettings(kafka_bootstrap=kafka_bootstrap, kafka_partitions=1)
    topic = f"test-logging-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, (topic,))
    with service_log() as buffer:
        broker = make_broker(settings, client_id="test-logging")

        @broker.subscriber(topic, group_id=f"{topic}-group", auto_offset_reset="earliest")
        async def broken(body: object) -> None:
            raise LookupError("the handler broke")

        await broker.start()
        try:
            await broker.publish(b"{}", topic=topic)

            def error_lines() -> list[dict[str, Any]]:
                return [
                    line
                    for line in lines(buffer)
                    if line["logger"] == "faststream" and line["level"] == "error"
                ]

            found = await eventually(
                lambda: asyncio.sleep(0, error_lines()), timeout=60, what="FastStream's error"
            )
        finally:
            await broker.stop()

    line = found[0]
    assert line["event"].startswith("LookupError")
    assert line["topic"] == topic
    assert "Traceback" in line["exception"]
    assert line["service"] == "test"
    assert not any(line["event"] in ("Received", "Processed") for line in lines(buffer))
