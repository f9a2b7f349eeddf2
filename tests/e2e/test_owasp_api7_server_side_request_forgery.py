"""OWASP API7:2023, server-side request forgery: nothing a sender writes makes Vigil fetch
an address. FHIR references, a Bundle entry's fullUrl, an identifier system or a coding
system that are URLs are read as text; the only addresses Vigil calls are the roster's
webhooks, which an operator writes, never a sender."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.services import RunningServices

pytestmark = pytest.mark.integration


class Listener:
    """A plain TCP listener on loopback that notes every connection made to it."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def note(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(note, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[tuple[Listener, str]]:
    trap = Listener()
    port = await trap.start()
    yield trap, f"http://127.0.0.1:{port}"
    await trap.stop()


def observation(url: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": f"{url}/identifiers", "value": f"SSRF-{uuid.uuid4().hex[:8]}"}],
        "code": {"coding": [{"system": f"{url}/loinc", "code": "718-7"}]},
        "subject": {"reference": f"{url}/Patient/01-003"},
        "effectiveDateTime": "2026-11-20T08:30:00+08:00",
        "valueQuantity": {"value": 13.1, "unit": "g/dL", "system": f"{url}/ucum"},
        "derivedFrom": [{"reference": f"{url}/Observation/1"}],
        "basedOn": [{"reference": f"{url}/ServiceRequest/1"}],
    }


async def test_urls_in_a_fhir_resource_are_never_fetched(
    services: RunningServices, listener: tuple[Listener, str]
) -> None:
    trap, url = listener
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"fullUrl": f"{url}/Observation/2", "resource": observation(url)}],
    }
    headers = {**services.headers, "content-type": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        single = await client.post(
            "/fhir/r4/Observation", content=json.dumps(observation(url)), headers=headers
        )
        batch = await client.post("/fhir/r4", content=json.dumps(bundle), headers=headers)

    # an absolute reference is read as text only: its logical id is the subject id
    assert single.status_code == 201, single.text
    assert batch.status_code == 200, batch.text
    assert batch.json()["entry"][0]["response"]["status"].startswith("201")
    await asyncio.sleep(1)  # a fetch, had one been started, would have connected by now
    assert trap.connections == 0
