"""Found while breaking issue 16's ports from outside: the in-memory event publisher
refuses a record "as Kafka's client refuses it" by the size of its key and value alone,
where Kafka's client measures the record as it is sent (with its headers and the batch's
overhead). A record just at the limit is refused by Kafka and taken in memory, so an
ingest unit test can pass where production dead-letters."""

from __future__ import annotations

import uuid

from aiokafka.errors import MessageSizeTooLargeError

from services.ingest.adapters.in_memory import KAFKA_MAX_REQUEST_BYTES
from services.ingest.handlers.ports import Outgoing
from shared.events.topics import LAB_RESULTS
from tests.contract.test_event_publisher_contract import (  # noqa: F401 (fixtures)
    Harness,
    harness,
    marker,
    publisher_kind,
    tansu,
)


async def test_a_record_over_the_request_size_once_sent_is_refused_by_both(
    harness: Harness,  # noqa: F811
    marker: bytes,  # noqa: F811
) -> None:
    key = b"NCT05262686/01-003"
    value = marker + b"x" * (KAFKA_MAX_REQUEST_BYTES - len(key) - len(marker))
    at_the_limit = Outgoing(
        uuid.uuid4(), LAB_RESULTS, key, value, {"content-type": "application/json"}
    )

    (answer,) = await harness.publisher.publish_each([at_the_limit])

    assert isinstance(answer, MessageSizeTooLargeError), answer
