"""The pure parts of ingest's boundary: body reading, client keys, refusal shapes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import pytest

from services.ingest.domain.authorization import Refusal
from services.ingest.domain.fhir_refusals import expression
from services.ingest.entrypoints.http_body import client_key, read_body, read_prefix
from services.ingest.entrypoints.http_refusals import channel_of, refusal
from services.ingest.entrypoints.mllp import refusal_problems
from shared.events import Envelope

Message = dict[str, object]


def receiving(*chunks: bytes, more_at_end: bool = False) -> Callable[[], Awaitable[Message]]:
    """An ASGI receive that yields ``chunks``; with ``more_at_end`` it then never ends."""
    queue = [
        {"type": "http.request", "body": chunk, "more_body": more_at_end or n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()  # a client that stopped sending
        raise AssertionError("unreachable")

    return receive


async def test_a_body_under_the_cap_is_read_whole() -> None:
    body, over = await read_body(receiving(b"ab", b"cd"), cap=4, timeout=5)  # type: ignore[arg-type]
    assert (body, over) == (b"abcd", False)


async def test_a_streamed_body_is_cut_where_it_crosses_the_cap() -> None:
    receive = receiving(*(b"x" * 1000 for _ in range(10)), more_at_end=True)
    body, over = await read_body(receive, cap=2500, timeout=5)  # type: ignore[arg-type]
    assert over
    assert len(body) <= 4096


async def test_a_body_that_trickles_in_too_slowly_times_out() -> None:
    with pytest.raises(TimeoutError):
        await read_body(receiving(b"{", more_at_end=True), cap=100, timeout=0.05)  # type: ignore[arg-type]


async def test_the_first_bytes_of_a_refused_body_are_kept_without_waiting_for_the_rest() -> None:
    receive = receiving(b"a" * 3000, b"b" * 3000, more_at_end=True)
    prefix, truncated = await read_prefix(receive, 4096, wait=5)  # type: ignore[arg-type]
    assert prefix == b"a" * 3000 + b"b" * 1096
    assert truncated


async def test_a_client_that_sends_nothing_is_not_waited_for_long() -> None:
    prefix, truncated = await read_prefix(receiving(more_at_end=True), 4096, wait=0.05)  # type: ignore[arg-type]
    assert (prefix, truncated) == (b"", True)


async def test_a_small_refused_body_is_kept_whole() -> None:
    prefix, truncated = await read_prefix(receiving(b"{}"), 4096, wait=5)  # type: ignore[arg-type]
    assert (prefix, truncated) == (b"{}", False)


def test_an_ipv6_client_is_limited_by_its_64_and_an_ipv4_client_by_its_address() -> None:
    assert client_key({"client": ("2001:db8::1", 1)}) == client_key({"client": ("2001:db8::ff", 2)})
    assert client_key({"client": ("2001:db8::1", 1)}) != client_key({"client": ("2001:db9::1", 1)})
    assert client_key({"client": ("192.0.2.1", 1)}) == "192.0.2.1"


def test_fhir_paths_answer_operation_outcomes_and_the_rest_problem_json() -> None:
    assert channel_of("/fhir/r4") == channel_of("/fhir/r4/Observation") == "fhir"
    assert channel_of("/v1/lab-results") == channel_of("/fhirish") == "http-json"
    fhir = refusal("fhir", 401, "Unauthenticated", "send a key", code="missing-credential")
    assert fhir.media_type == "application/fhir+json"
    outcome = json.loads(bytes(fhir.body))
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    problem = refusal("http-json", 429, "Too many", "later", code="rate-limited",
                      headers={"Retry-After": "3"})  # fmt: skip
    assert problem.media_type == "application/problem+json"
    assert problem.headers["retry-after"] == "3"
    assert json.loads(bytes(problem.body))["code"] == "rate-limited"


def test_a_refused_fhir_field_is_named_by_its_fhirpath() -> None:
    assert expression("Patient", "subject_id") == "Patient.identifier"
    assert expression("Patient", "site_id") == "Patient.managingOrganization"
    assert expression("Observation", "observation_key") == "Observation.identifier"
    assert expression("AdverseEvent", "subject_id") == "AdverseEvent.subject"


def test_an_hl7_refusal_names_the_obx_of_the_refused_result() -> None:
    text = "\r".join(
        [
            "MSH|^~\\&|LIS|LAB|VIGIL|SPONSOR|20261120083000||ORU^R01|C1|P|2.5.1",
            "PID|1||01-003^^^NCT05262686^SS",
            "OBR|1|ORD1|FIL1|58410-2^CBC^LN",
            "OBX|1|NM|718-7^Hb^LN||8.4|g/dL|||||F",
            "OBR|2|ORD2|FIL2|58410-2^CBC^LN",
            "OBX|1|NM|718-7^Hb^LN||8.4|g/dL|||||F",
            "OBX|2|NM|777-3^PLT^LN||150|10*9/L|||||C",
        ]
    )
    envelope = Envelope.model_validate(
        {"id": uuid.uuid4(), "source": "/t", "type": "org.vigil.lab_result.reported.v1",
         "time": "2026-11-20T00:00:00Z", "correlationid": uuid.uuid4(),
         "data": {"source_message_id": "C1/OBR2/OBX2"}}
    )  # fmt: skip
    refused = Refusal(envelope.id, "forbidden-object", "observation_key", "not yours")
    (problem,) = refusal_problems([refused], [envelope], text)
    assert (problem.segment, problem.sequence, problem.field) == ("OBX", 3, 3)
    assert "forbidden-object" in problem.text
    site = Refusal(uuid.uuid4(), "forbidden-site", "site_id", "not your site")
    (where,) = refusal_problems([site], [], text)
    assert (where.segment, where.field) == ("PV1", 3)
