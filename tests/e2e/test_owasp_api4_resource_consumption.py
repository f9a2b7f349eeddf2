"""OWASP API4:2023, unrestricted resource consumption: HTTP bodies, JSON lists and FHIR
Bundles are capped, sources and unauthenticated clients are rate limited, and what is
refused is kept (its first bytes) and counted, except an unauthenticated flood."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.test_haemoglobin_alert import enrolment, haemoglobin
from tests.support.api_keys import IssuedKey, issue_api_key
from tests.support.mail import MailCatcher
from tests.support.scrape import metric_value
from tests.support.services import PrivateIngest, private_ingest

pytestmark = pytest.mark.integration
CAP = 65536
LIMITS = {
    "VIGIL_INGEST_MAX_BODY_BYTES": str(CAP),
    "VIGIL_INGEST_BODY_TIMEOUT_SECONDS": "2",
    "VIGIL_INGEST_MAX_ITEMS_PER_REQUEST": "10",
    "VIGIL_INGEST_MAX_BUNDLE_ENTRIES": "5",
    "VIGIL_INGEST_RATE_PER_SOURCE": "0.2",
    "VIGIL_INGEST_RATE_BURST_PER_SOURCE": "5",
    "VIGIL_INGEST_RATE_UNAUTHENTICATED_PER_CLIENT": "0.01",
    "VIGIL_INGEST_RATE_BURST_UNAUTHENTICATED_PER_CLIENT": "3",
}


@pytest.fixture(scope="module")
def limited(
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrivateIngest, str]]:
    """An ingest with small limits, on a database of its own."""
    with private_ingest(
        server_dsn=postgres_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        log_dir=tmp_path_factory.mktemp("limits"),
        **LIMITS,
    ) as ingest:
        yield ingest, ingest.dsn


async def own_key(dsn: str) -> IssuedKey:
    """Each test its own source, so one test's requests do not spend another's rate."""
    return await issue_api_key(dsn, source=f"src-{uuid.uuid4().hex[:8]}")


async def receipts_of(dsn: str, source: str | None, reason: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(
            "SELECT * FROM received_messages WHERE outcome = 'rejected' AND reason LIKE $2 "
            "AND principal_source IS NOT DISTINCT FROM $1 ORDER BY received_at",
            source,
            f"%{reason}%",
        )
    finally:
        await connection.close()


async def raw_exchange(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request head and some body chunks, never the rest; read the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        async with asyncio.timeout(20):
            response_head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in response_head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            return response_head + await reader.readexactly(length)
    finally:
        writer.close()


def head(path: str, key: IssuedKey, **fields: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: ingest", "Content-Type: application/json",
             f"Authorization: Bearer {key.key}"]  # fmt: skip
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def port_of(ingest: PrivateIngest) -> int:
    return int(ingest.url.rsplit(":", 1)[1])


async def test_a_declared_body_over_the_cap_gets_413_before_it_is_read(
    limited: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = limited
    key = await own_key(dsn)
    first = b"[" + b" " * 8191  # 8 KiB of a body declared as 100 MB, and nothing more sent

    answer = await raw_exchange(
        port_of(ingest), head("/v1/lab-results", key, Content_Length="100000000"), [first]
    )

    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line
    assert b"VIGIL_INGEST_MAX_BODY_BYTES" in rest
    (kept,) = await receipts_of(dsn, key.source, "body-too-large")
    assert bytes(kept["raw"]) == first[:4096]
    assert kept["raw_truncated"] is True


async def test_a_chunked_body_is_cut_with_413_where_it_crosses_the_cap(
    limited: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = limited
    key = await own_key(dsn)
    piece = b"x" * 16384
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    answer = await raw_exchange(
        port_of(ingest),
        head("/v1/lab-results", key, Transfer_Encoding="chunked"),
        [chunk] * 5,  # 80 KiB over a 64 KiB cap, and the body never ends
    )

    assert b" 413 " in answer.partition(b"\r\n")[0]
    (kept,) = await receipts_of(dsn, key.source, "body-too-large")
    assert bytes(kept["raw"]) == piece[:4096]


async def test_a_body_that_trickles_in_too_slowly_gets_408(
    limited: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = limited
    key = await own_key(dsn)
    answer = await raw_exchange(
        port_of(ingest), head("/v1/subjects", key, Content_Length="1000"), [b'{"subject_id"']
    )
    assert b" 408 " in answer.partition(b"\r\n")[0]
    assert await receipts_of(dsn, key.source, "body-timeout")


async def test_a_list_over_the_item_cap_gets_413_naming_the_cap_and_the_field(
    limited: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = limited
    key = await own_key(dsn)
    subject = f"RC-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=ingest.url, headers=key.headers, timeout=30) as client:
        eleven = await client.post(
            "/v1/lab-results", json=[haemoglobin(subject, "13") for _ in range(11)]
        )
        ten = await client.post(
            "/v1/lab-results", json=[haemoglobin(subject, "13") for _ in range(10)]
        )

    assert eleven.status_code == 413
    problem = eleven.json()
    assert "at most 10 items" in problem["detail"]
    assert "VIGIL_INGEST_MAX_ITEMS_PER_REQUEST" in problem["detail"]
    assert problem["errors"][0]["field"] == "(body)"
    assert ten.status_code == 202, ten.text
    assert await receipts_of(dsn, key.source, "at most 10 items")


async def test_a_bundle_over_the_entry_cap_gets_413_naming_the_cap_and_bundle_entry(
    limited: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = limited
    key = await own_key(dsn)
    patient: dict[str, Any] = {"resource": {"resourceType": "Patient"}}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [patient] * 6}
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        response = await client.post(
            "/fhir/r4",
            content=json.dumps(bundle),
            headers={"content-type": "application/fhir+json", **key.headers},
        )

    assert response.status_code == 413
    (issue,) = response.json()["issue"]
    assert issue["code"] == "too-costly"
    assert issue["expression"] == ["Bundle.entry"]
    assert "at most 5 entries" in issue["diagnostics"]
    assert "VIGIL_INGEST_MAX_BUNDLE_ENTRIES" in issue["diagnostics"]
    assert await receipts_of(dsn, key.source, "VIGIL_INGEST_MAX_BUNDLE_ENTRIES")


async def test_a_source_over_its_rate_gets_429_with_retry_after_and_is_kept_and_counted(
    limited: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = limited
    key = await own_key(dsn)
    before = await metric_value(ingest.url, "vigil_ingest_rejected_total", reason="rate-limited")
    async with httpx.AsyncClient(base_url=ingest.url, headers=key.headers, timeout=30) as client:
        answers = [
            await client.post("/v1/subjects", json=enrolment(f"RL-{n}-{uuid.uuid4().hex[:6]}"))
            for n in range(7)
        ]

    statuses = [answer.status_code for answer in answers]
    assert statuses[:5] == [202] * 5  # the burst
    assert 429 in statuses[5:]
    limited_answer = next(answer for answer in answers if answer.status_code == 429)
    assert int(limited_answer.headers["retry-after"]) >= 1
    assert limited_answer.headers["content-type"] == "application/problem+json"
    assert limited_answer.json()["code"] == "rate-limited"
    assert len(await receipts_of(dsn, key.source, "rate-limited")) == statuses.count(429)
    after = await metric_value(ingest.url, "vigil_ingest_rejected_total", reason="rate-limited")
    assert after - before == statuses.count(429)


async def test_unauthenticated_attempts_over_their_rate_get_429_and_are_only_counted(
    limited: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = limited
    counter = "vigil_ingest_rejected_total"
    before = await metric_value(ingest.url, counter, reason="rate-limited-unauthenticated")
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        statuses = [
            (await client.post("/v1/subjects", json=enrolment(f"UA-{n}"))).status_code
            for n in range(6)
        ]

    assert statuses == [401, 401, 401, 429, 429, 429]
    assert len(await receipts_of(dsn, None, "missing-credential")) == 3  # the 429s: not kept
    after = await metric_value(ingest.url, counter, reason="rate-limited-unauthenticated")
    assert after - before == 3
